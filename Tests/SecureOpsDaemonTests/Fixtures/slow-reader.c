// Sends REQUEST (a newline is added), then reads at most CHUNK bytes every
// MILLIS milliseconds: a reader that takes something now and then, but too
// little. Prints "READING" once the first bytes arrived; exits at end of
// stream, printing "READ n" (bytes read). Run it as another uid (setpriv).
// Usage: slow-reader SOCKET REQUEST CHUNK MILLIS
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: %s SOCKET REQUEST CHUNK MILLIS\n", argv[0]);
        return 2;
    }
    int chunk = atoi(argv[3]);
    int millis = atoi(argv[4]);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un address = {.sun_family = AF_UNIX};
    strncpy(address.sun_path, argv[1], sizeof address.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&address, sizeof address) != 0) {
        perror("connect");
        return 3;
    }
    send(fd, argv[2], strlen(argv[2]), MSG_NOSIGNAL);
    send(fd, "\n", 1, MSG_NOSIGNAL);
    char *buffer = malloc((size_t)chunk);
    long total = 0;
    int announced = 0;
    struct timespec pause = {.tv_sec = millis / 1000, .tv_nsec = (long)(millis % 1000) * 1000000L};
    for (;;) {
        ssize_t n = recv(fd, buffer, (size_t)chunk, 0);
        if (n <= 0) break;
        total += n;
        if (!announced) {
            printf("READING\n");
            fflush(stdout);
            announced = 1;
        }
        nanosleep(&pause, NULL);
    }
    printf("READ %ld\n", total);
    return 0;
}
