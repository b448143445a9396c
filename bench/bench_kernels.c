/* bench_kernels.c — `elm-bench kernels`: the matmul kernels of every variant this CPU runs,
 * against what the machine can do.
 *
 * Decode is memory-bound: each token streams every weight once, so a mat×vec is judged by its
 * effective weight bandwidth (weight bytes / time) as a fraction of the machine's streaming-read
 * bandwidth, which this command measures itself (a sum over a buffer far larger than the
 * caches, 1..N threads). The probe and the kernel alternate within each repetition, so a noisy
 * neighbour hits both; the fraction reported is the median of the per-repetition ratios.
 * The mat×vec runs over enough copies of the matrix (like a model's layers) to exceed the
 * last-level cache, so the weights really come from memory.
 *
 * The same roofline for whole models (--model FILE / --synth SPEC, repeatable): decode of 32
 * tokens, one at a time, alternating with the probe (run for a quarter of the decode's time); the
 * bytes a decode step streams are every weight except the token-embedding table (of which it reads
 * one row), unless the output projection shares it.
 *
 * Prefill is compute-bound: a mat×mat of T tokens (default 64) is judged in GFLOP/s (2 per
 * multiply-add) against the int8 dot-product peak: the int8 multiply-adds a core issues per
 * cycle with the active variant's dot product (measured: vpdpbusd zmm for avx512, vpmaddubsw
 * ymm for avx2; 64 assumed for the others) x cores x clock. The clock is measured (a chain of
 * dependent adds runs at one per cycle), not read from /proc, because a VM's nominal MHz says
 * little about turbo.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "bench/bench_svg.h"
#include "common/pool.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "kernels/kernels.h"

#define MAX_REPS      1000
#define MAX_MODELS    8
#define DECODE_TOKENS 32

struct kopts {
    int64_t rows, cols, toks;
    int64_t llc_bytes; /* the mat×vec working set is at least this */
    size_t bw_bytes;   /* bandwidth probe buffer */
    const char *types;
    const char *models[MAX_MODELS];
    int n_models;
};

/* ---- operands -------------------------------------------------------------------------------- */

/* copies x rows x cols of type t: 16 distinct quantized rows repeated (quantizing a whole
 * large matrix would take longer than measuring it; the kernels do not care). */
static uint8_t *make_weights(enum elm_type t, int64_t rows, int64_t cols, int copies)
{
    const size_t rb = elm_row_bytes(t, cols);
    uint8_t *w = aligned_alloc(64, (rb * (size_t)rows * (size_t)copies + 63) & ~(size_t)63);
    float *x = malloc((size_t)cols * sizeof *x);
    if (!w || !x) {
        free(w);
        free(x);
        return NULL;
    }
    uint64_t s = 12345;
    for (int r = 0; r < 16 && r < rows; r++) {
        for (int64_t i = 0; i < cols; i++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            x[i] = (float)((int64_t)(s >> 40) - (1 << 23)) / (float)(1 << 23);
        }
        elm_quantize_row(t, x, w + (size_t)r * rb, cols);
    }
    for (size_t r = 16; r < (size_t)rows * (size_t)copies; r++)
        memcpy(w + r * rb, w + (r % 16) * rb, rb);
    free(x);
    return w;
}

static void *make_acts(const struct elm_kernels *k, enum elm_type t, int64_t cols, int64_t toks,
                       size_t *stride)
{
    const enum elm_type dt = elm_type_get(t)->dot_type;
    *stride = elm_row_bytes(dt, cols);
    uint8_t *a = malloc(*stride * (size_t)toks);
    float *x = malloc((size_t)cols * sizeof *x);
    if (a && x)
        for (int64_t tk = 0; tk < toks; tk++) {
            for (int64_t i = 0; i < cols; i++)
                x[i] = (float)((i * 7 + tk * 13) % 29) / 14.0f - 1.0f;
            k->from_float[dt](x, a + (size_t)tk * *stride, cols);
        }
    free(x);
    return a;
}

/* ---- one (type, variant) --------------------------------------------------------------------- */

/* The check column: figures no memory system or core can give are flagged, not reported as the
 * kernel's. Above the streaming bandwidth (stream_ratio > 1) the weights came from the caches,
 * expected only when from_memory is false (--hot); above the int8 peak (peak_ratio > 1; pass 0
 * when there is none) or below the timer's resolution the timing is wrong. */
static const char *roofline_check(bool unresolved, double stream_ratio, bool from_memory,
                                  double peak_ratio)
{
    return unresolved                          ? "below timer resolution"
           : peak_ratio > 1.0                  ? "above int8 peak"
           : stream_ratio > 1.0 && from_memory ? "above stream: from cache"
                                               : "ok";
}

static int bench_type(const struct bench_opts *o, const struct kopts *ko, enum elm_type t,
                      const struct elm_kernels *k, const uint64_t *buf, size_t words,
                      double peak_gflops, struct bench_stat res[2])
{
    const size_t rb = elm_row_bytes(t, ko->cols), mat = rb * (size_t)ko->rows;
    int copies = (int)((ko->llc_bytes + (int64_t)mat - 1) / (int64_t)mat);
    if (copies < 1)
        copies = 1;
    uint8_t *w = make_weights(t, ko->rows, ko->cols, copies);
    size_t xs;
    void *xq = make_acts(k, t, ko->cols, ko->toks, &xs);
    float *y = malloc((size_t)(ko->rows * ko->toks) * sizeof *y);
    if (!w || !xq || !y) {
        free(w);
        free(xq);
        free(y);
        fprintf(stderr, "elm-bench kernels: out of memory\n");
        return 1;
    }
    double gbs[MAX_REPS], ratio[MAX_REPS], probe[MAX_REPS], gfl[MAX_REPS];
    int unresolved = 0; /* repetitions timed below the clock's resolution (bench_span_resolved) */
    /* the scalar reference is ~100x slower: its mat×mat takes an eighth of the rows */
    const int64_t mm_rows = strcmp(k->name, "ref") ? ko->rows
                            : ko->rows / 8 < 16    ? ko->rows
                                                   : ko->rows / 8;
    uint64_t sink = 0;
    const char *name = elm_type_get(t)->name;
    for (int i = -1; i < o->reps; i++) { /* i = -1: warm-up */
        bench_progress("kernels %s %s: rep %d/%d", name, k->name, i + 1, o->reps);
        const double bw = bench_stream_once(buf, words, o->threads, &sink);
        if (ko->llc_bytes == 0) /* --hot: bring the matrix back after the probe */
            elm_matmul(k, t, ELM_LAYOUT_ROWS, w, ko->cols, ko->rows, xq, xs, 1, y, ko->rows);
        double t0 = bench_now();
        for (int c = 0; c < copies; c++)
            elm_matmul(k, t, ELM_LAYOUT_ROWS, w + (size_t)c * mat, ko->cols, ko->rows, xq, xs, 1, y,
                       ko->rows);
        const double tv = bench_now() - t0;
        t0 = bench_now();
        elm_matmul(k, t, ELM_LAYOUT_ROWS, w, ko->cols, mm_rows, xq, xs, ko->toks, y, mm_rows);
        const double tm = bench_now() - t0;
        if (i < 0)
            continue;
        unresolved += !bench_span_resolved(tv, copies) || !bench_span_resolved(tm, 1);
        probe[i] = bw;
        gbs[i] = (double)mat * copies / tv / 1e9;
        ratio[i] = gbs[i] / bw;
        gfl[i] = 2.0 * (double)mm_rows * (double)ko->cols * (double)ko->toks / tm / 1e9;
    }
    bench_progress(NULL);
    const struct bench_stat sg = bench_stats(gbs, o->reps), sr = bench_stats(ratio, o->reps);
    const struct bench_stat sp = bench_stats(probe, o->reps), sf = bench_stats(gfl, o->reps);
    res[0] = sg;
    res[1] = sf;
    char tok_name[48];
    snprintf(tok_name, sizeof tok_name, "mat×mat %lld tok GFLOP/s", (long long)ko->toks);
    const char *check =
        roofline_check(unresolved, sr.median, ko->llc_bytes > 0, sf.median / peak_gflops);
    const struct bench_cell cells[] = {
        {"weight type", name, 0, 0}, /* not "type": each JSON line's table name */
        {"variant", k->name, 0, 0},
        {"mat×vec GB/s", NULL, sg.median, 2},
        {"min", NULL, sg.min, 2},
        {"max", NULL, sg.max, 2},
        {"stream GB/s", NULL, sp.median, 2},
        {"% of stream", NULL, 100.0 * sr.median, 1},
        {tok_name, NULL, sf.median, 1},
        {"min ", NULL, sf.min, 1},
        {"max ", NULL, sf.max, 1},
        {"% of int8 peak", NULL, 100.0 * sf.median / peak_gflops, 1},
        {"check", check, 0, 0},
    };
    bench_row(o, "kernels", cells, (int)(sizeof cells / sizeof *cells));
    free(w);
    free(xq);
    free(y);
    return sink == 42 ? 0 : 0; /* sink keeps the probe's sums alive */
}

/* ---- whole models: decode against the probe -------------------------------------------------- */

static int bench_decode(const struct bench_opts *o, const char *path, const uint64_t *buf,
                        size_t words)
{
    char err[512];
    struct elm_model_params mp = {.n_threads = o->threads};
    struct elm_model *m;
    if (elm_model_load(path, &mp, &m, err, sizeof err)) {
        fprintf(stderr, "elm-bench kernels: %s: %s\n", path, err);
        return 1;
    }
    struct elm_work *w = NULL;
    struct elm_kv *kv = NULL;
    float *logits = malloc((size_t)m->hp.n_vocab * sizeof *logits);
    int rc = !logits ? -12 : elm_work_create(m, 1, DECODE_TOKENS + 1, &w);
    if (!rc)
        rc = elm_kv_create(m, DECODE_TOKENS + 1, ELM_TYPE_F16, &kv);
    const double step_bytes = bench_decode_bytes(m);
    double gbs[MAX_REPS], ratio[MAX_REPS], probe[MAX_REPS], tps[MAX_REPS];
    int unresolved = 0;
    uint64_t sink = 0;
    for (int i = -1; i < o->reps && !rc; i++) {
        bench_progress("decode %s: rep %d/%d", path, i + 1, o->reps);
        const double t0 = bench_now();
        for (int p = 0; p < DECODE_TOKENS && !rc; p++) {
            struct elm_batch_item it = {
                .token = (p * 7919) % m->hp.n_vocab, .pos = p, .kv = kv, .logits = logits};
            rc = elm_model_forward(m, w, &it, 1);
        }
        const double dt = bench_now() - t0;
        /* after the decode, for a quarter of its time: the rule model's tg rows use */
        const double bw = bench_stream_for(buf, words, o->threads, dt / 4, &sink);
        if (i < 0)
            continue;
        unresolved += !bench_span_resolved(dt, DECODE_TOKENS);
        probe[i] = bw;
        tps[i] = DECODE_TOKENS / dt;
        gbs[i] = step_bytes * DECODE_TOKENS / dt / 1e9;
        ratio[i] = gbs[i] / bw;
    }
    bench_progress(NULL);
    if (!rc) {
        const struct bench_stat st = bench_stats(tps, o->reps), sg = bench_stats(gbs, o->reps);
        const struct bench_stat sp = bench_stats(probe, o->reps), sr = bench_stats(ratio, o->reps);
        const char *name = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        const struct bench_cell cells[] = {
            {"model", name, 0, 0},
            {"kernels", elm_kernels_active()->name, 0, 0},
            {"MB per token", NULL, step_bytes / 1e6, 1},
            {"tg t/s", NULL, st.median, 1},
            {"decode GB/s", NULL, sg.median, 2},
            {"min", NULL, sg.min, 2},
            {"max", NULL, sg.max, 2},
            {"stream GB/s", NULL, sp.median, 2},
            {"% of stream", NULL, 100.0 * sr.median, 1},
            /* a model that fits in the caches is read from them, faster than the probe */
            {"check", roofline_check(unresolved, sr.median, true, 0), 0, 0},
        };
        bench_row(o, "decode", cells, (int)(sizeof cells / sizeof *cells));
    } else {
        fprintf(stderr, "elm-bench kernels: %s: %s\n", path, elm_strerror(rc));
    }
    elm_kv_destroy(&kv);
    elm_work_destroy(&w);
    elm_model_destroy(&m);
    free(logits);
    return rc ? 1 : 0;
}

/* ---- --plot ---------------------------------------------------------------------------------- */

/* the most variants one architecture builds: ref, avx2, avx512 / ref, neon, dotprod, i8mm */
enum { MAX_VARIANTS = 4 };

/* The kernel variants built in, reference first (the dispatch table lists them best first). */
static int built_variants(const char *out[MAX_VARIANTS])
{
    int total = 0, n = 0;
    while (elm_kernels_variant((size_t)total))
        total++;
    for (int i = total - 1; i >= 0 && n < MAX_VARIANTS; i--)
        out[n++] = elm_kernels_variant((size_t)i);
    return n;
}

/* Bars per type, one per variant this CPU runs (never measured: median 0), with min..max. */
static int plot_kernels(const struct bench_opts *o, const enum elm_type *types, int nt,
                        const char *const variants[], int nv,
                        struct bench_stat res[16][MAX_VARIANTS][2], int64_t toks)
{
    static struct svg_chart ch[2];
    static char title[96];
    memset(ch, 0, sizeof ch);
    snprintf(title, sizeof title, "elm-bench kernels: mat×mat, %lld tokens", (long long)toks);
    ch[0] = (struct svg_chart){.title = "elm-bench kernels: mat×vec (decode) weight bandwidth",
                               .xlabel = "weight type",
                               .ylabel = "GB/s",
                               .bars = true};
    ch[1] = (struct svg_chart){
        .title = title, .xlabel = "weight type", .ylabel = "GFLOP/s", .bars = true};
    for (int c = 0; c < 2; c++) {
        ch[c].n_cats = nt < SVG_MAX_CATS ? nt : SVG_MAX_CATS;
        for (int i = 0; i < ch[c].n_cats; i++)
            ch[c].cats[i] = elm_type_get(types[i])->name;
        for (int v = 0; v < nv; v++) {
            if (!elm_kernels_get(variants[v]))
                continue;
            struct svg_series *se = &ch[c].series[ch[c].n_series++];
            se->name = variants[v];
            se->has_range = true;
            for (int i = 0; i < ch[c].n_cats; i++) {
                se->y[i] = res[i][v][c].median;
                se->lo[i] = res[i][v][c].min;
                se->hi[i] = res[i][v][c].max;
            }
        }
    }
    char err[512];
    if (svg_write(o->plot, ch, 2, err, sizeof err)) {
        fprintf(stderr, "elm-bench kernels: %s\n", err);
        return 1;
    }
    return 0;
}

/* ---- the command ----------------------------------------------------------------------------- */

static int parse_types(const char *list, enum elm_type *out, int max)
{
    static const enum elm_type all[] = {ELM_TYPE_Q4_0, ELM_TYPE_Q4_K, ELM_TYPE_Q6_K, ELM_TYPE_Q8_0,
                                        ELM_TYPE_Q5_K, ELM_TYPE_Q5_0, ELM_TYPE_Q4_1, ELM_TYPE_Q5_1,
                                        ELM_TYPE_Q2_K, ELM_TYPE_Q3_K, ELM_TYPE_F16,  ELM_TYPE_F32};
    int n = 0;
    if (!list) {
        for (size_t i = 0; i < sizeof all / sizeof *all && n < max; i++)
            out[n++] = all[i];
        return n;
    }
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *save, *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        int t = elm_type_from_name(tok);
        const struct elm_type_info *ti = t < 0 ? NULL : elm_type_get((uint32_t)t);
        if (!ti || !ti->is_weight || t == ELM_TYPE_BF16) {
            fprintf(stderr, "elm-bench kernels: '%s' is not a weight type\n", tok);
            return -1;
        }
        if (n < max)
            out[n++] = (enum elm_type)t;
    }
    return n;
}

/* Reads the subcommand's options into *ko and o->plot. Returns -1 to go on, else the exit code. */
static int parse_kopts(struct bench_opts *o, int argc, char **argv, struct kopts *ko_out)
{
    static const struct option lo[] = {
        {"types", required_argument, 0, 'T'}, {"rows", required_argument, 0, 'r'},
        {"cols", required_argument, 0, 'c'},  {"tokens", required_argument, 0, 'n'},
        {"hot", no_argument, 0, 'H'},         {"model", required_argument, 0, 'm'},
        {"synth", required_argument, 0, 's'}, {"plot", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    struct kopts ko = {.rows = 4096,
                       .cols = 4096,
                       .toks = 64,
                       .llc_bytes = 256 << 20,
                       .bw_bytes = bench_stream_bytes(false)};
    if (o->quick) {
        ko = (struct kopts){.rows = 512,
                            .cols = 1024,
                            .toks = 8,
                            .llc_bytes = 8 << 20,
                            .bw_bytes = bench_stream_bytes(true)};
    }
    static char synth_paths[MAX_MODELS][512];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "T:r:c:n:Hm:s:P:h", lo, NULL)) != -1) {
        char *end;
        long v = 0;
        if (c == 'r' || c == 'c' || c == 'n') {
            v = strtol(optarg, &end, 10);
            if (*end || v < 1 || v > (1 << 20)) {
                fprintf(stderr, "elm-bench kernels: expected 1..%d, got '%s'\n", 1 << 20, optarg);
                return 2;
            }
        }
        switch (c) {
        case 'T':
            ko.types = optarg;
            break;
        case 'r':
            ko.rows = v;
            break;
        case 'c':
            ko.cols = v;
            break;
        case 'n':
            ko.toks = v;
            break;
        case 'H':
            ko.llc_bytes = 0;
            break;
        case 'P':
            o->plot = optarg;
            break;
        case 'm':
        case 's':
            if (ko.n_models == MAX_MODELS) {
                fprintf(stderr, "elm-bench kernels: at most %d models\n", MAX_MODELS);
                return 2;
            }
            if (c == 's') {
                char err[512];
                if (bench_synth(optarg, synth_paths[ko.n_models], sizeof synth_paths[0], err,
                                sizeof err)) {
                    fprintf(stderr, "elm-bench kernels: %s\n", err);
                    return 2;
                }
                optarg = synth_paths[ko.n_models];
            }
            ko.models[ko.n_models++] = optarg;
            break;
        case 'h':
            printf("usage: elm-bench kernels [--types q4_0,q8_0,...] [--rows N] [--cols N] "
                   "[--tokens N] [--hot] [--plot FILE.svg]\n"
                   "       elm-bench kernels (--model FILE | --synth SHAPE:TYPE)...\n"
                   "mat×vec GB/s against the measured streaming-read bandwidth, "
                   "and mat×mat GFLOP/s of N tokens (default 64) against the int8 peak,\nfor "
                   "every weight type and every kernel variant this CPU runs. --cols must be a "
                   "multiple of 256 (default 4096 x 4096).\n--hot: mat×vec over one matrix, from "
                   "the caches when it fits (kernel throughput rather than memory).\nWith models: "
                   "decode of %d tokens (active kernels) against the same probe, instead of "
                   "the per-type table.\n",
                   DECODE_TOKENS);
            return 0;
        default:
            return 2;
        }
    }
    *ko_out = ko;
    return -1;
}

/* Prints the streaming-read bandwidth by thread count, measured on buf[words]. */
static void print_stream(const struct bench_opts *o, const struct kopts *ko, uint64_t *buf,
                         size_t words, uint64_t *sink)
{
    for (int th = 1; th <= o->threads; th++) {
        double v[MAX_REPS];
        bench_stream_once(buf, words, th, sink);
        for (int i = 0; i < o->reps; i++)
            v[i] = bench_stream_once(buf, words, th, sink);
        const struct bench_stat s = bench_stats(v, o->reps);
        const struct bench_cell cells[] = {
            {"threads", NULL, th, 0},
            {"stream read GB/s", NULL, s.median, 2},
            {"min", NULL, s.min, 2},
            {"max", NULL, s.max, 2},
            {"buffer MiB", NULL, (double)ko->bw_bytes / (1 << 20), 0},
        };
        bench_row(o, "stream", cells, (int)(sizeof cells / sizeof *cells));
    }
    bench_end_table(o);
}

/* Prints the measured clock and the int8 peak; returns the peak in GFLOP/s. */
static double print_peak(const struct bench_opts *o)
{
    double hz, macs;
    const double peak = bench_int8_peak(o->threads, &hz, &macs);
    const struct bench_cell pc[] = {
        {"clock GHz (measured)", NULL, hz / 1e9, 2},
        {"cores", NULL, o->threads, 0},
        {"int8 MAC/cycle/core", NULL, macs, 1},
        {"int8 peak GFLOP/s", NULL, peak, 0},
    };
    bench_row(o, "peak", pc, (int)(sizeof pc / sizeof *pc));
    bench_end_table(o);
    return peak;
}

int bench_kernels(const struct bench_opts *go, int argc, char **argv)
{
    struct bench_opts opts = *go, *o = &opts; /* --plot may also follow the subcommand */
    struct kopts ko;
    int rc = parse_kopts(o, argc, argv, &ko);
    if (rc >= 0)
        return rc;
    enum elm_type types[16];
    const int nt = parse_types(ko.types, types, 16);
    if (nt <= 0)
        return 2;
    if (ko.cols % 256) {
        fprintf(stderr, "elm-bench kernels: --cols must be a multiple of 256\n");
        return 2;
    }
    if (o->reps > MAX_REPS)
        return 2;
    bench_print_header(o, "kernels");

    /* streaming-read bandwidth by thread count */
    const size_t words = ko.bw_bytes / sizeof(uint64_t);
    uint64_t *buf = bench_stream_buffer(words), sink = 0;
    if (!buf) {
        fprintf(stderr, "elm-bench kernels: cannot allocate the probe buffer\n");
        return 1;
    }
    print_stream(o, &ko, buf, words, &sink);
    const double peak = print_peak(o);

    elm_pool_set_threads(o->threads);
    if (ko.n_models > 0) {
        if (o->plot)
            fprintf(stderr, "elm-bench kernels: --plot draws the per-type sweep, not --model\n");
        int fails = 0;
        for (int i = 0; i < ko.n_models; i++)
            fails += bench_decode(o, ko.models[i], buf, words);
        bench_end_table(o);
        free(buf);
        return fails || sink == 1 ? 1 : 0;
    }
    const char *variants[MAX_VARIANTS];
    const int nv = built_variants(variants);
    /* [type][variant]: mat×vec GB/s, mat×mat GFLOP/s */
    struct bench_stat res[16][MAX_VARIANTS][2] = {0};
    int fails = 0;
    for (int i = 0; i < nt; i++)
        for (int v = 0; v < nv; v++) {
            const struct elm_kernels *k = elm_kernels_get(variants[v]);
            if (k)
                fails += bench_type(o, &ko, types[i], k, buf, words, peak, res[i][v]);
        }
    bench_end_table(o);
    if (o->plot)
        fails += plot_kernels(o, types, nt, variants, nv, res, ko.toks);
    free(buf);
    return fails || sink == 1 ? 1 : 0;
}
