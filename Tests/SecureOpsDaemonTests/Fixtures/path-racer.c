// Races a path swap, the way a local attacker would: in DIRECTORY (which
// the racer owns), NAME is made a directory, removed, made a symbolic link
// to TARGET, removed, over and over, until STOPFILE exists or SECONDS pass.
// Prints how many swaps it made. Run it as another uid (setpriv).
// Usage: path-racer DIRECTORY NAME TARGET STOPFILE SECONDS
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: %s DIRECTORY NAME TARGET STOPFILE SECONDS\n", argv[0]);
        return 2;
    }
    if (chdir(argv[1]) != 0) { perror("chdir"); return 1; }
    const char *name = argv[2], *target = argv[3], *stop = argv[4];
    time_t deadline = time(NULL) + atoi(argv[5]);
    long swaps = 0;
    printf("READY\n");
    fflush(stdout);
    while (access(stop, F_OK) != 0 && time(NULL) < deadline) {
        for (int i = 0; i < 1000; i++) {
            mkdir(name, 0755);
            rmdir(name);
            symlink(target, name);
            unlink(name);
            swaps++;
        }
    }
    printf("%ld\n", swaps);
    return 0;
}
