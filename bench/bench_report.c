/* bench_report.c — timing, statistics, machine description and result output for elm-bench. */
#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench/bench.h"
#include "elm/version.h"
#include "kernels/kernels.h"

double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double bench_percentile(const double *v, int n, double p)
{
    if (n <= 0)
        return 0;
    double at = p / 100.0 * (n - 1);
    int lo = (int)at;
    if (lo >= n - 1)
        return v[n - 1];
    return v[lo] + (at - lo) * (v[lo + 1] - v[lo]);
}

struct bench_stat bench_stats(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    struct bench_stat s = {0};
    if (n > 0) {
        s.min = v[0];
        s.max = v[n - 1];
        s.median = bench_percentile(v, n, 50);
    }
    return s;
}

struct bench_stat bench_stats_finite(double *v, int n, int *n_kept)
{
    int k = 0;
    for (int i = 0; i < n; i++)
        if (isfinite(v[i]))
            v[k++] = v[i];
    *n_kept = k;
    return bench_stats(v, k);
}

bool bench_span_resolved(double span_s, double n_events)
{
    struct timespec res;
    const double tick = clock_getres(CLOCK_MONOTONIC, &res) == 0
                            ? (double)res.tv_sec + (double)res.tv_nsec * 1e-9
                            : 1e-6;
    return span_s >= 1000 * tick && span_s >= n_events * BENCH_MIN_EVENT_S;
}

/* ---- emulation ---------------------------------------------------------------------------- */

/* The architecture this binary was built for, as Linux names it in /proc/sys/kernel/arch. */
#if defined(__aarch64__)
#define BUILT_ARCH "aarch64"
#elif defined(__x86_64__)
#define BUILT_ARCH "x86_64"
#else
#define BUILT_ARCH ""
#endif

/* Why this process runs under an emulator (its timings then measure the emulator), or "".
 * A user-mode emulator (qemu-user, how the arm64 pass runs) rewrites uname(), the auxiliary
 * vector (AT_PLATFORM, AT_HWCAP) and, in newer versions, /proc/cpuinfo, so none of those can
 * tell; what it does not rewrite is the kernel's own architecture, /proc/sys/kernel/arch
 * (Linux 6.1+), so a mismatch with the architecture we were built for is proof. On older
 * kernels an x86 /proc/cpuinfo ("vendor_id") seen by an ARM64 build is the same proof (qemu up
 * to 7.2 passes the host's through). ELM_EMULATED=1 (or 0) overrides both, for emulators that
 * hide well (a whole emulated system: its kernel is the guest's). */
static void detect_emulation(char *why, size_t cap)
{
    why[0] = '\0';
    const char *env = getenv("ELM_EMULATED");
    if (env && *env) {
        if (strcmp(env, "0") != 0)
            snprintf(why, cap, "ELM_EMULATED=%s", env);
        return;
    }
    char arch[32] = "";
    FILE *f = fopen("/proc/sys/kernel/arch", "r");
    if (f && fgets(arch, sizeof arch, f))
        arch[strcspn(arch, "\n")] = '\0';
    if (f)
        fclose(f);
    if (arch[0] && BUILT_ARCH[0] && strcmp(arch, BUILT_ARCH) != 0) {
        snprintf(why, cap, "an %s binary on an %s kernel", BUILT_ARCH, arch);
        return;
    }
    if (arch[0] || strcmp(BUILT_ARCH, "aarch64") != 0)
        return;
    char line[256];
    f = fopen("/proc/cpuinfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "vendor_id", 9)) {
            snprintf(why, cap, "an aarch64 binary seeing an x86 /proc/cpuinfo");
            break;
        }
    if (f)
        fclose(f);
}

void bench_machine(struct bench_machine *m)
{
    memset(m, 0, sizeof *m);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (!strncmp(line, "model name", 10)) {
            char *c = strchr(line, ':');
            if (c) {
                snprintf(m->cpu, sizeof m->cpu, "%s", c + 2);
                m->cpu[strcspn(m->cpu, "\n")] = 0;
            }
            break;
        }
    }
    if (f)
        fclose(f);
    m->cores = (int)sysconf(_SC_NPROCESSORS_ONLN);
    detect_emulation(m->emulated, sizeof m->emulated);
    m->kernel = elm_kernels_active()->name;
    m->unit = elm_kernels_matrix_unit(elm_kernels_active());
    m->hugepages_free = -1;
    f = fopen("/proc/meminfo", "r");
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "HugePages_Free: %ld", &m->hugepages_free) == 1)
            break;
    if (f)
        fclose(f);
    snprintf(m->thp, sizeof m->thp, "unknown");
    f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");
    if (f && fgets(line, sizeof line, f)) {
        char *a = strchr(line, '['), *b = a ? strchr(a, ']') : NULL;
        if (a && b)
            snprintf(m->thp, sizeof m->thp, "%.*s", (int)(b - a - 1), a + 1);
    }
    if (f)
        fclose(f);
}

/* One JSON line on stdout (jansson escapes the strings; the cpu name and the command line are
 * whatever the machine and the user gave). Numbers keep the 6 significant digits of the text
 * forms. */
static void json_line(json_t *j)
{
    if (j)
        json_dumpf(j, stdout, JSON_COMPACT | JSON_REAL_PRECISION(6));
    putchar('\n');
    json_decref(j);
}

void bench_print_header(const struct bench_opts *o, const char *sub)
{
    struct bench_machine m;
    bench_machine(&m);
    if (o->format == BENCH_JSON) {
        json_line(json_pack("{sssssssssisssssisIsssissss}", "type", "machine", "version",
                            ELM_VERSION_STRING, "subcommand", sub, "cpu", m.cpu, "cores", m.cores,
                            "kernel", m.kernel, "matrix_unit", m.unit, "threads", o->threads,
                            "hugepages_free", (json_int_t)m.hugepages_free, "thp", m.thp, "reps",
                            o->reps, "command", o->cmdline, "emulated", m.emulated));
    } else if (o->format == BENCH_MD) {
        printf("elm-bench %s %s — %s, %d cores, kernels %s%s, %d threads, hugepages free %ld, "
               "THP %s; median of %d runs (min–max)\ncommand: `%s`\n\n",
               ELM_VERSION_STRING, sub, m.cpu, m.cores, m.kernel,
               m.unit[0] ? " (Q4_0 prefill on AMX)" : "", o->threads, m.hugepages_free, m.thp,
               o->reps, o->cmdline);
        if (m.emulated[0])
            printf("**Emulated** (%s): the timings below measure the emulator, not the kernels; "
                   "only the results and the variant names mean anything.\n\n",
                   m.emulated);
    } else if (m.emulated[0]) {
        fprintf(stderr, "elm-bench: emulated (%s): timings measure the emulator\n", m.emulated);
    }
    fflush(stdout);
}

static char last_table[64];

void bench_row(const struct bench_opts *o, const char *table, const struct bench_cell *c, int n)
{
    bool first = strcmp(last_table, table) != 0;
    snprintf(last_table, sizeof last_table, "%s", table);
    if (o->format == BENCH_JSON) {
        json_t *j = json_pack("{ss}", "type", table);
        for (int i = 0; j && i < n; i++)
            json_object_set_new(j, c[i].name,
                                c[i].str ? json_string(c[i].str) : json_real(c[i].num));
        json_line(j);
    } else if (o->format == BENCH_CSV) {
        if (first) {
            printf("table");
            for (int i = 0; i < n; i++)
                printf(",%s", c[i].name);
            putchar('\n');
        }
        printf("%s", table);
        for (int i = 0; i < n; i++)
            c[i].str ? printf(",%s", c[i].str) : printf(",%.6g", c[i].num);
        putchar('\n');
    } else {
        if (first) {
            for (int i = 0; i < n; i++)
                printf("| %s ", c[i].name);
            printf("|\n");
            for (int i = 0; i < n; i++)
                printf(c[i].str ? "|---" : "|--:");
            printf("|\n");
        }
        for (int i = 0; i < n; i++)
            c[i].str ? printf("| %s ", c[i].str) : printf("| %.*f ", c[i].prec, c[i].num);
        printf("|\n");
    }
    fflush(stdout);
}

void bench_end_table(const struct bench_opts *o)
{
    if (o->format == BENCH_MD)
        putchar('\n');
    last_table[0] = 0;
}

void bench_progress(const char *fmt, ...)
{
    if (!isatty(2))
        return;
    if (!fmt) {
        fprintf(stderr, "\r\033[K");
        return;
    }
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "\r\033[K");
    vfprintf(stderr, fmt, ap);
    va_end(ap);
}

#if defined(__x86_64__)
/* n iterations of 12 independent int8 dot-product instructions: avx512 (zmm): vpdpbusd into 12
 * accumulator chains (12 beats its latency at two a cycle); else vpmaddubsw ymm, whose
 * destination is written only. */
static void int8_loop(long n, bool zmm)
{
/* clang-format off */
#define ELM_I8_12(OP, R) \
    OP(R, 0) OP(R, 1) OP(R, 2) OP(R, 3) OP(R, 4) OP(R, 5) OP(R, 6) OP(R, 7) OP(R, 8) OP(R, 9) \
    OP(R, 10) OP(R, 11)
/* clang-format on */
#define ELM_I8_DP(R, i)   "vpdpbusd %%" R "14, %%" R "15, %%" R #i "\n\t"
#define ELM_I8_UBSW(R, i) "vpmaddubsw %%" R "14, %%" R "15, %%" R #i "\n\t"
    if (zmm)
        __asm__ volatile("vpxord %%zmm14, %%zmm14, %%zmm14\n\tvpxord %%zmm15, %%zmm15, %%zmm15\n\t"
                         "1:\n\t" ELM_I8_12(ELM_I8_DP, "zmm") "dec %0\n\tjnz 1b\n\tvzeroupper"
                         : "+r"(n)
                         :
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                           "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc");
    else
        __asm__ volatile("vpxor %%ymm14, %%ymm14, %%ymm14\n\tvpxor %%ymm15, %%ymm15, %%ymm15\n\t"
                         "1:\n\t" ELM_I8_12(ELM_I8_UBSW, "ymm") "dec %0\n\tjnz 1b\n\tvzeroupper"
                         : "+r"(n)
                         :
                         : "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
                           "xmm9", "xmm10", "xmm11", "xmm14", "xmm15", "cc");
#undef ELM_I8_12
#undef ELM_I8_DP
#undef ELM_I8_UBSW
}
#endif

/* int8 multiply-adds a core issues per cycle (hz: the measured clock): for the avx512 and avx2
 * variants measured, the best of three loops of independent vpdpbusd zmm (64 each) or
 * vpmaddubsw ymm (32 each); for the others the assumed BENCH_INT8_MACS_PER_CYCLE. Measured
 * because cores differ by 2x: Zen 4 splits a zmm vpdpbusd in two, Zen 5 issues two a cycle. */
static double int8_macs_per_cycle(double hz)
{
#if defined(__x86_64__)
    const char *v = elm_kernels_active()->name;
    const bool zmm = strcmp(v, "avx512") == 0;
    if (!zmm && strcmp(v, "avx2") != 0)
        return BENCH_INT8_MACS_PER_CYCLE;
    const long n = 5000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        const double t0 = bench_now();
        int8_loop(n, zmm);
        const double per_cycle = 12.0 * (double)n / ((bench_now() - t0) * hz);
        if (per_cycle > best)
            best = per_cycle;
    }
    return best * (zmm ? 64 : 32);
#else
    (void)hz;
    return BENCH_INT8_MACS_PER_CYCLE;
#endif
}

double bench_int8_peak(int threads, double *hz, double *macs)
{
    const long n = 200000000;
    double best = 0;
    for (int rep = 0; rep < 3; rep++) {
        long x = 0;
        double t0 = bench_now();
        for (long i = 0; i < n; i += 4)
#if defined(__x86_64__) || defined(__i386__)
            __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
#else
            __asm__ volatile("" : "+r"(x)); /* one iteration ~ one cycle: a rough figure */
#endif
        double f = (double)n / (bench_now() - t0);
        if (f > best)
            best = f;
    }
    const double m = int8_macs_per_cycle(best);
    if (hz)
        *hz = best;
    if (macs)
        *macs = m;
    return 2.0 * m * threads * best / 1e9;
}

int bench_parse_list(const char *s, int *out, int max, int lo, int hi)
{
    int n = 0;
    while (*s) {
        char *end;
        long v = strtol(s, &end, 10);
        if (end == s || v < lo || v > hi || n == max || (*end && *end != ','))
            return -1;
        out[n++] = (int)v;
        s = *end ? end + 1 : end;
        if (*end && !*s)
            return -1; /* trailing comma */
    }
    return n ? n : -1;
}
