/* test_pool.c — the compute pool (common/pool.h):
 *  - every share of a call runs exactly once, on as many threads as the call says, whatever the
 *    policy (passive, active, auto);
 *  - a product is bit-identical on 1, 2 and 3 threads (Q4_0 and Q8_0 weights, one token and a
 *    batch of tokens);
 *  - sleep and wake: with the passive policy workers go to sleep after each call and the next
 *    call wakes them; a call from inside a call, or while another thread holds the pool, runs on
 *    its caller alone and still completes;
 *  - shutdown joins every worker (the process is left with its own thread) and the next call
 *    starts them again;
 *  - auto: with a busy loop beside every CPU the pool's threads wait for their cores, and auto
 *    finds the machine busy (its threads then sleep at once);
 *  - the policy names;
 *  - per-thread scratch (common/scratch.h): each block zeroed and 64-byte aligned, a thread's
 *    blocks distinct from another thread's, and freed when the thread exits (the ASan pass's
 *    leak check would name one that is not).
 * No assertion depends on time: waits poll the pool's counters, under the ctest timeout.
 */
#include <dirent.h>
#include <sched.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/pool.h"
#include "common/scratch.h"
#include "kernels/kernels.h"
#include "tests/common/elm_test.h"

#define MAX_TH 4 /* more threads than this machine's 2 cores, few enough for active spinning */

/* Each thread marks its share; the call records the team size it saw. */
struct marks {
    _Atomic int hits[ELM_POOL_MAX];
    _Atomic int nth_seen;
};

static void mark(void *ctx, int me, int nth)
{
    struct marks *m = ctx;
    atomic_fetch_add(&m->hits[me], 1);
    atomic_store(&m->nth_seen, nth);
}

static void nested(void *ctx, int me, int nth)
{
    (void)me;
    (void)nth;
    struct marks *inner = ctx;
    elm_pool_run(4, mark, inner);
}

/* One call of want threads: every share once, shares beyond the team never. Returns nth. */
static int run_once(int want)
{
    struct marks m;
    memset(&m, 0, sizeof m);
    elm_pool_run(want, mark, &m);
    const int nth = atomic_load(&m.nth_seen);
    assert_true(nth >= 1 && nth <= want);
    for (int i = 0; i < ELM_POOL_MAX; i++)
        assert_int_equal(atomic_load(&m.hits[i]), i < nth ? 1 : 0);
    return nth;
}

static int threads_now(void)
{
    DIR *d = opendir("/proc/self/task");
    assert_non_null(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

static void test_shares(void **state)
{
    (void)state;
    const enum elm_wait policies[] = {ELM_WAIT_PASSIVE, ELM_WAIT_ACTIVE, ELM_WAIT_AUTO};
    for (size_t p = 0; p < sizeof policies / sizeof *policies; p++) {
        elm_pool_set_wait(policies[p]);
        for (int rep = 0; rep < 20; rep++)
            for (int want = 1; want <= MAX_TH; want++)
                assert_int_equal(run_once(want), want); /* threads can be created here */
    }
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    elm_pool_shutdown();
}

/* A product of rows x cols weights of type t with ntok tokens, on `threads` threads. */
static void product(enum elm_type t, int64_t rows, int64_t cols, int64_t ntok, int threads,
                    float *y)
{
    const struct elm_kernels *k = elm_kernels_active();
    const enum elm_type dt = elm_type_get(t)->dot_type;
    const size_t wrow = elm_row_bytes(t, cols), xrow = elm_row_bytes(dt, cols);
    float *f = malloc((size_t)cols * sizeof *f);
    unsigned char *w = malloc(wrow * (size_t)rows), *x = malloc(xrow * (size_t)ntok);
    assert_true(f && w && x);
    unsigned s = 12345;
    for (int64_t r = 0; r < rows + ntok; r++) {
        for (int64_t i = 0; i < cols; i++) {
            s = s * 1103515245u + 12345u;
            f[i] = (float)(s >> 8) / (float)(1u << 24) - 0.5f;
        }
        if (r < rows)
            assert_int_equal(elm_quantize_row(t, f, w + (size_t)r * wrow, cols), 0);
        else
            k->from_float[dt](f, x + (size_t)(r - rows) * xrow, cols);
    }
    elm_pool_set_threads(threads);
    elm_matmul(k, t, ELM_LAYOUT_ROWS, w, cols, rows, x, xrow, ntok, y, rows);
    elm_pool_set_threads(0);
    free(f);
    free(w);
    free(x);
}

static void test_bit_identical(void **state)
{
    (void)state;
    const enum elm_type types[] = {ELM_TYPE_Q4_0, ELM_TYPE_Q8_0};
    const int64_t rows = 1000, cols = 1024; /* 1000: the last share is not whole units */
    float *y1 = malloc((size_t)rows * 7 * sizeof *y1), *yn = malloc((size_t)rows * 7 * sizeof *yn);
    assert_true(y1 && yn);
    elm_pool_set_wait(ELM_WAIT_AUTO);
    for (size_t i = 0; i < sizeof types / sizeof *types; i++)
        for (int64_t ntok = 1; ntok <= 7; ntok += 6) {
            product(types[i], rows, cols, ntok, 1, y1);
            for (int th = 2; th <= 3; th++) {
                memset(yn, 0xff, (size_t)(rows * ntok) * sizeof *yn);
                product(types[i], rows, cols, ntok, th, yn);
                assert_memory_equal(y1, yn, (size_t)(rows * ntok) * sizeof *y1);
            }
        }
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    free(y1);
    free(yn);
}

/* Polls (no timing) until every worker sleeps in futex_wait; ctest's timeout catches a worker
 * that never does. */
static void until_asleep(void)
{
    struct elm_pool_stats st;
    for (;;) {
        elm_pool_stats(&st);
        if (st.n_workers > 0 && st.n_asleep == st.n_workers)
            return;
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    }
}

static void test_sleep_wake(void **state)
{
    (void)state;
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    assert_false(elm_pool_spins()); /* engine/rows.c keeps small calls on the caller then */
    assert_int_equal(run_once(3), 3);
    for (int rep = 0; rep < 50; rep++) {
        until_asleep(); /* both workers asleep: the call must wake them */
        assert_int_equal(run_once(3), 3);
    }
    /* active: the workers spin; a call still finds them, and a switch to passive lets them sleep */
    elm_pool_set_wait(ELM_WAIT_ACTIVE);
    assert_true(elm_pool_spins());
    for (int rep = 0; rep < 50; rep++)
        assert_int_equal(run_once(3), 3);
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    assert_false(elm_pool_spins());
    assert_int_equal(run_once(3), 3);
    until_asleep();

    /* a call from inside a call runs on its caller alone */
    struct marks inner;
    memset(&inner, 0, sizeof inner);
    elm_pool_run(2, nested, &inner);
    assert_int_equal(atomic_load(&inner.nth_seen), 1);
    assert_int_equal(atomic_load(&inner.hits[0]), 2); /* once per outer share */
    elm_pool_shutdown();
}

/* Two threads calling at once: each call completes, whoever gets the pool. */
static void *caller(void *arg)
{
    for (int rep = 0; rep < 300; rep++)
        run_once(3);
    (void)arg;
    return NULL;
}

static void test_two_callers(void **state)
{
    (void)state;
    elm_pool_set_wait(ELM_WAIT_AUTO);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, caller, NULL), 0);
    caller(NULL);
    assert_int_equal(pthread_join(t, NULL), 0);
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    elm_pool_shutdown();
}

/* The process's threads before any test ran: the main thread, plus qemu-user's own RCU thread
 * under the emulator. Counting from here, not from a count taken after a join, matters there:
 * qemu lets the guest's pthread_join return before the host thread has left /proc/self/task,
 * sometimes for seconds, so a count taken then included a thread that later went away (the
 * arm64 CI run hung in test_shutdown on exactly that). */
static int base_threads;

/* Waits until the process has n threads (a joined thread can still be listed for a moment while
 * the kernel, or qemu, finishes its exit), then asserts it: a minute bounds the wait so a
 * worker that never exits fails here instead of hanging until the ctest timeout. */
static void until_threads(int n)
{
    for (int ms = 0; ms < 60000 && threads_now() != n; ms++)
        nanosleep(&(struct timespec){.tv_nsec = 1000000}, NULL);
    assert_int_equal(threads_now(), n);
}

static void test_shutdown(void **state)
{
    (void)state;
    elm_pool_shutdown();
    const int alone = base_threads;
    until_threads(alone);
    struct elm_pool_stats st;
    const enum elm_wait policies[] = {ELM_WAIT_PASSIVE, ELM_WAIT_ACTIVE};
    for (size_t p = 0; p < 2; p++) {
        elm_pool_set_wait(policies[p]);
        assert_int_equal(run_once(MAX_TH), MAX_TH);
        elm_pool_stats(&st);
        assert_int_equal(st.n_workers, MAX_TH - 1);
        until_threads(alone + MAX_TH - 1); /* a worker still starting shows soon */
        elm_pool_shutdown();               /* passive: workers asleep; active: spinning */
        elm_pool_stats(&st);
        assert_int_equal(st.n_workers, 0);
        until_threads(alone);
    }
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    assert_int_equal(run_once(2), 2); /* starts again */
    elm_pool_shutdown();
    until_threads(alone);
}

/* auto under contention: the calling thread, and so the workers it starts and a busy loop it
 * starts, confined to one CPU, so a team of 2 shares that CPU with the loop on any machine,
 * however many CPUs it has. The pool must see its threads wait for the core: busy after a few
 * samples (it may be busy already: other tests ran), with samples over the line. Bounded by
 * samples, not by time; only this direction is asserted, since whether a shared CI machine is
 * idle is not ours to know. */
static atomic_bool spin_stop;

static void *busy_loop(void *arg)
{
    (void)arg;
    while (!atomic_load_explicit(&spin_stop, memory_order_relaxed))
        ;
    return NULL;
}

static void work(void *ctx, int me, int nth)
{
    (void)me;
    (void)nth;
    volatile uint64_t *sink = ctx, x = 0;
    for (int i = 0; i < 20000; i++)
        x += (uint64_t)i * i;
    *sink += x;
}

static void test_auto_busy(void **state)
{
    (void)state;
    cpu_set_t all, one;
    assert_int_equal(sched_getaffinity(0, sizeof all, &all), 0);
    CPU_ZERO(&one);
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &all)) {
            CPU_SET(c, &one);
            break;
        }
    elm_pool_shutdown(); /* workers start again from the confined caller */
    assert_int_equal(sched_setaffinity(0, sizeof one, &one), 0);
    pthread_t loop;
    atomic_store(&spin_stop, false);
    assert_int_equal(pthread_create(&loop, NULL, busy_loop, NULL), 0);
    elm_pool_set_wait(ELM_WAIT_AUTO);
    struct elm_pool_stats st0, st;
    elm_pool_stats(&st0);
    volatile uint64_t sink = 0;
    do {
        elm_pool_run(2, work, (void *)&sink);
        elm_pool_stats(&st);
    } while ((!st.busy || st.n_samples - st0.n_samples < 8) && st.n_samples - st0.n_samples < 200);
    atomic_store(&spin_stop, true);
    assert_int_equal(pthread_join(loop, NULL), 0);
    elm_pool_set_wait(ELM_WAIT_PASSIVE);
    elm_pool_shutdown();
    assert_int_equal(sched_setaffinity(0, sizeof all, &all), 0);
    assert_true(st.busy);
    assert_true(st.n_busy > st0.n_busy);
    /* every sample with a run delay is in one bucket of the share (schedstat is there: the
     * busy state came from it), and sleeps after a spin are sleeps */
    uint64_t in_hist = 0;
    for (int i = 0; i < ELM_POOL_HIST; i++)
        in_hist += st.delay_hist[i] - st0.delay_hist[i];
    assert_int_equal(in_hist, st.n_samples - st0.n_samples);
    assert_true(st.n_spin_sleeps <= st.n_sleeps);
}

/* auto's judge, fed synthetic samples (10 ms apart, a team of 2: 20 ms of thread time each):
 * spinning, four samples over the tenth in a row make it busy, a single one does not; busy,
 * its sleeping samples do not bring spinning back (they hold our own wake-ups), but a probe
 * does: a second after, the threads spin through the waking call (no verdict), two one-call
 * intervals and one of at least 5 ms; the first interval over ends it and the next probe
 * backs off (2 s, 4 s, ... 16 s), all under resume spinning (two over in a row return to
 * sleeping, where a new judge's first over does) and reset the backoff; a sleeping sample
 * under the tenth probes at once. Worst case, a machine gone idle whose sleeping samples stay over
 * is found within 16 s plus a sample and a probe. No schedstat: busy, and every probe fails at its
 * first interval. */
#define MS    1000000LL
#define SPAN  (20 * MS)
#define OVER  (5 * MS) /* a quarter of the time */
#define UNDER (MS / 2) /* 2.5 % */

/* Busy and asleep: feeds over samples every 10 ms until a probe starts; returns its time. */
static int64_t until_probe(struct elm_wait_judge *j, int64_t *t)
{
    while (!elm_wait_judge_sample(j, *t += 10 * MS, OVER, SPAN))
        assert_true(elm_wait_judge_due(j, 0, 10 * MS));
    return *t;
}

/* A probe's intervals after the waking call: one call, one call, PROBE_SPAN_NS (5 ms); `ok`
 * of them under, then one over (ok == 3: all under). Returns what the last sample said. */
static bool probe(struct elm_wait_judge *j, int64_t *t, int ok)
{
    assert_false(elm_wait_judge_due(j, 0, 100 * MS)); /* the waking call first */
    assert_true(elm_wait_judge_due(j, 1, 0));
    assert_true(elm_wait_judge_sample(j, *t += MS / 10, OVER, SPAN / 100)); /* no verdict */
    bool spin = true;
    for (int i = 0; i < 3 && spin; i++) {
        const int64_t dt = i < 2 ? MS / 10 : 5 * MS;
        if (i < 2) {
            assert_true(elm_wait_judge_due(j, 1, 0));
        } else { /* the last interval is long enough for a neighbour to preempt us */
            assert_false(elm_wait_judge_due(j, 1000, 5 * MS - 1));
            assert_true(elm_wait_judge_due(j, 1, 5 * MS));
        }
        spin = elm_wait_judge_sample(j, *t += dt, i < ok ? dt / 50 : dt, 2 * dt);
    }
    return spin;
}

static void test_judge(void **state)
{
    (void)state;
    struct elm_wait_judge j = {0};
    int64_t t = 0;
    assert_false(elm_wait_judge_due(&j, 1000, 10 * MS - 1)); /* spinning: every 10 ms */
    assert_true(elm_wait_judge_due(&j, 1, 10 * MS));
    for (int i = 0; i < 50; i++)
        assert_true(elm_wait_judge_sample(&j, t += 10 * MS, UNDER, SPAN));
    /* one over among unders changes nothing */
    assert_true(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
    for (int i = 0; i < 20; i++) /* and is forgotten */
        assert_true(elm_wait_judge_sample(&j, t += 10 * MS, UNDER, SPAN));
    /* four in a row do */
    for (int i = 0; i < 3; i++)
        assert_true(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
    assert_false(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
    assert_true(j.busy);
    /* asleep and over: no spinning until the probe, a second after entering; failing probes
     * back off 2, 4, 8, 16, 16 s, each failing at its first interval */
    int64_t last = t;
    const int64_t gaps[] = {1000 * MS, 2000 * MS, 4000 * MS, 8000 * MS, 16000 * MS, 16000 * MS};
    for (int k = 0; k < 6; k++) {
        const int64_t start = until_probe(&j, &t);
        assert_true(start - last >= gaps[k] && start - last < gaps[k] + 10 * MS);
        assert_false(probe(&j, &t, 0));
        assert_true(j.busy);
        last = t;
    }
    /* the worst case of a machine gone idle: its sleeping samples still over, the probe comes
     * within 16 s, and all its intervals under resume spinning; 16 s + 10 ms + 5.3 ms in all */
    const int64_t idle = t;
    until_probe(&j, &t);
    assert_true(probe(&j, &t, 3));
    assert_false(j.busy);
    assert_true(t - idle <= 16000 * MS + 10 * MS + 5 * MS + 3 * MS / 10);
    /* after a free probe one sample over keeps spinning, a second in a row returns to
     * sleeping, and the backoff starts again at 1 s */
    assert_true(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
    assert_false(j.busy);
    assert_false(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
    assert_true(j.busy);
    last = t;
    assert_true(until_probe(&j, &t) - last < 1000 * MS + 10 * MS);
    /* a probe over at its last (long) interval fails too */
    assert_false(probe(&j, &t, 2));
    /* a sleeping sample under the tenth probes at once; this one succeeds, and spinning then
     * outlasts overs scattered among unders (the score falls with each under) */
    assert_true(elm_wait_judge_sample(&j, t += 10 * MS, UNDER, SPAN));
    assert_true(probe(&j, &t, 3));
    for (int i = 0; i < 10; i++) {
        assert_true(elm_wait_judge_sample(&j, t += 10 * MS, OVER, SPAN));
        assert_true(elm_wait_judge_sample(&j, t += 10 * MS, UNDER, SPAN));
    }
    assert_false(j.busy);
    /* a started judge is on probation: one over makes it busy; after an under, two do */
    struct elm_wait_judge n;
    elm_wait_judge_start(&n);
    assert_false(n.busy);
    assert_false(elm_wait_judge_sample(&n, t += 10 * MS, OVER, SPAN));
    assert_true(n.busy);
    elm_wait_judge_start(&n);
    assert_true(elm_wait_judge_sample(&n, t += 10 * MS, UNDER, SPAN));
    assert_true(elm_wait_judge_sample(&n, t += 10 * MS, OVER, SPAN));
    assert_false(elm_wait_judge_sample(&n, t += 10 * MS, OVER, SPAN));
    /* the tenth itself is not over: exactly SPAN / 10 waited is a free core */
    struct elm_wait_judge k = {0};
    for (int i = 0; i < 20; i++)
        assert_true(elm_wait_judge_sample(&k, t += 10 * MS, SPAN / 10, SPAN));
    /* no schedstat (-1): over every time, so busy after four, and in 40 s five probes (1, 3,
     * 7, 15, 31 s) spin two samples each (the start and the waking call) and fail */
    struct elm_wait_judge u = {0};
    int spun = 0;
    for (int i = 0; i < 4000; i++)
        spun += elm_wait_judge_sample(&u, t += 10 * MS, -1, SPAN);
    assert_true(u.busy);
    assert_int_equal(spun, 3 + 5 * 2);
}

static void test_names(void **state)
{
    (void)state;
    enum elm_wait w;
    const char *names[] = {"auto", "passive", "active"};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(elm_pool_wait_parse(names[i], &w), 0);
        assert_string_equal(elm_pool_wait_name(w), names[i]);
    }
    assert_int_equal(elm_pool_wait_parse("spin", &w), -EINVAL);
    assert_int_equal(elm_pool_wait_parse("", &w), -EINVAL);
    elm_pool_set_threads(5);
    assert_int_equal(elm_pool_threads(), 5);
    elm_pool_set_threads(0);
    assert_true(elm_pool_threads() >= 1);
}

/* A thread's two scratch blocks: checked, then written over (a later block must not overlap). */
static void *scratch_thread(void *arg)
{
    unsigned char **out = arg;
    for (int k = 0; k < 2; k++) {
        unsigned char *p = elm_scratch_thread(100000);
        assert_non_null(p);
        assert_int_equal((uintptr_t)p % 64, 0);
        for (size_t i = 0; i < 100000; i++)
            assert_int_equal(p[i], 0);
        memset(p, 0xa5, 100000);
        out[k] = p;
    }
    return NULL;
}

static void test_scratch(void **state)
{
    (void)state;
    unsigned char *a[2], *b[2];
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, scratch_thread, a), 0);
    assert_int_equal(pthread_join(ta, NULL), 0); /* a's blocks are freed by now */
    assert_int_equal(pthread_create(&tb, NULL, scratch_thread, b), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    assert_true(a[0] != a[1] && b[0] != b[1]);
    assert_null(elm_scratch_thread(SIZE_MAX)); /* too large: NULL, no overflow */
    /* the main thread's block lives until exit, still reachable through the key */
    assert_non_null(elm_scratch_thread(64));
}

int main(void)
{
    base_threads = threads_now();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names),         cmocka_unit_test(test_shares),
        cmocka_unit_test(test_bit_identical), cmocka_unit_test(test_sleep_wake),
        cmocka_unit_test(test_two_callers),   cmocka_unit_test(test_shutdown),
        cmocka_unit_test(test_auto_busy),     cmocka_unit_test(test_judge),
        cmocka_unit_test(test_scratch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
