/* shm.c — sealed memfd regions (see shm.h for why sealed and why no name). */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/shm.h"

/* What makes the size fixed for every holder of the descriptor. */
#define SIZE_SEALS (F_SEAL_SHRINK | F_SEAL_GROW)

static int map_fd(int fd, size_t size, void **base)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *base = p;
    return 0;
}

int elm_shm_create(struct elm_shm *out, size_t size)
{
    if (!out || size == 0 || size > ELM_SHM_MAX_SIZE)
        return -EINVAL;
    int fd = memfd_create("elm-session", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0)
        return -errno;
    void *base = NULL;
    int rc = 0;
    if (ftruncate(fd, (off_t)size) < 0 || fcntl(fd, F_ADD_SEALS, SIZE_SEALS | F_SEAL_SEAL) < 0)
        rc = -errno;
    if (rc == 0)
        rc = map_fd(fd, size, &base);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    *out = (struct elm_shm){.fd = fd, .base = base, .size = size};
    return 0;
}

int elm_shm_adopt(struct elm_shm *out, int fd, size_t size)
{
    struct stat st;
    void *base = NULL;
    int rc = 0, seals;
    if (!out || fd < 0 || size == 0 || size > ELM_SHM_MAX_SIZE)
        rc = -EINVAL;
    else if (fstat(fd, &st) < 0)
        rc = -errno;
    else if (!S_ISREG(st.st_mode) || st.st_size < 0 || (uint64_t)st.st_size != (uint64_t)size)
        rc = -EINVAL;
    /* Unsealed, the size could change under us (by the sender, or anyone it gave it to). */
    else if ((seals = fcntl(fd, F_GET_SEALS)) < 0 || (seals & SIZE_SEALS) != SIZE_SEALS)
        rc = -EACCES;
    else
        rc = map_fd(fd, size, &base);
    if (fd >= 0)
        close(fd);
    if (rc < 0)
        return rc;
    *out = (struct elm_shm){.fd = -1, .base = base, .size = size};
    return 0;
}

void elm_shm_drop_fd(struct elm_shm *s)
{
    /* Only a mapped region owns fd: a zeroed struct's 0 is not a descriptor of ours. */
    if (s && s->base && s->fd >= 0) {
        close(s->fd);
        s->fd = -1;
    }
}

void elm_shm_close(struct elm_shm *s)
{
    if (!s)
        return;
    elm_shm_drop_fd(s);
    if (s->base)
        munmap(s->base, s->size);
    s->fd = -1;
    s->base = NULL;
    s->size = 0;
}
