/* bench_cold.c — files that are truly not in the page cache, for `elm-bench load --cold`.
 *
 * Why copies: posix_fadvise(DONTNEED) cannot drop pages that a process maps (elmd's resident
 * copy does not, but a previous run's mapping, or another program's, may), and dropping the
 * whole cache (/proc/sys/vm/drop_caches) needs a writable /proc/sys, which a container does not
 * give even to root. A copy written with O_DIRECT never enters the guest's page cache, so a
 * fresh copy per timed run is cold by construction; mincore() on a mapping of it checks that
 * before anything is timed, and a run whose copy is more than BENCH_COLD_MAX resident is refused
 * rather than reported as cold. (The host may still cache the disk image below the guest:
 * that is the device's rate as this VM sees it, which is what the O_DIRECT baseline measures
 * too.)
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"

#define COPY_BUF  ((size_t)8 << 20) /* per O_DIRECT read/write */
#define DIO_ALIGN ((size_t)4096)    /* O_DIRECT offsets, lengths, addresses */

double bench_resident_share(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) || st.st_size <= 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    /* Mapping does not fault pages in; mincore only looks at the page cache. */
    void *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    close(fd);
    if (map == MAP_FAILED)
        return -1;
    long ps = sysconf(_SC_PAGESIZE);
    size_t pages = ((size_t)st.st_size + (size_t)ps - 1) / (size_t)ps, in = 0;
    unsigned char *vec = malloc(pages);
    double share = -1;
    if (vec && mincore(map, (size_t)st.st_size, vec) == 0) {
        for (size_t i = 0; i < pages; i++)
            in += vec[i] & 1;
        share = (double)in / (double)pages;
    }
    free(vec);
    munmap(map, (size_t)st.st_size);
    return share;
}

/* Copies src to the open O_DIRECT dst; the tail is written as a whole padded block and cut
 * back to the source's size. 0 or -errno. */
static int copy_direct(int src, int dst, off_t size)
{
    void *buf = NULL;
    if (posix_memalign(&buf, DIO_ALIGN, COPY_BUF))
        return -ENOMEM;
    int rc = 0;
    for (off_t off = 0; off < size && rc == 0;) {
        ssize_t n = pread(src, buf, COPY_BUF, off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            rc = n < 0 ? -errno : -EIO;
            break;
        }
        size_t w = ((size_t)n + DIO_ALIGN - 1) & ~(DIO_ALIGN - 1);
        memset((char *)buf + n, 0, w - (size_t)n);
        for (size_t done = 0; done < w && rc == 0;) {
            ssize_t k = pwrite(dst, (char *)buf + done, w - done, off + (off_t)done);
            if (k < 0 && errno == EINTR)
                continue;
            rc = k < 0 ? -errno : k == 0 ? -EIO : 0;
            done += k > 0 ? (size_t)k : 0;
        }
        off += n;
    }
    free(buf);
    if (rc == 0 && ftruncate(dst, size))
        rc = -errno;
    return rc;
}

int bench_cold_copy(const char *src, const char *dir, char *out, size_t cap, double *resident,
                    char *err, size_t errlen)
{
    int in = open(src, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (in < 0 || fstat(in, &st)) {
        snprintf(err, errlen, "%s: %s", src, strerror(errno));
        if (in >= 0)
            close(in);
        return -1;
    }
    /* The source is read with O_DIRECT too where it can be, so that making copies does not
     * fill the cache with it (nor pass it off as warm to the warm rows' loads). */
    int fl = fcntl(in, F_GETFL);
    if (fl >= 0)
        fcntl(in, F_SETFL, fl | O_DIRECT);
    const char *slash = strrchr(src, '/');
    if (!dir) {
        snprintf(out, cap, "%.*s", slash ? (int)(slash - src) : 1, slash ? src : ".");
        dir = out;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/.elm-bench-cold-XXXXXX", dir);
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen,
                 "cannot create a cold copy in %s: %s (give --cold-dir DIR on the "
                 "file system to measure)",
                 dir, strerror(errno));
        close(in);
        return -1;
    }
    int rc = fcntl(fd, F_SETFL, O_DIRECT) ? -errno : copy_direct(in, fd, st.st_size);
    if (rc == -EINVAL && fl >= 0) { /* the source's file system refuses O_DIRECT reads */
        fcntl(in, F_SETFL, fl);
        rc = copy_direct(in, fd, st.st_size);
    }
    close(fd);
    close(in);
    if (rc) {
        snprintf(err, errlen,
                 "writing a cold copy with O_DIRECT in %s: %s (the file system "
                 "must support O_DIRECT; give --cold-dir DIR)",
                 dir, strerror(-rc));
        unlink(path);
        return -1;
    }
    double r = bench_resident_share(path);
    if (r < 0 || r > BENCH_COLD_MAX) {
        if (r < 0)
            snprintf(err, errlen,
                     "cannot verify that %s is out of the page cache (mincore "
                     "failed): refusing to report cold rows",
                     path);
        else
            snprintf(err, errlen,
                     "the fresh O_DIRECT copy %s is %.1f%% in the page cache "
                     "(more than %.0f%%): refusing to report cold rows",
                     path, 100 * r, 100 * BENCH_COLD_MAX);
        unlink(path);
        return -1;
    }
    *resident = r;
    snprintf(out, cap, "%s", path);
    return 0;
}
