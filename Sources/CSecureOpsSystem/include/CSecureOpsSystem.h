// Linux interfaces Swift's Glibc module does not import: constants behind
// _GNU_SOURCE (O_PATH, AT_EMPTY_PATH), struct ucred, SO_PEERGROUPS and
// pidfd_open. No library is linked: this module is safe for clients.
#ifndef CSYSTEM_H
#define CSYSTEM_H

#include <stdint.h>
#include <stddef.h>
#include <sys/types.h>

/// open(2) flag: a descriptor that names a file without opening it for I/O.
extern const int CS_O_PATH;

/// The peer's credentials as the kernel recorded them at connect() time
/// (SO_PEERCRED). Returns 0, or -errno.
int cs_peer_credentials(int fd, pid_t *pid, uid_t *uid, gid_t *gid);

/// The peer's supplementary groups at connect() time (SO_PEERGROUPS, Linux
/// 4.13+). Returns how many were stored (at most `capacity`), or -errno.
int cs_peer_groups(int fd, gid_t *groups, int capacity);

/// pidfd_open(2): a descriptor that becomes readable when `pid` exits
/// (Linux 5.3+). Returns it, or -errno.
int cs_pidfd_open(pid_t pid);

/// accept4(fd, NULL, NULL, SOCK_CLOEXEC): one pending
/// connection, or -errno. Blocking sockets: the epoll backend passes
/// MSG_DONTWAIT on every call, io_uring waits in the kernel.
int cs_accept(int fd);

/// A non-blocking, close-on-exec eventfd, or -errno.
int cs_eventfd(void);

// MARK: - epoll (the struct is packed on x86_64; these take plain values)

/// One ready descriptor: the events and the 64 bits registered with it.
struct cs_epoll_event {
    uint32_t events;
    uint64_t data;
};

/// EPOLL* bits, as plain constants.
extern const uint32_t CS_EPOLLIN, CS_EPOLLOUT, CS_EPOLLRDHUP, CS_EPOLLHUP, CS_EPOLLERR;

/// epoll_create1(EPOLL_CLOEXEC): the instance, or -errno.
int cs_epoll_create(void);

/// epoll_ctl ADD (op 1), DEL (op 2) or MOD (op 3) of `fd` with `events` and
/// `data`: 0, or -errno.
int cs_epoll_ctl(int epoll, int op, int fd, uint32_t events, uint64_t data);

/// epoll_wait into `out` (at most `capacity`): how many, or -errno.
int cs_epoll_wait(int epoll, struct cs_epoll_event *out, int capacity, int timeout_ms);

/// CRC-32C (Castagnoli, as iSCSI, ext4 and Kafka use it) of `length` bytes,
/// continuing from `crc` (0 to start): the SSE 4.2 instruction where the CPU
/// has it, a table otherwise.
uint32_t cs_crc32c(uint32_t crc, const void *data, size_t length);

/// Names the calling thread (at most 15 bytes), as `top -H` shows it.
void cs_set_thread_name(const char *name);

#endif
