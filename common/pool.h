/* pool.h — the process's compute threads: one small pool of worker threads that runs the
 * parallel parts of a pass (matmul rows, attention heads, quantized rows), and decides how its
 * threads wait. Every program (elmd, `elmctl --local`, elm-bench, the tests) computes through it,
 * so they all wait the same way.
 *
 * Why our own pool rather than OpenMP: libgomp reads its wait policy (OMP_WAIT_POLICY,
 * GOMP_SPINCOUNT) once, when the program is loaded, and never again; elmd had to re-execute
 * itself to choose. A daemon needs the choice at run time: spinning at every barrier is up to 3x
 * faster on an idle machine, and 3x slower when other programs want the cores. So waiting here
 * is a policy (enum elm_wait) that can change at any moment.
 *
 * Results do not depend on the pool: elm_pool_run() says how many threads took part, and each
 * caller splits its work so that every output element is computed by one thread in a fixed
 * order (kernels/matmul.c), whatever that number is.
 */
#ifndef ELM_COMMON_POOL_H
#define ELM_COMMON_POOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELM_POOL_MAX 64 /* threads of one parallel call, the caller included */

/* How idle threads (workers between calls, the caller waiting for the workers) wait. */
enum elm_wait {
    ELM_WAIT_AUTO,    /* spin briefly (ELM_POOL_SPIN_NS) while the machine has a free core for
                       * each thread, sleep at once while other programs want them (pool.c) */
    ELM_WAIT_PASSIVE, /* sleep at once (a futex), like OMP_WAIT_POLICY=passive */
    ELM_WAIT_ACTIVE,  /* spin for long (ELM_POOL_SPIN_ACTIVE_NS), like OMP_WAIT_POLICY=active */
};

/* Worker threads are named "elm-pool" (/proc/PID/task/TID/comm). */

/* The body of a parallel call: thread `me` of `nth` (0 is the caller). */
typedef void (*elm_pool_fn)(void *ctx, int me, int nth);

/* Runs fn(ctx, me, nth) on nth threads, me = 0 on the calling thread, and returns when all
 * have returned. nth is at most `want` (clamped to 1..ELM_POOL_MAX); fewer when threads cannot
 * be created, and 1 (fn runs on the caller alone) when another thread is inside a parallel call
 * or the caller is itself a pool thread. */
void elm_pool_run(int want, elm_pool_fn fn, void *ctx);

/* Threads a parallel product uses (like omp_get_max_threads): set by elm_pool_set_threads,
 * else the environment's ELM_THREADS, else the CPUs this process may run on. */
int elm_pool_threads(void);
/* n <= 0: back to the default. */
void elm_pool_set_threads(int n);

/* The wait policy: set by elm_pool_set_wait, else the environment's ELM_WAIT (auto, passive or
 * active), else auto. */
enum elm_wait elm_pool_wait(void);
void elm_pool_set_wait(enum elm_wait w);
/* "auto", "passive", "active" to the policy; -EINVAL for anything else. */
int elm_pool_wait_parse(const char *s, enum elm_wait *out);
const char *elm_pool_wait_name(enum elm_wait w);

/* Whether idle threads spin now (active, or auto while the machine has a free core for each):
 * a parallel call then costs ~1-2 us for a worker to join, not a wake-up from sleep. */
bool elm_pool_spins(void);

/* What the pool did so far (for tests, `elm-bench` and elmd's stats): counters only grow, so
 * the difference of two snapshots is what happened between them. */
#define ELM_POOL_HIST 4
struct elm_pool_stats {
    int n_workers;          /* worker threads alive now */
    int n_asleep;           /* of which asleep in futex_wait now */
    uint64_t n_runs;        /* parallel calls with more than one thread */
    uint64_t n_sleeps;      /* times a thread went to sleep (a futex wait) */
    uint64_t n_spin_sleeps; /* of which after spinning for a whole budget in vain */
    /* every policy samples the machine; only auto acts on the samples (pool.c) */
    uint64_t n_busy;    /* samples whose team waited for a core over 1/10 of the time */
    uint64_t n_samples; /* samples of the machine taken */
    uint64_t n_probes;  /* auto, busy: probes (a few calls spun to see whether cores are free) */
    uint64_t n_probes_free; /* of which found a free core for each thread (spinning resumed) */
    bool busy;              /* auto: the machine is busy now (threads sleep at once) */
    /* samples by the share of the team's time spent waiting for a core: under 1 %,
     * under 1/10 (the busy threshold), under 1/2, more */
    uint64_t delay_hist[ELM_POOL_HIST];
    /* gaps from the end of one parallel call to the start of the next: under 0.1 ms, under
     * 1 ms (auto's spin), under 10 ms, more */
    uint64_t gap_hist[ELM_POOL_HIST];
};
void elm_pool_stats(struct elm_pool_stats *st);
/* acc's counters += to's - from's (the gauges n_workers, n_asleep and busy become to's): what
 * the pool did between two snapshots, summed over measurements. */
void elm_pool_stats_add(struct elm_pool_stats *acc, const struct elm_pool_stats *from,
                        const struct elm_pool_stats *to);
/* The counters in one line (no commas, so it fits a CSV cell): "busy B/S samples, delay share
 * <1/<10/<50/more % a/b/c/d, gaps <0.1/<1/<10/more ms a/b/c/d, Z sleeps (P after a spin),
 * probes R (F free)"
 * — with the commas of this comment as ';'. Returns snprintf's count. */
int elm_pool_stats_describe(const struct elm_pool_stats *st, char *buf, size_t size);

/* ---- auto's decision, apart from the threads so that tests can feed it samples ---------- */

/* The state of the decision (pool.c, at its top, says why it decides so). Zeroed: not busy. */
struct elm_wait_judge {
    int score;          /* 0..256: the smoothed share of recent samples that were over */
    bool busy;          /* threads sleep at once ... */
    int probe;          /* ... except in a probe: 0 none, 1 waking the threads, 2+ measuring */
    int64_t next_probe; /* busy: when to probe (the caller's monotonic clock, ns) */
    int64_t backoff;    /* busy: the wait between probes, doubling while they fail */
};
/* A judge as the pool starts one: spinning, on probation (the first sample over: busy). */
void elm_wait_judge_start(struct elm_wait_judge *j);
/* One sample: over span_ns of thread time (the team's threads times the interval since the
 * last sample) the team waited waited_ns for a core (< 0: the kernel does not tell), spinning
 * or sleeping as the previous call said. now_ns: a monotonic clock. Returns true when the
 * threads should spin until the next sample. */
bool elm_wait_judge_sample(struct elm_wait_judge *j, int64_t now_ns, int64_t waited_ns,
                           int64_t span_ns);
/* Is the next sample due, `calls` parallel calls and elapsed_ns after the last one? Every
 * SAMPLE_NS normally; during a probe after its few calls (pool.c). */
bool elm_wait_judge_due(const struct elm_wait_judge *j, int calls, int64_t elapsed_ns);

/* Stops and joins every worker (the next parallel call starts them again). For tests and for
 * tools that want no thread left; never call it from inside a parallel call. */
void elm_pool_shutdown(void);

#endif
