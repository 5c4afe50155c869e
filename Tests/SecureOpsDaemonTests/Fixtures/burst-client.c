// Sends COUNT copies of FRAME (a newline is added to each) in one write,
// prints "SENT", then reads nothing until its stdin reaches end of file.
// Then it reads every reply line and prints
//   "REPLIES n MAXBYTES b MAXALERTS a ERRORS e"
// (the longest reply line, the most `"sequence":` occurrences in one line,
// and how many lines were err frames). Run it as another uid (setpriv).
// Usage: burst-client SOCKET COUNT FRAME
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s SOCKET COUNT FRAME\n", argv[0]);
        return 2;
    }
    int count = atoi(argv[2]);
    size_t frame = strlen(argv[3]);
    char *burst = malloc((frame + 1) * (size_t)count);
    for (int i = 0; i < count; i++) {
        memcpy(burst + i * (frame + 1), argv[3], frame);
        burst[i * (frame + 1) + frame] = '\n';
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("connect");
        return 3;
    }
    size_t total = (frame + 1) * (size_t)count, sent = 0;
    while (sent < total) {
        ssize_t n = send(fd, burst + sent, total - sent, MSG_NOSIGNAL);
        if (n <= 0) { perror("send"); return 3; }
        sent += (size_t)n;
    }
    printf("SENT\n");
    fflush(stdout);
    char scratch[64];
    while (read(0, scratch, sizeof scratch) > 0) {}

    size_t capacity = 64 << 20, used = 0;
    char *line = malloc(capacity);
    int replies = 0, errors = 0, max_alerts = 0;
    size_t max_bytes = 0;
    char chunk[1 << 16];
    while (replies < count) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 20000) <= 0) break;
        ssize_t n = recv(fd, chunk, sizeof chunk, 0);
        if (n <= 0) break;
        for (ssize_t i = 0; i < n; i++) {
            if (chunk[i] != '\n') {
                if (used < capacity) line[used++] = chunk[i];
                continue;
            }
            line[used] = 0;
            replies++;
            if (used > max_bytes) max_bytes = used;
            if (strncmp(line, "{\"type\":\"err\"", 13) == 0) errors++;
            int alerts = 0;
            for (char *s = line; (s = strstr(s, "\"sequence\":")) != NULL; s++) alerts++;
            if (alerts > max_alerts) max_alerts = alerts;
            used = 0;
        }
    }
    printf("REPLIES %d MAXBYTES %zu MAXALERTS %d ERRORS %d\n", replies, max_bytes, max_alerts, errors);
    return 0;
}
