/* pool.c — the compute threads and how they wait (pool.h says why this is not OpenMP).
 *
 * Mechanism: each worker has its own futex word `go`, which the caller bumps to hand it a job;
 * the caller runs share 0 itself, then waits until `pending` (workers still working) is 0. A
 * waiting thread first spins on its word for a budget of time, then sleeps in futex_wait; the
 * other side calls futex_wake only when the waiter said it sleeps. The two sides order "I changed
 * the word" and "I sleep" with sequentially consistent atomics (store, then load the other's
 * flag), so one of them always sees the other: a wake-up is never lost, and an awake thread
 * costs no system call.
 *
 * Policy (ELM_WAIT_AUTO): spinning pays only when each spinning thread has a core of its own.
 * Once other programs want the cores, a spinning worker burns the time slice that the thread it
 * waits for needs (two cores, two busy loops: 3x slower than sleeping at once). So at most every
 * SAMPLE_NS the caller asks the kernel how long the team's threads (itself and the workers of
 * this call) waited on a run queue since the last look: runnable, but no core free for them
 * (schedstat's run delay). Waiting more than 1/DELAY_SHARE of the time makes a sample "over".
 * The judge (elm_wait_judge_sample) reads the samples knowing how the threads waited:
 *   - spinning, a sample's run delay is other work's doing alone: a smoothed score of them
 *     (one sample does not stop spinning; four over in a row do) makes the machine busy, and
 *     threads sleep at once, as with OMP_WAIT_POLICY=passive. A new process starts on
 *     probation: the score just under the line, so the first sample over makes the machine
 *     busy (a program started beside busy loops would otherwise spin through four samples,
 *     and a short request pays that: a spun call there can last a time slice), while samples
 *     under soon make it as patient as above; spinning after a probe that found free cores
 *     needs two samples over in a row (judge_free says why);
 *   - sleeping, the run delay also holds our own wake-ups (each sleeping thread is runnable a
 *     while before it runs again, on a virtual machine the more), and with ~100 parallel calls
 *     per token those alone can pass the tenth on an idle machine: such a sample proves
 *     nothing, and a busy machine that scored on them alone would never leave the busy state.
 *     So while busy the threads probe: they spin through a few parallel calls, sampling at
 *     each: the call that wakes them (no verdict: it holds the wake-ups), one call, another,
 *     then PROBE_SPAN_NS (a time slice or two: a neighbour on the core preempts a spinning
 *     thread within that). The first interval over ends the probe, so on a busy machine a
 *     probe costs about two spun calls; all under means a free core for each team thread, and
 *     spinning resumes at once (two samples over in a row return to sleeping).
 *     Probes come PROBE_FIRST_NS after the machine turned busy, then twice as far apart after
 *     each failed one, up to PROBE_MAX_NS; a sleeping sample under the tenth probes at once.
 *     So a machine gone idle is found within PROBE_MAX_NS (plus a sample and a probe) at
 *     worst, and in practice at the next sleeping sample under the tenth.
 * Spinning lasts ELM_POOL_SPIN_NS, long enough to cover the gaps between the products of a pass
 * and between the passes of a running sequence, short enough that an idle daemon sleeps within
 * a millisecond of its last pass. Where the kernel does not tell (no schedstat) every sample is
 * over: without knowing, sleeping is the safe side.
 *
 * Why the probe is short: the first probe spun through a whole sample (10 ms or more) each
 * second, and beside two busy loops a spun call can last a whole time slice (the thread it
 * waits for is preempted); with it auto served 0.59 of passive's tokens with 8 clients of a
 * small model (docs/benchmarks.md, "Waiting").
 *
 * Why not count runnable threads (/proc/loadavg's fourth field, the first version of this
 * rule): it counts whoever is runnable at that instant, and in elmd that is often our own
 * clients, woken by the token the pass just pushed and still reading it when the next pass
 * starts; on 2 cores one such thread beside a team of 2 made a sample "busy". That is how auto
 * fell to 0.77 of active with one client on an idle machine, 0.88 with eight
 * (docs/benchmarks.md); a run delay grows only when a thread of ours actually lacks a core,
 * which a client's few microseconds per token hardly cause. Steal
 * time (/proc/stat) would only see another virtual machine, never a busy loop beside us.
 */
#include "common/pool.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define ELM_POOL_SPIN_NS        1000000LL    /* auto, machine not busy: 1 ms */
#define ELM_POOL_SPIN_ACTIVE_NS 200000000LL  /* active: 0.2 s, then sleep after all */
#define SAMPLE_NS               10000000LL   /* auto: look at the machine every 10 ms at most */
#define SAMPLE_STALE_NS         200000000LL  /* a longer interval was mostly asleep: no verdict */
#define DELAY_SHARE             10           /* busy: waited for a core > 1/10 of the time */
#define SCORE_ONE               256          /* the busy score is a fraction of this */
#define SCORE_ENTER             160          /* busy from this score up (4 samples over in a row) */
#define SCORE_PROBED            120          /* after a free probe: 2 samples over in a row */
#define PROBE_FIRST_NS          1000000000LL /* busy: the first probe a second after */
#define PROBE_MAX_NS            16000000000LL /* failing probes back off up to 16 s apart */
#define PROBE_SHORT             2             /* a probe's first intervals: one call each ... */
#define PROBE_SPAN_NS           5000000LL     /* ... its last one this long at least */

#if defined(__x86_64__) || defined(__i386__)
static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}
#elif defined(__aarch64__)
static inline void cpu_relax(void)
{
    __asm__ volatile("yield" ::: "memory");
}
#else
static inline void cpu_relax(void)
{
}
#endif

/* One worker; its line is written by the caller (the job) and by the worker (asleep). */
struct worker {
    _Alignas(64) _Atomic uint32_t go; /* futex word: bumped once per job for this worker */
    atomic_bool asleep;               /* in futex_wait on go (or about to be) */
    elm_pool_fn fn;                   /* the job, written before go is bumped */
    void *ctx;
    int me, nth;
    uint32_t seen;   /* go's value when the worker was started */
    atomic_int ktid; /* its kernel thread id (for its schedstat), 0 until it runs */
    pthread_t tid;
};

static struct {
    pthread_mutex_t lock; /* one parallel call at a time; taken with trylock */
    int n_workers;        /* [lock] */
    struct worker w[ELM_POOL_MAX - 1];
    _Alignas(64) atomic_int pending; /* futex word: workers of this call not done yet */
    atomic_bool joiner_asleep;       /* the caller sleeps on pending */
    atomic_bool stop;                /* shutdown: workers return */
    _Alignas(64) atomic_int threads; /* elm_pool_set_threads; 0: default */
    atomic_int wait;                 /* enum elm_wait */
    atomic_llong spin_ns;            /* what waiting threads spin before they sleep */
    int n_cpu, env_threads;          /* set once */
    int64_t last_sample;             /* [lock] */
    int64_t last_delay;              /* [lock] the team's run delay then, or -1: no verdict */
    int last_tid, last_nth;          /* [lock] whose team it was */
    int last_calls;                  /* [lock] parallel calls since */
    struct elm_wait_judge judge;     /* [lock] auto's decision */
    atomic_bool spin;                /* auto: what the judge said last (spin, or sleep at once) */
    int64_t last_end;                /* [lock] when the last parallel call ended */
    _Atomic uint64_t n_runs, n_sleeps, n_spin_sleeps, n_busy, n_samples, n_probes, n_probes_free;
    _Atomic uint64_t delay_hist[ELM_POOL_HIST], gap_hist[ELM_POOL_HIST]; /* pool.h */
} pool = {.lock = PTHREAD_MUTEX_INITIALIZER};

static pthread_once_t once = PTHREAD_ONCE_INIT;
static _Thread_local bool in_pool; /* a pool thread, or a caller inside elm_pool_run */
static _Thread_local int my_tid;   /* gettid(), cached */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void futex_wait(void *word, uint32_t val)
{
    syscall(SYS_futex, word, FUTEX_WAIT_PRIVATE, val, NULL, NULL, 0);
}

static void futex_wake(void *word)
{
    syscall(SYS_futex, word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

/* ---- policy ------------------------------------------------------------------------------- */

/* The bucket of a histogram with these three upper bounds. */
static int bucket(int64_t v, int64_t b0, int64_t b1, int64_t b2)
{
    return v < b0 ? 0 : v < b1 ? 1 : v < b2 ? 2 : 3;
}

static void count(_Atomic uint64_t *c)
{
    atomic_fetch_add_explicit(c, 1, memory_order_relaxed);
}

static int64_t spin_for(enum elm_wait w, bool spin)
{
    if (w == ELM_WAIT_ACTIVE)
        return ELM_POOL_SPIN_ACTIVE_NS;
    if (w == ELM_WAIT_PASSIVE || !spin)
        return 0;
    return ELM_POOL_SPIN_NS;
}

static int gettid_cached(void)
{
    if (!my_tid)
        my_tid = (int)syscall(SYS_gettid);
    return my_tid;
}

/* Nanoseconds thread tid of this process spent runnable but not running, or -1 (unknown). */
static int64_t run_delay(int tid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/schedstat", tid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[96];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = 0;
    long long on_cpu, delay;
    /* "on-cpu-ns run-delay-ns timeslices" */
    return sscanf(buf, "%lld %lld", &on_cpu, &delay) == 2 && delay >= 0 ? delay : -1;
}

/* The run delay of the team of a call of nth (the caller and workers 0..nth-2); -1 when the
 * kernel does not tell, -2 when a worker has not started yet. */
static int64_t team_delay(int nth)
{
    int64_t sum = run_delay(gettid_cached());
    for (int i = 0; i < nth - 1 && sum >= 0; i++) {
        int tid = atomic_load_explicit(&pool.w[i].ktid, memory_order_relaxed);
        int64_t d = tid ? run_delay(tid) : -2;
        sum = d < 0 ? d : sum + d;
    }
    return sum;
}

/* The line: did the team wait for a core over 1/DELAY_SHARE of its span? No schedstat
 * (waited < 0): counted as over (the top says why). */
static bool is_over(int64_t waited, int64_t span)
{
    return waited < 0 || waited * DELAY_SHARE > span;
}

void elm_wait_judge_start(struct elm_wait_judge *j)
{
    *j = (struct elm_wait_judge){.score = SCORE_ENTER - 1};
}

/* The probe found free cores: spinning, and two samples over in a row (not one) sleep again.
 * The probe's three intervals under are better evidence than a new process has, and on a busy
 * machine the samples are over in long runs (the busy rows of docs/benchmarks.md: every probe
 * failed, nearly every sample over), so a lucky probe costs one sample more of spinning; on an
 * idle one an isolated sample over (our own clients, woken by each token, are runnable beside
 * the team too) no longer sends the threads to sleep until a sleeping sample under and another
 * probe. */
static void judge_free(struct elm_wait_judge *j)
{
    *j = (struct elm_wait_judge){.score = SCORE_PROBED};
}

bool elm_wait_judge_sample(struct elm_wait_judge *j, int64_t now, int64_t waited, int64_t span)
{
    const bool over = is_over(waited, span);
    if (!j->busy) {
        /* spinning: the share is other work's alone */
        j->score += ((over ? SCORE_ONE : 0) - j->score) / 4;
        if (j->score >= SCORE_ENTER) {
            j->busy = true;
            j->backoff = PROBE_FIRST_NS;
            j->next_probe = now + j->backoff;
        }
    } else if (j->probe == 1) {
        /* the call that woke the threads: its interval holds their wake-ups, no verdict */
        j->probe = 2;
    } else if (j->probe >= 2) {
        /* spinning through the probe's intervals: the first one over ends it (busy cores back
         * the next probe off); all under, free cores for the team leave the busy state at
         * once (judge_free) */
        if (over) {
            j->probe = 0;
            j->backoff = j->backoff * 2 > PROBE_MAX_NS ? PROBE_MAX_NS : j->backoff * 2;
            j->next_probe = now + j->backoff;
        } else if (j->probe < 2 + PROBE_SHORT) {
            j->probe++;
        } else {
            judge_free(j);
        }
    } else if (!over || now >= j->next_probe) {
        /* asleep: the share counts our own wake-ups too, so "over" proves nothing; probe when
         * due (at once when even this share was under) */
        j->probe = 1;
    }
    return !j->busy || j->probe;
}

bool elm_wait_judge_due(const struct elm_wait_judge *j, int calls, int64_t elapsed)
{
    if (j->probe == 0)
        return elapsed >= SAMPLE_NS;
    if (j->probe < 2 + PROBE_SHORT)
        return calls >= 1;
    return elapsed >= PROBE_SPAN_NS;
}

/* Samples the machine for a team of nth, and with decide (auto) lets the judge choose whether
 * the threads spin. Called by the caller, under the lock. A sample compares the team's run
 * delay with the previous sample's, taken by the same caller for the same team not too long
 * ago; otherwise it only sets the baseline. Every policy samples, so the counters (pool.h)
 * compare the policies' machines alike. */
static void sample_machine(int nth, bool decide)
{
    static const struct elm_wait_judge unjudged; /* the others sample every SAMPLE_NS */
    const int64_t t = now_ns();
    if (!elm_wait_judge_due(decide ? &pool.judge : &unjudged, pool.last_calls,
                            t - pool.last_sample))
        return;
    const int64_t delay = team_delay(nth);
    if (delay == -2)
        return;
    const int me = gettid_cached();
    const bool comparable = pool.last_sample && pool.last_tid == me && pool.last_nth == nth &&
                            t - pool.last_sample <= SAMPLE_STALE_NS && pool.last_delay >= 0;
    const int64_t waited = delay - pool.last_delay, span = (t - pool.last_sample) * nth;
    pool.last_sample = t;
    pool.last_delay = delay;
    pool.last_tid = me;
    pool.last_nth = nth;
    pool.last_calls = 0;
    if (delay >= 0 && !comparable)
        return;
    const int64_t w = delay < 0 ? -1 : waited;
    if (decide) {
        const bool measured = pool.judge.probe >= 2;
        atomic_store_explicit(&pool.spin, elm_wait_judge_sample(&pool.judge, t, w, span),
                              memory_order_relaxed);
        if (measured && (pool.judge.probe == 0 || !pool.judge.busy)) {
            count(&pool.n_probes);
            if (!pool.judge.busy)
                count(&pool.n_probes_free);
        }
    }
    count(&pool.n_samples);
    if (is_over(w, span))
        count(&pool.n_busy);
    if (delay >= 0)
        count(&pool.delay_hist[bucket(waited * 100, span, span * 100 / DELAY_SHARE, span * 50)]);
}

/* Waits until *word differs from old: spins for the budget, then sleeps. Returns the new value. */
static uint32_t wait_change(_Atomic uint32_t *word, uint32_t old, atomic_bool *asleep)
{
    const int64_t budget = atomic_load_explicit(&pool.spin_ns, memory_order_relaxed);
    uint32_t v;
    if (budget > 0) {
        const int64_t end = now_ns() + budget;
        for (unsigned i = 1;; i++) {
            if ((v = atomic_load_explicit(word, memory_order_acquire)) != old)
                return v;
            if (i % 64 == 0 && now_ns() >= end)
                break;
            cpu_relax();
        }
        count(&pool.n_spin_sleeps);
    }
    count(&pool.n_sleeps);
    atomic_store(asleep, true);
    while ((v = atomic_load(word)) == old)
        futex_wait(word, old);
    atomic_store_explicit(asleep, false, memory_order_relaxed);
    return v;
}

/* ---- threads ------------------------------------------------------------------------------ */

static void *worker_main(void *arg)
{
    struct worker *w = arg;
    uint32_t seen = w->seen;
    in_pool = true;
    atomic_store_explicit(&w->ktid, gettid_cached(), memory_order_relaxed);
    pthread_setname_np(pthread_self(), "elm-pool"); /* top, perf and tests tell workers apart */
    for (;;) {
        seen = wait_change(&w->go, seen, &w->asleep);
        if (atomic_load_explicit(&pool.stop, memory_order_acquire))
            return NULL;
        w->fn(w->ctx, w->me, w->nth);
        if (atomic_fetch_sub(&pool.pending, 1) == 1 && atomic_load(&pool.joiner_asleep))
            futex_wake(&pool.pending);
    }
}

/* Starts workers until there are n (fewer if the system refuses). Under the lock. Workers block
 * every signal, so a program's signals go to its own threads. */
static void grow(int n)
{
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    while (pool.n_workers < n) {
        struct worker *w = &pool.w[pool.n_workers];
        w->seen = atomic_load(&w->go);
        atomic_store(&w->asleep, false);
        atomic_store(&w->ktid, 0);
        if (pthread_create(&w->tid, NULL, worker_main, w) != 0)
            break;
        pool.n_workers++;
    }
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
}

/* A child of fork() has only the thread that forked: it starts with no workers. */
static void after_fork_child(void)
{
    pthread_mutex_init(&pool.lock, NULL);
    pool.n_workers = 0;
    my_tid = 0; /* the forking thread's id was cached; this one has its own */
    pool.last_sample = 0;
    pool.last_calls = 0;
    pool.last_end = 0;
    for (int i = 0; i < ELM_POOL_MAX - 1; i++)
        atomic_store(&pool.w[i].asleep, false);
    atomic_store(&pool.pending, 0);
    atomic_store(&pool.joiner_asleep, false);
}

static void init(void)
{
    cpu_set_t set;
    pool.n_cpu = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : 0;
    if (pool.n_cpu < 1)
        pool.n_cpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
    if (pool.n_cpu < 1)
        pool.n_cpu = 1;
    const char *s = getenv("ELM_THREADS");
    char *end;
    long n = s ? strtol(s, &end, 10) : 0;
    pool.env_threads = s && *s && !*end && n > 0 && n <= ELM_POOL_MAX ? (int)n : 0;
    enum elm_wait w = ELM_WAIT_AUTO;
    s = getenv("ELM_WAIT");
    if (s && elm_pool_wait_parse(s, &w) != 0)
        fprintf(stderr, "elm: ELM_WAIT=%s is not auto, passive or active; using auto\n", s);
    atomic_store(&pool.wait, (int)w);
    elm_wait_judge_start(&pool.judge);
    atomic_store(&pool.spin, true);
    atomic_store(&pool.spin_ns, spin_for(w, true));
    pthread_atfork(NULL, NULL, after_fork_child);
}

/* ---- the interface ------------------------------------------------------------------------ */

void elm_pool_run(int want, elm_pool_fn fn, void *ctx)
{
    pthread_once(&once, init);
    int nth = want < 1 ? 1 : want > ELM_POOL_MAX ? ELM_POOL_MAX : want;
    if (nth == 1 || in_pool || pthread_mutex_trylock(&pool.lock) != 0) {
        fn(ctx, 0, 1);
        return;
    }
    in_pool = true;
    if (pool.n_workers < nth - 1)
        grow(nth - 1);
    if (nth > pool.n_workers + 1)
        nth = pool.n_workers + 1;
    if (pool.last_end)
        count(&pool.gap_hist[bucket(now_ns() - pool.last_end, 100000, 1000000, 10000000)]);
    const enum elm_wait wp = (enum elm_wait)atomic_load_explicit(&pool.wait, memory_order_relaxed);
    sample_machine(nth, wp == ELM_WAIT_AUTO);
    atomic_store_explicit(&pool.spin_ns, spin_for(wp, atomic_load(&pool.spin)),
                          memory_order_relaxed);
    atomic_fetch_add_explicit(&pool.n_runs, 1, memory_order_relaxed);
    pool.last_calls++;

    atomic_store(&pool.pending, nth - 1);
    for (int i = 0; i < nth - 1; i++) {
        struct worker *w = &pool.w[i];
        w->fn = fn;
        w->ctx = ctx;
        w->me = i + 1;
        w->nth = nth;
        atomic_fetch_add(&w->go, 1);
        if (atomic_load(&w->asleep))
            futex_wake(&w->go);
    }
    fn(ctx, 0, nth);

    /* wait for the workers: the same budget, then sleep on pending */
    const int64_t budget = atomic_load_explicit(&pool.spin_ns, memory_order_relaxed);
    const int64_t end = budget > 0 ? now_ns() + budget : 0;
    int p;
    for (unsigned i = 1; (p = atomic_load(&pool.pending)) != 0; i++) {
        if (budget == 0 || (i % 64 == 0 && now_ns() >= end)) {
            if (budget > 0)
                count(&pool.n_spin_sleeps);
            count(&pool.n_sleeps);
            atomic_store(&pool.joiner_asleep, true);
            while ((p = atomic_load(&pool.pending)) != 0)
                futex_wait(&pool.pending, (uint32_t)p);
            atomic_store(&pool.joiner_asleep, false);
            break;
        }
        cpu_relax();
    }
    pool.last_end = now_ns();
    in_pool = false;
    pthread_mutex_unlock(&pool.lock);
}

int elm_pool_threads(void)
{
    pthread_once(&once, init);
    int n = atomic_load_explicit(&pool.threads, memory_order_relaxed);
    if (n <= 0)
        n = pool.env_threads > 0 ? pool.env_threads : pool.n_cpu;
    return n > ELM_POOL_MAX ? ELM_POOL_MAX : n;
}

void elm_pool_set_threads(int n)
{
    pthread_once(&once, init);
    atomic_store(&pool.threads, n > 0 ? n : 0);
}

enum elm_wait elm_pool_wait(void)
{
    pthread_once(&once, init);
    return (enum elm_wait)atomic_load(&pool.wait);
}

void elm_pool_set_wait(enum elm_wait w)
{
    pthread_once(&once, init);
    atomic_store(&pool.wait, (int)w);
    atomic_store(&pool.spin_ns, spin_for(w, atomic_load(&pool.spin)));
}

bool elm_pool_spins(void)
{
    pthread_once(&once, init);
    return atomic_load_explicit(&pool.spin_ns, memory_order_relaxed) > 0;
}

static const char *const wait_names[] = {
    [ELM_WAIT_AUTO] = "auto", [ELM_WAIT_PASSIVE] = "passive", [ELM_WAIT_ACTIVE] = "active"};

int elm_pool_wait_parse(const char *s, enum elm_wait *out)
{
    for (int i = 0; i < (int)(sizeof wait_names / sizeof *wait_names); i++)
        if (strcmp(s, wait_names[i]) == 0) {
            *out = (enum elm_wait)i;
            return 0;
        }
    return -EINVAL;
}

const char *elm_pool_wait_name(enum elm_wait w)
{
    return (unsigned)w < sizeof wait_names / sizeof *wait_names ? wait_names[w] : "?";
}

void elm_pool_stats(struct elm_pool_stats *st)
{
    pthread_once(&once, init);
    pthread_mutex_lock(&pool.lock);
    st->n_workers = pool.n_workers;
    st->n_asleep = 0;
    for (int i = 0; i < pool.n_workers; i++)
        st->n_asleep += atomic_load(&pool.w[i].asleep);
    pthread_mutex_unlock(&pool.lock);
    st->n_runs = atomic_load(&pool.n_runs);
    st->n_sleeps = atomic_load(&pool.n_sleeps);
    st->n_spin_sleeps = atomic_load(&pool.n_spin_sleeps);
    for (int i = 0; i < ELM_POOL_HIST; i++) {
        st->delay_hist[i] = atomic_load(&pool.delay_hist[i]);
        st->gap_hist[i] = atomic_load(&pool.gap_hist[i]);
    }
    st->n_busy = atomic_load(&pool.n_busy);
    st->n_samples = atomic_load(&pool.n_samples);
    st->n_probes = atomic_load(&pool.n_probes);
    st->n_probes_free = atomic_load(&pool.n_probes_free);
    st->busy = !atomic_load(&pool.spin);
}

void elm_pool_stats_add(struct elm_pool_stats *acc, const struct elm_pool_stats *from,
                        const struct elm_pool_stats *to)
{
    acc->n_workers = to->n_workers;
    acc->n_asleep = to->n_asleep;
    acc->busy = to->busy;
    acc->n_runs += to->n_runs - from->n_runs;
    acc->n_sleeps += to->n_sleeps - from->n_sleeps;
    acc->n_spin_sleeps += to->n_spin_sleeps - from->n_spin_sleeps;
    acc->n_busy += to->n_busy - from->n_busy;
    acc->n_samples += to->n_samples - from->n_samples;
    acc->n_probes += to->n_probes - from->n_probes;
    acc->n_probes_free += to->n_probes_free - from->n_probes_free;
    for (int i = 0; i < ELM_POOL_HIST; i++) {
        acc->delay_hist[i] += to->delay_hist[i] - from->delay_hist[i];
        acc->gap_hist[i] += to->gap_hist[i] - from->gap_hist[i];
    }
}

int elm_pool_stats_describe(const struct elm_pool_stats *st, char *buf, size_t size)
{
    const uint64_t *d = st->delay_hist, *g = st->gap_hist;
    return snprintf(
        buf, size,
        "busy %llu/%llu samples; delay share <1/<10/<50/more %% %llu/%llu/%llu/%llu; "
        "gaps <0.1/<1/<10/more ms %llu/%llu/%llu/%llu; %llu sleeps (%llu after a spin); "
        "probes %llu (%llu free)",
        (unsigned long long)st->n_busy, (unsigned long long)st->n_samples, (unsigned long long)d[0],
        (unsigned long long)d[1], (unsigned long long)d[2], (unsigned long long)d[3],
        (unsigned long long)g[0], (unsigned long long)g[1], (unsigned long long)g[2],
        (unsigned long long)g[3], (unsigned long long)st->n_sleeps,
        (unsigned long long)st->n_spin_sleeps, (unsigned long long)st->n_probes,
        (unsigned long long)st->n_probes_free);
}

void elm_pool_shutdown(void)
{
    pthread_once(&once, init);
    pthread_mutex_lock(&pool.lock);
    atomic_store(&pool.stop, true);
    for (int i = 0; i < pool.n_workers; i++) {
        atomic_fetch_add(&pool.w[i].go, 1);
        futex_wake(&pool.w[i].go);
    }
    for (int i = 0; i < pool.n_workers; i++)
        pthread_join(pool.w[i].tid, NULL);
    pool.n_workers = 0;
    atomic_store(&pool.stop, false);
    pthread_mutex_unlock(&pool.lock);
}
