/* bench_load.c — `elm-bench load`: what residency costs and what it buys.
 *
 * Table "load": the engine's loader (engine/loader.h: io_uring reads into pinned huge-page
 * memory, what elmd loads with) against the two rates it is held to, alternated in the same
 * run: `cat FILE > /dev/null` (what the page cache gives: the warm target is 80 % of it) and a
 * plain O_DIRECT sequential read into one reused buffer (what the device gives: the cold target
 * is 90 % of it), and the machine's first-touch rate: faulting in as much fresh memory of the
 * same kind, no I/O (a load cannot beat the slower of reading and faulting in). With --cold
 * every timed read is of a fresh copy written with O_DIRECT and checked out of the page cache
 * (bench_cold.c: posix_fadvise cannot drop mapped pages, drop_caches is not writable here).
 *
 * Tables "first-token" and "first-token-breakdown": see bench_first.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/loader.h"

static double time_cat(const char *path)
{
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        execlp("cat", "cat", path, (char *)NULL);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? bench_now() - t0 : -1;
}

/* A plain O_DIRECT read of the whole file, sequential, one 2 MiB aligned buffer reused (no
 * page faults, no page cache): seconds, or -1 when the file system refuses O_DIRECT. */
static double time_direct(const char *path)
{
    const size_t buf_len = 2u << 20;
    void *buf = NULL;
    int fd = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
    if (fd < 0 || posix_memalign(&buf, 4096, buf_len)) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    double t0 = bench_now();
    ssize_t n;
    while ((n = read(fd, buf, buf_len)) > 0)
        ;
    double t = n == 0 ? bench_now() - t0 : -1;
    free(buf);
    close(fd);
    return t;
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 */
#endif

/* The machine's rate for filling fresh memory: seconds to map `bytes` of the memory elm's load
 * gets (the same huge-page policy: hugetlb when reserved, else THP) and fault every page in,
 * with no I/O at all; -1 on failure. On a VM the host backs a guest page on its first touch, so
 * this can be slower than reading a cached file (see SETTLE_S). *backing: what was mapped.
 * copy_from (not NULL): then also reads that (cached) file into the faulted memory with plain
 * 2 MiB preads, its seconds in *copy_s: what moving the bytes into memory costs without the
 * faults, which cat (one small buffer, reused in the CPU's cache) does not pay. */
static double time_first_touch(size_t bytes, enum elm_huge policy, enum elm_backing *backing,
                               const char *copy_from, double *copy_s)
{
    struct elm_region mem = {0};
    char notes[256];
    double t0 = bench_now();
    if (elm_region_map(&mem, bytes, policy, notes, sizeof notes))
        return -1;
    unsigned char *p = mem.base;
    if (madvise(p, mem.len, MADV_POPULATE_WRITE)) /* older kernel: touch each page */
        for (size_t off = 0; off < mem.len; off += 4096)
            ((volatile unsigned char *)p)[off] = 1;
    double t = bench_now() - t0;
    *backing = mem.backing;
    int fd = copy_from ? open(copy_from, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        double t1 = bench_now();
        size_t off = 0;
        ssize_t n = 1;
        while (off < mem.len && n > 0) {
            size_t want = mem.len - off < (2u << 20) ? mem.len - off : (2u << 20);
            n = pread(fd, p + off, want, (off_t)off);
            off += n > 0 ? (size_t)n : 0;
        }
        *copy_s = n >= 0 ? bench_now() - t1 : -1;
        close(fd);
    }
    elm_region_unmap(&mem);
    return t;
}

/* Seconds of rest before the fresh first-touch. On the test VM the guest hands free huge-page
 * blocks back to the host about 2 s after they are freed (virtio-balloon free page reporting),
 * and faulting them in again costs the host's backing: 700 MB of THP memory took 7-8.7 s to
 * fault in after 3 s of rest, 0.3-0.45 s right after the same amount was freed (4 KiB pages:
 * 0.6-0.8 s either way). So the first FRESH_REPS runs time it fresh (what a daemon's first
 * load after idle pays), and every run times it again at once after elm's load freed its copy
 * (elm's load itself runs right after a touch freed its memory: the same state). */
#define SETTLE_S 3
#define FRESH_REPS                                                                                 \
    3 /* runs that rest and time the fresh touch (none with --quick): a slow                       \
       * machine property (7 s for 700 MB on the test VM), a median of 3 says                      \
       * enough */

/* The warm and cold targets (issue 19): elm's rate over the baseline's. */
#define WARM_TARGET 0.80 /* of cat's */
#define COLD_TARGET 0.90 /* of a plain O_DIRECT read's */

/* A fresh cold copy of path (bench_cold.c), its residency folded into *worst; NULL after a
 * message. */
static const char *cold_copy(const char *path, const char *cold_dir, char *out, size_t cap,
                             double *worst)
{
    char err[4400];
    double r;
    if (bench_cold_copy(path, *cold_dir ? cold_dir : NULL, out, cap, &r, err, sizeof err)) {
        fprintf(stderr, "elm-bench load: %s\n", err);
        return NULL;
    }
    if (r > *worst)
        *worst = r;
    return out;
}

/* cold_dir: NULL for warm rows; else where the fresh O_DIRECT copies go ("" for the model's
 * directory): each timed read (elm's load, O_DIRECT, cat) gets its own copy, checked to be
 * out of the page cache first, and deleted after. */
static int load_table(const struct bench_opts *o, const char *path, const char *cold_dir)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "elm-bench load: %s: %s\n", path, strerror(errno));
        return 1;
    }
    bool cold = cold_dir != NULL;
    static double elm_s[1000], cat_s[1000], dio_s[1000], elm_gbps[1000], touch_s[1000],
        fresh_s[1000], copy_s[1000];
    char err[512], notes[256] = "", copy[4096];
    double resident = 0; /* the largest share of a cold copy found cached before its run */
    size_t span = 0;
    int n_fresh = 0;
    enum elm_backing touch_mem = ELM_BACK_PLAIN;
    struct elm_load_params lp = {.threads = o->threads,
                                 .hugepages = ELM_HUGE_AUTO,
                                 .mlock = true,
                                 .direct_io = true,
                                 .io_depth = 32,
                                 .io_chunk = 2u << 20};
    int reps = o->reps < 1000 ? o->reps : 1000;
    for (int i = -1; i < reps; i++) {
        bench_progress("load run %d/%d", i + 1, reps);
        /* Cold: one fresh copy for elm's load (a), one for O_DIRECT and then cat (b) */
        char copy_b[4096];
        const char *f = cold ? cold_copy(path, cold_dir, copy, sizeof copy, &resident) : path;
        const char *fb =
            !f || !cold ? f : cold_copy(path, cold_dir, copy_b, sizeof copy_b, &resident);
        if (!f || !fb) {
            if (cold && f)
                unlink(f);
            return 1;
        }
        /* A touch (fresh after a rest, in the first FRESH_REPS runs), then elm's load on the
         * memory it just freed (see SETTLE_S) */
        size_t bytes = span ? span : (size_t)st.st_size;
        bool settle = i >= 0 && i < FRESH_REPS && !o->quick;
        if (settle)
            sleep(SETTLE_S);
        double unused;
        double fresh = time_first_touch(bytes, lp.hugepages, &touch_mem, NULL, &unused);
        if (settle)
            fresh_s[n_fresh++] = fresh;
        double r = cold ? bench_resident_share(f) : 0;
        if (r > resident)
            resident = r;
        double t0 = bench_now();
        struct elm_load_progress pr = {0};
        struct elm_model *m = NULL;
        struct elm_residency res;
        int rc = r < 0 || r > BENCH_COLD_MAX
                     ? -1
                     : elm_loader_load(f, &lp, &pr, &m, &res, err, sizeof err);
        double t = bench_now() - t0;
        if (cold)
            unlink(f);
        if (rc) {
            if (r < 0 || r > BENCH_COLD_MAX)
                snprintf(err, sizeof err, "%s became %.1f%% cached before its load", f, 100 * r);
            fprintf(stderr, "elm-bench load: %s\n", err);
            if (cold)
                unlink(fb);
            return 1;
        }
        if (i >= 0) {
            elm_s[i] = t;
            elm_gbps[i] = res.gbps;
            snprintf(notes, sizeof notes, "%s%s%s, %d readers", elm_backing_name(res.mem.backing),
                     res.direct ? "+direct" : "", res.mem.locked ? "+mlock" : "", res.readers);
        }
        span = res.mem.len;
        elm_loader_unload(&m, &res);
        /* the same memory again at once, as elm's load had it */
        double cp = 0;
        double ft = time_first_touch(span, lp.hugepages, &touch_mem, cold ? NULL : path, &cp);
        /* O_DIRECT first: it leaves the copy uncached, so cat can read the same copy cold */
        double d = time_direct(fb);
        r = cold ? bench_resident_share(fb) : 0;
        if (r > resident)
            resident = r;
        double c = r < 0 || r > BENCH_COLD_MAX ? -1 : time_cat(fb);
        if (cold)
            unlink(fb);
        if (c < 0) {
            fprintf(stderr, "elm-bench load: cat failed, or %s was %.1f%% cached before it\n", fb,
                    100 * r);
            return 1;
        }
        if (i >= 0)
            cat_s[i] = c, dio_s[i] = d, touch_s[i] = ft, copy_s[i] = cp;
    }
    bench_progress(NULL);
    struct bench_stat se = bench_stats(elm_s, reps), sc = bench_stats(cat_s, reps);
    struct bench_stat sg = bench_stats(elm_gbps, reps), sd = bench_stats(dio_s, reps);
    struct bench_stat sf = bench_stats(touch_s, reps), sfr = bench_stats(fresh_s, n_fresh);
    struct bench_stat scp = bench_stats(copy_s, reps);
    double gb = (double)st.st_size / 1e9, touch_gb = (double)span / 1e9;
    /* elm's rate over the baseline's is the baseline's time over elm's */
    double vs_cat = sc.median / se.median, vs_dio = sd.median > 0 ? sd.median / se.median : 0;
    double got = cold ? vs_dio : vs_cat, want = cold ? COLD_TARGET : WARM_TARGET;
    /* The ceiling: a load must read the bytes, fault in the memory they land in and (warm)
     * copy them there; at best these overlap fully, so its rate is at most the slowest's. Cold,
     * O_DIRECT's DMA already writes the bytes to memory. */
    double base_s = cold ? sd.median : sc.median;
    double ceil_s = sf.median > base_s ? sf.median : base_s;
    if (!cold && scp.median > ceil_s)
        ceil_s = scp.median;
    double vs_ceil = ceil_s > 0 ? ceil_s / se.median : 0;
    char target[160], touch_note[32], res_note[32];
    snprintf(target, sizeof target, "%s %.2f of %s: %s", cold ? "cold" : "warm", want,
             cold ? "O_DIRECT" : "cat", got >= want ? "met" : "missed");
    const char *limit = ceil_s <= base_s      ? (cold ? "O_DIRECT" : "cat")
                        : sf.median >= ceil_s ? "first touch"
                                              : "copy into memory";
    snprintf(touch_note, sizeof touch_note, "%s", elm_backing_name(touch_mem));
    snprintf(res_note, sizeof res_note, cold ? "%.2f%%" : "-", 100 * resident);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct bench_cell cells[] = {
        {"model", name, 0, 0},
        {"MB", NULL, (double)st.st_size / 1e6, 1},
        {"cache", cold ? "cold" : "warm", 0, 0},
        {"cached before", res_note, 0, 0},
        {"elm load s", NULL, se.median, 3},
        {"elm read GB/s", NULL, sg.median, 2},
        {"elm total GB/s", NULL, gb / se.median, 2},
        {"residency", notes, 0, 0},
        {"cat s", NULL, sc.median, 3},
        {"cat GB/s", NULL, gb / sc.median, 2},
        {"O_DIRECT s", NULL, sd.median, 3},
        {"O_DIRECT GB/s", NULL, sd.median > 0 ? gb / sd.median : 0, 2},
        {"first-touch s", NULL, sf.median, 3},
        {"first-touch GB/s", NULL, sf.median > 0 ? touch_gb / sf.median : 0, 2},
        {"first-touch memory", touch_note, 0, 0},
        {"copy into it s", cold ? "-" : NULL, scp.median, 3},
        {"fresh first-touch s", n_fresh ? NULL : "-", sfr.median, 3},
        {"fresh first-touch GB/s", n_fresh ? NULL : "-", sfr.median > 0 ? touch_gb / sfr.median : 0,
         2},
        {"elm/cat rate", NULL, vs_cat, 2},
        {"elm/O_DIRECT rate", NULL, vs_dio, 2},
        {"ceiling", limit, 0, 0},
        {"elm/ceiling rate", NULL, vs_ceil, 2},
        {"target", target, 0, 0},
    };
    bench_row(o, "load", cells, (int)(sizeof cells / sizeof *cells));
    bench_end_table(o);
    return 0;
}

int bench_load(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},
        {"synth", required_argument, 0, 's'},
        {"cold", no_argument, 0, 'c'},
        {"no-first-token", no_argument, 0, 'F'},
        {"cold-dir", required_argument, 0, 'D'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static char synth[512];
    const char *path = NULL;
    const char *cold_dir = NULL;
    bool first = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:h", lo, NULL)) != -1) {
        char err[512];
        switch (c) {
        case 'm':
            path = optarg;
            break;
        case 's':
            if (bench_synth(optarg, synth, sizeof synth, err, sizeof err)) {
                fprintf(stderr, "elm-bench load: %s\n", err);
                return 2;
            }
            path = synth;
            break;
        case 'c':
            cold_dir = cold_dir ? cold_dir : "";
            break;
        case 'D':
            cold_dir = optarg;
            break;
        case 'F':
            first = false;
            break;
        case 'h':
            printf("usage: elm-bench load (--model FILE | --synth SHAPE:TYPE) [--cold] "
                   "[--cold-dir DIR] [--no-first-token]\n"
                   "  --cold          each timed read gets a fresh copy of the model written with\n"
                   "                  O_DIRECT, checked out of the page cache (mincore), deleted "
                   "after\n"
                   "  --cold-dir DIR  --cold, with the copies in DIR (default: the model's "
                   "directory)\n");
            return 0;
        default:
            return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "elm-bench load: give --model FILE or --synth SHAPE:TYPE\n");
        return 2;
    }
    bench_print_header(o, "load");
    int rc = load_table(o, path, cold_dir);
    if (!rc && first)
        rc = bench_first_token(o, path, cold_dir);
    return rc;
}
