// The C surface of io_uring that Swift can call.
//
// liburing's `static inline` helpers import into Swift unchanged. What does not
// import is anything derived from an enum inside a macro (IOSQE_BUFFER_SELECT is
// `1U << IOSQE_BUFFER_SELECT_BIT`), a few glibc structures that need _GNU_SOURCE
// and io_uring_setup_buf_ring, which liburing 2.3 (Debian 12)
// does not have yet. Those live here as small functions and constants.
#ifndef CURING_H
#define CURING_H

// System headers first, without _GNU_SOURCE, so their types are the same
// ones Glibc and Dispatch import (liburing.h defines _GNU_SOURCE itself, which
// would otherwise give fd_set a second, conflicting definition).
#include <sys/types.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <signal.h>
#include <time.h>
#include <fcntl.h>
#include <errno.h>
#include <stdint.h>
#include <inttypes.h>
#include <stdbool.h>
#include <liburing.h>

// MARK: - SQE flags (enum-derived macros)
static const uint8_t CU_IOSQE_FIXED_FILE = IOSQE_FIXED_FILE;
static const uint8_t CU_IOSQE_IO_LINK = IOSQE_IO_LINK;
static const uint8_t CU_IOSQE_ASYNC = IOSQE_ASYNC;
static const uint8_t CU_IOSQE_BUFFER_SELECT = IOSQE_BUFFER_SELECT;
static const uint8_t CU_IOSQE_CQE_SKIP_SUCCESS = IOSQE_CQE_SKIP_SUCCESS;

// MARK: - CQE flags
static const uint32_t CU_CQE_F_BUFFER = IORING_CQE_F_BUFFER;
static const uint32_t CU_CQE_F_MORE = IORING_CQE_F_MORE;
static const uint32_t CU_CQE_BUFFER_SHIFT = IORING_CQE_BUFFER_SHIFT;

// MARK: - Setup flags and features
static const uint32_t CU_SETUP_CQSIZE = IORING_SETUP_CQSIZE;
static const uint32_t CU_SETUP_CLAMP = IORING_SETUP_CLAMP;
static const uint32_t CU_SETUP_SUBMIT_ALL = IORING_SETUP_SUBMIT_ALL;
static const uint32_t CU_SETUP_COOP_TASKRUN = IORING_SETUP_COOP_TASKRUN;
static const uint32_t CU_SETUP_SINGLE_ISSUER = IORING_SETUP_SINGLE_ISSUER;
static const uint32_t CU_SETUP_DEFER_TASKRUN = IORING_SETUP_DEFER_TASKRUN;
static const uint32_t CU_FEAT_NODROP = IORING_FEAT_NODROP;
static const uint32_t CU_FEAT_EXT_ARG = IORING_FEAT_EXT_ARG;
static const uint32_t CU_FEAT_FAST_POLL = IORING_FEAT_FAST_POLL;

// MARK: - Operation flags
static const uint32_t CU_ASYNC_CANCEL_ALL = IORING_ASYNC_CANCEL_ALL;
static const uint32_t CU_ASYNC_CANCEL_FD = IORING_ASYNC_CANCEL_FD;
static const uint32_t CU_ASYNC_CANCEL_ANY = IORING_ASYNC_CANCEL_ANY;
static const uint32_t CU_FSYNC_DATASYNC = IORING_FSYNC_DATASYNC;

// MARK: - Operation codes the engine probes for
static const int CU_OP_ACCEPT = IORING_OP_ACCEPT;
static const int CU_OP_RECV = IORING_OP_RECV;
static const int CU_OP_SEND = IORING_OP_SEND;
static const int CU_OP_SENDMSG = IORING_OP_SENDMSG;
static const int CU_OP_POLL_ADD = IORING_OP_POLL_ADD;
static const int CU_OP_READ = IORING_OP_READ;
static const int CU_OP_ASYNC_CANCEL = IORING_OP_ASYNC_CANCEL;
static const int CU_OP_WRITE = IORING_OP_WRITE;
static const int CU_OP_FSYNC = IORING_OP_FSYNC;
static const int CU_OP_PROVIDE_BUFFERS = IORING_OP_PROVIDE_BUFFERS;

/// Reads the slot of the SQ or CQ ring without the inline helpers Swift may
/// not see through (the CQ ring pointers live behind `struct io_uring_cq`).
static inline unsigned cu_cq_ready(const struct io_uring *ring) {
    return io_uring_cq_ready(ring);
}

static inline unsigned cu_cq_overflow(const struct io_uring *ring) {
    return *ring->cq.koverflow;
}

/// Whether completions are waiting on the kernel's overflow list because
/// the CQ ring was full (IORING_SQ_CQ_OVERFLOW).
static inline int cu_cq_overflow_pending(const struct io_uring *ring) {
    return (IO_URING_READ_ONCE(*ring->sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0;
}

static inline unsigned cu_sq_space_left(const struct io_uring *ring) {
    return io_uring_sq_space_left(ring);
}

/// Collects up to `count` ready completions without waiting.
static inline unsigned cu_peek_batch(struct io_uring *ring, struct io_uring_cqe **cqes, unsigned count) {
    return io_uring_peek_batch_cqe(ring, cqes, count);
}

// MARK: - Provided-buffer ring (io_uring_setup_buf_ring is liburing >= 2.4)

/// Allocates a page-aligned buffer ring of `entries` (a power of two),
/// registers it as buffer group `group` and returns it, or NULL with
/// `*error` set to a negative errno.
struct io_uring_buf_ring *cu_setup_buf_ring(struct io_uring *ring, unsigned entries, int group, int *error);

/// Unregisters and frees a ring made by cu_setup_buf_ring.
void cu_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, int group);

/// Adds one buffer at ring position `offset` past the current tail. Call
/// cu_buf_ring_advance once after a batch of adds to publish them.
static inline void cu_buf_ring_add(struct io_uring_buf_ring *br, void *addr, unsigned len, unsigned short bid, unsigned mask, int offset) {
    io_uring_buf_ring_add(br, addr, len, bid, (int)mask, offset);
}

static inline void cu_buf_ring_advance(struct io_uring_buf_ring *br, int count) {
    io_uring_buf_ring_advance(br, count);
}

// MARK: - Kernel facts

/// Probes whether the kernel supports `op`. Returns 1, 0, or -errno when the
/// probe itself failed.
int cu_probe_op(struct io_uring *ring, int op);


#endif
