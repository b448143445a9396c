/* bench_load.c — `elm-bench load`: what residency costs and what it buys.
 *
 * Table "load": the engine's loader (engine/loader.h: io_uring reads into pinned huge-page
 * memory, what elmd loads with) against the two rates it is held to, alternated in the same
 * run: `cat FILE > /dev/null` (what the page cache gives: the warm target is 80 % of it) and a
 * plain O_DIRECT sequential read into one reused buffer (what the device gives: the cold target
 * is 90 % of it). With --cold the file's pages are dropped from the page cache (posix_fadvise
 * DONTNEED, no root needed) before every run.
 *
 * Tables "first-token" and "first-token-breakdown": see bench_first.c.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The warm and cold targets (issue 19): elm's rate over the baseline's. */
#define WARM_TARGET 0.80 /* of cat's */
#define COLD_TARGET 0.90 /* of a plain O_DIRECT read's */

static int load_table(const struct bench_opts *o, const char *path, bool cold)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "elm-bench load: %s: %s\n", path, strerror(errno));
        return 1;
    }
    double elm_s[1000], cat_s[1000], dio_s[1000], elm_gbps[1000];
    char err[512], notes[256] = "";
    struct elm_load_params lp = {.threads = o->threads,
                                 .hugepages = ELM_HUGE_AUTO,
                                 .mlock = true,
                                 .direct_io = true,
                                 .io_depth = 32,
                                 .io_chunk = 2u << 20};
    for (int i = -1; i < o->reps; i++) {
        bench_progress("load run %d/%d", i + 1, o->reps);
        if (cold)
            bench_drop_cache(path);
        double t0 = bench_now();
        struct elm_load_progress pr = {0};
        struct elm_model *m = NULL;
        struct elm_residency res;
        if (elm_loader_load(path, &lp, &pr, &m, &res, err, sizeof err)) {
            fprintf(stderr, "elm-bench load: %s\n", err);
            return 1;
        }
        double t = bench_now() - t0;
        if (i >= 0) {
            elm_s[i] = t;
            elm_gbps[i] = res.gbps;
            snprintf(notes, sizeof notes, "%s%s%s", elm_backing_name(res.mem.backing),
                     res.direct ? "+direct" : "", res.mem.locked ? "+mlock" : "");
        }
        elm_loader_unload(&m, &res);
        if (cold)
            bench_drop_cache(path);
        double c = time_cat(path);
        double d = time_direct(path); /* the cache's state does not matter to it */
        if (i >= 0)
            cat_s[i] = c, dio_s[i] = d;
    }
    bench_progress(NULL);
    struct bench_stat se = bench_stats(elm_s, o->reps), sc = bench_stats(cat_s, o->reps);
    struct bench_stat sg = bench_stats(elm_gbps, o->reps), sd = bench_stats(dio_s, o->reps);
    double gb = (double)st.st_size / 1e9;
    /* elm's rate over the baseline's is the baseline's time over elm's */
    double vs_cat = sc.median / se.median, vs_dio = sd.median > 0 ? sd.median / se.median : 0;
    double got = cold ? vs_dio : vs_cat, want = cold ? COLD_TARGET : WARM_TARGET;
    char target[64];
    snprintf(target, sizeof target, "%s %.2f of %s: %s", cold ? "cold" : "warm", want,
             cold ? "O_DIRECT" : "cat", got >= want ? "met" : "missed");
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct bench_cell cells[] = {
        {"model", name, 0, 0},
        {"MB", NULL, (double)st.st_size / 1e6, 1},
        {"cache", cold ? "cold" : "warm", 0, 0},
        {"elm load s", NULL, se.median, 3},
        {"elm read GB/s", NULL, sg.median, 2},
        {"elm total GB/s", NULL, gb / se.median, 2},
        {"residency", notes, 0, 0},
        {"cat s", NULL, sc.median, 3},
        {"cat GB/s", NULL, gb / sc.median, 2},
        {"O_DIRECT s", NULL, sd.median, 3},
        {"O_DIRECT GB/s", NULL, sd.median > 0 ? gb / sd.median : 0, 2},
        {"elm/cat rate", NULL, vs_cat, 2},
        {"elm/O_DIRECT rate", NULL, vs_dio, 2},
        {"target", target, 0, 0},
    };
    bench_row(o, "load", cells, (int)(sizeof cells / sizeof *cells));
    bench_end_table(o);
    return 0;
}

int bench_load(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"synth", required_argument, 0, 's'},
        {"cold", no_argument, 0, 'c'},        {"no-first-token", no_argument, 0, 'F'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    static char synth[512];
    const char *path = NULL;
    bool cold = false, first = true;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:h", lo, NULL)) != -1) {
        char err[512];
        switch (c) {
        case 'm': path = optarg; break;
        case 's':
            if (bench_synth(optarg, synth, sizeof synth, err, sizeof err)) {
                fprintf(stderr, "elm-bench load: %s\n", err);
                return 2;
            }
            path = synth;
            break;
        case 'c': cold = true; break;
        case 'F': first = false; break;
        case 'h':
            printf("usage: elm-bench load (--model FILE | --synth SHAPE:TYPE) [--cold] "
                   "[--no-first-token]\n");
            return 0;
        default: return 2;
        }
    }
    if (!path) {
        fprintf(stderr, "elm-bench load: give --model FILE or --synth SHAPE:TYPE\n");
        return 2;
    }
    bench_print_header(o, "load");
    int rc = load_table(o, path, cold);
    if (!rc && first)
        rc = bench_first_token(o, path, cold);
    return rc;
}
