// A subscriber swarm for fan-out tests: N connections subscribe, then every
// alert is checked for order and exactly-once delivery per subscriber.
//
// usage: fanout-check SOCKET SUBSCRIBERS EXPECTED [--since S] [--timeout SECS] [--slow-reader MS]
//        fanout-check publish SOCKET COUNT WINDOW SIZE
//        fanout-check pings SOCKET N
//
// Prints "READY <next>" once every subscriber has its `ok` (the test then
// publishes), and at the end one JSON line:
// {"subscribers":N,"received":R,"lost":L,"duplicated":D,"reordered":O,"lagNotices":G,"skipped":K,"closed":C,"seconds":S}
// Exit status 0 when nothing was lost, duplicated or reordered.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int fd;
    int subscribed;
    int closed;
    uint64_t next;      // sequence expected next
    uint64_t received;
    uint64_t skipped;
    char *carry;
    size_t carry_len, carry_cap;
} sub_t;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static uint64_t number_after(const char *line, size_t len, const char *key) {
    const char *p = memmem(line, len, key, strlen(key));
    if (!p) return UINT64_MAX;
    p += strlen(key);
    uint64_t v = 0;
    while (p < line + len && *p >= '0' && *p <= '9') v = v * 10 + (uint64_t)(*p++ - '0');
    return v;
}

static uint64_t duplicated, reordered, lag_notices, ready_count, first_next = UINT64_MAX;

static void handle_line(sub_t *s, const char *line, size_t len) {
    if (len >= 15 && memcmp(line, "{\"type\":\"alert\"", 15) == 0) {
        uint64_t seq = number_after(line, len, "\"sequence\":");
        if (seq == s->next) {
            s->next++;
            s->received++;
        } else if (seq < s->next) {
            duplicated++;
        } else {
            reordered++;
            s->next = seq + 1;
            s->received++;
        }
    } else if (len >= 12 && memcmp(line, "{\"type\":\"ok\"", 12) == 0) {
        uint64_t next = number_after(line, len, "\"next\":");
        if (!s->subscribed) {
            s->subscribed = 1;
            ready_count++;
            if (s->next == 0) s->next = next;
            if (first_next == UINT64_MAX || next < first_next) first_next = next;
        }
    } else if (len >= 13 && memcmp(line, "{\"type\":\"err\"", 13) == 0) {
        uint64_t skipped = number_after(line, len, "\"skipped\":");
        uint64_t resume = number_after(line, len, "\"resumeAt\":");
        if (skipped != UINT64_MAX && resume != UINT64_MAX) {
            lag_notices++;
            s->skipped += skipped;
            if (resume != s->next + skipped) reordered++; // notice inconsistent with what we got
            s->next = resume;
        } else {
            fprintf(stderr, "unexpected err frame: %.*s\n", (int)len, line);
        }
    }
}

// Publishes COUNT alerts of about SIZE bytes with at most WINDOW unanswered,
// then prints {"published":N,"seconds":S,"errors":E}.
static int publish_mode(const char *path, long count, int window, int size) {
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) { perror("connect"); return 2; }
    char pad[4096];
    int pad_len = size > 120 ? size - 120 : 1;
    if (pad_len > (int)sizeof pad - 1) pad_len = sizeof pad - 1;
    memset(pad, 'x', (size_t)pad_len);
    pad[pad_len] = 0;
    char frame[8192], in[1 << 16];
    long sent = 0, answered = 0, errors = 0;
    double start = now();
    while (answered < count) {
        char batch[1 << 16];
        size_t used = 0;
        while (sent < count && sent - answered < window && used + 6000 < sizeof batch) {
            int n = snprintf(frame, sizeof frame,
                "{\"type\":\"publish\",\"alert\":{\"severity\":\"high\",\"source\":\"load\",\"message\":\"%ld\",\"details\":{\"pad\":\"%s\"}}}\n",
                sent, pad);
            memcpy(batch + used, frame, (size_t)n);
            used += (size_t)n;
            sent++;
        }
        size_t off = 0;
        while (off < used) {
            ssize_t w = write(fd, batch + off, used - off);
            if (w <= 0) { perror("write"); return 2; }
            off += (size_t)w;
        }
        ssize_t got = read(fd, in, sizeof in);
        if (got <= 0) { fprintf(stderr, "publisher: daemon closed\n"); return 2; }
        for (ssize_t i = 0; i < got; i++) {
            if (in[i] == '\n') answered++;
        }
        if (memmem(in, (size_t)got, "\"err\"", 5)) errors++;
    }
    printf("{\"published\":%ld,\"seconds\":%.3f,\"errors\":%ld}\n", count, now() - start, errors);
    return errors ? 1 : 0;
}

// Connects N clients, then each sends one ping at once (a burst of N
// senders) and waits for its answer. Prints {"connections":N,"answered":A,"errors":E}.
static int pings_mode(const char *path, int count) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    int *fds = calloc((size_t)count, sizeof *fds);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    for (int i = 0; i < count; i++) {
        fds[i] = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int attempts = 0;
        while (connect(fds[i], (struct sockaddr *)&addr, sizeof addr) != 0) {
            if ((errno == EAGAIN || errno == ECONNREFUSED) && attempts++ < 5000) { usleep(1000); continue; }
            fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
            return 2;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    static const char ping[] = "{\"type\":\"ping\"}\n";
    for (int i = 0; i < count; i++) {
        if (write(fds[i], ping, sizeof ping - 1) != (ssize_t)(sizeof ping - 1)) { perror("write"); return 2; }
    }
    int answered = 0, errors = 0;
    double deadline = now() + 60;
    char buf[256];
    struct epoll_event events[256];
    while (answered + errors < count && now() < deadline) {
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            int fd = fds[events[e].data.u32];
            ssize_t got = read(fd, buf, sizeof buf);
            if (got == 14 && memcmp(buf, "{\"type\":\"ok\"}\n", 14) == 0) answered++;
            else errors++;
            epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
        }
    }
    printf("{\"connections\":%d,\"answered\":%d,\"errors\":%d}\n", count, answered, errors);
    return answered == count ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "pings")) {
        if (argc < 4) { fprintf(stderr, "usage: %s pings SOCKET N\n", argv[0]); return 2; }
        return pings_mode(argv[2], atoi(argv[3]));
    }
    if (argc >= 2 && !strcmp(argv[1], "publish")) {
        if (argc < 6) { fprintf(stderr, "usage: %s publish SOCKET COUNT WINDOW SIZE\n", argv[0]); return 2; }
        return publish_mode(argv[2], atol(argv[3]), atoi(argv[4]), atoi(argv[5]));
    }
    if (argc < 4) {
        fprintf(stderr, "usage: %s SOCKET SUBSCRIBERS EXPECTED [--since S] [--timeout SECS] [--slow-reader MS]\n", argv[0]);
        return 2;
    }
    const char *path = argv[1];
    int count = atoi(argv[2]);
    uint64_t expected = strtoull(argv[3], NULL, 10);
    long long since = -1;
    double timeout = 60;
    int slow_ms = 0;
    for (int i = 4; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--since")) since = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--timeout")) timeout = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--slow-reader")) slow_ms = atoi(argv[i + 1]);
    }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);

    sub_t *subs = calloc((size_t)count, sizeof *subs);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strncpy(addr.sun_path, path, sizeof addr.sun_path - 1);
    char request[64];
    int request_len = since >= 0 ? snprintf(request, sizeof request, "{\"type\":\"subscribe\",\"since\":%lld}\n", since)
                                 : snprintf(request, sizeof request, "{\"type\":\"subscribe\"}\n");
    for (int i = 0; i < count; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) { perror("socket"); return 2; }
        int attempts = 0;
        while (connect(fd, (struct sockaddr *)&addr, sizeof addr) != 0) {
            if ((errno == EAGAIN || errno == ECONNREFUSED) && attempts++ < 2000) { usleep(1000); continue; }
            fprintf(stderr, "connect %d: %s\n", i, strerror(errno));
            return 2;
        }
        if (write(fd, request, (size_t)request_len) != request_len) { perror("write"); return 2; }
        fcntl(fd, F_SETFL, O_NONBLOCK);
        subs[i].fd = fd;
        if (since >= 0) subs[i].next = (uint64_t)since + 1;
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = (uint32_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
    }
    double start = now();
    double deadline = start + timeout;
    int announced = 0;
    char *buf = malloc(1 << 16);
    struct epoll_event events[256];
    uint64_t done = 0;
    int closed = 0;
    while (now() < deadline) {
        if (!announced && ready_count == (uint64_t)count) {
            printf("READY %llu\n", (unsigned long long)first_next);
            fflush(stdout);
            announced = 1;
        }
        if (announced) {
            done = 0;
            for (int i = 0; i < count; i++) {
                uint64_t base = since >= 0 ? (uint64_t)since : (subs[i].next - subs[i].received - subs[i].skipped - 1);
                (void)base;
                if (subs[i].closed || subs[i].received + subs[i].skipped >= expected) done++;
            }
            if (done == (uint64_t)count) break;
        }
        int n = epoll_wait(ep, events, 256, 100);
        for (int e = 0; e < n; e++) {
            sub_t *s = &subs[events[e].data.u32];
            if (slow_ms) usleep((useconds_t)slow_ms * 1000);
            for (;;) {
                ssize_t got = read(s->fd, buf, 1 << 16);
                if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR)) {
                    if (!s->closed) { s->closed = 1; closed++; }
                    epoll_ctl(ep, EPOLL_CTL_DEL, s->fd, NULL);
                    break;
                }
                if (got < 0) break;
                size_t start_at = 0;
                for (size_t i = 0; i < (size_t)got; i++) {
                    if (buf[i] != '\n') continue;
                    if (s->carry_len) {
                        size_t need = s->carry_len + (i - start_at);
                        if (need > s->carry_cap) { s->carry_cap = need * 2; s->carry = realloc(s->carry, s->carry_cap); }
                        memcpy(s->carry + s->carry_len, buf + start_at, i - start_at);
                        handle_line(s, s->carry, need);
                        s->carry_len = 0;
                    } else {
                        handle_line(s, buf + start_at, i - start_at);
                    }
                    start_at = i + 1;
                }
                if (start_at < (size_t)got) {
                    size_t rest = (size_t)got - start_at;
                    if (s->carry_len + rest > s->carry_cap) { s->carry_cap = (s->carry_len + rest) * 2; s->carry = realloc(s->carry, s->carry_cap); }
                    memcpy(s->carry + s->carry_len, buf + start_at, rest);
                    s->carry_len += rest;
                }
                if (slow_ms) break;
            }
        }
    }
    uint64_t received = 0, skipped = 0, lost = 0;
    for (int i = 0; i < count; i++) {
        received += subs[i].received;
        skipped += subs[i].skipped;
        if (!subs[i].closed && subs[i].received + subs[i].skipped < expected)
            lost += expected - subs[i].received - subs[i].skipped;
    }
    if (!announced) fprintf(stderr, "only %llu of %d subscribed\n", (unsigned long long)ready_count, count);
    printf("{\"subscribers\":%d,\"received\":%llu,\"lost\":%llu,\"duplicated\":%llu,\"reordered\":%llu,"
           "\"lagNotices\":%llu,\"skipped\":%llu,\"closed\":%d,\"seconds\":%.3f}\n",
           count, (unsigned long long)received, (unsigned long long)lost, (unsigned long long)duplicated,
           (unsigned long long)reordered, (unsigned long long)lag_notices, (unsigned long long)skipped, closed, now() - start);
    return (lost || duplicated || reordered || !announced) ? 1 : 0;
}
