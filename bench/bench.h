/* bench.h — elm-bench's shared pieces: options every subcommand takes, timing and statistics,
 * the machine description, and result output (Markdown table, JSON lines or CSV).
 *
 * Every measurement is warmed up, repeated (>= 5 times by default) and reported as median with
 * min and max. Comparisons are measured in the same run, alternating A and B, and reported as
 * ratios, because the machines elm runs on are noisy.
 */
#ifndef ELM_BENCH_H
#define ELM_BENCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/pool.h"

enum bench_format { BENCH_MD, BENCH_JSON, BENCH_CSV };

struct bench_opts {
    enum bench_format format;
    int reps;        /* repetitions per measurement (after one warm-up) */
    int threads;     /* 0: physical cores */
    bool quick;      /* small sizes, for the test suite */
    const char *plot;/* SVG path, or NULL */
    const char *cmdline; /* the exact command, echoed in the output */
};

/* Monotonic time in seconds. */
double bench_now(void);

struct bench_stat {
    double median, min, max;
};
/* Parses "A,B,C" into at most max integers in [lo, hi]; returns the count, or -1. */
int bench_parse_list(const char *s, int *out, int max, int lo, int hi);

/* Sorts v in place and summarises it. */
struct bench_stat bench_stats(double *v, int n);
/* The same over the finite values of v only (NAN marks a repetition excluded as not physical);
 * *n_kept gets their number, and all three figures are 0 when none is left. */
struct bench_stat bench_stats_finite(double *v, int n, int *n_kept);

/* ---- sanity: one rule for figures that cannot be physical ----------------------------------- */

/* No event elm-bench times (a token, a round trip, a matrix product) takes under a microsecond.
 * A rate whose span gives each event less, or that spans under 1000 ticks of the clock, was not
 * measured as the events happened (e.g. a client reading a backlog of tokens at once): such a
 * repetition is excluded, or the row flagged, never reported as a result. */
#define BENCH_MIN_EVENT_S 1e-6
bool bench_span_resolved(double span_s, double n_events);
/* The p-th percentile (0..100) of n sorted values, by linear interpolation. */
double bench_percentile(const double *sorted, int n, double p);

/* ---- results ------------------------------------------------------------------------------- */

/* A result row is a list of named cells; numbers keep their unit in the column name. */
struct bench_cell {
    const char *name;
    const char *str; /* when non-NULL, a text cell */
    double num;
    int prec;        /* decimals for the Markdown table */
};

/* Prints the header block (machine, kernel variant, command) once per run. */
void bench_print_header(const struct bench_opts *o, const char *subcommand);
/* Prints one row in the chosen format; the first row of a table prints its header too. */
void bench_row(const struct bench_opts *o, const char *table, const struct bench_cell *cells,
               int n);
/* Ends the current table (a blank line in Markdown). */
void bench_end_table(const struct bench_opts *o);

/* A progress line on stderr (overwritten in place); NULL clears it. */
void bench_progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- machine ------------------------------------------------------------------------------- */

struct bench_machine {
    char cpu[128];
    int cores;           /* online CPUs */
    const char *kernel;  /* active kernel variant */
    const char *unit;    /* "AMX" when its Q4_0 prefill runs there, else "" (kernels.h) */
    long hugepages_free; /* explicit 2 MiB pages free */
    char thp[32];        /* transparent hugepage mode */
    char emulated[96];   /* why timings mean nothing here (an emulator), or "" */
};
void bench_machine(struct bench_machine *m);

/* int8 multiply-adds per cycle per core assumed where the peak is not measured (variants other
 * than avx512 and avx2): two 256-bit dot products a cycle. */
#define BENCH_INT8_MACS_PER_CYCLE 64
/* The int8 dot-product peak of `threads` cores in GFLOP/s (2 per multiply-add) at the clock
 * measured here (a chain of dependent adds runs at one per cycle; a VM's nominal MHz says
 * little about turbo), with the multiply-adds a core issues per cycle measured for the active
 * variant (bench_report.c). *hz gets the clock, *macs the multiply-adds per cycle (either may
 * be NULL). Takes about half a second. */
double bench_int8_peak(int threads, double *hz, double *macs);

/* Synthetic models (synth.c): writes (or finds in the cache) the GGUF for SHAPE:TYPE, e.g.
 * "tinyllama-1.1b:q4_0", and puts its path in path. Returns 0 or an error with a message. */
int bench_synth(const char *spec, char *path, size_t pathlen, char *err, size_t errlen);
const char *bench_synth_shapes(void);

/* The decode roofline (bench_stream.c). A decode step streams every weight once, so tg is judged
 * by the weight bytes it streams per second against the machine's streaming-read bandwidth,
 * probed in the same repetition so that a noisy neighbour hits both. The probe buffer: `words`
 * words, every page touched (NULL when out of memory); one probe sums it with `threads` pool
 * threads and returns GB/s (sink keeps the sums alive); a step's bytes are every weight but the
 * token-embedding table (of which it reads one row), unless the output projection shares it. */
struct elm_model;
size_t bench_stream_bytes(bool quick); /* the probe buffer's size (--quick: smaller) */
uint64_t *bench_stream_buffer(size_t words);
double bench_stream_once(const uint64_t *buf, size_t words, int threads, uint64_t *sink);
/* Probes over and over for at least `seconds` (one probe at least) and returns the bytes over the
 * time: one probe of 1 GiB lasts about a tenth of a second, a decode seconds, and a neighbour's
 * burst should weigh the same in both. */
double bench_stream_for(const uint64_t *buf, size_t words, int threads, double seconds,
                        uint64_t *sink);
double bench_decode_bytes(const struct elm_model *m);

/* bench_model's measurement of one model file: loaded with `threads`, pp random prompt tokens
 * in batches of `batch`, then tg decoded one at a time (F16 cache), o->reps times after a
 * warm-up. Returns 0, or 1 after a message on stderr. */
struct bench_model_result {
    struct bench_stat pp, tg;   /* tokens/s (tg all 0 for an embedding model) */
    double weight_bytes;        /* the model's weights in memory */
    double matmul_weights;      /* weights one token multiplies (layer matrices and the output) */
    double decode_bytes;        /* bytes one decode step streams (bench_decode_bytes) */
    struct bench_stat tg_gbs;   /* decode_bytes x tg t/s, GB/s */
    struct bench_stat stream;   /* the stream probe run after each tg, GB/s */
    struct bench_stat tg_pct;   /* per repetition tg_gbs / stream, in % */
    struct bench_stat tg_vs_first; /* per repetition tg / the first policy's tg (bench_model.c) */
    enum elm_wait wait;            /* the policy it ran under */
    struct elm_pool_stats pool; /* what the compute threads did in the measured tg runs */
};
/* waits[0..n_wait-1] (n_wait <= BENCH_MAX_WAIT): policies that take turns repetition by
 * repetition, res[k] for waits[k]; n_wait 0: the pool's policy, res[0] alone. */
#define BENCH_MAX_WAIT 3 /* passive, active, auto */
int bench_model_measure(const struct bench_opts *o, const char *path, int threads, int pp, int tg,
                        int batch, const enum elm_wait *waits, int n_wait,
                        struct bench_model_result *res);

/* Subcommands: argc/argv start after the subcommand name; return the exit code. */
int bench_model(const struct bench_opts *o, int argc, char **argv);
int bench_kernels(const struct bench_opts *o, int argc, char **argv);
int bench_ipc(const struct bench_opts *o, int argc, char **argv);
int bench_load(const struct bench_opts *o, int argc, char **argv);
/* The largest share of a "cold" file's pages allowed in the page cache when its run starts. */
#define BENCH_COLD_MAX 0.01
/* bench_cold.c: the share of path's pages in the page cache (mincore on a mapping), or -1 when
 * it cannot be told. */
double bench_resident_share(const char *path);
/* bench_cold.c: a fresh copy of src written with O_DIRECT (never through the page cache) in dir
 * (NULL: src's directory), checked with mincore to be at most 1 % cached: its path in out and
 * the share measured in *resident. The caller unlinks it. 0, or -1 with a message in err. */
int bench_cold_copy(const char *src, const char *dir, char *out, size_t cap, double *resident,
                    char *err, size_t errlen);
/* bench_first.c: the first-token tables of `elm-bench load` (cold_dir not NULL: cold, the
 * --local runs load a fresh O_DIRECT copy of the model made there; "" for the model's own
 * directory). 0 or 1 with a message on stderr. */
int bench_first_token(const struct bench_opts *o, const char *path, const char *cold_dir);
int bench_serve(const struct bench_opts *o, int argc, char **argv);
int bench_profile(const struct bench_opts *o, int argc, char **argv);
int bench_compress(const struct bench_opts *o, int argc, char **argv);

#endif
