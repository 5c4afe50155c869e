// A deliberately broken secureopsd stand-in for secureops-bench's own tests:
// it speaks just enough of WIRE.md (subscribe, publish) to run a fan-out,
// but never delivers alert 3, delivers alert 6 twice and alert 9 after
// alert 10. The tool must report exactly that (lost, duplicated,
// reordered) and exit non-zero.
//
//   lossy-server SOCKET_PATH
#define _GNU_SOURCE
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX 256

static int fds[MAX];
static int subscribed[MAX];
static char buf[MAX][65536];
static size_t len[MAX];

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return;
        p += w; n -= (size_t)w;
    }
}

int main(int argc, char **argv) {
    if (argc != 2) return 2;
    // Never outlive the test that started it, even if the test is killed;
    // and take SIGTERM even when started with it blocked (a test runner's
    // signal mask is inherited across posix_spawn).
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    alarm(120);
    int listener = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, argv[1], sizeof a.sun_path - 1);
    unlink(argv[1]);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) != 0 || listen(listener, 128) != 0) { perror("listen"); return 2; }
    unsigned long sequence = 0;
    static char held[70000];
    int held_length = 0;
    for (int i = 0; i < MAX; i++) fds[i] = -1;
    for (;;) {
        struct pollfd p[MAX + 1];
        p[0].fd = listener; p[0].events = POLLIN;
        for (int i = 0; i < MAX; i++) { p[i + 1].fd = fds[i]; p[i + 1].events = POLLIN; }
        if (poll(p, MAX + 1, -1) < 0) continue;
        if (p[0].revents & POLLIN) {
            int c = accept(listener, NULL, NULL);
            for (int i = 0; i < MAX && c >= 0; i++) if (fds[i] < 0) { fds[i] = c; subscribed[i] = 0; len[i] = 0; c = -1; }
            if (c >= 0) close(c);
        }
        for (int i = 0; i < MAX; i++) {
            if (fds[i] < 0 || !(p[i + 1].revents & (POLLIN | POLLHUP))) continue;
            ssize_t r = recv(fds[i], buf[i] + len[i], sizeof buf[i] - len[i], 0);
            if (r <= 0) { close(fds[i]); fds[i] = -1; continue; }
            len[i] += (size_t)r;
            char *nl;
            while ((nl = memchr(buf[i], '\n', len[i])) != NULL) {
                *nl = 0;
                char out[70000];
                if (strstr(buf[i], "\"subscribe\"")) {
                    subscribed[i] = 1;
                    int n = sprintf(out, "{\"type\":\"ok\",\"subscribed\":true,\"next\":%lu}\n", sequence + 1);
                    send_all(fds[i], out, (size_t)n);
                } else if (strstr(buf[i], "\"publish\"")) {
                    sequence++;
                    int n = sprintf(out, "{\"type\":\"ok\",\"sequence\":%lu}\n", sequence);
                    send_all(fds[i], out, (size_t)n);
                    char *message = strstr(buf[i], "\"message\":\"");
                    char *end = message ? strstr(message + 11, "\"}") : NULL;
                    if (message && end) {
                        *end = 0;
                        n = sprintf(out, "{\"type\":\"alert\",\"sequence\":%lu,\"timestamp\":\"2026-11-29T04:27:13.123Z\","
                                         "\"severity\":\"info\",\"source\":\"bench\",\"message\":\"%s\",\"details\":null}\n",
                                    sequence, message + 11);
                        int copies = sequence == 3 ? 0 : sequence == 6 ? 2 : 1;
                        if (sequence == 9) { memcpy(held, out, (size_t)n); held_length = n; copies = 0; }
                        for (int s = 0; s < MAX; s++)
                            if (fds[s] >= 0 && subscribed[s]) {
                                for (int k = 0; k < copies; k++) send_all(fds[s], out, (size_t)n);
                                if (sequence == 10) send_all(fds[s], held, (size_t)held_length);
                            }
                    }
                } else {
                    send_all(fds[i], "{\"type\":\"ok\"}\n", 14);
                }
                size_t used = (size_t)(nl - buf[i]) + 1;
                memmove(buf[i], nl + 1, len[i] - used);
                len[i] -= used;
            }
        }
    }
}
