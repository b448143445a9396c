/* bench_stream.c — the decode roofline's two sides, shared by `kernels` and `model`: the
 * machine's streaming-read bandwidth (a probe) and the bytes one decode step streams. */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "engine/model.h"

/* One stream probe, as the pool's threads see it: they take chunks of the buffer from a counter,
 * as the matmuls take rows (kernels/matmul.c), so a thread that a neighbour deschedules holds up
 * the probe no more than it holds up the decode the probe is the roofline of. */
#define STREAM_CHUNK ((size_t)1 << 17) /* words: 1 MiB, long runs for the prefetchers */

struct stream {
    const uint64_t *buf;
    size_t words;
    atomic_size_t next; /* the first word no thread has taken */
    _Atomic uint64_t total;
};

static void stream_part(void *ctx, int ith, int nth)
{
    (void)ith;
    (void)nth;
    struct stream *st = ctx;
    /* eight named accumulators, not an array: at -O2 gcc kept an array's sums on the stack (a
     * load-add-store per 16 bytes), and that loop ran at 11-17 GB/s per thread from L1 (loaded),
     * so the probe measured itself: 6.9 GB/s from memory where these sums read 8.3, one thread */
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0, s4 = 0, s5 = 0, s6 = 0, s7 = 0;
    for (size_t lo; (lo = atomic_fetch_add_explicit(&st->next, STREAM_CHUNK,
                                                    memory_order_relaxed)) < st->words;) {
        const size_t hi =
            (st->words - lo < STREAM_CHUNK ? st->words : lo + STREAM_CHUNK) & ~(size_t)7;
        for (const uint64_t *b = st->buf + lo, *e = st->buf + hi; b < e; b += 8) {
            s0 += b[0];
            s1 += b[1];
            s2 += b[2];
            s3 += b[3];
            s4 += b[4];
            s5 += b[5];
            s6 += b[6];
            s7 += b[7];
        }
    }
    atomic_fetch_add(&st->total, s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7);
}

size_t bench_stream_bytes(bool quick)
{
    return quick ? (size_t)64 << 20 : (size_t)1 << 30; /* far larger than any last-level cache */
}

uint64_t *bench_stream_buffer(size_t words)
{
    uint64_t *buf = aligned_alloc(64, words * sizeof *buf);
    for (size_t i = 0; buf && i < words; i++)
        buf[i] = i; /* touch every page, so the probe measures memory, not page faults */
    return buf;
}

double bench_stream_once(const uint64_t *buf, size_t words, int threads, uint64_t *sink)
{
    struct stream st = {.buf = buf, .words = words};
    atomic_init(&st.next, 0);
    double t0 = bench_now();
    elm_pool_run(threads, stream_part, &st);
    const uint64_t total = atomic_load(&st.total);
    double dt = bench_now() - t0;
    *sink += total;
    return (double)(words * sizeof *buf) / dt / 1e9;
}

double bench_stream_for(const uint64_t *buf, size_t words, int threads, double seconds,
                        uint64_t *sink)
{
    double bytes = 0, t = 0;
    do {
        const double gbs = bench_stream_once(buf, words, threads, sink);
        bytes += (double)(words * sizeof *buf);
        t += (double)(words * sizeof *buf) / gbs / 1e9;
    } while (t < seconds);
    return bytes / t / 1e9;
}

double bench_decode_bytes(const struct elm_model *m)
{
    const struct elm_tensor *te = &m->tok_embd;
    const uint64_t embd =
        te->data == m->output.data ? 0 : elm_row_bytes(te->type, te->ne0) * (uint64_t)te->ne1;
    return (double)(m->weight_bytes - embd);
}
