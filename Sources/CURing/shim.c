#define _GNU_SOURCE
#include "CURing.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <pthread.h>
#include <sys/eventfd.h>

struct io_uring_buf_ring *cu_setup_buf_ring(struct io_uring *ring, unsigned entries, int group, int *error) {
    // The kernel reads the ring through the registered address, so it must be
    // page aligned and must not move for as long as it is registered.
    size_t size = (size_t)entries * sizeof(struct io_uring_buf);
    long page = sysconf(_SC_PAGESIZE);
    void *memory = NULL;
    int rc = posix_memalign(&memory, (size_t)page, size);
    if (rc != 0) {
        *error = -rc;
        return NULL;
    }
    memset(memory, 0, size);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (unsigned long)(uintptr_t)memory;
    reg.ring_entries = entries;
    reg.bgid = (unsigned short)group;
    rc = io_uring_register_buf_ring(ring, &reg, 0);
    if (rc != 0) {
        free(memory);
        *error = rc;
        return NULL;
    }
    struct io_uring_buf_ring *br = memory;
    io_uring_buf_ring_init(br);
    *error = 0;
    return br;
}

void cu_free_buf_ring(struct io_uring *ring, struct io_uring_buf_ring *br, unsigned entries, int group) {
    (void)entries;
    io_uring_unregister_buf_ring(ring, group);
    free(br);
}

int cu_probe_op(struct io_uring *ring, int op) {
    struct io_uring_probe *probe = io_uring_get_probe_ring(ring);
    if (probe == NULL) {
        return -ENOMEM;
    }
    int supported = io_uring_opcode_supported(probe, op);
    io_uring_free_probe(probe);
    return supported;
}

