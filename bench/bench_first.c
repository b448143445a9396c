/* bench_first.c — `elm-bench load`'s first-token tables: a new client process asking a
 * resident elmd for one token, against a new process that loads the model itself (`elmctl
 * generate --local`), each from fork to the first byte of output; and where that time goes.
 *
 * The breakdown comes from trace marks (common/trace.h): elm-bench sets ELM_TRACE for the elmd
 * it starts and for every client, and after each run reads the marks back. Each stage is the
 * time from one mark to the next one after it (names below); medians over the runs. CLOCK_MONOTONIC
 * is one clock for every process of the machine, so the daemon's and the client's marks compare.
 */
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"

#define MAX_RUNS 1000
#define MAX_MARKS 256
#define MAX_STAGES 24 /* of a breakdown (g_via, g_local) */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* ---- marks --------------------------------------------------------------------------------- */

struct mark {
    char name[32];
    int64_t ns;
};

struct marks {
    struct mark m[MAX_MARKS];
    int n;
};

/* Reads the trace file's lines "<pid> <name> <ns>" (others are skipped). */
static void read_marks(const char *path, struct marks *out)
{
    out->n = 0;
    FILE *f = fopen(path, "r");
    if (!f)
        return;
    char line[160];
    while (out->n < MAX_MARKS && fgets(line, sizeof line, f)) {
        long pid;
        long long ns;
        struct mark *k = &out->m[out->n];
        if (sscanf(line, "%ld %31s %lld", &pid, k->name, &ns) == 3) {
            k->ns = ns;
            out->n++;
        }
    }
    fclose(f);
}

/* The first mark called name at or after `after`; -1 when there is none. */
static int64_t mark_after(const struct marks *m, const char *name, int64_t after)
{
    int64_t best = -1;
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->m[i].name, name) && m->m[i].ns >= after && (best < 0 || m->m[i].ns < best))
            best = m->m[i].ns;
    return best;
}

/* A stage ends at the first of its marks (alternatives) after the previous stage's end. */
struct stage {
    const char *label;
    const char *marks[2];
};

/* A new client through elmd. The engine may be awake already (d_woke missing): then its
 * wake-up is folded into "request read". */
static const struct stage g_via[] = {
    {"process start, libraries", {"c_main"}},
    {"elmctl's set-up", {"c_connect"}},
    {"connect + daemon's greeting", {"c_greeted"}},
    {"hello", {"c_connected"}},
    {"open: request to daemon", {"d_open_rx"}},
    {"open: session region (daemon)", {"d_open_shm"}},
    {"open: reply to the client", {"c_open_reply"}},
    {"open: region fetch (region socket)", {"c_region"}},
    {"open: client maps and checks it", {"c_session"}},
    {"request hand-off (client push)", {"c_submitted"}},
    {"engine wake-up", {"d_woke", "d_req_read"}},
    {"request read", {"d_req_read"}},
    {"tokenization", {"d_tokenized"}},
    {"plan", {"d_fwd_start"}},
    {"prefill pass (workers' wake-up inside)", {"d_fwd_end"}},
    {"sample + push + client wake-up", {"c_first"}},
    {"print", {NULL}}, /* to the first byte elm-bench reads */
};

static const struct stage g_local[] = {
    {"process start, libraries", {"c_main"}},
    {"model load (mapping)", {"l_loaded"}},
    {"tokenize + KV + work buffers", {"l_started"}},
    {"prefill pass + sampling (threads start)", {"out_first"}},
    {"print", {NULL}},
};

#define N_VIA ((int)(sizeof g_via / sizeof *g_via))
#define N_LOCAL ((int)(sizeof g_local / sizeof *g_local))
_Static_assert(N_VIA <= MAX_STAGES && N_LOCAL <= MAX_STAGES, "MAX_STAGES holds every stage");

/* Fills ms[s] with each stage's milliseconds of one run from t0 (fork) to t_end (first byte);
 * false when a mark is missing (the run is left out of the breakdown). */
static bool split(const struct marks *m, const struct stage *st, int n, int64_t t0, int64_t t_end,
                  double *ms)
{
    int64_t prev = t0;
    for (int s = 0; s < n; s++) {
        int64_t t = st[s].marks[0] ? mark_after(m, st[s].marks[0], prev) : t_end;
        if (st[s].marks[1]) {
            int64_t alt = mark_after(m, st[s].marks[1], prev);
            if (t < 0 || (alt >= 0 && alt < t))
                t = alt;
        }
        if (t < 0 || t > t_end)
            return false;
        ms[s] = (double)(t - prev) / 1e6;
        prev = t;
    }
    return true;
}

/* ---- running clients ----------------------------------------------------------------------- */

/* Spawns argv with stdout on a pipe; returns ns from fork to its first output byte (*t0: the
 * fork's time), and waits for it to end; -1 on failure. env_dir, when set, becomes
 * ELM_RUNTIME_DIR. */
static int64_t time_first_byte(char *const argv[], const char *env_dir, int64_t *t0)
{
    int p[2];
    if (pipe(p))
        return -1;
    *t0 = now_ns();
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
    int64_t t = read(p[0], &c, 1) == 1 ? now_ns() - *t0 : -1;
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

/* ---- tables -------------------------------------------------------------------------------- */

static void breakdown_table(const struct bench_opts *o, const char *name, const char *how,
                            bool cold, const struct stage *st, int n, double (*ms)[MAX_STAGES], int runs)
{
    if (runs == 0) {
        fprintf(stderr, "elm-bench load: no run had every trace mark (%s)\n", how);
        return;
    }
    double col[MAX_RUNS], total = 0;
    for (int s = 0; s < n; s++) {
        for (int r = 0; r < runs; r++)
            col[r] = ms[r][s];
        struct bench_stat x = bench_stats(col, runs);
        total += x.median;
        struct bench_cell cells[] = {
            {"model", name, 0, 0},   {"path", how, 0, 0},         {"cache", cold ? "cold" : "warm", 0, 0},
            {"stage", st[s].label, 0, 0}, {"median ms", NULL, x.median, 2},
            {"min", NULL, x.min, 2},  {"max", NULL, x.max, 2},
        };
        bench_row(o, "first-token-breakdown", cells, (int)(sizeof cells / sizeof *cells));
    }
    struct bench_cell sum[] = {
        {"model", name, 0, 0},        {"path", how, 0, 0}, {"cache", cold ? "cold" : "warm", 0, 0},
        {"stage", "sum of medians", 0, 0}, {"median ms", NULL, total, 2},
        {"min", "", 0, 0},            {"max", "", 0, 0},
    };
    bench_row(o, "first-token-breakdown", sum, (int)(sizeof sum / sizeof *sum));
    bench_end_table(o);
}

int bench_first_token(const struct bench_opts *o, const char *path, const char *cold_dir)
{
    bool cold = cold_dir != NULL;
    char elmd[PATH_MAX], elmctl[PATH_MAX], dir[] = "/tmp/elm-bench-ft-XXXXXX", trace[64];
    sibling(elmd, sizeof elmd, "../daemon/elmd", "elmd");
    sibling(elmctl, sizeof elmctl, "../cli/elmctl", "elmctl");
    if (access(elmd, X_OK) || access(elmctl, X_OK) || !mkdtemp(dir)) {
        fprintf(stderr, "elm-bench load: elmd/elmctl not found next to elm-bench\n");
        return 1;
    }
    snprintf(trace, sizeof trace, "%s/trace", dir);
    setenv("ELM_TRACE", trace, 1); /* for elmd and every client; unset before returning */
    /* elmd in the background returns once it serves the model */
    char threads[16];
    snprintf(threads, sizeof threads, "%d", o->threads);
    char *dargv[] = {elmd, "--model", (char *)path, "--runtime-dir", dir, "--threads", threads,
                     NULL};
    pid_t pid = fork();
    if (pid == 0) {
        execv(elmd, dargv);
        _exit(127);
    }
    int st;
    waitpid(pid, &st, 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st)) {
        fprintf(stderr, "elm-bench load: elmd did not start\n");
        unsetenv("ELM_TRACE");
        rmdir(dir);
        return 1;
    }
    char *via[] = {elmctl, "generate", "--temp", "0", "-n", "1", "Once", NULL};
    static char copy[4096];
    char *local[] = {elmctl, "generate", "--local", (char *)path, "--threads", threads,
                     "--temp", "0", "-n", "1", "Once", NULL};
    static double a[MAX_RUNS], b[MAX_RUNS], va[MAX_RUNS][MAX_STAGES], lo[MAX_RUNS][MAX_STAGES];
    static struct marks mk;
    int rc = 0, nva = 0, nlo = 0, reps = o->reps < MAX_RUNS ? o->reps : MAX_RUNS;
    for (int i = -1; i < reps && !rc; i++) {
        bench_progress("first-token run %d/%d", i + 1, reps);
        int64_t t0, t1;
        truncate(trace, 0);
        int64_t x = time_first_byte(via, dir, &t0);
        read_marks(trace, &mk);
        if (x >= 0 && i >= 0 && split(&mk, g_via, N_VIA, t0, t0 + x, va[nva]))
            nva++;
        char err[4400];
        double resident;
        if (cold && bench_cold_copy(path, *cold_dir ? cold_dir : NULL, copy, sizeof copy,
                                    &resident, err, sizeof err)) {
            fprintf(stderr, "elm-bench load: %s\n", err);
            rc = 1;
            break;
        }
        local[3] = cold ? copy : (char *)path;
        truncate(trace, 0);
        int64_t y = time_first_byte(local, NULL, &t1);
        read_marks(trace, &mk);
        if (cold)
            unlink(copy);
        if (y >= 0 && i >= 0 && split(&mk, g_local, N_LOCAL, t1, t1 + y, lo[nlo]))
            nlo++;
        if (x < 0 || y < 0)
            rc = 1;
        else if (i >= 0)
            a[i] = (double)x / 1e6, b[i] = (double)y / 1e6;
    }
    bench_progress(NULL);
    char *stop[] = {elmctl, "stop", NULL};
    int64_t ts;
    time_first_byte(stop, dir, &ts);
    unsetenv("ELM_TRACE");
    unlink(trace);
    rmdir(dir);
    if (rc) {
        fprintf(stderr, "elm-bench load: a generate run failed\n");
        return 1;
    }
    struct bench_stat sa = bench_stats(a, reps), sb = bench_stats(b, reps);
    const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    struct bench_cell cells[] = {
        {"model", name, 0, 0},
        {"cache", cold ? "cold" : "warm", 0, 0},
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
    breakdown_table(o, name, "via elmd", cold, g_via, N_VIA, va, nva);
    breakdown_table(o, name, "in-process", cold, g_local, N_LOCAL, lo, nlo);
    return 0;
}
