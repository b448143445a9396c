/* bench_compress.c — `elm-bench compress MODEL TEXTFILE`: what each way of shrinking a model
 * costs. For every variant of a list (quantization types, layer pruning, both), the file is
 * made from MODEL, then measured: file size, KL-divergence from MODEL on TEXTFILE (chunked and
 * scored as `elmctl perplexity`, the base's log-probabilities quantized as in a kld-base file),
 * and prompt/decode speed (bench_model's measurement). One table, and with --plot one SVG of
 * size vs KLD with the decode speed as each point's label and the Pareto front (no other variant
 * is both smaller and closer) marked.
 *
 * It is an elm-bench subcommand, not an elmctl one, because the speed column is elm-bench's
 * model measurement (repetitions, medians, the machine header) and the plot is its SVG writer.
 *
 * The variant list is data: a variant is up to MAX_STEPS steps, each a function from an input
 * file to an output file with one argument. A new kind of compression (FFN-width pruning) is one
 * step function and one line per variant in `variants`.
 */
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bench/bench.h"
#include "bench/bench_svg.h"
#include "elm/status.h"
#include "engine/eval.h"
#include "engine/model.h"
#include "engine/prune.h"
#include "engine/quantize.h"

#define MAX_STEPS 2

struct job; /* the run's shared state, below */

struct step {
    int (*fn)(struct job *j, const char *in, const char *out, const char *arg, char *err,
              size_t errlen);
    const char *arg;
};

struct variant {
    const char *name;
    struct step steps[MAX_STEPS];
};

struct job {
    const struct bench_opts *o;
    const char *base;        /* MODEL */
    struct elm_model *m;     /* MODEL, loaded once */
    int32_t *tokens, n_ctx, n_chunk;
    uint16_t *recs;          /* the base's quantized log-probs, every scored position */
    double *influence;       /* [n_layer] block influence, measured on first use */
    double base_ppl;
};

static int step_quantize(struct job *j, const char *in, const char *out, const char *arg,
                         char *err, size_t errlen)
{
    return elm_quantize_file(in, out, arg, false, j->o->threads, NULL, err, errlen);
}

/* Drops the arg (a count) blocks of least influence on the text, as `elmctl prune --layers`. */
static int step_prune_layers(struct job *j, const char *in, const char *out, const char *arg,
                             char *err, size_t errlen)
{
    const int32_t L = j->m->hp.n_layer, n = atoi(arg);
    if (n < 1 || n >= L) { /* not a variant of this model: run_all leaves it out */
        snprintf(err, errlen, "the model has %d blocks: nothing would be left", L);
        return -EDOM;
    }
    if (!j->influence) {
        struct elm_eval *e = NULL;
        double *inf = malloc((size_t)L * sizeof *inf);
        int rc = inf ? elm_eval_create(j->m, j->n_ctx, ELM_TYPE_F16, &e) : -ENOMEM;
        if (!rc)
            rc = elm_prune_measure(e, j->m, j->tokens, j->n_chunk, inf, NULL);
        elm_eval_destroy(&e);
        if (rc) {
            free(inf);
            snprintf(err, errlen, "measuring block influence: %s", elm_strerror(rc));
            return rc;
        }
        j->influence = inf;
    }
    bool *drop = calloc((size_t)L, sizeof *drop);
    if (!drop)
        return -ENOMEM;
    elm_prune_pick(j->influence, L, n, drop);
    int rc = elm_prune_layers(in, out, drop, L, NULL, err, errlen);
    free(drop);
    return rc;
}

/* The default list. Types the model's rows do not fit fall back as the quantizer does (so a
 * 64-wide model's q4_k_m is mostly Q5_0): the size column says what was written. */
static const struct variant variants[] = {
    {"f16", {{step_quantize, "f16"}}},
    {"q8_0", {{step_quantize, "q8_0"}}},
    {"q6_k", {{step_quantize, "q6_k"}}},
    {"q5_k_m", {{step_quantize, "q5_k_m"}}},
    {"q5_0", {{step_quantize, "q5_0"}}},
    {"q4_k_m", {{step_quantize, "q4_k_m"}}},
    {"q4_1", {{step_quantize, "q4_1"}}},
    {"q4_0", {{step_quantize, "q4_0"}}},
    {"iq4_nl", {{step_quantize, "iq4_nl"}}},
    {"iq4_xs", {{step_quantize, "iq4_xs"}}},
    {"q3_k_m", {{step_quantize, "q3_k_m"}}},
    {"q2_k", {{step_quantize, "q2_k"}}},
    {"prune1", {{step_prune_layers, "1"}}},
    {"prune2", {{step_prune_layers, "2"}}},
    {"prune1+q8_0", {{step_prune_layers, "1"}, {step_quantize, "q8_0"}}},
    {"prune1+q4_k_m", {{step_prune_layers, "1"}, {step_quantize, "q4_k_m"}}},
};
#define N_VARIANTS ((int)(sizeof variants / sizeof *variants))

/* The base pass: every chunk's scored positions, quantized as a kld-base file keeps them. */
static int base_pass(struct job *j)
{
    const int32_t V = j->m->hp.n_vocab, first = elm_eval_first(j->n_ctx);
    const int32_t ns = elm_eval_n_scored(j->n_ctx);
    const size_t nv = (size_t)elm_logprobs_nv(V);
    struct elm_eval *e = NULL;
    float *logits = malloc((size_t)(j->n_ctx - first) * (size_t)V * sizeof *logits);
    j->recs = malloc((size_t)j->n_chunk * (size_t)ns * nv * sizeof *j->recs);
    int rc = logits && j->recs ? elm_eval_create(j->m, j->n_ctx, ELM_TYPE_F16, &e) : -ENOMEM;
    struct elm_ppl ppl = {0};
    for (int32_t i = 0; i < j->n_chunk && !rc; i++) {
        const int32_t *tk = j->tokens + (size_t)i * (size_t)j->n_ctx;
        bench_progress("compress: base model, chunk %d/%d", i + 1, j->n_chunk);
        rc = elm_eval_chunk(e, tk, first, logits);
        for (int32_t p = 0; p < ns && !rc; p++)
            elm_ppl_add(&ppl, elm_logprobs_encode(logits + (size_t)p * V, V, tk[first + p + 1],
                                                  j->recs + ((size_t)i * ns + p) * nv));
    }
    j->base_ppl = elm_ppl_value(&ppl);
    elm_eval_destroy(&e);
    free(logits);
    return rc;
}

/* KL-divergence statistics of the model in path from the base records. */
static int kld_of(struct job *j, const char *path, struct elm_kld_stats *s, char *err,
                  size_t errlen)
{
    struct elm_model_params mp = {.n_threads = j->o->threads};
    struct elm_model *m = NULL;
    int rc = elm_model_load(path, &mp, &m, err, errlen);
    if (rc)
        return rc;
    const int32_t V = m->hp.n_vocab, first = elm_eval_first(j->n_ctx);
    const int32_t ns = elm_eval_n_scored(j->n_ctx);
    const size_t nv = (size_t)elm_logprobs_nv(V);
    struct elm_eval *e = NULL;
    struct elm_kld k = {0};
    float *logits = malloc((size_t)(j->n_ctx - first) * (size_t)V * sizeof *logits);
    rc = V != j->m->hp.n_vocab ? -EINVAL
         : logits            ? elm_eval_create(m, j->n_ctx, ELM_TYPE_F16, &e)
                             : -ENOMEM;
    for (int32_t i = 0; i < j->n_chunk && !rc; i++) {
        const int32_t *tk = j->tokens + (size_t)i * (size_t)j->n_ctx;
        bench_progress("compress: %s, chunk %d/%d", path, i + 1, j->n_chunk);
        rc = elm_eval_chunk(e, tk, first, logits);
        for (int32_t p = 0; p < ns && !rc; p++)
            rc = elm_kld_add(&k, logits + (size_t)p * V, V, j->recs + ((size_t)i * ns + p) * nv,
                             tk[first + p + 1]);
    }
    if (!rc)
        rc = elm_kld_stats(&k, s);
    if (rc)
        snprintf(err, errlen, "%.200s: %s", path, elm_strerror(rc));
    elm_kld_fini(&k);
    elm_eval_destroy(&e);
    free(logits);
    elm_model_destroy(&m);
    return rc;
}

struct result {
    const char *name;
    double mb, kld, kld_err, same_top, ppl, pp, tg;
    bool front;
};

static double file_mb(const char *path)
{
    struct stat st;
    return stat(path, &st) ? NAN : (double)st.st_size / 1e6;
}

/* Makes variant v in dir (its last step's file is *path). */
static int make_variant(struct job *j, const struct variant *v, const char *dir, char *path,
                        size_t pathlen, char *err, size_t errlen)
{
    const char *in = j->base;
    char tmp[2][1024];
    int rc = 0, k = 0;
    for (; k < MAX_STEPS && v->steps[k].fn && !rc; k++) {
        if (snprintf(tmp[k % 2], sizeof tmp[0], "%.900s/%s.%d.gguf", dir, v->name, k) >=
            (int)sizeof tmp[0]) {
            snprintf(err, errlen, "the directory name is too long");
            rc = -ENAMETOOLONG;
            break;
        }
        rc = v->steps[k].fn(j, in, tmp[k % 2], v->steps[k].arg, err, errlen);
        if (in != j->base)
            unlink(in);
        in = tmp[k % 2];
    }
    if (!rc && snprintf(path, pathlen, "%s", in) >= (int)pathlen) {
        snprintf(err, errlen, "the model's path is too long");
        rc = -ENAMETOOLONG;
    }
    return rc;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: elm-bench compress MODEL TEXTFILE [--ctx N] [--chunks N] [--variants "
               "A,B,...] [--pp N] [--tg N] [--dir DIR]\n"
               "Makes each variant of MODEL (an F32/F16 GGUF) and measures its file size, its "
               "KL-divergence\nfrom MODEL on TEXTFILE (chunks of --ctx tokens, default 512, "
               "the second half of each\nscored, as elmctl perplexity), and its prompt (pp, "
               "default 128 tokens) and decode (tg,\ndefault 128) speed as elm-bench model "
               "measures them. --plot draws size vs KLD with the\nPareto front. The files "
               "are written to --dir (default: a new directory in $TMPDIR or /tmp,\nremoved "
               "after). Variants (default all):");
    for (int i = 0; i < N_VARIANTS; i++)
        fprintf(f, " %s", variants[i].name);
    fprintf(f, "\n");
}

static int pick_variants(const char *s, bool *use)
{
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", s);
    for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        int i = 0;
        while (i < N_VARIANTS && strcmp(variants[i].name, t))
            i++;
        if (i == N_VARIANTS) {
            fprintf(stderr, "elm-bench compress: unknown variant '%s'\n", t);
            return -1;
        }
        use[i] = true;
    }
    return 0;
}

static int read_text(const char *path, char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t cap = 1 << 16, n = 0, r;
    char *b = malloc(cap);
    while (b && (r = fread(b + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            char *nb = realloc(b, cap *= 2);
            if (!nb)
                free(b);
            b = nb;
        }
    }
    int rc = !b ? -ENOMEM : ferror(f) ? -EIO : 0;
    fclose(f);
    if (rc)
        free(b);
    *buf = rc ? NULL : b;
    *len = n;
    return rc;
}

/* Tokens and chunks of the text, as `elmctl perplexity` cuts them. */
static int load_text(struct job *j, const char *path, long chunks)
{
    char *text = NULL;
    size_t len = 0;
    int32_t n_tok = 0;
    int rc = read_text(path, &text, &len);
    if (rc) {
        fprintf(stderr, "elm-bench compress: %s: %s\n", path, strerror(-rc));
        return 2;
    }
    rc = elm_eval_tokenize(j->m, text, len, &j->tokens, &n_tok);
    free(text);
    if (rc || n_tok < 2 * j->n_ctx) {
        fprintf(stderr, "elm-bench compress: %s: %s\n", path,
                rc ? elm_strerror(rc) : "fewer than 2 x ctx tokens");
        return 1;
    }
    j->n_chunk = n_tok / j->n_ctx;
    if (chunks > 0 && chunks < j->n_chunk)
        j->n_chunk = (int32_t)chunks;
    return 0;
}

static void mark_front(struct result *r, int n)
{
    for (int i = 0; i < n; i++) {
        r[i].front = isfinite(r[i].mb) && isfinite(r[i].kld);
        for (int k = 0; k < n && r[i].front; k++)
            if (k != i && r[k].mb <= r[i].mb && r[k].kld <= r[i].kld &&
                (r[k].mb < r[i].mb || r[k].kld < r[i].kld))
                r[i].front = false;
    }
}

static int report(const struct bench_opts *o, const struct job *j, struct result *r, int n)
{
    mark_front(r, n);
    for (int i = 0; i < n; i++) {
        struct bench_cell cells[] = {
            {"variant", r[i].name, 0, 0},
            {"file MB", NULL, r[i].mb, 3},
            {"KLD", NULL, r[i].kld, 6},
            {"KLD err", NULL, r[i].kld_err, 6},
            {"same top %", NULL, r[i].same_top, 2},
            {"PPL", NULL, r[i].ppl, 4},
            {"pp t/s", NULL, r[i].pp, 1},
            {"tg t/s", NULL, r[i].tg, 1},
            {"Pareto", r[i].front ? "yes" : "", 0, 0},
        };
        bench_row(o, "compress", cells, (int)(sizeof cells / sizeof *cells));
    }
    bench_end_table(o);
    if (!o->plot)
        return 0;
    static struct svg_scatter sc;
    static char labels[SVG_MAX_CATS][96], title[256], note[160];
    const char *name = strrchr(j->base, '/') ? strrchr(j->base, '/') + 1 : j->base;
    snprintf(title, sizeof title, "%s: file size vs KL-divergence (%d chunks of %d)", name,
             j->n_chunk, j->n_ctx);
    snprintf(note, sizeof note, "label: variant, decode tokens/s (%d threads); filled and joined: "
             "Pareto front; base %.3f MB (KLD 0) not drawn", o->threads, r[0].mb);
    sc = (struct svg_scatter){.title = title, .xlabel = "file size (MB)",
                              .ylabel = "mean KLD from the base (log scale)", .note = note};
    for (int i = 0; i < n && sc.n < SVG_MAX_CATS; i++) {
        int k = 0; /* the same file under two names (a type that fell back): one point */
        while (k < sc.n && !(sc.pts[k].x == r[i].mb && sc.pts[k].y == r[i].kld))
            k++;
        const size_t len = k < sc.n ? strlen(labels[k]) : 0;
        snprintf(labels[k] + len, sizeof labels[0] - len, "%s%s %.0f t/s", len ? ", " : "",
                 r[i].name, r[i].tg);
        if (k == sc.n)
            sc.pts[sc.n++] = (struct svg_point){labels[k], r[i].mb, r[i].kld, r[i].front};
    }
    char err[512];
    if (svg_write_scatter(o->plot, &sc, err, sizeof err)) {
        fprintf(stderr, "elm-bench compress: %s\n", err);
        return 1;
    }
    return 0;
}

/* Measures the base and every chosen variant into r; returns how many failed. */
static int run_all(struct job *j, const bool *use, const char *dir, int pp, int tg,
                   struct result *r, int *n)
{
    int fails = 0;
    struct bench_model_result sp;
    r[0] = (struct result){.name = "base", .mb = file_mb(j->base), .same_top = 100,
                           .ppl = j->base_ppl};
    if (bench_model_measure(j->o, j->base, j->o->threads, pp, tg, 512, NULL, 0, &sp))
        fails++;
    else
        r[0].pp = sp.pp.median, r[0].tg = sp.tg.median;
    *n = 1;
    for (int i = 0; i < N_VARIANTS; i++) {
        if (!use[i])
            continue;
        char path[1100], err[512] = "";
        struct elm_kld_stats s;
        struct result *x = &r[(*n)++];
        *x = (struct result){.name = variants[i].name, .mb = NAN, .kld = NAN, .kld_err = NAN,
                             .same_top = NAN, .ppl = NAN, .pp = NAN, .tg = NAN};
        bench_progress("compress: making %s", variants[i].name);
        int rc = make_variant(j, &variants[i], dir, path, sizeof path, err, sizeof err);
        if (rc == -EDOM) {
            fprintf(stderr, "elm-bench compress: %s left out: %s\n", variants[i].name, err);
            (*n)--;
            continue;
        }
        if (rc || kld_of(j, path, &s, err, sizeof err)) {
            fprintf(stderr, "elm-bench compress: %s: %s\n", variants[i].name, err);
            fails++;
        } else {
            x->mb = file_mb(path);
            x->kld = s.kld.val, x->kld_err = s.kld.err;
            x->same_top = 100 * s.same_top.val, x->ppl = s.ppl_q.val;
            if (bench_model_measure(j->o, path, j->o->threads, pp, tg, 512, NULL, 0, &sp))
                fails++;
            else
                x->pp = sp.pp.median, x->tg = sp.tg.median;
        }
        unlink(path);
    }
    return fails;
}

int bench_compress(const struct bench_opts *o, int argc, char **argv)
{
    static const struct option lo[] = {
        {"ctx", required_argument, 0, 'c'},      {"chunks", required_argument, 0, 'k'},
        {"variants", required_argument, 0, 'v'}, {"pp", required_argument, 0, 'p'},
        {"tg", required_argument, 0, 'n'},       {"dir", required_argument, 0, 'd'},
        {"help", no_argument, 0, 'h'},           {0, 0, 0, 0},
    };
    bool use[N_VARIANTS] = {0}, any = false;
    long ctx = 512, chunks = 0, pp = o->quick ? 32 : 128, tg = o->quick ? 16 : 128;
    const char *dir_arg = NULL;
    int c;
    optind = 0; /* 0, not 1: glibc starts afresh, so options may follow MODEL TEXTFILE */
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        long *dst = c == 'c' ? &ctx : c == 'k' ? &chunks : c == 'p' ? &pp : &tg;
        switch (c) {
        case 'c': case 'k': case 'p': case 'n': {
            char *end;
            *dst = strtol(optarg, &end, 10);
            if (*end || *dst < (c == 'c' ? 2 : 1) || *dst > 65536) {
                fprintf(stderr, "elm-bench compress: --%s expects %d..65536, got '%s'\n",
                        c == 'c' ? "ctx" : c == 'k' ? "chunks" : c == 'p' ? "pp" : "tg",
                        c == 'c' ? 2 : 1, optarg);
                return 2;
            }
            break;
        }
        case 'v':
            if (pick_variants(optarg, use))
                return 2;
            any = true;
            break;
        case 'd': dir_arg = optarg; break;
        case 'h': usage(stdout); return 0;
        default: return 2;
        }
    }
    if (argc - optind != 2) {
        usage(stderr);
        return 2;
    }
    for (int i = 0; i < N_VARIANTS && !any; i++)
        use[i] = true;
    struct job j = {.o = o, .base = argv[optind], .n_ctx = (int32_t)ctx};
    char err[512], dir[1024];
    struct elm_model_params mp = {.n_threads = o->threads};
    if (elm_model_load(j.base, &mp, &j.m, err, sizeof err)) {
        fprintf(stderr, "elm-bench compress: %s: %s\n", j.base, err);
        return 1;
    }
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/elm-compress-XXXXXX", tmpdir);
    int ec = load_text(&j, argv[optind + 1], chunks);
    if (!ec && !dir_arg && !mkdtemp(dir)) {
        fprintf(stderr, "elm-bench compress: cannot make %s: %s\n", dir, strerror(errno));
        ec = 1;
    }
    int rc = ec ? 0 : base_pass(&j);
    if (rc) {
        fprintf(stderr, "elm-bench compress: the base model: %s\n", elm_strerror(rc));
        ec = 1;
    }
    if (!ec) {
        struct result r[N_VARIANTS + 1];
        int n = 0;
        bench_print_header(o, "compress");
        int fails = run_all(&j, use, dir_arg ? dir_arg : dir, (int)pp, (int)tg, r, &n);
        bench_progress(NULL);
        ec = report(o, &j, r, n) || fails ? 1 : 0;
    }
    if (!dir_arg)
        rmdir(dir);
    free(j.tokens);
    free(j.recs);
    free(j.influence);
    elm_model_destroy(&j.m);
    return ec;
}
