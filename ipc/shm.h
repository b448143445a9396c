/* shm.h — the sealed memory of a session region, and handing it from the daemon to its client.
 *
 * The daemon creates each session's memory with memfd_create (elm_shm_create): an anonymous
 * file with no name anywhere, sized once and then sealed against shrinking and growing
 * (F_SEAL_SHRINK | F_SEAL_GROW, and F_SEAL_SEAL so nobody can take that back). Whatever a
 * client does with the descriptor it receives, ftruncate() fails with EPERM, so the daemon's
 * mapping can never lose pages under it: no SIGBUS by design (issue 17, item 2). Writes stay
 * allowed, which is the point of the region; every byte the daemon reads from it is validated.
 *
 * No name means nothing in /dev/shm: nobody can open a session by guessing or racing for its
 * name (item 11), and a daemon killed with SIGKILL leaves nothing behind (item 9): the kernel
 * frees the memory with the last descriptor and mapping.
 *
 * The descriptor reaches the client over a unix socket in the runtime directory (ipc/region.h)
 * with SCM_RIGHTS, because the ZeroMQ control channel cannot carry descriptors. The client
 * checks what it received (elm_shm_adopt): a sealed memory file of exactly the announced size.
 */
#ifndef ELM_IPC_SHM_H
#define ELM_IPC_SHM_H

#include <stddef.h>

#define ELM_SHM_MAX_SIZE ((size_t)1 << 32) /* sanity bound: two 1 GiB rings fit easily */

/* A mapped region. Embedded by the caller; filled by create/adopt, released by elm_shm_close. */
struct elm_shm {
    int fd;     /* the memfd while it is still to be handed over (daemon), else -1 */
    void *base; /* page-aligned mapping, read-write, MAP_SHARED */
    size_t size;
};

/* Creates sealed memory of size bytes (zero-filled), maps it and keeps its descriptor in
 * out->fd (close-on-exec) for the handover. Returns 0, -EINVAL (size 0 or > ELM_SHM_MAX_SIZE)
 * or -errno from memfd_create/ftruncate/fcntl/mmap. *out is written only on success. */
int elm_shm_create(struct elm_shm *out, size_t size);

/* Client: takes ownership of fd (always: it is closed on failure and after mapping) and maps
 * it. Rejects it unless it is a regular file of exactly size bytes (-EINVAL) sealed against
 * shrinking and growing (-EACCES). *out is written only on success, with out->fd = -1. */
int elm_shm_adopt(struct elm_shm *out, int fd, size_t size);

/* Closes the descriptor (the mapping stays). NULL-safe and idempotent; a zeroed struct (base
 * NULL) owns no descriptor. */
void elm_shm_drop_fd(struct elm_shm *s);

/* Unmaps the region, closes the descriptor and resets *s. NULL-safe and idempotent. */
void elm_shm_close(struct elm_shm *s);

#endif
