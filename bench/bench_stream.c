/* bench_stream.c — the decode roofline's two sides, shared by `kernels` and `model`: the
 * machine's streaming-read bandwidth (a probe) and the bytes one decode step streams. */
#include <stdatomic.h>
#include <stdlib.h>

#include "bench/bench.h"
#include "engine/model.h"

/* One stream probe, as the pool's threads see it. */
struct stream {
    const uint64_t *buf;
    size_t words;
    _Atomic uint64_t total;
};

static void stream_part(void *ctx, int ith, int nth)
{
    struct stream *st = ctx;
    const size_t lo = st->words * (size_t)ith / (size_t)nth & ~(size_t)7,
                 hi = st->words * (size_t)(ith + 1) / (size_t)nth & ~(size_t)7;
    uint64_t s[8] = {0}, total = 0;
    for (size_t i = lo; i < hi; i += 8)
        for (int j = 0; j < 8; j++)
            s[j] += st->buf[i + j];
    for (int j = 0; j < 8; j++)
        total += s[j];
    atomic_fetch_add(&st->total, total);
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
    double t0 = bench_now();
    elm_pool_run(threads, stream_part, &st);
    const uint64_t total = atomic_load(&st.total);
    double dt = bench_now() - t0;
    *sink += total;
    return (double)(words * sizeof *buf) / dt / 1e9;
}

double bench_decode_bytes(const struct elm_model *m)
{
    const struct elm_tensor *te = &m->tok_embd;
    const uint64_t embd =
        te->data == m->output.data ? 0 : elm_row_bytes(te->type, te->ne0) * (uint64_t)te->ne1;
    return (double)(m->weight_bytes - embd);
}
