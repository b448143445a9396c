/* loader.c — reading a model's tensor data into pinned huge-page memory with io_uring
 * (see loader.h for why).
 *
 * What is read. Only the tensors the model uses (elm_model_used_tensors, on the header alone):
 * a file may carry tensors elm does not use, and one that declares gigabytes of them in a
 * sparse file must not become gigabytes of pinned memory. Used tensors close together in the
 * file form a run (RUN_GAP); the runs are packed one after another in the copy and the model is
 * given each tensor's offset in it (elm_model_params.tensor_offsets).
 *
 * Layout. O_DIRECT needs the file offset, the length and the buffer address aligned to the
 * device's logical block size (4096 covers every device we meet). Tensors are only 32-byte
 * aligned, so each run is the aligned superset [A0, A1) of its tensors and starts at an aligned
 * place in the copy: a tensor keeps its offset modulo 4096, so GGUF's alignment holds. The last
 * read may ask past the end of the file; the kernel returns a short read there, which ends
 * that chunk.
 *
 * Page cache or O_DIRECT. mincore on the file's mapping says how much of what is to be read is
 * already cached. Mostly cached (CACHED_ENOUGH): buffered reads, a copy at memory speed (O_DIRECT
 * would go to the device again). Otherwise O_DIRECT, which reads at the device's rate without
 * leaving a second copy in the page cache. Both through io_uring with many reads in flight.
 *
 * One open file serves everything: its mapping for the header and the model's validation, and
 * reads for the weights (O_DIRECT is switched on and off with fcntl, as the fallbacks need).
 *
 * Fallbacks, each logged and recorded in the residency notes: no reserved huge pages → THP →
 * plain pages; mlock refused → unpinned; O_DIRECT refused by fcntl or by the first read with
 * EINVAL (tmpfs, some FUSE and network file systems) → buffered reads; io_uring unavailable
 * (io_uring_queue_init fails: old kernel, kernel.io_uring_disabled, seccomp, -ENOSYS under
 * qemu-user) → a pread loop into the same memory (residency.uring says which ran).
 *
 * Readers. Fresh memory costs a fault per page (zeroing it) before a read can fill it, and a
 * read faults its destination in the thread that submits it: O_DIRECT pins the pages before
 * the device writes them, and a cached read completes inline, copying there. So the copy is
 * split into contiguous parts, one per CPU (up to READERS_MAX), each read by its own thread
 * with its own ring and its share of the reads in flight, faulting in and filling its part:
 * warm, fault + copy run on every core instead of one thread copying everything (an earlier
 * helper that only prefaulted from the end left the whole copy to one thread); cold, the device
 * sees the same depth, and no submitter stalls on the others' faults.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "common/log.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "engine/loader.h"

#define DIO_ALIGN ((uint64_t)4096)

/* Reads go through the page cache when at least this share of the file's pages to read are
 * already in it (a copy at memory speed); below it O_DIRECT avoids a second copy in the page
 * cache and reads at the device's rate. */
#define CACHED_ENOUGH 0.9

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

/* Logs a load's note (a fallback as a warning, a choice as information) and appends it to the
 * notes that `status` reports. */
static void vnote(struct elm_residency *r, bool warn, const char *fmt, va_list ap)
{
    char msg[192];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (warn)
        elm_warn("load: %s", msg);
    else
        elm_info("load: %s", msg);
    size_t n = strlen(r->notes);
    snprintf(r->notes + n, sizeof r->notes - n, "%s%s", n ? "; " : "", msg);
}

static void note(struct elm_residency *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note(struct elm_residency *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(r, true, fmt, ap);
    va_end(ap);
}

static void note_choice(struct elm_residency *r, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static void note_choice(struct elm_residency *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vnote(r, false, fmt, ap);
    va_end(ap);
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

/* One read request's worth of a run: file bytes [off, off + len) land at dst. */
struct slot {
    uint64_t off; /* in the file */
    uint64_t at;  /* in the copy */
    uint32_t len, done;
};

/* One reader's share of the reads, and how it went. */
struct rd {
    int fd;
    unsigned char *base;       /* the copy */
    const struct slot *chunks; /* this reader's reads, in file order (aligned offsets/lengths) */
    size_t n_chunks;
    uint64_t file_end; /* a chunk ends early here: the file's size (its tail is not aligned) */
    int depth;
    struct elm_load_progress *pr;
    _Atomic bool *stop; /* set by a reader that failed: the others stop too */
    bool no_ring;       /* in: read with pread; out: also set when io_uring was unavailable */
    bool einval;        /* out: the first read was refused with EINVAL */
    int ring_rc;        /* out: why io_uring was unavailable */
    int rc;             /* out: 0 or -errno */
};

static bool should_stop(const struct rd *rd)
{
    return atomic_load_explicit(&rd->pr->abort, memory_order_relaxed) ||
           atomic_load_explicit(rd->stop, memory_order_relaxed);
}

static void queue_read(struct io_uring *ring, const struct rd *rd, struct slot *s, int i)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(ring); /* the SQ is empty after each submit */
    io_uring_prep_read(sqe, rd->fd, rd->base + s->at + s->done, s->len - s->done, s->off + s->done);
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

/* Makes every read of rd with up to depth in flight. Always waits for every read it issued
 * before returning, even on error: they write into memory the caller may unmap. */
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
    size_t next = 0;
    bool any_ok = false;
    int err = 0;
    while ((!err && next < rd->n_chunks) || inflight) {
        if (!err && should_stop(rd))
            err = -ECANCELED;
        while (!err && nfree && next < rd->n_chunks) {
            int i = free_ix[--nfree];
            slots[i] = rd->chunks[next++];
            queue_read(&ring, rd, &slots[i], i);
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
    bool any_ok = false;
    for (size_t c = 0; c < rd->n_chunks; c++) {
        struct slot s = rd->chunks[c];
        while (s.done < s.len && s.off + s.done < rd->file_end) {
            if (should_stop(rd))
                return -ECANCELED;
            ssize_t n = pread(rd->fd, rd->base + s.at + s.done, s.len - s.done, (off_t)(s.off + s.done));
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
            s.done += (uint32_t)n;
            atomic_fetch_add_explicit(&rd->pr->done, (uint64_t)n, memory_order_relaxed);
        }
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

/* One reader: io_uring, or pread when asked or when io_uring is unavailable. */
static void *reader_main(void *arg)
{
    struct rd *rd = arg;
    rd->rc = rd->no_ring ? 0 : read_uring(rd, &rd->einval, &rd->no_ring);
    if (rd->no_ring) {
        rd->ring_rc = rd->rc;
        rd->rc = read_pread(rd, &rd->einval);
    }
    if (rd->rc)
        atomic_store(rd->stop, true);
    return NULL;
}

#define READERS_MAX 4 /* see "Readers" above; more than a memory bus fills, on any machine */

/* How many threads read: asked for, else one per CPU (up to READERS_MAX), at most one per read. */
static int reader_count(const struct elm_load_params *p, size_t n_chunks)
{
    long n = p->readers > 0 ? p->readers : sysconf(_SC_NPROCESSORS_ONLN);
    if (n > READERS_MAX)
        n = READERS_MAX;
    if ((size_t)n > n_chunks)
        n = (long)n_chunks;
    return n > 1 ? (int)n : 1;
}

/* Makes the reads once, split between reader threads at chunk boundaries (the calling thread is
 * one of them); *einval when the first read was refused with EINVAL (O_DIRECT not
 * supported after all). */
static int read_once(const struct rd *all, uint64_t total, const struct elm_load_params *p,
                     struct elm_residency *r, bool *einval)
{
    atomic_store(&all->pr->done, 0);
    atomic_store(&all->pr->total, total);
    _Atomic bool stop = false;
    int n = reader_count(p, all->n_chunks); /* a thread costs ~50 us: worth it from 2 reads */
    struct rd rd[READERS_MAX];
    pthread_t th[READERS_MAX];
    bool started[READERS_MAX] = {false};
    size_t from = 0;
    uint64_t bytes = 0;
    for (int k = 0; k < n; k++) { /* reader k: the chunks up to (k + 1) / n of the bytes */
        size_t to = from;
        while (to < all->n_chunks &&
               (k == n - 1 || bytes < total / (uint64_t)n * (uint64_t)(k + 1)))
            bytes += all->chunks[to++].len;
        rd[k] = *all;
        rd[k].chunks = all->chunks + from;
        rd[k].n_chunks = to - from;
        rd[k].depth = all->depth / n > 0 ? all->depth / n : 1;
        rd[k].stop = &stop;
        rd[k].no_ring = p->no_uring;
        from = to;
    }
    uint64_t t0 = now_ns();
    for (int k = 1; k < n; k++)
        started[k] = pthread_create(&th[k], NULL, reader_main, &rd[k]) == 0;
    reader_main(&rd[0]);
    for (int k = 1; k < n; k++) {
        if (started[k])
            pthread_join(th[k], NULL);
        else /* no thread: this one reads that part too, after its own */
            reader_main(&rd[k]);
    }
    r->read_ns = now_ns() - t0;
    /* The first real error: the other readers then stopped with -ECANCELED. */
    int rc = 0;
    bool no_ring = false;
    for (int k = 0; k < n; k++) {
        if (rd[k].rc && (!rc || rc == -ECANCELED))
            rc = rd[k].rc;
        *einval |= rd[k].rc == -EINVAL && rd[k].einval;
        if (rd[k].no_ring && !no_ring) {
            no_ring = true;
            if (!p->no_uring)
                note(r, "io_uring unavailable (%s): pread loop", strerror(-rd[k].ring_rc));
        }
    }
    r->uring = !no_ring;
    r->readers = n;
    return rc;
}

/* Makes the reads, with O_DIRECT when asked and the file is not already cached (see
 * CACHED_ENOUGH); records what was used. */
static int read_all(const char *path, struct rd *rd, uint64_t total,
                    const struct elm_load_params *p, struct elm_residency *r, char *err,
                    size_t errlen)
{
    bool direct = p->direct_io && r->cached < CACHED_ENOUGH;
    if (p->direct_io && !direct)
        note_choice(r, "%.0f%% of the file cached: read through the page cache, not O_DIRECT",
             100.0 * r->cached);
    if (direct && set_direct(rd->fd, true) < 0) {
        note(r, "O_DIRECT is not supported here: buffered reads");
        direct = false;
    }
    bool einval = false;
    int rc = read_once(rd, total, p, r, &einval);
    if (rc == -EINVAL && einval && direct) {
        note(r, "O_DIRECT read refused (EINVAL): buffered reads");
        direct = false;
        rc = set_direct(rd->fd, false);
        if (rc == 0)
            rc = read_once(rd, total, p, r, &einval);
    }
    if (rc)
        return elm_errf(err, errlen, rc, "reading %s: %s", path,
                        rc == -ECANCELED ? "cancelled" : strerror(-rc));
    r->direct = direct;
    r->read_bytes = total;
    return 0;
}

/* ---- what to read ------------------------------------------------------------------------- */

/* Two used tensors closer than this in the file are read as one run, the bytes between them
 * included: a read costs more than a megabyte of copying, and GGUF pads tensors to 32 bytes. */
#define RUN_GAP ((uint64_t)1 << 20)

struct plan {
    struct slot *chunks; /* the reads, in file order */
    size_t n_chunks;
    uint64_t *offsets;   /* [n_tensors]: where a used tensor starts in the copy */
    uint64_t span;       /* bytes of the copy: the runs, each aligned, packed */
    uint64_t total;      /* bytes the reads return (the runs, clipped to the file's end) */
    uint64_t unused;     /* bytes of tensors the model does not use (not read) */
    size_t n_unused;
};

struct span {
    uint64_t from, to; /* file offsets */
    size_t ix;         /* tensor index */
};

static int by_start(const void *a, const void *b)
{
    const struct span *x = a, *y = b;
    return x->from < y->from ? -1 : x->from > y->from;
}

static int add_chunks(struct plan *pl, size_t *cap, uint64_t from, uint64_t to, uint64_t at,
                      size_t chunk)
{
    for (uint64_t off = from; off < to; off += chunk) {
        if (pl->n_chunks == *cap) {
            size_t ncap = *cap ? 2 * *cap : 256;
            struct slot *c = realloc(pl->chunks, ncap * sizeof *c);
            if (!c)
                return -ENOMEM;
            pl->chunks = c;
            *cap = ncap;
        }
        uint64_t len = to - off < chunk ? to - off : chunk;
        pl->chunks[pl->n_chunks++] = (struct slot){.off = off, .at = at + (off - from),
                                                   .len = (uint32_t)len};
    }
    return 0;
}

/* Lays out the copy: only the tensors in used[], grouped into runs of the file whose ends are
 * aligned for O_DIRECT (a tensor keeps its offset modulo 4096, so GGUF's alignment holds in
 * the copy), packed one after another, and cut into reads of chunk bytes. */
static int plan_reads(const struct elm_gguf *g, const bool *used, size_t chunk, struct plan *pl)
{
    size_t n = 0, cap = 0;
    struct span *sp = malloc((size_t)g->n_tensors * sizeof *sp + 1);
    pl->offsets = calloc((size_t)g->n_tensors + 1, sizeof *pl->offsets);
    if (!sp || !pl->offsets) {
        free(sp);
        return -ENOMEM;
    }
    for (size_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        if (!used[i]) {
            pl->n_unused++;
            pl->unused += t->n_bytes;
            continue;
        }
        uint64_t from = g->data_offset + t->offset; /* gguf.c checked these fit the file */
        sp[n++] = (struct span){.from = from, .to = from + t->n_bytes, .ix = i};
    }
    qsort(sp, n, sizeof *sp, by_start);
    uint64_t run_from = 0, run_to = 0, run_at = 0;
    int rc = 0;
    for (size_t k = 0; k <= n && rc == 0; k++) {
        uint64_t a = k < n ? sp[k].from & ~(DIO_ALIGN - 1) : 0;
        bool ends = k == n || (k > 0 && a > run_to + RUN_GAP);
        if (ends && k > 0) { /* the run so far: its reads */
            rc = add_chunks(pl, &cap, run_from, run_to, run_at, chunk);
            run_at += run_to - run_from;
            pl->total += (g->size < run_to ? g->size : run_to) - run_from;
        }
        if (k == n)
            break;
        if (k == 0 || ends) {
            run_from = a;
            run_to = 0;
        }
        uint64_t e = round_up(sp[k].to, DIO_ALIGN);
        if (e > run_to)
            run_to = e;
        pl->offsets[sp[k].ix] = run_at + (sp[k].from - run_from);
    }
    pl->span = run_at;
    free(sp);
    return rc;
}

/* Share of the pages the plan reads that are in the page cache, from mincore on the file's
 * mapping (which the header parse made; reading it would fault them in, mincore does not). */
static double cached_share(const struct elm_gguf *g, const struct plan *pl)
{
    long ps = sysconf(_SC_PAGESIZE);
    if (ps <= 0 || !g->map)
        return 0;
    unsigned char vec[1024];
    uint64_t pages = 0, in = 0;
    for (size_t c = 0; c < pl->n_chunks; c++) {
        uint64_t from = pl->chunks[c].off & ~((uint64_t)ps - 1);
        uint64_t to = pl->chunks[c].off + pl->chunks[c].len;
        if (to > g->size)
            to = g->size;
        while (from < to) {
            uint64_t np = (to - from + (uint64_t)ps - 1) / (uint64_t)ps;
            if (np > sizeof vec)
                np = sizeof vec;
            if (mincore((void *)(g->base + from), np * (uint64_t)ps, vec) != 0)
                return 0; /* unknown: treat as cold */
            for (uint64_t i = 0; i < np; i++)
                in += vec[i] & 1;
            pages += np;
            from += np * (uint64_t)ps;
        }
    }
    return pages ? (double)in / (double)pages : 0;
}

/* ---- the whole load ----------------------------------------------------------------------- */

/* Reads the tensors the model uses into r's memory; offsets[i] is where tensor i landed. */
static int make_resident(const char *path, int fd, const struct elm_gguf *g, const bool *used,
                         const struct elm_load_params *p, struct elm_load_progress *pr,
                         struct elm_residency *r, uint64_t **offsets, char *err, size_t errlen)
{
    struct plan pl = {0};
    size_t chunk = p->io_chunk ? p->io_chunk : ELM_HUGE_PAGE;
    int rc = plan_reads(g, used, chunk, &pl);
    if (rc) {
        rc = elm_errf(err, errlen, rc, "out of memory");
        goto out;
    }
    if (pl.n_unused)
        note_choice(r, "%zu tensors (%.1f MiB) the model does not use: not read", pl.n_unused,
             (double)pl.unused / (1 << 20));
    r->cached = cached_share(g, &pl);
    if ((rc = alloc_resident(pl.span ? pl.span : DIO_ALIGN, p, r, err, errlen)))
        goto out;
    struct rd rd = {.fd = fd,
                    .base = r->mem.base,
                    .chunks = pl.chunks,
                    .n_chunks = pl.n_chunks,
                    .file_end = g->size,
                    .depth = p->io_depth > 0 ? p->io_depth : 32,
                    .pr = pr};
    rc = read_all(path, &rd, pl.total, p, r, err, errlen);
    if (rc)
        goto out;
    pin(p, r);
    r->data = r->mem.base;
    r->data_size = pl.span;
    r->gbps = r->read_ns ? (double)r->read_bytes / (double)r->read_ns : 0;
    elm_region_usage(&r->mem, &r->huge_bytes, &r->locked_bytes);
    *offsets = pl.offsets;
    pl.offsets = NULL;
out:
    free(pl.chunks);
    free(pl.offsets);
    return rc;
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
    /* A file elm cannot run is refused before a byte of weights is read: the architecture and
     * every tensor's presence, type and shape are checked on the header alone, which also says
     * which tensors the model reads (only those are read and pinned: a file may carry others,
     * e.g. a huge sparse one, and pay nothing for them). The tokenizer is checked when the model
     * is built on the resident copy. Built once, on the copy: no pointer into the file's mapping
     * survives the load. */
    bool *used = NULL;
    uint64_t *offsets = NULL;
    if (rc == 0 && !(used = malloc((size_t)g->n_tensors * sizeof *used + 1)))
        rc = elm_errf(err, errlen, -ENOMEM, "out of memory");
    if (rc == 0)
        rc = elm_model_used_tensors(g, used, err, errlen);
    uint64_t t1 = now_ns();
    if (rc == 0)
        rc = make_resident(path, fd, g, used, p, pr ? pr : &own, &res, &offsets, err, errlen);
    close(fd);
    free(used);
    mp.tensor_offsets = offsets;
    if (rc == 0 && (rc = elm_model_create(g, res.data, &mp, &m, err, errlen)) == 0)
        g = NULL; /* the model's now */
    free(offsets); /* read while the model was built; the model keeps pointers, not offsets */
    if (rc) {
        elm_gguf_destroy(&g);
        elm_loader_unload(&m, &res);
        return rc;
    }
    res.total_ns = now_ns() - t0;
    elm_debug("load: parse %.3f s, allocate + read + lock + build %.3f s", (double)(t1 - t0) / 1e9,
              (double)(now_ns() - t1) / 1e9);
    elm_info("loaded %s: %.1f MiB in %.3f s (%.2f GB/s, %s%s, %.0f%% was cached, %s, %.0f%% on "
             "huge pages%s)",
             path, (double)res.read_bytes / (1 << 20), (double)res.read_ns / 1e9, res.gbps,
             res.uring ? "io_uring" : "pread", res.direct ? " O_DIRECT" : " buffered",
             100.0 * res.cached,
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
