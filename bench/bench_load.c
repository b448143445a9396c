/* bench_load.c — `elm-bench load`: what residency costs and what it buys.
 *
 * Table "load": the engine's loader (engine/loader.h: io_uring reads into pinned huge-page
 * memory, what elmd loads with) against `cat FILE > /dev/null`, alternated in the same run. With
 * --cold the file's pages are dropped from the page cache (posix_fadvise DONTNEED, no root
 * needed) before every run.
 *
 * Table "first-token": a new client process asking a resident elmd for one token, against a
 * new process that loads the model itself (`elmctl generate --local`), from fork to the first
 * byte of output. elm-bench starts its own elmd in a private runtime directory for this.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "bench/bench.h"
#include "engine/loader.h"

static void drop_cache(const char *path)
{
    int fd = open(path, O_RDONLY);
    if (fd >= 0) {
        fdatasync(fd);
        posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
        close(fd);
    }
}

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

/* Spawns argv with stdout on a pipe; returns seconds from fork to its first output byte, and
 * waits for it to end. env_dir, when set, becomes ELM_RUNTIME_DIR. */
static double time_first_byte(char *const argv[], const char *env_dir)
{
    int p[2];
    if (pipe(p))
        return -1;
    double t0 = bench_now();
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[1], 1);
        close(p[0]);
        close(p[1]);
        if (env_dir)
            setenv("ELM_RUNTIME_DIR", env_dir, 1);
        execv(argv[0], argv);
        _exit(127);
    }
    close(p[1]);
    char c;
    double t = read(p[0], &c, 1) == 1 ? bench_now() - t0 : -1;
    char buf[4096];
    while (read(p[0], buf, sizeof buf) > 0)
        ;
    close(p[0]);
    int st;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? t : -1;
}

/* Directory of this executable's build tree (bench/..), to find elmd and elmctl. */
static void sibling(char *out, size_t cap, const char *rel_build, const char *name)
{
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    char *slash = strrchr(self, '/');
    if (slash)
        *slash = 0;
    snprintf(out, cap, "%.3000s/%s", self, rel_build);
    if (access(out, X_OK) != 0) /* installed: everything in one bin directory */
        snprintf(out, cap, "%.3000s/%s", self, name);
}

static int load_table(const struct bench_opts *o, const char *path, bool cold)
{
    struct stat st;
    if (stat(path, &st)) {
        fprintf(stderr, "elm-bench load: %s: %s\n", path, strerror(errno));
        return 1;
    }
    double elm_s[1000], cat_s[1000], elm_gbps[1000];
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
            drop_cache(path);
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
            drop_cache(path);
        double c = time_cat(path);
        if (i >= 0)
            cat_s[i] = c;
    }
    bench_progress(NULL);
    struct bench_stat se = bench_stats(elm_s, o->reps), sc = bench_stats(cat_s, o->reps);
    struct bench_stat sg = bench_stats(elm_gbps, o->reps);
    double gb = (double)st.st_size / 1e9;
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
        {"elm/cat time", NULL, se.median / sc.median, 2},
    };
    bench_row(o, "load", cells, (int)(sizeof cells / sizeof *cells));
    bench_end_table(o);
    return 0;
}

static int first_token_table(const struct bench_opts *o, const char *path)
{
    char elmd[PATH_MAX], elmctl[PATH_MAX], dir[] = "/tmp/elm-bench-ft-XXXXXX";
    sibling(elmd, sizeof elmd, "../daemon/elmd", "elmd");
    sibling(elmctl, sizeof elmctl, "../cli/elmctl", "elmctl");
    if (access(elmd, X_OK) || access(elmctl, X_OK) || !mkdtemp(dir)) {
        fprintf(stderr, "elm-bench load: elmd/elmctl not found next to elm-bench\n");
        return 1;
    }
    /* elmd in the background returns once it serves the model */
    char *dargv[] = {elmd, "--model", (char *)path, "--runtime-dir", dir, NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execv(elmd, dargv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "elm-bench load: elmd did not start\n");
        rmdir(dir);
        return 1;
    }
    char threads[16];
    snprintf(threads, sizeof threads, "%d", o->threads);
    char *via[] = {elmctl, "generate", "--temp", "0", "-n", "1", "Once", NULL};
    char *local[] = {elmctl, "generate", "--local", (char *)path, "--threads", threads,
                     "--temp", "0", "-n", "1", "Once", NULL};
    double a[1000], b[1000];
    int rc = 0;
    for (int i = -1; i < o->reps && !rc; i++) {
        bench_progress("first-token run %d/%d", i + 1, o->reps);
        double x = time_first_byte(via, dir), y = time_first_byte(local, NULL);
        if (x < 0 || y < 0)
            rc = 1;
        else if (i >= 0)
            a[i] = x * 1e3, b[i] = y * 1e3;
    }
    bench_progress(NULL);
    char *stop[] = {elmctl, "stop", NULL};
    time_first_byte(stop, dir);
    rmdir(dir);
    if (rc) {
        fprintf(stderr, "elm-bench load: a generate run failed\n");
        return 1;
    }
    struct bench_stat sa = bench_stats(a, o->reps), sb = bench_stats(b, o->reps);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct bench_cell cells[] = {
        {"model", name, 0, 0},
        {"via elmd ms", NULL, sa.median, 1},
        {"min", NULL, sa.min, 1},
        {"max", NULL, sa.max, 1},
        {"in-process ms", NULL, sb.median, 1},
        {"min ", NULL, sb.min, 1},
        {"max ", NULL, sb.max, 1},
        {"in-process/elmd", NULL, sb.median / sa.median, 2},
    };
    bench_row(o, "first-token", cells, (int)(sizeof cells / sizeof *cells));
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
        rc = first_token_table(o, path);
    return rc;
}
