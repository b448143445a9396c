/* bench_model.c — `elm-bench model`: prompt processing (pp) and decode (tg) throughput of whole
 * models, llama-bench style: one row per model × thread count × prompt length, pp with P prompt
 * tokens in batches, tg with T tokens decoded one at a time after it.
 *
 * Prefill is also given in GFLOP/s of the weight matmuls (2 per weight per token; attention is
 * left out) and as a fraction of the int8 dot-product peak measured in the same run, because
 * prefill is a race against arithmetic. Decode is a race against memory: tg is also given as
 * the bytes a step streams times tg t/s, against a streaming-read probe run right after each tg
 * for a quarter of its time (bench_stream.c; the median of the per-repetition ratios, so a
 * noisy neighbour hits both).
 *
 * tg is not `elm-bench profile`'s decode: tg runs positions pp..pp+tg-1 (attention grows with
 * them: at 512 a step cost 7-10 % more than at 128, measured), follows a prefill of pp tokens
 * under the same wait policy, and is one mean per repetition; profile's is S steps at one
 * position. The work's batch (512 here, the chunk there) does not change a decode step's cost
 * (docs/benchmarks.md).
 *
 * An embedding model (bert) has no decode: its pp is P random tokens cut into texts of at most
 * its context (EMBED_TEXT tokens when that is smaller), all embedded in one elm_model_embed
 * pass, as elmd runs one request; its tg columns are 0.
 *
 * --wait P,Q,... compares the compute threads' wait policies (common/pool.h) in one process:
 * each repetition runs every policy in turn, the first one rotating, and each gets its row,
 * with its tg against the first policy's as the median of the repetitions' own ratios. Runs
 * in separate processes differed by more than the 5 % the policies are judged by
 * (scripts/bench-wait.sh): a process draws its own placement of threads on the cores, and a
 * neighbour's load that comes and goes falls on whichever run it meets; seconds apart in one
 * process, a pair shares both. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/sampler.h"

#define MAX_MODELS 16
#define MAX_LIST   8

struct run {
    int pp, tg, batch;
};

#define EMBED_TEXT 128 /* tokens per text of an embedding model's pp: a sentence or two */

/* Times one pass of an embedding model over r->pp random tokens ([CLS]/[SEP] not added: the
 * encoder costs the same for any ids). */
static int measure_embed(const struct elm_model *m, const struct run *r, uint64_t seed,
                         double *t_pp)
{
    int L = m->hp.n_ctx_train < EMBED_TEXT ? m->hp.n_ctx_train : EMBED_TEXT;
    int n_seq = (r->pp + L - 1) / L, V = m->hp.n_vocab;
    int32_t *ids = malloc((size_t)r->pp * sizeof *ids), *n_ids = malloc(n_seq * sizeof *n_ids);
    const int32_t **seq = malloc(n_seq * sizeof *seq);
    float *out = malloc((size_t)n_seq * m->hp.n_embd * sizeof *out);
    int rc = ids && n_ids && seq && out ? 0 : -12;
    for (int i = 0; !rc && i < r->pp; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        ids[i] = (int32_t)((seed >> 33) % (uint64_t)V);
    }
    for (int k = 0; !rc && k < n_seq; k++) {
        seq[k] = ids + (size_t)k * L;
        n_ids[k] = r->pp - k * L < L ? r->pp - k * L : L;
    }
    double t0 = bench_now();
    if (!rc)
        rc = elm_model_embed(m, seq, n_ids, n_seq, out);
    *t_pp = bench_now() - t0;
    free(ids);
    free(n_ids);
    free(seq);
    free(out);
    return rc;
}

/* The stream probe of a repetition (bench_stream.c): its buffer, and the last bandwidth. */
struct probe {
    const uint64_t *buf;
    size_t words;
    uint64_t sink;
    double gbs;
};

/* Times one pp and one tg pass, adding what the compute threads did during tg to *pool (the
 * waiting policy shows there: a decode step is many short parallel calls), then probes the
 * streaming bandwidth: after tg, not before, so a small model's weights are not evicted from
 * the caches its tg runs from. Returns 0 or an error. */
static int measure(const struct elm_model *m, struct elm_work *w, struct elm_kv *kv,
                   const struct run *r, uint64_t seed, double *t_pp, double *t_tg,
                   struct elm_pool_stats *pool, struct probe *pr)
{
    int V = m->hp.n_vocab;
    float *logits = malloc((size_t)V * sizeof *logits);
    struct elm_batch_item *items = malloc((size_t)r->batch * sizeof *items);
    if (!logits || !items) {
        free(logits);
        free(items);
        return -12;
    }
    int rc = 0, pos = 0;
    double t0 = bench_now();
    while (pos < r->pp && !rc) {
        int n = r->pp - pos < r->batch ? r->pp - pos : r->batch;
        for (int i = 0; i < n; i++) {
            seed = seed * 6364136223846793005ull + 1442695040888963407ull;
            items[i] = (struct elm_batch_item){.token = (int32_t)((seed >> 33) % (uint64_t)V),
                                               .pos = pos + i,
                                               .kv = kv,
                                               .logits = pos + i == r->pp - 1 ? logits : NULL};
        }
        rc = elm_model_forward(m, w, items, n);
        pos += n;
    }
    double t1 = bench_now();
    int32_t tok = rc ? 0 : elm_argmax(logits, V);
    struct elm_pool_stats p0, p1;
    elm_pool_stats(&p0);
    for (int i = 0; i < r->tg && !rc; i++) {
        struct elm_batch_item it = {.token = tok, .pos = pos++, .kv = kv, .logits = logits};
        rc = elm_model_forward(m, w, &it, 1);
        tok = elm_argmax(logits, V);
    }
    *t_pp = t1 - t0;
    *t_tg = bench_now() - t1;
    elm_pool_stats(&p1);
    elm_pool_stats_add(pool, &p0, &p1);
    /* for a quarter of tg's time: one probe is a tenth of a second, tg seconds, and a
     * neighbour's burst should average out in both alike */
    pr->gbs = rc ? 0 : bench_stream_for(pr->buf, pr->words, m->n_threads, *t_tg / 4, &pr->sink);
    free(logits);
    free(items);
    return rc;
}

/* Weights the matmuls of one token multiply: every layer matrix and the output. */
static double matmul_weights(const struct elm_model *m)
{
    double n = (double)m->output.ne0 * (double)m->output.ne1;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const struct elm_layer *L = &m->layers[l];
        const struct elm_tensor *t[] = {&L->wq, &L->wk, &L->wv, &L->wo,
                                        &L->w_gate, &L->w_up, &L->w_down};
        for (size_t i = 0; i < sizeof t / sizeof *t; i++)
            n += (double)t[i]->ne0 * (double)t[i]->ne1;
    }
    return n;
}

/* The series of one policy over the repetitions. */
enum { PP, TG, GBS, BW, PCT, VS_FIRST, N_SERIES };

int bench_model_measure(const struct bench_opts *o, const char *path, int threads, int pp, int tg,
                        int batch, const enum elm_wait *waits, int n_wait,
                        struct bench_model_result *res)
{
    if (n_wait < 0 || n_wait > BENCH_MAX_WAIT) {
        fprintf(stderr, "elm-bench: %d wait policies, at most %d\n", n_wait, BENCH_MAX_WAIT);
        return 1;
    }
    char err[512];
    struct elm_model_params mp = {.n_threads = threads};
    struct elm_model *m;
    int rc = elm_model_load(path, &mp, &m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "elm-bench: %s: %s\n", path, err);
        return 1;
    }
    struct run rr = {.pp = pp, .tg = tg, .batch = batch}, *r = &rr;
    int n_ctx = r->pp + r->tg + 1;
    struct elm_work *w = NULL;
    struct elm_kv *kv = NULL;
    const bool embed = elm_model_is_embedding(m);
    if (embed) {
        rr.tg = 0;
    } else if ((rc = elm_work_create(m, r->batch, n_ctx, &w)) ||
               (rc = elm_kv_create(m, n_ctx, ELM_TYPE_F16, &kv))) {
        fprintf(stderr, "elm-bench: %s\n", elm_strerror(rc));
        elm_work_destroy(&w);
        elm_model_destroy(&m);
        return 1;
    }
    struct probe pr = {.words = bench_stream_bytes(o->quick) / sizeof(uint64_t)};
    if (!rc && !embed && !(pr.buf = bench_stream_buffer(pr.words)))
        rc = -12;
    const double step_bytes = bench_decode_bytes(m);
    const int nw = n_wait > 0 ? n_wait : 1, R = o->reps;
    const enum elm_wait before = elm_pool_wait();
    double *v = malloc(sizeof(double) * N_SERIES * (size_t)nw * (size_t)R);
#define S(k, p, i) v[((size_t)(k) * (size_t)nw + (size_t)(p)) * (size_t)R + (size_t)(i)]
    if (!rc && !v)
        rc = -12;
    struct elm_pool_stats warm = {0}, pool[BENCH_MAX_WAIT] = {{0}};
    for (int i = -1; i < R && !rc; i++) { /* i = -1: warm-up, with the first policy */
        for (int j = 0; j < (i < 0 ? 1 : nw) && !rc; j++) {
            const int p = (j + (i > 0 ? i : 0)) % nw; /* who goes first rotates */
            if (n_wait > 0)
                elm_pool_set_wait(waits[p]);
            bench_progress("model %s, %d threads: run %d/%d%s%s", path, threads, i + 1, R,
                           n_wait > 0 ? ", wait " : "",
                           n_wait > 0 ? elm_pool_wait_name(waits[p]) : "");
            double a = 0, b = 0;
            rc = embed ? measure_embed(m, r, (uint64_t)(i + 2), &a)
                       : measure(m, w, kv, r, (uint64_t)(i + 2), &a, &b, i < 0 ? &warm : &pool[p],
                                 &pr);
            if (i >= 0) {
                S(PP, p, i) = r->pp / a;
                S(TG, p, i) = embed ? 0 : r->tg / b;
                S(GBS, p, i) = step_bytes * S(TG, p, i) / 1e9;
                S(BW, p, i) = embed ? 0 : pr.gbs;
                S(PCT, p, i) = embed || pr.gbs <= 0 ? 0 : 100.0 * S(GBS, p, i) / pr.gbs;
            }
        }
    }
    elm_pool_set_wait(before);
    free((void *)pr.buf);
    bench_progress(NULL);
    for (int p = 0; p < nw && !rc; p++) /* before bench_stats sorts the first policy's tg */
        for (int i = 0; i < R; i++)
            S(VS_FIRST, p, i) = S(TG, 0, i) > 0 ? S(TG, p, i) / S(TG, 0, i) : 0;
    for (int p = 0; p < nw && !rc; p++) {
        res[p] = (struct bench_model_result){.pp = bench_stats(&S(PP, p, 0), R),
                                             .tg = bench_stats(&S(TG, p, 0), R),
                                             .weight_bytes = (double)m->weight_bytes,
                                             .matmul_weights = matmul_weights(m),
                                             .decode_bytes = step_bytes,
                                             .tg_gbs = bench_stats(&S(GBS, p, 0), R),
                                             .stream = bench_stats(&S(BW, p, 0), R),
                                             .tg_pct = bench_stats(&S(PCT, p, 0), R),
                                             .tg_vs_first = bench_stats(&S(VS_FIRST, p, 0), R),
                                             .wait = n_wait > 0 ? waits[p] : before,
                                             .pool = pool[p]};
    }
#undef S
    if (rc)
        fprintf(stderr, "elm-bench: %s: %s\n", path, elm_strerror(rc));
    free(v);
    elm_kv_destroy(&kv);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
    return rc ? 1 : 0;
}

static int bench_one(const struct bench_opts *o, const char *path, int threads, const struct run *r,
                     const enum elm_wait *waits, int n_wait, double peak)
{
    struct bench_model_result res[BENCH_MAX_WAIT];
    if (bench_model_measure(o, path, threads, r->pp, r->tg, r->batch, waits, n_wait, res))
        return 1;
    for (int p = 0; p < (n_wait > 0 ? n_wait : 1); p++) {
        const struct bench_stat sp = res[p].pp, st = res[p].tg;
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        const double gflops = 2.0 * res[p].matmul_weights * sp.median / 1e9;
        char pool[256];
        elm_pool_stats_describe(&res[p].pool, pool, sizeof pool);
        struct bench_cell cells[] = {
            {"model", name, 0, 0},
            {"weights MB", NULL, res[p].weight_bytes / 1e6, 2},
            {"threads", NULL, threads, 0},
            {"pp tokens", NULL, r->pp, 0},
            {"pp t/s", NULL, sp.median, 1},
            {"pp min", NULL, sp.min, 1},
            {"pp max", NULL, sp.max, 1},
            {"pp GFLOP/s", NULL, gflops, 1},
            {"% of int8 peak", NULL, 100.0 * gflops / (peak * threads / o->threads), 1},
            {"tg tokens", NULL, st.median > 0 ? r->tg : 0, 0},
            {"tg t/s", NULL, st.median, 1},
            {"tg min", NULL, st.min, 1},
            {"tg max", NULL, st.max, 1},
            {"threads' waiting in tg", pool, 0, 0},
            /* after the columns scripts read by position (scripts/bench-wait.sh) */
            {"tg GB/s", NULL, res[p].tg_gbs.median, 2},
            {"stream GB/s", NULL, res[p].stream.median, 2},
            {"tg % of stream", NULL, res[p].tg_pct.median, 1},
            {"wait", elm_pool_wait_name(res[p].wait), 0, 0},
            {"tg / first wait's", NULL, res[p].tg_vs_first.median, 3},
        };
        bench_row(o, "model", cells, (int)(sizeof cells / sizeof *cells));
    }
    return 0;
}

/* "P,Q,..." to at most BENCH_MAX_WAIT distinct policies; the count, or -1. */
static int parse_waits(const char *s, enum elm_wait *out)
{
    for (int n = 0;; s++) {
        const char *end = strchr(s, ',');
        const size_t len = end ? (size_t)(end - s) : strlen(s);
        char name[16];
        enum elm_wait w;
        if (n == BENCH_MAX_WAIT || !len || len >= sizeof name)
            return -1;
        memcpy(name, s, len);
        name[len] = 0;
        if (elm_pool_wait_parse(name, &w))
            return -1;
        for (int i = 0; i < n; i++)
            if (out[i] == w)
                return -1;
        out[n++] = w;
        if (!end)
            return n;
        s = end;
    }
}

int bench_model(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'}, {"synth", required_argument, 0, 's'},
        {"pp", required_argument, 0, 'p'},    {"threads", required_argument, 0, 't'},
        {"tg", required_argument, 0, 'n'},    {"batch", required_argument, 0, 'b'},
        {"wait", required_argument, 0, 'w'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    const char *models[MAX_MODELS];
    static char synth_paths[MAX_MODELS][512];
    int n_models = 0;
    struct run r = {.tg = o->quick ? 16 : 128, .batch = 512};
    int pps[MAX_LIST] = {o->quick ? 32 : 512}, n_pp = 1;
    int thr[MAX_LIST] = {o->threads}, n_thr = 1;
    enum elm_wait waits[BENCH_MAX_WAIT];
    int n_wait = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:p:t:n:b:w:h", lo, NULL)) != -1) {
        int *dst = c == 'n' ? &r.tg : &r.batch;
        switch (c) {
        case 'm':
        case 's':
            if (n_models == MAX_MODELS) {
                fprintf(stderr, "elm-bench model: at most %d models\n", MAX_MODELS);
                return 2;
            }
            if (c == 's') {
                char err[512];
                if (bench_synth(optarg, synth_paths[n_models], sizeof synth_paths[0], err,
                                sizeof err)) {
                    fprintf(stderr, "elm-bench model: %s\n", err);
                    return 2;
                }
                optarg = synth_paths[n_models];
            }
            models[n_models++] = optarg;
            break;
        case 'p':
            if ((n_pp = bench_parse_list(optarg, pps, MAX_LIST, 1, 65536)) < 0) {
                fprintf(stderr, "elm-bench model: --pp expects a list of 1..65536 (at most %d), "
                                "got '%s'\n", MAX_LIST, optarg);
                return 2;
            }
            break;
        case 't':
            if ((n_thr = bench_parse_list(optarg, thr, MAX_LIST, 1, 1024)) < 0) {
                fprintf(stderr, "elm-bench model: --threads expects a list of 1..1024 (at most "
                                "%d), got '%s'\n", MAX_LIST, optarg);
                return 2;
            }
            break;
        case 'w':
            if ((n_wait = parse_waits(optarg, waits)) < 0) {
                fprintf(stderr, "elm-bench model: --wait expects a list of passive, active and "
                                "auto (each once), got '%s'\n", optarg);
                return 2;
            }
            break;
        case 'n': case 'b': {
            char *end;
            long v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > 65536) {
                fprintf(stderr, "elm-bench model: -%c expects 1..65536, got '%s'\n", c, optarg);
                return 2;
            }
            *dst = (int)v;
            break;
        }
        case 'h':
            printf("usage: elm-bench model (--model FILE | --synth SHAPE:TYPE)... [--pp N,...] "
                   "[--threads N,...] [--tg N] [--batch N] [--wait P,...]\nPrompt processing of N random tokens "
                   "(default 512) in batches, then decode of N tokens (default 128), F16 KV "
                   "cache;\none row per model x thread count x prompt length. pp GFLOP/s counts "
                   "the weight matmuls\n(2 per weight per token) against the int8 peak of the "
                   "threads used, measured in the same run;\ntg GB/s the bytes a step streams x "
                   "tg t/s against a stream probe run after each tg.\nAn embedding model (bert): pp "
                   "embeds the N tokens as texts of up to %d in one pass; no tg.\n"
                   "--wait passive,active,auto: the compute threads' wait policies take turns "
                   "repetition by\nrepetition in this process, a row each, with tg against the "
                   "first policy's.\nSynthetic shapes: %s; TYPE is any 'elmctl quantize' type.\n",
                   EMBED_TEXT, bench_synth_shapes());
            return 0;
        default: return 2;
        }
    }
    if (!n_models) {
        fprintf(stderr, "elm-bench model: give at least one --model FILE or --synth SPEC\n");
        return 2;
    }
    bench_print_header(o, "model");
    /* the peak of o->threads cores; bench_one scales it to the threads of its row */
    const double peak = bench_int8_peak(o->threads, NULL, NULL);
    int fails = 0;
    for (int i = 0; i < n_models; i++)
        for (int t = 0; t < n_thr; t++)
            for (int p = 0; p < n_pp; p++) {
                struct run rr = r;
                rr.pp = pps[p];
                fails += bench_one(o, models[i], thr[t], &rr, waits, n_wait, peak);
            }
    bench_end_table(o);
    return fails ? 1 : 0;
}
