// Linux interfaces Swift's Glibc module does not import: constants behind
// _GNU_SOURCE (O_PATH, AT_EMPTY_PATH), struct ucred, SO_PEERGROUPS and
// pidfd_open. No library is linked: this module is safe for clients.
#ifndef CSYSTEM_H
#define CSYSTEM_H

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

/// Names the calling thread (at most 15 bytes), as `top -H` shows it.
void cs_set_thread_name(const char *name);

#endif
