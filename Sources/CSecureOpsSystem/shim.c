#define _GNU_SOURCE
#include "CSecureOpsSystem.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <pthread.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

const int CS_O_PATH = O_PATH;

int cs_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid) {
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return -errno;
    }
    *pid = cred.pid;
    *uid = cred.uid;
    *gid = cred.gid;
    return 0;
}

int cs_peer_groups(int fd, gid_t *groups, int capacity) {
#ifdef SO_PEERGROUPS
    socklen_t len = (socklen_t)(capacity * (int)sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &len) != 0) {
        return -errno;
    }
    return (int)(len / sizeof(gid_t));
#else
    (void)fd; (void)groups; (void)capacity;
    return -ENOPROTOOPT;
#endif
}

int cs_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    long fd = syscall(SYS_pidfd_open, pid, 0);
    return fd >= 0 ? (int)fd : -errno;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

void cs_set_thread_name(const char *name) {
    pthread_setname_np(pthread_self(), name);
}

int cs_accept(int fd) {
    int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    return client >= 0 ? client : -errno;
}

int cs_eventfd(void) {
    int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    return fd >= 0 ? fd : -errno;
}

const uint32_t CS_EPOLLIN = EPOLLIN, CS_EPOLLOUT = EPOLLOUT, CS_EPOLLRDHUP = EPOLLRDHUP, CS_EPOLLHUP = EPOLLHUP, CS_EPOLLERR = EPOLLERR;

int cs_epoll_create(void) {
    int fd = epoll_create1(EPOLL_CLOEXEC);
    return fd >= 0 ? fd : -errno;
}

int cs_epoll_ctl(int epoll, int op, int fd, uint32_t events, uint64_t data) {
    struct epoll_event event = {.events = events, .data.u64 = data};
    return epoll_ctl(epoll, op, fd, &event) == 0 ? 0 : -errno;
}

int cs_epoll_wait(int epoll, struct cs_epoll_event *out, int capacity, int timeout_ms) {
    struct epoll_event ready[1024];
    if (capacity > 1024) capacity = 1024;
    int count = epoll_wait(epoll, ready, capacity, timeout_ms);
    if (count < 0) return -errno;
    for (int i = 0; i < count; i++) {
        out[i].events = ready[i].events;
        out[i].data = ready[i].data.u64;
    }
    return count;
}
