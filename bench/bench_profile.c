/* bench_profile.c — `elm-bench profile`: where one decode step and one prefill chunk spend their
 * time, per operation and per layer, so the hot spot is obvious.
 *
 * The engine's profiler (engine/prof.h) adds the wall-clock nanoseconds of each operation of a
 * pass to counters, reading the clock only between operations. Each repetition profiles, in
 * turn, S decode steps of one token at position P (default 128; the cache holds P tokens, and
 * the same position is rewritten each step so every step costs the same) and one prefill chunk
 * of T tokens (default 64) at positions 0..T-1. Figures are per token; each is the median over
 * repetitions (after a warm-up), shares are taken within a repetition.
 *
 * The matmul share is the sum of the matrix-multiplication operations (elm_prof_op_is_matmul)
 * over the profiled total; the matmuls' effective weight bandwidth is the weight bytes they read
 * (counted by the engine) over their time: in decode, the figure to hold against the machine's
 * streaming bandwidth (elm-bench kernels).
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench/bench.h"
#include "elm/status.h"
#include "engine/kv.h"
#include "engine/model.h"
#include "engine/prof.h"

#define N_OPS ELM_PROF_OP_COUNT

enum phase { DECODE, PREFILL, N_PHASES };
static const char *const phase_name[N_PHASES] = {"decode", "prefill"};

/* Per-layer op groups: which operations each column of the layer table adds up. */
enum group { G_ATTN_MAT, G_ATTN, G_FFN, G_OTHER, N_GROUPS };
static const char *const group_name[N_GROUPS] = {"qkv+o us", "rope+attention us", "ffn us",
                                                 "norm+quant+resid us"};
static enum group op_group(int op)
{
    switch (op) {
    case ELM_PROF_MAT_QKV:
    case ELM_PROF_MAT_O:
        return G_ATTN_MAT;
    case ELM_PROF_ROPE:
    case ELM_PROF_ATTENTION:
        return G_ATTN;
    case ELM_PROF_MAT_FFN:
    case ELM_PROF_SILU:
        return G_FFN;
    default:
        return G_OTHER;
    }
}

struct popts {
    const char *path;
    int pos;   /* P: decode position */
    int chunk; /* T: prefill tokens */
    int steps; /* S: decode steps per repetition */
};

/* What the repetitions produced, per phase: [phase][rep] series. */
struct samples {
    int reps, n_layer;
    double *op;    /* [phase][op][rep] ns per token */
    double *share; /* [phase][op][rep] % of the profiled total */
    double *mm;    /* [phase][rep] matmul share % */
    double *gbs;   /* [phase][rep] matmul weight GB/s */
    double *wall;  /* [phase][rep] wall ms per token */
    double *sum;   /* [phase][rep] profiled ms per token */
    double *layer; /* [phase][layer][group][rep] us per token */
};

#define OP(s, ph, op, r)                                                                           \
    (s)->op[((size_t)(ph)*N_OPS + (size_t)(op)) * (size_t)(s)->reps + (size_t)(r)]
#define SHARE(s, ph, op, r)                                                                        \
    (s)->share[((size_t)(ph)*N_OPS + (size_t)(op)) * (size_t)(s)->reps + (size_t)(r)]
#define PH(a, s, ph, r) (s)->a[(size_t)(ph) * (size_t)(s)->reps + (size_t)(r)]
#define LAYER(s, ph, l, g, r)                                                                      \
    (s)->layer[(((size_t)(ph) * (size_t)(s)->n_layer + (size_t)(l)) * N_GROUPS + (size_t)(g)) *    \
                   (size_t)(s)->reps +                                                             \
               (size_t)(r)]

static void samples_free(struct samples *s)
{
    free(s->op);
    free(s->share);
    free(s->mm);
    free(s->gbs);
    free(s->wall);
    free(s->sum);
    free(s->layer);
}

static int samples_init(struct samples *s, int reps, int n_layer)
{
    const size_t r = (size_t)reps;
    *s = (struct samples){.reps = reps, .n_layer = n_layer};
    s->op = calloc(N_PHASES * N_OPS * r, sizeof(double));
    s->share = calloc(N_PHASES * N_OPS * r, sizeof(double));
    s->mm = calloc(N_PHASES * r, sizeof(double));
    s->gbs = calloc(N_PHASES * r, sizeof(double));
    s->wall = calloc(N_PHASES * r, sizeof(double));
    s->sum = calloc(N_PHASES * r, sizeof(double));
    s->layer = calloc(N_PHASES * (size_t)n_layer * N_GROUPS * r, sizeof(double));
    if (!s->op || !s->share || !s->mm || !s->gbs || !s->wall || !s->sum || !s->layer) {
        samples_free(s);
        return -ENOMEM;
    }
    return 0;
}

/* Files one profiled measurement of `tokens` tokens taking `wall` seconds as repetition r. */
static int record(struct samples *s, enum phase ph, int r, const struct elm_prof *p, int tokens,
                  double wall)
{
    if (p->tokens != (uint64_t)tokens) {
        fprintf(stderr, "elm-bench profile: the profiler counted %llu tokens, %d ran\n",
                (unsigned long long)p->tokens, tokens);
        return ELM_EPROTO;
    }
    uint64_t total = 0, mm = 0;
    for (int op = 0; op < N_OPS; op++) {
        total += p->ns[op];
        mm += elm_prof_op_is_matmul(op) ? p->ns[op] : 0;
    }
    if (!total || !mm) {
        fprintf(stderr, "elm-bench profile: the profiler recorded no time\n");
        return ELM_EPROTO;
    }
    for (int op = 0; op < N_OPS; op++) {
        OP(s, ph, op, r) = (double)p->ns[op] / tokens;
        SHARE(s, ph, op, r) = 100.0 * (double)p->ns[op] / (double)total;
    }
    PH(mm, s, ph, r) = 100.0 * (double)mm / (double)total;
    PH(gbs, s, ph, r) = (double)p->matmul_bytes / (double)mm; /* bytes per ns = GB/s */
    PH(wall, s, ph, r) = wall * 1e3 / tokens;
    PH(sum, s, ph, r) = (double)total / 1e6 / tokens;
    for (int l = 0; l < s->n_layer; l++) {
        for (int g = 0; g < N_GROUPS; g++)
            LAYER(s, ph, l, g, r) = 0;
        for (int op = 0; op < N_OPS; op++)
            LAYER(s, ph, l, op_group(op), r) +=
                (double)p->per_layer[(size_t)l * N_OPS + (size_t)op] / 1e3 / tokens;
    }
    return 0;
}

/* ---- measuring ------------------------------------------------------------------------------- */

struct rig {
    struct elm_model *m;
    struct elm_work *w;
    struct elm_kv *kv;
    float *logits;
    struct elm_batch_item *items;
    uint64_t *per_layer;
};

static int32_t token_at(const struct elm_model *m, int i)
{
    return (int32_t)(((uint64_t)i * 7919u + 3) % (uint64_t)m->hp.n_vocab);
}

/* Positions [from, to) as prefill chunks of at most n, logits of the last position. */
static int prefill(struct rig *g, int from, int to, int n)
{
    int rc = 0;
    for (int pos = from; pos < to && !rc; pos += n) {
        const int k = to - pos < n ? to - pos : n;
        for (int i = 0; i < k; i++)
            g->items[i] = (struct elm_batch_item){.token = token_at(g->m, pos + i),
                                                  .pos = pos + i,
                                                  .kv = g->kv,
                                                  .logits = pos + i == to - 1 ? g->logits : NULL};
        rc = elm_model_forward(g->m, g->w, g->items, k);
    }
    return rc;
}

static int decode(struct rig *g, int pos, int steps)
{
    int rc = 0;
    for (int s = 0; s < steps && !rc; s++) {
        struct elm_batch_item it = {
            .token = token_at(g->m, pos + s), .pos = pos, .kv = g->kv, .logits = g->logits};
        rc = elm_model_forward(g->m, g->w, &it, 1);
    }
    return rc;
}

/* One profiled run of phase ph into repetition r (r < 0: warm-up, not filed). */
static int profiled(struct rig *g, const struct popts *po, struct samples *s, enum phase ph, int r)
{
    const int L = g->m->hp.n_layer;
    struct elm_prof p = {.n_layer = L, .per_layer = g->per_layer};
    memset(g->per_layer, 0, (size_t)L * N_OPS * sizeof *g->per_layer);
    elm_work_set_prof(g->w, &p);
    const double t0 = bench_now();
    int rc = ph == DECODE ? decode(g, po->pos, po->steps) : prefill(g, 0, po->chunk, po->chunk);
    const double dt = bench_now() - t0;
    elm_work_set_prof(g->w, NULL);
    if (rc || r < 0)
        return rc;
    return record(s, ph, r, &p, ph == DECODE ? po->steps : po->chunk, dt);
}

/* ---- output ---------------------------------------------------------------------------------- */

static struct bench_stat stat_of(const double *v, int n)
{
    double tmp[1000];
    memcpy(tmp, v, (size_t)n * sizeof *tmp);
    return bench_stats(tmp, n);
}

static void print_tables(const struct bench_opts *o, const struct popts *po, const char *name,
                         const struct samples *s, double weight_mb)
{
    const int R = s->reps;
    /* per operation, hottest decode operation first */
    int order[N_OPS];
    double med[N_OPS];
    for (int op = 0; op < N_OPS; op++) {
        order[op] = op;
        med[op] = stat_of(&OP(s, DECODE, op, 0), R).median;
    }
    for (int i = 1; i < N_OPS; i++)
        for (int j = i; j > 0 && med[order[j]] > med[order[j - 1]]; j--) {
            int t = order[j];
            order[j] = order[j - 1];
            order[j - 1] = t;
        }
    for (int i = 0; i < N_OPS; i++) {
        const int op = order[i];
        const struct bench_stat d = stat_of(&OP(s, DECODE, op, 0), R);
        const struct bench_stat p = stat_of(&OP(s, PREFILL, op, 0), R);
        const struct bench_cell cells[] = {
            {"model", name, 0, 0},
            {"op", elm_prof_op_name(op), 0, 0},
            {"matmul", elm_prof_op_is_matmul(op) ? "yes" : "no", 0, 0},
            {"decode ns/token", NULL, d.median, 0},
            {"decode min", NULL, d.min, 0},
            {"decode max", NULL, d.max, 0},
            {"decode %", NULL, stat_of(&SHARE(s, DECODE, op, 0), R).median, 1},
            {"prefill ns/token", NULL, p.median, 0},
            {"prefill min", NULL, p.min, 0},
            {"prefill max", NULL, p.max, 0},
            {"prefill %", NULL, stat_of(&SHARE(s, PREFILL, op, 0), R).median, 1},
        };
        bench_row(o, "profile-ops", cells, (int)(sizeof cells / sizeof *cells));
    }
    bench_end_table(o);

    for (int ph = 0; ph < N_PHASES; ph++) {
        const struct bench_stat w = stat_of(&PH(wall, s, ph, 0), R);
        const struct bench_stat g = stat_of(&PH(gbs, s, ph, 0), R);
        const struct bench_cell cells[] = {
            {"model", name, 0, 0},
            {"phase", phase_name[ph], 0, 0},
            {"tokens per pass", NULL, ph == DECODE ? 1 : po->chunk, 0},
            {"position", NULL, ph == DECODE ? po->pos : 0, 0},
            {"ms/token", NULL, w.median, 3},
            {"min", NULL, w.min, 3},
            {"max", NULL, w.max, 3},
            {"profiled ms/token", NULL, stat_of(&PH(sum, s, ph, 0), R).median, 3},
            {"matmul %", NULL, stat_of(&PH(mm, s, ph, 0), R).median, 1},
            {"matmul GB/s", NULL, g.median, 2},
            {"GB/s min", NULL, g.min, 2},
            {"GB/s max", NULL, g.max, 2},
            {"weights MB", NULL, weight_mb, 1},
        };
        bench_row(o, "profile", cells, (int)(sizeof cells / sizeof *cells));
    }
    bench_end_table(o);

    for (int ph = 0; ph < N_PHASES; ph++)
        for (int l = 0; l < s->n_layer; l++) {
            struct bench_cell cells[4 + N_GROUPS];
            double total = 0;
            cells[0] = (struct bench_cell){"model", name, 0, 0};
            cells[1] = (struct bench_cell){"phase", phase_name[ph], 0, 0};
            cells[2] = (struct bench_cell){"layer", NULL, l, 0};
            for (int g = 0; g < N_GROUPS; g++) {
                const double v = stat_of(&LAYER(s, ph, l, g, 0), R).median;
                cells[3 + g] = (struct bench_cell){group_name[g], NULL, v, 1};
                total += v;
            }
            cells[3 + N_GROUPS] = (struct bench_cell){"layer us", NULL, total, 1};
            bench_row(o, "profile-layers", cells, 4 + N_GROUPS);
        }
    bench_end_table(o);
}

/* ---- the command ----------------------------------------------------------------------------- */

static int run(const struct bench_opts *o, const struct popts *po)
{
    char err[512];
    struct elm_model_params mp = {.n_threads = o->threads};
    struct rig g = {0};
    struct samples s = {0};
    int rc = elm_model_load(po->path, &mp, &g.m, err, sizeof err);
    if (rc) {
        fprintf(stderr, "elm-bench profile: %s: %s\n", po->path, err);
        return 1;
    }
    const int L = g.m->hp.n_layer, n_ctx = (po->pos > po->chunk ? po->pos : po->chunk) + 1;
    g.logits = malloc((size_t)g.m->hp.n_vocab * sizeof *g.logits);
    g.items = malloc((size_t)po->chunk * sizeof *g.items);
    g.per_layer = calloc((size_t)L * N_OPS, sizeof *g.per_layer);
    rc = !g.logits || !g.items || !g.per_layer ? -ENOMEM : 0;
    if (!rc)
        rc = elm_work_create(g.m, po->chunk, n_ctx, &g.w);
    if (!rc)
        rc = elm_kv_create(g.m, n_ctx, ELM_TYPE_F16, &g.kv);
    if (!rc)
        rc = samples_init(&s, o->reps, L);
    if (!rc) /* the cache decode attends over: P tokens */
        rc = prefill(&g, 0, po->pos, po->chunk);
    for (int r = -1; r < o->reps && !rc; r++) { /* r = -1: warm-up */
        bench_progress("profile: rep %d/%d", r + 1, o->reps);
        rc = profiled(&g, po, &s, DECODE, r);
        if (!rc)
            rc = profiled(&g, po, &s, PREFILL, r);
    }
    bench_progress(NULL);
    if (!rc) {
        const char *b = strrchr(po->path, '/');
        print_tables(o, po, b ? b + 1 : po->path, &s, (double)g.m->weight_bytes / 1e6);
    } else if (rc != ELM_EPROTO) {
        fprintf(stderr, "elm-bench profile: %s: %s\n", po->path, elm_strerror(rc));
    }
    samples_free(&s);
    elm_kv_destroy(&g.kv);
    elm_work_destroy(&g.w);
    free(g.logits);
    free(g.items);
    free(g.per_layer);
    elm_model_destroy(&g.m);
    return rc ? 1 : 0;
}

static int parse_int(const char *opt, const char *s, int lo, int hi, int *out)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < lo || v > hi) {
        fprintf(stderr, "elm-bench profile: %s expects %d..%d, got '%s'\n", opt, lo, hi, s);
        return -1;
    }
    *out = (int)v;
    return 0;
}

int bench_profile(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"model", required_argument, 0, 'm'},
        {"synth", required_argument, 0, 's'},
        {"pos", required_argument, 0, 'P'},
        {"chunk", required_argument, 0, 'T'},
        {"steps", required_argument, 0, 'S'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    static char synth[512];
    struct popts po = {
        .pos = o->quick ? 16 : 128, .chunk = o->quick ? 8 : 64, .steps = o->quick ? 4 : 16};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:s:P:T:S:h", lo, NULL)) != -1) {
        char err[512];
        switch (c) {
        case 'm':
            po.path = optarg;
            break;
        case 's':
            if (bench_synth(optarg, synth, sizeof synth, err, sizeof err)) {
                fprintf(stderr, "elm-bench profile: --synth: %s\n", err);
                return 2;
            }
            po.path = synth;
            break;
        case 'P':
            if (parse_int("--pos", optarg, 0, 65536, &po.pos))
                return 2;
            break;
        case 'T':
            if (parse_int("--chunk", optarg, 1, 4096, &po.chunk))
                return 2;
            break;
        case 'S':
            if (parse_int("--steps", optarg, 1, 100000, &po.steps))
                return 2;
            break;
        case 'h':
            printf("usage: elm-bench profile (--model FILE | --synth SHAPE:TYPE) [--pos P] "
                   "[--chunk T] [--steps S]\n"
                   "Time per operation and per layer, per token: S decode steps (default 16) "
                   "of one token at\nposition P (default 128), and one prefill chunk of T "
                   "tokens (default 64). Also the matmul\nshare of the time and the matmuls' "
                   "effective weight bandwidth (compare: elm-bench kernels).\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "elm-bench profile: unexpected argument '%s'\n", argv[optind]);
        return 2;
    }
    if (!po.path) {
        fprintf(stderr, "elm-bench profile: give --model FILE or --synth SHAPE:TYPE\n");
        return 2;
    }
    if (o->reps > 1000)
        return 2;
    bench_print_header(o, "profile");
    return run(o, &po);
}
