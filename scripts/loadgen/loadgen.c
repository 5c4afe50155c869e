// loadgen: a small, independent load generator for secureopsd and Redis.
//
// It exists to check secureops-bench's figures with a second method: plain
// C, epoll, and no parsing at all. Subscribers only count newline bytes
// (an alert is one line on secureopsd, seven RESP lines on Redis); the
// publisher counts acknowledgement lines. Deliveries/s is N x M / the time
// from the first publish to the moment every subscriber has counted all its
// lines. It is also the "neutral C load generator" for server-versus-server
// comparisons: the same bytes go to both servers.
//
//   loadgen fanout secureops|redis SOCKET SUBSCRIBERS ALERTS SIZE WINDOW
//   loadgen rpc    secureops|redis SOCKET CONNECTIONS REQUESTS PIPELINE
//
// Prints one line of key=value pairs. Build: cc -O2 -o loadgen loadgen.c
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

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static void die(const char *what) {
    fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
    exit(2);
}

static int connect_unix(const char *path) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) die("socket");
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    strncpy(a.sun_path, path, sizeof a.sun_path - 1);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) die("connect");
    return fd;
}

static void send_all(int fd, const char *p, size_t n) {
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && (errno == EINTR || errno == EAGAIN)) { usleep(50); continue; }
        if (w <= 0) die("send");
        p += w; n -= (size_t)w;
    }
}

static size_t count_newlines(const char *p, size_t n) {
    size_t c = 0;
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) { c++; p++; }
    return c;
}

static void raise_nofile(void) {
    struct rlimit r;
    if (getrlimit(RLIMIT_NOFILE, &r) == 0) { r.rlim_cur = r.rlim_max; setrlimit(RLIMIT_NOFILE, &r); }
}

// One publish request of the same shape secureops-bench sends; `size` is
// the size of the delivered alert frame it aims for (approximately: the
// daemon adds its own sequence and timestamp).
static size_t build_publish(char *out, int redis, int size) {
    // Delivered secureopsd frame: {"type":"alert","sequence":N,"timestamp":"<24>","severity":"info",
    // "source":"bench","message":"<pad>","details":null}\n  -> about 135 bytes + pad with a 5-digit N.
    int pad = size - 138;
    if (pad < 1) pad = 1;
    char msg[1 << 16];
    if (pad >= (int)sizeof msg) pad = (int)sizeof msg - 1;
    memset(msg, 'x', (size_t)pad);
    msg[pad] = 0;
    if (!redis)
        return (size_t)sprintf(out, "{\"type\":\"publish\",\"alert\":{\"severity\":\"info\",\"source\":\"bench\",\"message\":\"%s\"}}\n", msg);
    char payload[1 << 17];
    int n = sprintf(payload, "{\"type\":\"alert\",\"sequence\":12345,\"timestamp\":\"2026-11-29T04:27:13.123Z\","
                             "\"severity\":\"info\",\"source\":\"bench\",\"message\":\"%s\",\"details\":null}", msg);
    return (size_t)sprintf(out, "*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%d\r\n%s\r\n", n, payload);
}

static int fanout(int redis, const char *path, int subs, long alerts, int size, int window) {
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = calloc((size_t)subs, sizeof *fds);
    long *lines = calloc((size_t)subs, sizeof *lines);
    long long bytes = 0;
    const char *sub = redis ? "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n" : "{\"type\":\"subscribe\"}\n";
    // Lines that confirm a subscription, and lines per delivered alert.
    long confirm = redis ? 5 : 1, per_alert = redis ? 7 : 1;
    for (int i = 0; i < subs; i++) {
        fds[i] = connect_unix(path);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        send_all(fds[i], sub, strlen(sub));
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    struct epoll_event evs[1024];
    long confirmed_subs = 0;
    // Wait for every confirmation.
    while (confirmed_subs < subs) {
        int n = epoll_wait(ep, evs, 1024, 1000);
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u64;
            ssize_t r = recv(fds[i], buf, cap, MSG_DONTWAIT);
            if (r <= 0) continue;
            long before = lines[i];
            lines[i] += (long)count_newlines(buf, (size_t)r);
            if (before < confirm && lines[i] >= confirm) confirmed_subs++;
        }
        if (n == 0) { fprintf(stderr, "loadgen: subscriptions not confirmed\n"); return 2; }
    }
    int pub = connect_unix(path);
    fcntl(pub, F_SETFL, O_NONBLOCK);
    struct epoll_event pev = {.events = EPOLLIN, .data.u64 = (uint64_t)subs};
    epoll_ctl(ep, EPOLL_CTL_ADD, pub, &pev);
    char *one = malloc(1 << 18);
    size_t one_len = build_publish(one, redis, size);
    char *batch = malloc(one_len * (size_t)window);
    long sent = 0, acked = 0, inflight = 0, done_subs = 0;
    long target = confirm + alerts * per_alert;
    double start = now_s(), last = start, last_progress = start;
    while (done_subs < subs) {
        if (sent < alerts && inflight < window) {
            long k = window - inflight;
            if (k > alerts - sent) k = alerts - sent;
            for (long j = 0; j < k; j++) memcpy(batch + j * one_len, one, one_len);
            send_all(pub, batch, one_len * (size_t)k);
            sent += k; inflight += k;
        }
        int n = epoll_wait(ep, evs, 1024, 100);
        double t = now_s();
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u64;
            if (i == subs) {
                ssize_t r = recv(pub, buf, cap, MSG_DONTWAIT);
                if (r > 0) { long c = (long)count_newlines(buf, (size_t)r); acked += c; inflight -= c; }
                // Refill the window at once, before this turn's subscriber reads.
                if (sent < alerts && inflight < window) {
                    long k = window - inflight;
                    if (k > alerts - sent) k = alerts - sent;
                    for (long j = 0; j < k; j++) memcpy(batch + j * one_len, one, one_len);
                    send_all(pub, batch, one_len * (size_t)k);
                    sent += k; inflight += k;
                }
                continue;
            }
            ssize_t r = recv(fds[i], buf, cap, MSG_DONTWAIT);
            if (r <= 0) continue;
            long before = lines[i];
            lines[i] += (long)count_newlines(buf, (size_t)r);
            bytes += r;
            last = last_progress = t;
            if (before < target && lines[i] >= target) done_subs++;
        }
        if (t - last_progress > 10) break;  // stalled: report what arrived
    }
    long delivered = 0;
    for (int i = 0; i < subs; i++) delivered += (lines[i] - confirm) / per_alert;
    double elapsed = last - start;
    printf("mode=fanout target=%s subscribers=%d alerts=%ld acked=%ld deliveries=%ld bytes_per_delivery=%.1f elapsed=%.4f deliveries_per_sec=%.0f lost=%ld\n",
           redis ? "redis" : "secureops", subs, alerts, acked, delivered, delivered ? (double)bytes / delivered : 0.0, elapsed, delivered / elapsed,
           (long)subs * alerts - delivered);
    return delivered == (long)subs * alerts ? 0 : 1;
}

static int rpc(int redis, const char *path, int conns, long requests, int pipeline) {
    const char *ping = redis ? "*1\r\n$4\r\nPING\r\n" : "{\"type\":\"ping\"}\n";
    size_t plen = strlen(ping);
    char *batch = malloc(plen * (size_t)pipeline);
    for (int j = 0; j < pipeline; j++) memcpy(batch + (size_t)j * plen, ping, plen);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    int *fds = calloc((size_t)conns, sizeof *fds);
    int *outstanding = calloc((size_t)conns, sizeof *outstanding);
    for (int i = 0; i < conns; i++) {
        fds[i] = connect_unix(path);
        fcntl(fds[i], F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    long batches = (requests + pipeline - 1) / pipeline, answered = 0, active = 0;
    double start = now_s(), last = start;
    for (int i = 0; i < conns && batches > 0; i++) {
        send_all(fds[i], batch, plen * (size_t)pipeline);
        outstanding[i] = pipeline; batches--; active++;
    }
    size_t cap = 1 << 20;
    char *buf = malloc(cap);
    struct epoll_event evs[1024];
    while (active > 0) {
        int n = epoll_wait(ep, evs, 1024, 10000);
        if (n == 0) break;
        double t = now_s();
        for (int e = 0; e < n; e++) {
            int i = (int)evs[e].data.u64;
            ssize_t r = recv(fds[i], buf, cap, MSG_DONTWAIT);
            if (r <= 0) continue;
            long c = (long)count_newlines(buf, (size_t)r);
            answered += c; outstanding[i] -= (int)c; last = t;
            if (outstanding[i] == 0) {
                if (batches > 0) { send_all(fds[i], batch, plen * (size_t)pipeline); outstanding[i] = pipeline; batches--; }
                else active--;
            }
        }
    }
    double elapsed = last - start;
    printf("mode=rpc target=%s connections=%d pipeline=%d requests=%ld elapsed=%.4f requests_per_sec=%.0f\n",
           redis ? "redis" : "secureops", conns, pipeline, answered, elapsed, answered / elapsed);
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 8 && !(argc == 7 && strcmp(argv[1], "rpc") == 0)) {
        fprintf(stderr, "usage: loadgen fanout secureops|redis SOCKET SUBSCRIBERS ALERTS SIZE WINDOW\n"
                        "       loadgen rpc    secureops|redis SOCKET CONNECTIONS REQUESTS PIPELINE\n");
        return 2;
    }
    raise_nofile();
    int redis = strcmp(argv[2], "redis") == 0;
    if (strcmp(argv[1], "fanout") == 0)
        return fanout(redis, argv[3], atoi(argv[4]), atol(argv[5]), atoi(argv[6]), atoi(argv[7]));
    if (strcmp(argv[1], "rpc") == 0)
        return rpc(redis, argv[3], atoi(argv[4]), atol(argv[5]), atoi(argv[6]));
    fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
    return 2;
}
