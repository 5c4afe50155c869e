// A raw control-socket client for tests that run it as another uid (via
// setpriv): connects, then for each LINE argument sends it with a newline
// and prints one reply line; an argument holding several lines (joined by
// newlines) is sent in one write, pipelined, and gets one reply line per
// line. A line "@hold=N" instead keeps the connection
// open for N seconds without sending (to hold a connection slot). At the
// end it waits up to one second and prints "EOF" if the daemon closed the
// connection, "OPEN" otherwise.
// Usage: line-client SOCKET LINE...
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static char pending[1 << 20];
static size_t used;

// Reads until a full line is buffered; prints it. Returns 0, or -1 on EOF/timeout.
static int read_line(int fd, int timeout_ms) {
    for (;;) {
        char *newline = memchr(pending, '\n', used);
        if (newline) {
            size_t length = (size_t)(newline - pending) + 1;
            fwrite(pending, 1, length, stdout);
            memmove(pending, pending + length, used - length);
            used -= length;
            fflush(stdout);
            return 0;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, timeout_ms) <= 0) return -1;
        ssize_t n = recv(fd, pending + used, sizeof pending - used, 0);
        if (n <= 0) return -1;
        used += (size_t)n;
    }
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s SOCKET LINE...\n", argv[0]);
        return 2;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        printf("CONNECT-FAILED %s\n", strerror(errno));
        return 3;
    }
    for (int i = 2; i < argc; i++) {
        if (strncmp(argv[i], "@hold=", 6) == 0) {
            sleep((unsigned)atoi(argv[i] + 6));
            continue;
        }
        size_t length = strlen(argv[i]);
        char *frame = malloc(length + 1);
        memcpy(frame, argv[i], length);
        frame[length] = '\n';
        if (send(fd, frame, length + 1, MSG_NOSIGNAL) < 0) {
            // The daemon closed first (a refused peer): what it sent, then EOF, is printed below.
            if (errno != EPIPE && errno != ECONNRESET) printf("SEND-FAILED %s\n", strerror(errno));
            free(frame);
            break;
        }
        free(frame);
        int replies = 1;
        for (size_t k = 0; k < length; k++) replies += argv[i][k] == '\n';
        int failed = 0;
        for (int r = 0; r < replies && !failed; r++) failed = read_line(fd, 10000) != 0;
        if (failed) break;
    }
    // Anything left (an err sent before closing) is printed before EOF.
    while (read_line(fd, 500) == 0) {}
    struct pollfd p = {.fd = fd, .events = POLLIN};
    char byte;
    int closed = poll(&p, 1, 500) > 0 && recv(fd, &byte, 1, MSG_PEEK) <= 0;
    printf(closed ? "EOF\n" : "OPEN\n");
    return 0;
}
