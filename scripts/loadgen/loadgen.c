// loadgen: a small, independent load generator for secureopsd and Redis.
//
// It exists to check secureops-bench's figures with a second method: plain
// C and no parsing at all. Subscribers only count newline bytes
// (an alert is one line on secureopsd, seven RESP lines on Redis); the
// publisher counts acknowledgement lines. Deliveries/s is N x M / the time
// from the first publish to the moment every subscriber has counted all its
// lines. It is also the "neutral C load generator" for server-versus-server
// comparisons: the same bytes go to both servers.
//
//   loadgen fanout secureops|redis SOCKET SUBSCRIBERS ALERTS SIZE WINDOW [epoll|io_uring]
//   loadgen rpc    secureops|redis SOCKET CONNECTIONS REQUESTS PIPELINE
//
// Fan-out subscribers are read with epoll and recv (the default), or with
// io_uring: one multishot recv per socket into a shared pool of provided
// buffers, as secureops-bench does by default; at thousands of subscribers
// the readiness work of epoll is a large part of the receiving core.
//
// Prints one line of key=value pairs. Build: cc -O2 -o loadgen loadgen.c -luring
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
#include <liburing.h>

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

// The io_uring receiver: 128 buffers of 64 KiB (few and large, so the pool
// stays in cache), buffer group 1.
enum { RING_BUFFERS = 128, RING_BUFFER_SIZE = 64 << 10, RING_GROUP = 1 };

struct receiver {
    struct io_uring ring;
    struct io_uring_buf_ring *buffers;
    char *memory;
    int *fds;
    int count;      // sockets; the publisher is token `count - 1`
    int *rearm;
    int rearm_count;
    long starved;
};

static void ring_arm(struct receiver *r, int token) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->ring);
    if (!sqe) { io_uring_submit(&r->ring); sqe = io_uring_get_sqe(&r->ring); }
    io_uring_prep_recv_multishot(sqe, r->fds[token], NULL, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = RING_GROUP;
    io_uring_sqe_set_data64(sqe, (uint64_t)token);
}

static void ring_open(struct receiver *r, int *fds, int count) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = 65536;
    int rc = io_uring_queue_init_params(4096, &r->ring, &p);
    if (rc < 0) { errno = -rc; die("io_uring_queue_init_params"); }
    size_t size = RING_BUFFERS * sizeof(struct io_uring_buf);
    void *ring_memory = NULL;
    if (posix_memalign(&ring_memory, (size_t)sysconf(_SC_PAGESIZE), size) != 0) die("posix_memalign");
    memset(ring_memory, 0, size);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)ring_memory;
    reg.ring_entries = RING_BUFFERS;
    reg.bgid = RING_GROUP;
    rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
    if (rc < 0) { errno = -rc; die("io_uring_register_buf_ring"); }
    r->buffers = ring_memory;
    io_uring_buf_ring_init(r->buffers);
    r->memory = malloc((size_t)RING_BUFFERS * RING_BUFFER_SIZE);
    for (int b = 0; b < RING_BUFFERS; b++)
        io_uring_buf_ring_add(r->buffers, r->memory + (size_t)b * RING_BUFFER_SIZE, RING_BUFFER_SIZE, (unsigned short)b,
                              io_uring_buf_ring_mask(RING_BUFFERS), b);
    io_uring_buf_ring_advance(r->buffers, RING_BUFFERS);
    r->fds = fds;
    r->count = count;
    r->rearm = calloc((size_t)count, sizeof *r->rearm);
    r->rearm_count = 0;
    r->starved = 0;
    for (int i = 0; i < count; i++) ring_arm(r, i);
}

// Waits up to 100 ms, then calls `on_data(token, bytes, n)` for each
// completion with data and re-arms receives that ended.
static void ring_turn(struct receiver *r, void (*on_data)(void *, int, const char *, size_t), void *context) {
    struct __kernel_timespec timeout = {.tv_sec = 0, .tv_nsec = 100 * 1000 * 1000};
    struct io_uring_cqe *cqe;
    io_uring_submit_and_wait_timeout(&r->ring, &cqe, 1, &timeout, NULL);
    unsigned head, seen = 0;
    int returned = 0;
    io_uring_for_each_cqe(&r->ring, head, cqe) {
        seen++;
        int token = (int)cqe->user_data;
        if (cqe->res > 0) {
            unsigned short id = (unsigned short)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
            char *bytes = r->memory + (size_t)id * RING_BUFFER_SIZE;
            on_data(context, token, bytes, (size_t)cqe->res);
            io_uring_buf_ring_add(r->buffers, bytes, RING_BUFFER_SIZE, id, io_uring_buf_ring_mask(RING_BUFFERS), returned++);
            if (!(cqe->flags & IORING_CQE_F_MORE)) r->rearm[r->rearm_count++] = token;
        } else if (cqe->res == -ENOBUFS) {
            r->starved++;
            r->rearm[r->rearm_count++] = token;
        }
        // 0 (end of stream) or another error: that socket is done.
    }
    io_uring_cq_advance(&r->ring, seen);
    if (returned) io_uring_buf_ring_advance(r->buffers, returned);
    for (int k = 0; k < r->rearm_count; k++) ring_arm(r, r->rearm[k]);
    r->rearm_count = 0;
}

struct fanout_state {
    int subs, window, pub;
    long *lines;
    long long bytes;
    long target, sent, acked, inflight, alerts, done_subs;
    const char *one;
    size_t one_len;
    char *batch;
    double last, last_progress;
};

static void refill(struct fanout_state *f) {
    if (f->sent < f->alerts && f->inflight < f->window) {
        long k = f->window - f->inflight;
        if (k > f->alerts - f->sent) k = f->alerts - f->sent;
        for (long j = 0; j < k; j++) memcpy(f->batch + j * f->one_len, f->one, f->one_len);
        send_all(f->pub, f->batch, f->one_len * (size_t)k);
        f->sent += k; f->inflight += k;
    }
}

static void ring_data(void *context, int token, const char *bytes, size_t n) {
    struct fanout_state *f = context;
    long c = (long)count_newlines(bytes, n);
    if (token == f->subs) {
        f->acked += c; f->inflight -= c;
        // Refill the window at once, before this turn's subscriber reads.
        refill(f);
        return;
    }
    long before = f->lines[token];
    f->lines[token] += c;
    f->bytes += (long long)n;
    f->last = f->last_progress = now_s();
    if (before < f->target && f->lines[token] >= f->target) f->done_subs++;
}

static int fanout(int redis, const char *path, int subs, long alerts, int size, int window, int use_ring) {
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
    if (use_ring) {
        // Every subscriber and the publisher on one ring; epoll is done with.
        close(ep);
        int *all = calloc((size_t)subs + 1, sizeof *all);
        memcpy(all, fds, (size_t)subs * sizeof *fds);
        all[subs] = pub;
        struct receiver r;
        char *one = malloc(1 << 18);
        size_t one_len = build_publish(one, redis, size);
        struct fanout_state f = {
            .subs = subs, .window = window, .pub = pub, .lines = lines, .target = confirm + alerts * per_alert,
            .alerts = alerts, .one = one, .one_len = one_len, .batch = malloc(one_len * (size_t)window),
        };
        ring_open(&r, all, subs + 1);
        double start = now_s();
        f.last = f.last_progress = start;
        while (f.done_subs < subs) {
            refill(&f);
            ring_turn(&r, ring_data, &f);
            if (now_s() - f.last_progress > 10) break;  // stalled: report what arrived
        }
        long delivered = 0;
        for (int i = 0; i < subs; i++) delivered += (lines[i] - confirm) / per_alert;
        double elapsed = f.last - start;
        printf("mode=fanout target=%s receiver=io_uring subscribers=%d alerts=%ld acked=%ld deliveries=%ld bytes_per_delivery=%.1f elapsed=%.4f deliveries_per_sec=%.0f lost=%ld starved=%ld\n",
               redis ? "redis" : "secureops", subs, alerts, f.acked, delivered, delivered ? (double)f.bytes / delivered : 0.0, elapsed,
               delivered / elapsed, (long)subs * alerts - delivered, r.starved);
        return delivered == (long)subs * alerts ? 0 : 1;
    }
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
    printf("mode=fanout target=%s receiver=epoll subscribers=%d alerts=%ld acked=%ld deliveries=%ld bytes_per_delivery=%.1f elapsed=%.4f deliveries_per_sec=%.0f lost=%ld\n",
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
    if (!(argc == 8 || argc == 9) && !(argc == 7 && strcmp(argv[1], "rpc") == 0)) {
        fprintf(stderr, "usage: loadgen fanout secureops|redis SOCKET SUBSCRIBERS ALERTS SIZE WINDOW [epoll|io_uring]\n"
                        "       loadgen rpc    secureops|redis SOCKET CONNECTIONS REQUESTS PIPELINE\n");
        return 2;
    }
    raise_nofile();
    int redis = strcmp(argv[2], "redis") == 0;
    if (strcmp(argv[1], "fanout") == 0)
        return fanout(redis, argv[3], atoi(argv[4]), atol(argv[5]), atoi(argv[6]), atoi(argv[7]),
                      argc == 9 && strcmp(argv[8], "io_uring") == 0);
    if (strcmp(argv[1], "rpc") == 0)
        return rpc(redis, argv[3], atoi(argv[4]), atol(argv[5]), atoi(argv[6]));
    fprintf(stderr, "loadgen: unknown mode %s\n", argv[1]);
    return 2;
}
