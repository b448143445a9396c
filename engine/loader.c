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
 * One open file serves everything: its mapping for the header and the model's validation, and
 * reads for the weights (O_DIRECT is switched on and off with fcntl, as the fallbacks need).
 *
 * Fallbacks, each logged and recorded in the residency notes: no reserved huge pages → THP →
 * plain pages; mlock refused → unpinned; O_DIRECT refused by fcntl or by the first read with
 * EINVAL (tmpfs, some FUSE and network file systems) → buffered reads; io_uring unavailable
 * (io_uring_queue_init fails: old kernel, kernel.io_uring_disabled, seccomp, -ENOSYS under
 * qemu-user) → a pread loop into the same memory (residency.uring says which ran).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/loader.h"

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
static void note(struct elm_residency *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct elm_residency *r, const char *fmt, ...)
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

/* ---- memory ------------------------------------------------------------------------------- */

static int alloc_resident(uint64_t span, const struct elm_load_params *p, struct elm_residency *r,
                          char *err, size_t errlen)
{
    char notes[sizeof r->notes] = "";
    int rc = elm_region_map(&r->mem, (size_t)span, p->hugepages, notes, sizeof notes);
    if (notes[0])
        note(r, "%s", notes);
    if (rc && p->hugepages == ELM_HUGE_HUGETLB)
        return elm_errf(err, errlen, rc, "hugepages = hugetlb, but %s", r->notes);
    if (rc) /* the notes end with why the last mapping failed */
        return elm_errf(err, errlen, rc, "%s", r->notes[0] ? r->notes : strerror(-rc));
    return 0;
}

/* Pins the copy once it is filled. Not before the read: mlock faults every page in (zeroing
 * it) in this one thread, up front — 2.2 s for 1 GB on our test VM — while the reads fault
 * them in piece by piece, overlapped with the I/O of the other reads in flight (2.2 s + 0.35 s
 * became 0.6 s). Pages already present make this mlock cheap. */
static void pin(const struct elm_load_params *p, struct elm_residency *r)
{
    if (!p->mlock)
        return;
    int rc = elm_region_lock(&r->mem);
    if (rc)
        note(r,
             "mlock failed (%s): weights are not pinned (raise RLIMIT_MEMLOCK: ulimit -l, "
             "or the user's memlock limit in limits.conf)",
             strerror(-rc));
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
    struct elm_load_progress *pr;
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

/* Sets or clears O_DIRECT on the open file; 0 or -errno. */
static int set_direct(int fd, bool on)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    fl = on ? fl | O_DIRECT : fl & ~O_DIRECT;
    return fcntl(fd, F_SETFL, fl) < 0 ? -errno : 0;
}

/* Reads the span once, with io_uring or else pread; *einval when the first read was refused
 * with EINVAL (O_DIRECT not supported after all). */
static int read_once(struct rd *rd, const struct elm_load_params *p, struct elm_residency *r,
                     bool *einval)
{
    atomic_store(&rd->pr->done, 0);
    atomic_store(&rd->pr->total, rd->file_end - rd->from);
    bool no_ring = p->no_uring;
    uint64_t t0 = now_ns();
    int rc = no_ring ? 0 : read_uring(rd, einval, &no_ring);
    r->uring = !no_ring;
    if (no_ring) {
        if (!p->no_uring)
            note(r, "io_uring unavailable (%s): pread loop", strerror(-rc));
        rc = read_pread(rd, einval);
    }
    r->read_ns = now_ns() - t0;
    return rc;
}

/* Reads the span, with O_DIRECT first when allowed; records what was used. */
static int read_span(const char *path, struct rd *rd, const struct elm_load_params *p,
                     struct elm_residency *r, char *err, size_t errlen)
{
    bool direct = p->direct_io;
    if (direct && set_direct(rd->fd, true) < 0) {
        note(r, "O_DIRECT is not supported here: buffered reads");
        direct = false;
    }
    bool einval = false;
    int rc = read_once(rd, p, r, &einval);
    if (rc == -EINVAL && einval && direct) {
        note(r, "O_DIRECT read refused (EINVAL): buffered reads");
        direct = false;
        rc = set_direct(rd->fd, false);
        if (rc == 0)
            rc = read_once(rd, p, r, &einval);
    }
    if (rc)
        return elm_errf(err, errlen, rc, "reading %s: %s", path,
                        rc == -ECANCELED ? "cancelled" : strerror(-rc));
    r->direct = direct;
    r->read_bytes = rd->file_end - rd->from;
    return 0;
}

/* ---- the whole load ----------------------------------------------------------------------- */

/* Reads g's data section into r's memory. */
static int make_resident(const char *path, int fd, const struct elm_gguf *g,
                         const struct elm_load_params *p, struct elm_load_progress *pr,
                         struct elm_residency *r, char *err, size_t errlen)
{
    uint64_t from = g->data_offset & ~(DIO_ALIGN - 1);
    uint64_t req_end = round_up(g->data_offset + g->data_size, DIO_ALIGN);
    int rc = alloc_resident(req_end - from, p, r, err, errlen);
    if (rc)
        return rc;
    struct rd rd = {.fd = fd,
                    .dst = r->mem.base,
                    .from = from,
                    .req_end = req_end,
                    .file_end = g->size < req_end ? g->size : req_end,
                    .chunk = p->io_chunk ? p->io_chunk : ELM_HUGE_PAGE,
                    .depth = p->io_depth > 0 ? p->io_depth : 32,
                    .pr = pr};
    if ((rc = read_span(path, &rd, p, r, err, errlen)))
        return rc;
    pin(p, r);
    r->data = (unsigned char *)r->mem.base + (g->data_offset - from);
    r->data_size = g->data_size;
    r->gbps = r->read_ns ? (double)r->read_bytes / (double)r->read_ns : 0;
    elm_region_usage(&r->mem, &r->huge_bytes, &r->locked_bytes);
    return 0;
}

int elm_loader_load(const char *path, const struct elm_load_params *p, struct elm_load_progress *pr,
                    struct elm_model **out, struct elm_residency *r, char *err, size_t errlen)
{
    uint64_t t0 = now_ns();
    struct elm_load_progress own = {0};
    struct elm_model_params mp = {.n_threads = p->threads,
                                  .kernel = p->kernel && *p->kernel ? p->kernel : NULL};
    struct elm_residency res = {0};
    struct elm_gguf *g = NULL;
    struct elm_model *m = NULL;
    int fd = elm_gguf_open_file(path, err, errlen);
    if (fd < 0)
        return fd;
    int rc = elm_gguf_open_fd(fd, path, &g, err, errlen);
    /* An architecture elm cannot run is refused before a byte of weights is read; the tensors'
     * names, shapes and types are checked when the model is built on the resident copy (and a
     * file that fails there has cost one read). Built once, on the copy: no pointer into the
     * file's mapping survives the load. */
    if (rc == 0)
        rc = elm_model_check(g, err, errlen);
    uint64_t t1 = now_ns();
    if (rc == 0)
        rc = make_resident(path, fd, g, p, pr ? pr : &own, &res, err, errlen);
    close(fd);
    if (rc == 0 && (rc = elm_model_create(g, res.data, &mp, &m, err, errlen)) == 0)
        g = NULL; /* the model's now */
    if (rc) {
        elm_gguf_destroy(&g);
        elm_loader_unload(&m, &res);
        return rc;
    }
    res.total_ns = now_ns() - t0;
    elm_debug("load: parse %.3f s, allocate + read + lock + build %.3f s", (double)(t1 - t0) / 1e9,
              (double)(now_ns() - t1) / 1e9);
    elm_info("loaded %s: %.1f MiB in %.3f s (%.2f GB/s, %s%s, %s, %.0f%% on huge pages%s)", path,
             (double)res.read_bytes / (1 << 20), (double)res.read_ns / 1e9, res.gbps,
             res.uring ? "io_uring" : "pread", res.direct ? " O_DIRECT" : " buffered",
             elm_backing_name(res.mem.backing),
             res.mem.len ? 100.0 * (double)res.huge_bytes / (double)res.mem.len : 0.0,
             res.mem.locked ? ", locked" : ", NOT locked");
    *out = m;
    *r = res;
    return 0;
}

void elm_loader_unload(struct elm_model **m, struct elm_residency *r)
{
    elm_model_destroy(m);
    if (r) {
        elm_region_unmap(&r->mem);
        *r = (struct elm_residency){0};
    }
}
