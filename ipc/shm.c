/* shm.c — creating, opening and checking the POSIX shared-memory objects of session regions.
 *
 * See shm.h for the threat model. The file descriptor is closed as soon as the mapping exists:
 * the mapping keeps the object alive, and neither side needs the descriptor afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ipc/shm.h"

/* where glibc's shm_open keeps the objects on Linux */
#define SHM_DIR      "/dev/shm"
#define NAME_PREFIX  "/elm-"
#define RANDOM_BYTES 16 /* 128 bits: unguessable, and collisions never happen in practice */
#define CREATE_TRIES 4  /* EEXIST retries; reaching the limit means something is very wrong */
#define TAG_BYTES    8  /* of the 16: a tagged name keeps 64 random bits, still unguessable */

/* ---------------------------------------------------------------------------------------------
 * Names
 */

bool elm_shm_name_is_valid(const char *name)
{
    if (!name || strncmp(name, NAME_PREFIX, sizeof NAME_PREFIX - 1) != 0)
        return false;
    const char *p = name + sizeof NAME_PREFIX - 1;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9' && digits <= 10) {
        p++;
        digits++;
    }
    if (digits == 0 || digits > 10 || *p != '-')
        return false;
    p++;
    size_t hex = 0;
    while (((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')) && hex <= 2 * RANDOM_BYTES) {
        p++;
        hex++;
    }
    return hex == 2 * RANDOM_BYTES && *p == '\0';
}

/* The uid embedded in a valid name (at most 10 digits, so it fits in 64 bits). */
static uint64_t name_uid(const char *name)
{
    uint64_t uid = 0;
    for (const char *p = name + sizeof NAME_PREFIX - 1; *p != '-'; p++)
        uid = uid * 10 + (uint64_t)(*p - '0');
    return uid;
}

/* "/elm-<euid>-" plus the 16 hex digits of tag: the start of every name elm_shm_create_tagged
 * gives with that tag. Returns its length. */
static int tag_prefix(char *buf, size_t cap, uint64_t tag)
{
    return snprintf(buf, cap, NAME_PREFIX "%u-%016llx", (unsigned)geteuid(),
                    (unsigned long long)tag);
}

/* tag_bytes of the name's 16 random bytes are replaced by the tag's (0 or TAG_BYTES). */
static int random_name(char name[ELM_SHM_NAME_MAX], uint64_t tag, size_t tag_bytes)
{
    unsigned char rnd[RANDOM_BYTES];
    size_t got = tag_bytes;
    for (size_t i = 0; i < tag_bytes; i++)
        rnd[i] = (unsigned char)(tag >> (8 * (TAG_BYTES - 1 - i)));
    while (got < sizeof rnd) {
        /* Blocks only until the kernel's pool is initialised at boot; EINTR is retried. */
        ssize_t n = getrandom(rnd + got, sizeof rnd - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    int off = snprintf(name, ELM_SHM_NAME_MAX, NAME_PREFIX "%u-", (unsigned)geteuid());
    for (size_t i = 0; i < sizeof rnd; i++)
        off += snprintf(name + off, ELM_SHM_NAME_MAX - (size_t)off, "%02x", rnd[i]);
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Create / open / close
 */

static int map_fd(int fd, size_t size, void **base)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED)
        return -errno;
    *base = p;
    return 0;
}

static int create(struct elm_shm *out, size_t size, uint64_t tag, size_t tag_bytes)
{
    if (!out || size == 0 || size > ELM_SHM_MAX_SIZE)
        return -EINVAL;
    char name[ELM_SHM_NAME_MAX];
    int fd = -1, rc;
    for (int tries = 0; fd < 0; tries++) {
        rc = random_name(name, tag, tag_bytes);
        if (rc < 0)
            return rc;
        fd = shm_open(name, O_RDWR | O_CREAT | O_EXCL, 0600);
        if (fd < 0 && (errno != EEXIST || tries + 1 >= CREATE_TRIES))
            return -errno;
    }
    void *base = NULL;
    /* The umask may have removed bits from 0600 (never added any): set the mode exactly, so
     * that the owner can always read and write. */
    if (fchmod(fd, 0600) < 0 || ftruncate(fd, (off_t)size) < 0) {
        rc = -errno;
        goto fail_unlink;
    }
    rc = map_fd(fd, size, &base);
    if (rc < 0)
        goto fail_unlink;
    close(fd);
    memcpy(out->name, name, sizeof name);
    out->base = base;
    out->size = size;
    return 0;

fail_unlink:
    shm_unlink(name);
    close(fd);
    return rc;
}

int elm_shm_create(struct elm_shm *out, size_t size)
{
    return create(out, size, 0, 0);
}

int elm_shm_create_tagged(struct elm_shm *out, size_t size, uint64_t tag)
{
    return create(out, size, tag, TAG_BYTES);
}

int elm_shm_share(const struct elm_shm *s, gid_t gid)
{
    int fd = shm_open(s->name, O_RDWR, 0);
    if (fd < 0)
        return -errno;
    int rc = fchown(fd, (uid_t)-1, gid) < 0 || fchmod(fd, 0660) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int elm_shm_open(struct elm_shm *out, const char *name, size_t size, uid_t owner)
{
    if (!out || !elm_shm_name_is_valid(name) || size == 0 || size > ELM_SHM_MAX_SIZE)
        return -EINVAL;
    /* The creator writes its uid into the name: a name claiming another creator is not ours. */
    if (name_uid(name) != (uint64_t)owner)
        return -EACCES;
    /* glibc adds O_NOFOLLOW | O_CLOEXEC; the name was checked to contain no further '/'. */
    int fd = shm_open(name, O_RDWR, 0);
    if (fd < 0)
        return -errno;
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) < 0) {
        rc = -errno;
        goto out;
    }
    /* Checked on the open descriptor, so the object cannot be swapped between check and map. */
    if (!S_ISREG(st.st_mode) || st.st_uid != owner || (st.st_mode & 07117) != 0) {
        rc = -EACCES;
        goto out;
    }
    if (st.st_size < 0 || (uint64_t)st.st_size != (uint64_t)size) {
        rc = -EINVAL;
        goto out;
    }
    void *base = NULL;
    rc = map_fd(fd, size, &base);
    if (rc < 0)
        goto out;
    snprintf(out->name, sizeof out->name, "%s", name);
    out->base = base;
    out->size = size;
out:
    close(fd);
    return rc;
}

void elm_shm_close(struct elm_shm *s)
{
    if (!s)
        return;
    if (s->base)
        munmap(s->base, s->size);
    s->base = NULL;
    s->size = 0;
}

int elm_shm_unlink(const char *name)
{
    if (!elm_shm_name_is_valid(name))
        return -EINVAL;
    return shm_unlink(name) < 0 ? -errno : 0;
}

/* ---------------------------------------------------------------------------------------------
 * Tags: recognising what a previous daemon left
 */

uint64_t elm_shm_tag(const char *key)
{
    /* FNV-1a: stable across builds and machines, which is all a tag needs. */
    uint64_t h = 0xcbf29ce484222325u;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        h = (h ^ *p) * 0x100000001b3u;
    return h;
}

int elm_shm_sweep(uint64_t tag)
{
    char prefix[ELM_SHM_NAME_MAX];
    int plen = tag_prefix(prefix, sizeof prefix, tag);
    DIR *dir = opendir(SHM_DIR);
    if (!dir)
        return -errno;
    int removed = 0;
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        char name[ELM_SHM_NAME_MAX];
        /* prefix starts with '/', directory entries do not */
        if (strncmp(e->d_name, prefix + 1, (size_t)plen - 1) != 0 ||
            snprintf(name, sizeof name, "/%s", e->d_name) >= (int)sizeof name ||
            !elm_shm_name_is_valid(name))
            continue;
        struct stat st;
        /* Ours by name and by owner: never another user's object, whatever its name says. */
        if (fstatat(dirfd(dir), e->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode) ||
            st.st_uid != geteuid())
            continue;
        if (shm_unlink(name) == 0)
            removed++;
    }
    closedir(dir);
    return removed;
}
