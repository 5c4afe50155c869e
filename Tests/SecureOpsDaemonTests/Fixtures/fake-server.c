// A server squatting a socket path, as another user would: listens on
// SOCKET, answers every line it receives with REPLY (a newline added),
// prints "LISTENING" once it listens, and exits when its stdin reaches end
// of file. Run it as another uid (setpriv).
// Usage: fake-server SOCKET REPLY
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET REPLY\n", argv[0]);
        return 2;
    }
    int listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    unlink(argv[1]);
    if (bind(listener, (struct sockaddr *)&address, sizeof address) != 0 || listen(listener, 16) != 0) {
        perror("bind/listen");
        return 3;
    }
    printf("LISTENING\n");
    fflush(stdout);
    struct pollfd fds[18] = {{.fd = 0, .events = POLLIN}, {.fd = listener, .events = POLLIN}};
    int count = 2;
    for (;;) {
        if (poll(fds, (nfds_t)count, -1) < 0) continue;
        if (fds[0].revents) {
            char scratch[64];
            if (read(0, scratch, sizeof scratch) <= 0) break;
        }
        if (fds[1].revents & POLLIN && count < 18) {
            int client = accept(listener, NULL, NULL);
            if (client >= 0) fds[count++] = (struct pollfd){.fd = client, .events = POLLIN};
        }
        for (int i = 2; i < count; i++) {
            if (!fds[i].revents) continue;
            char buffer[4096];
            ssize_t n = recv(fds[i].fd, buffer, sizeof buffer, 0);
            if (n <= 0) {
                close(fds[i].fd);
                fds[i] = fds[--count];
                i--;
                continue;
            }
            for (ssize_t k = 0; k < n; k++) {
                if (buffer[k] != '\n') continue;
                send(fds[i].fd, argv[2], strlen(argv[2]), MSG_NOSIGNAL);
                send(fds[i].fd, "\n", 1, MSG_NOSIGNAL);
            }
        }
    }
    unlink(argv[1]);
    return 0;
}
