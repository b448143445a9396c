/* loader.c — reading a model's tensor data into pinned huge-page memory with io_uring
 * (see loader.h for why).
 *
 * Layout. O_DIRECT needs the file offset, the length and the buffer address aligned to the
 * device's logical block size (4096 covers every device we meet). The data section starts at
 * an offset that is only 32-byte aligned, so we read the aligned superset [A0, A1) of the
 * section into the mapping at offset 0: file offset F lands at map + (F - A0), aligned whenever
 * F is, and the section itself starts at map + (data_offset - A0), still 32-byte aligned as
 * GGUF promises. The last read may ask past the end of the file; the kernel returns a short
 * read there, which ends that chunk.
 *
 * Fallbacks, each logged and recorded in the residency notes: no reserved huge pages → THP →
 * plain pages; mlock refused → unpinned; open(O_DIRECT) or the first read refused with EINVAL
 * (tmpfs, some FUSE and network file systems) → buffered reads; io_uring unavailable (old
 * kernel, kernel.io_uring_disabled, seccomp) → a pread loop.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/thp.h"
#include "common/log.h"
#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "loader.h"

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

#define HUGE_2M   ((uint64_t)2 << 20)
#define DIO_ALIGN ((uint64_t)4096)

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static uint64_t round_up(uint64_t v, uint64_t a)
{
    return (v + a - 1) & ~(a - 1);
}

/* Logs a fallback and appends it to the notes that `status` reports. */
static void note(struct elmd_residency *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct elmd_residency *r, const char *fmt, ...)
{
    char msg[192];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    elm_warn("load: %s", msg);
    size_t n = strlen(r->notes);
    snprintf(r->notes + n, sizeof r->notes - n, "%s%s", n ? "; " : "", msg);
}

const char *elmd_backing_name(enum elmd_backing b)
{
    return b == ELMD_BACK_HUGETLB ? "hugetlb" : b == ELMD_BACK_THP ? "thp" : "plain";
}

static uint64_t read_sys_u64(const char *path)
{
    FILE *f = fopen(path, "re");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

uint64_t elmd_hugepages_free(void)
{
    /* The 2 MiB pool itself rather than /proc/meminfo's HugePages_Free, which describes the
     * default size (1 GiB on some machines); pages reserved by other mappings are not free. */
    const char *d = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    char p[128];
    snprintf(p, sizeof p, "%s/free_hugepages", d);
    uint64_t free_pages = read_sys_u64(p);
    snprintf(p, sizeof p, "%s/resv_hugepages", d);
    uint64_t resv = read_sys_u64(p);
    return free_pages > resv ? free_pages - resv : 0;
}

/* ---- memory ------------------------------------------------------------------------------- */

static int alloc_resident(uint64_t span, const struct elmd_load_params *p, struct elmd_residency *r,
                          char *err, size_t errlen)
{
    size_t len = (size_t)round_up(span, HUGE_2M);
    if (p->hugepages == ELMD_HUGE_AUTO || p->hugepages == ELMD_HUGE_HUGETLB) {
        uint64_t free_pages = elmd_hugepages_free(), want = len / HUGE_2M;
        if (free_pages >= want) {
            void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
            if (m != MAP_FAILED) {
                r->map = m;
                r->map_len = len;
                r->backing = ELMD_BACK_HUGETLB;
                return 0;
            }
            note(r, "hugetlb mmap of %zu MiB failed (%s)", len >> 20, strerror(errno));
        } else {
            note(r,
                 "%" PRIu64 " huge pages needed, %" PRIu64 " free (vm.nr_hugepages): "
                 "not using hugetlb",
                 want, free_pages);
        }
        if (p->hugepages == ELMD_HUGE_HUGETLB)
            return elm_errf(err, errlen, -ENOMEM, "hugepages = hugetlb, but %s", r->notes);
    }
    /* Over-allocate by 2 MiB and trim, so the mapping starts on a huge-page boundary and THP
     * can back all of it. */
    unsigned char *raw =
        mmap(NULL, len + HUGE_2M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return elm_errf(err, errlen, -errno, "cannot map %zu MiB: %s", len >> 20, strerror(errno));
    unsigned char *m = (unsigned char *)round_up((uintptr_t)raw, HUGE_2M);
    if (m > raw)
        munmap(raw, (size_t)(m - raw));
    if (m + len < raw + len + HUGE_2M)
        munmap(m + len, (size_t)(raw + len + HUGE_2M - (m + len)));
    r->map = m;
    r->map_len = len;
    r->backing = ELMD_BACK_PLAIN;
    if (p->hugepages != ELMD_HUGE_OFF) {
        if (elm_thp_disabled())
            note(r, "transparent huge pages are disabled: using 4 KiB pages");
        else if (madvise(m, len, MADV_HUGEPAGE) == 0)
            r->backing = ELMD_BACK_THP;
        else
            note(r, "madvise(MADV_HUGEPAGE) failed (%s)", strerror(errno));
    }
    return 0;
}

/* Pins the copy once it is filled. Not before the read: mlock faults every page in (zeroing
 * it) in this one thread, up front — 2.2 s for 1 GB on our test VM — while the reads fault
 * them in piece by piece, overlapped with the I/O of the other reads in flight (2.2 s + 0.35 s
 * became 0.6 s). Pages already present make this mlock cheap. */
static void pin(const struct elmd_load_params *p, struct elmd_residency *r)
{
    if (!p->mlock)
        return;
    if (mlock(r->map, r->map_len) == 0)
        r->locked = true;
    else
        note(r,
             "mlock failed (%s): weights are not pinned (raise RLIMIT_MEMLOCK, e.g. "
             "LimitMEMLOCK=infinity)",
             strerror(errno));
}

/* Sums the smaps fields of every mapping that overlaps ours. */
static void read_smaps(struct elmd_residency *r)
{
    FILE *f = fopen("/proc/self/smaps", "re");
    if (!f)
        return;
    uintptr_t lo = (uintptr_t)r->map, hi = lo + r->map_len;
    char line[512];
    bool ours = false;
    uint64_t huge = 0, locked = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        unsigned long long kb;
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
            ours = a < hi && b > lo;
            continue;
        }
        if (!ours)
            continue;
        if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1 ||
            sscanf(line, "Private_Hugetlb: %llu kB", &kb) == 1 ||
            sscanf(line, "Shared_Hugetlb: %llu kB", &kb) == 1)
            huge += kb * 1024;
        else if (sscanf(line, "Locked: %llu kB", &kb) == 1)
            locked += kb * 1024;
    }
    fclose(f);
    r->huge_bytes = huge;
    r->locked_bytes = locked;
}

/* ---- reading ------------------------------------------------------------------------------ */

struct rd {
    int fd;
    unsigned char *dst; /* file offset off lands at dst + (off - from) */
    uint64_t from;      /* first offset to read (aligned) */
    uint64_t req_end;   /* requests may ask up to here (aligned; the mapping has room) */
    uint64_t file_end;  /* reading stops here: the file's size */
    size_t chunk;
    int depth;
    struct elmd_load_progress *pr;
};

struct slot {
    uint64_t off;
    uint32_t len, done;
};

static void queue_read(struct io_uring *ring, const struct rd *rd, struct slot *s, int i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring); /* the SQ is empty after each submit */
    io_uring_prep_read(sqe, rd->fd, rd->dst + (s->off + s->done - rd->from), s->len - s->done,
                       s->off + s->done);
    io_uring_sqe_set_data(sqe, (void *)(uintptr_t)i);
}

/* Handles one completion; returns 0, 1 when the slot is finished, or an error. */
static int complete(struct io_uring *ring, const struct rd *rd, struct slot *s, int i, int res,
                    bool *any_ok, bool *first_einval)
{
    if (res == -EINTR || res == -EAGAIN) {
        queue_read(ring, rd, s, i);
        return 0;
    }
    if (res < 0) {
        if (res == -EINVAL && !*any_ok)
            *first_einval = true;
        return res;
    }
    if (res == 0)
        return -EIO; /* the file shrank under us */
    *any_ok = true;
    s->done += (uint32_t)res;
    atomic_fetch_add_explicit(&rd->pr->done, (uint64_t)res, memory_order_relaxed);
    if (s->done == s->len || s->off + s->done >= rd->file_end)
        return 1;
    queue_read(ring, rd, s, i);
    return 0;
}

/* Reads [from, file_end) with up to depth reads in flight. Always waits for every read it
 * issued before returning, even on error: they write into memory the caller may unmap. */
static int read_uring(const struct rd *rd, bool *first_einval, bool *no_ring)
{
    struct io_uring ring;
    int rc = io_uring_queue_init((unsigned)rd->depth, &ring, 0);
    if (rc < 0) {
        *no_ring = true;
        return rc;
    }
    struct slot *slots = calloc((size_t)rd->depth, sizeof *slots);
    int *free_ix = calloc((size_t)rd->depth, sizeof *free_ix);
    int nfree = rd->depth, inflight = 0;
    if (!slots || !free_ix) {
        rc = -ENOMEM;
        goto out;
    }
    for (int i = 0; i < rd->depth; i++)
        free_ix[i] = i;
    uint64_t next = rd->from;
    bool any_ok = false;
    int err = 0;
    while ((!err && next < rd->file_end) || inflight) {
        if (atomic_load_explicit(&rd->pr->abort, memory_order_relaxed) && !err)
            err = -ECANCELED;
        while (!err && nfree && next < rd->file_end) {
            int i = free_ix[--nfree];
            uint64_t len = rd->req_end - next < rd->chunk ? rd->req_end - next : rd->chunk;
            slots[i] = (struct slot){.off = next, .len = (uint32_t)len};
            queue_read(&ring, rd, &slots[i], i);
            next += len;
            inflight++;
        }
        int n = io_uring_submit_and_wait(&ring, 1);
        if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY) {
            /* Should not happen; nothing queued can be trusted to complete now. Wait for the
             * completions of what the kernel took, one at a time. */
            err = err ? err : n;
        }
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe)
        {
            int i = (int)(uintptr_t)io_uring_cqe_get_data(cqe);
            int r = complete(&ring, rd, &slots[i], i, cqe->res, &any_ok, first_einval);
            seen++;
            if (r != 0) {
                inflight--;
                free_ix[nfree++] = i;
                if (r < 0 && !err)
                    err = r;
            }
        }
        io_uring_cq_advance(&ring, seen);
        if (n < 0 && n != -EINTR && n != -EAGAIN && n != -EBUSY && !seen)
            break; /* the ring is unusable; nothing will complete */
    }
    rc = err;
out:
    free(slots);
    free(free_ix);
    io_uring_queue_exit(&ring);
    return rc;
}

static int read_pread(const struct rd *rd, bool *first_einval)
{
    uint64_t off = rd->from;
    bool any_ok = false;
    while (off < rd->file_end) {
        if (atomic_load_explicit(&rd->pr->abort, memory_order_relaxed))
            return -ECANCELED;
        uint64_t len = rd->req_end - off < rd->chunk ? rd->req_end - off : rd->chunk;
        ssize_t n = pread(rd->fd, rd->dst + (off - rd->from), (size_t)len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            if (errno == EINVAL && !any_ok)
                *first_einval = true;
            return -errno;
        }
        if (n == 0)
            return -EIO;
        any_ok = true;
        off += (uint64_t)n;
        atomic_fetch_add_explicit(&rd->pr->done, (uint64_t)n, memory_order_relaxed);
    }
    return 0;
}

/* Reads the span, trying O_DIRECT first when allowed; records what was used. */
static int read_span(const char *path, const struct elm_gguf *g, struct rd *rd,
                     const struct elmd_load_params *p, struct elmd_residency *r, char *err,
                     size_t errlen)
{
    bool direct = p->direct_io;
    for (;;) {
        int fd = open(path, O_RDONLY | O_CLOEXEC | (direct ? O_DIRECT : 0));
        if (fd < 0 && direct && errno == EINVAL) {
            note(r, "O_DIRECT is not supported here: buffered reads");
            direct = false;
            continue;
        }
        if (fd < 0)
            return elm_errf(err, errlen, -errno, "cannot open %s: %s", path, strerror(errno));
        struct stat st;
        if (fstat(fd, &st) < 0 || (uint64_t)st.st_size != g->size) {
            close(fd);
            return elm_errf(err, errlen, -EIO, "%s changed while it was being loaded", path);
        }
        rd->fd = fd;
        rd->file_end = (uint64_t)st.st_size < rd->req_end ? (uint64_t)st.st_size : rd->req_end;
        atomic_store(&rd->pr->done, 0);
        atomic_store(&rd->pr->total, rd->file_end - rd->from);
        bool einval = false, no_ring = false;
        uint64_t t0 = now_ns();
        int rc = read_uring(rd, &einval, &no_ring);
        r->uring = true;
        if (no_ring) {
            note(r, "io_uring unavailable (%s): pread loop", strerror(-rc));
            r->uring = false;
            rc = read_pread(rd, &einval);
        }
        r->read_ns = now_ns() - t0;
        close(fd);
        if (rc == -EINVAL && einval && direct) {
            note(r, "O_DIRECT read refused (EINVAL): buffered reads");
            direct = false;
            continue;
        }
        if (rc)
            return elm_errf(err, errlen, rc, "reading %s: %s", path,
                        rc == -ECANCELED ? "cancelled" : strerror(-rc));
        r->direct = direct;
        r->read_bytes = rd->file_end - rd->from;
        return 0;
    }
}

/* ---- the whole load ----------------------------------------------------------------------- */

int elmd_model_load(const char *path, const struct elmd_load_params *p,
                    struct elmd_load_progress *pr, struct elmd_model **out, char *err,
                    size_t errlen)
{
    uint64_t t0 = now_ns();
    struct elm_model_params mp = {.n_threads = p->threads,
                                  .kernel = p->kernel && *p->kernel ? p->kernel : NULL};
    struct elm_model *probe = NULL;
    int rc = elm_model_load(path, &mp, &probe, err, errlen); /* validates; reads no weights */
    if (rc)
        return rc;
    elm_model_destroy(&probe);

    struct elmd_model *dm = calloc(1, sizeof *dm);
    if (!dm)
        return elm_errf(err, errlen, -ENOMEM, "out of memory");
    snprintf(dm->path, sizeof dm->path, "%s", path);
    struct elmd_residency *r = &dm->res;
    struct elm_gguf *g = NULL;
    if ((rc = elm_gguf_open(path, &g, err, errlen)))
        goto fail;

    uint64_t from = g->data_offset & ~(DIO_ALIGN - 1);
    uint64_t req_end = round_up(g->data_offset + g->data_size, DIO_ALIGN);
    uint64_t t1 = now_ns();
    if ((rc = alloc_resident(req_end - from, p, r, err, errlen)))
        goto fail;
    uint64_t t2 = now_ns();
    struct rd rd = {.dst = r->map,
                    .from = from,
                    .req_end = req_end,
                    .chunk = p->io_chunk ? p->io_chunk : HUGE_2M,
                    .depth = p->io_depth > 0 ? p->io_depth : 32,
                    .pr = pr};
    if ((rc = read_span(path, g, &rd, p, r, err, errlen)))
        goto fail;
    pin(p, r);
    r->data = (unsigned char *)r->map + (g->data_offset - from);
    r->data_size = g->data_size;
    r->gbps = r->read_ns ? (double)r->read_bytes / (double)r->read_ns : 0;

    uint64_t t3 = now_ns();
    if ((rc = elm_model_create(g, r->data, &mp, &dm->m, err, errlen)))
        goto fail;
    elm_debug("load: validate %.3f s, allocate %.3f s, read+lock %.3f s, build %.3f s",
              (double)(t1 - t0) / 1e9, (double)(t2 - t1) / 1e9, (double)(t3 - t2) / 1e9,
              (double)(now_ns() - t3) / 1e9);
    g = NULL; /* owned by the model now */
    read_smaps(r);
    /* smaps counts hugetlb pages in neither Rss nor Locked, yet they are never swapped out:
     * the whole mapping is resident for good. */
    if (r->backing == ELMD_BACK_HUGETLB)
        r->locked_bytes = r->map_len;
    r->total_ns = now_ns() - t0;
    elm_info("loaded %s: %.1f MiB in %.3f s (%.2f GB/s, %s%s, %s, %.0f%% on huge pages%s)", path,
             (double)r->read_bytes / (1 << 20), (double)r->read_ns / 1e9, r->gbps,
             r->uring ? "io_uring" : "pread", r->direct ? " O_DIRECT" : " buffered",
             elmd_backing_name(r->backing),
             r->map_len ? 100.0 * (double)r->huge_bytes / (double)r->map_len : 0.0,
             r->locked ? ", locked" : ", NOT locked");
    *out = dm;
    return 0;

fail:
    elm_gguf_destroy(&g);
    elmd_model_destroy(&dm);
    return rc;
}

void elmd_model_destroy(struct elmd_model **pm)
{
    if (!pm || !*pm)
        return;
    struct elmd_model *dm = *pm;
    elm_kv_pool_destroy(&dm->kv_pool); /* its sequences are gone: the engine destroyed them */
    elm_model_destroy(&dm->m);
    if (dm->res.map)
        munmap(dm->res.map, dm->res.map_len);
    free(dm);
    *pm = NULL;
}
