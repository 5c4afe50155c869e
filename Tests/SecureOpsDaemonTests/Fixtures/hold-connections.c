// Opens COUNT connections to SOCKET one after another, sends a ping on each
// and reads the reply: counts how many were answered {"type":"ok"} and how
// many refused (an err, then closed), prints "ANSWERED a REFUSED r" and the
// first refusal, then holds the answered connections open until stdin
// reaches end of file. Run it as another uid (setpriv) to fill the daemon's
// connection slots. Usage: hold-connections SOCKET COUNT
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

// One reply line (without the newline) into `line`; 0, or -1 on EOF/timeout.
static int read_line(int fd, char *line, size_t size) {
    size_t used = 0;
    while (used + 1 < size) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 10000) <= 0) return -1;
        char c;
        if (recv(fd, &c, 1, 0) != 1) return -1;
        if (c == '\n') break;
        line[used++] = c;
    }
    line[used] = 0;
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SOCKET COUNT\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[2]);
    int answered = 0, refused = 0;
    char first_refusal[512] = "";
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un address = {.sun_family = AF_UNIX};
        strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
        if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
            refused++;
            close(fd);
            continue;
        }
        send(fd, "{\"type\":\"ping\"}\n", 16, MSG_NOSIGNAL);
        char line[512];
        if (read_line(fd, line, sizeof line) == 0 && strcmp(line, "{\"type\":\"ok\"}") == 0) {
            answered++;  // kept open
        } else {
            if (refused == 0) snprintf(first_refusal, sizeof first_refusal, "%s", line);
            refused++;
            close(fd);
        }
    }
    printf("ANSWERED %d REFUSED %d\n%s\n", answered, refused, first_refusal);
    fflush(stdout);
    char buffer[64];
    while (read(0, buffer, sizeof buffer) > 0) {}
    return 0;
}
