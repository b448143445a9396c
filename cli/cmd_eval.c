/* cmd_eval.c — `elmctl perplexity` and `elmctl kld`: a model scored on text in-process, the way
 * llama.cpp's llama-perplexity scores it (engine/eval.h; docs/compression.md).
 *
 * perplexity MODEL TEXTFILE prints the running perplexity after every chunk on stderr and the
 * final PPL +/- its standard error. --save-logits FILE also writes the base log-probabilities
 * in llama.cpp's --kl-divergence-base format; --kl-divergence FILE scores MODEL against such a
 * file (its tokens, its n_ctx) and prints llama.cpp's KL-divergence report. kld --teacher A
 * --student B TEXTFILE does both in one run, with the same numbers as the two-step way.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_eval.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "elm/status.h"

/* ---- reports ------------------------------------------------------------------------------- */

static void print_ppl_final(const struct elm_ppl *p, int32_t n_ctx, int32_t n_chunk, int32_t n_tok,
                            const double *running)
{
    if (!cli_json) {
        printf("Final estimate: PPL = %.4f +/- %.5f\n", elm_ppl_value(p), elm_ppl_err(p));
        return;
    }
    json_t *run = json_array();
    for (int32_t i = 0; i < n_chunk; i++)
        json_array_append_new(run, cli_json_real(running[i]));
    cli_json_print(json_pack("{sosososisisisIso}", "ppl", cli_json_real(elm_ppl_value(p)),
                             "ppl_err", cli_json_real(elm_ppl_err(p)), "ln_ppl",
                             cli_json_real(p->nll / (double)p->count), "n_ctx", (int)n_ctx,
                             "n_chunk", (int)n_chunk, "n_tokens", (int)n_tok, "n_scored",
                             (json_int_t)p->count, "running_ppl", run));
}

/* The per-chunk line of llama-perplexity --kl-divergence (cumulative over chunks so far). */
static void print_kld_chunk(int32_t i, const struct elm_kld *k)
{
    struct elm_kld_stats s;
    if (elm_kld_stats(k, &s))
        return;
    fprintf(stderr,
            "%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%"
            "    %6.3f ± %6.3f %%\n",
            i + 1, s.ppl_q.val, s.ppl_q.err, s.ln_ppl_ratio.val, s.ln_ppl_ratio.err, s.kld.val,
            s.kld.err, 100 * s.rms_p_diff.val, 100 * s.rms_p_diff.err, 100 * s.same_top.val,
            100 * s.same_top.err);
}

/* o[k] = [value, error] (times mul) */
static void jpair(json_t *o, const char *k, struct elm_mean_err v, double mul)
{
    json_object_set_new(o, k,
                        json_pack("[oo]", cli_json_real(mul * v.val), cli_json_real(mul * v.err)));
}

/* The final report; JSON keys and units (percent where llama.cpp prints percent) are those of
 * the JSON files in shared/models/evalref/kld/. */
static int print_kld_final(const struct elm_kld *k, int32_t n_ctx, int32_t n_chunk)
{
    struct elm_kld_stats s;
    if (elm_kld_stats(k, &s))
        return cli_fail("out of memory");
    if (cli_json) {
        json_t *st = json_object();
        jpair(st, "ppl_q", s.ppl_q, 1);
        jpair(st, "ppl_base", s.ppl_base, 1);
        json_object_set_new(st, "cor_ln_ppl_pct", cli_json_real(100 * s.cor_ln_ppl));
        jpair(st, "ln_ppl_ratio", s.ln_ppl_ratio, 1);
        jpair(st, "ppl_ratio", s.ppl_ratio, 1);
        jpair(st, "ppl_diff", s.ppl_diff, 1);
        jpair(st, "kld_mean", s.kld, 1);
        const struct {
            const char *k;
            double v, mul;
        } f[] = {{"kld_max", s.kld_max, 1},           {"kld_p99_9", s.kld_999, 1},
                 {"kld_p99_0", s.kld_990, 1},         {"kld_median", s.kld_median, 1},
                 {"kld_p10_0", s.kld_100, 1},         {"kld_p5_0", s.kld_050, 1},
                 {"kld_p1_0", s.kld_010, 1},          {"kld_min", s.kld_min, 1},
                 {"dp_max_pct", s.dp_max, 100},       {"dp_p99_9_pct", s.dp_999, 100},
                 {"dp_p99_0_pct", s.dp_990, 100},     {"dp_p95_0_pct", s.dp_950, 100},
                 {"dp_p90_0_pct", s.dp_900, 100},     {"dp_p75_0_pct", s.dp_750, 100},
                 {"dp_median_pct", s.dp_median, 100}, {"dp_p25_0_pct", s.dp_250, 100},
                 {"dp_p10_0_pct", s.dp_100, 100},     {"dp_p5_0_pct", s.dp_050, 100},
                 {"dp_p1_0_pct", s.dp_010, 100},      {"dp_p0_1_pct", s.dp_001, 100},
                 {"dp_min_pct", s.dp_min, 100}};
        for (size_t i = 0; i < sizeof f / sizeof *f; i++)
            json_object_set_new(st, f[i].k, cli_json_real(f[i].mul * f[i].v));
        jpair(st, "dp_mean_pct", s.p_diff, 100);
        jpair(st, "dp_rms_pct", s.rms_p_diff, 100);
        jpair(st, "same_top_p_pct", s.same_top, 100);
        cli_json_print(json_pack("{sisisIso}", "n_ctx", (int)n_ctx, "n_chunk", (int)n_chunk,
                                 "n_scored", (json_int_t)s.n, "stats", st));
        return 0;
    }
    if (s.n < 100) /* llama.cpp prints no statistics on so few values either */
        return 0;
    printf("====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %10.6f ± %10.6f\n", s.ppl_q.val, s.ppl_q.err);
    printf("Mean PPL(base)                : %10.6f ± %10.6f\n", s.ppl_base.val, s.ppl_base.err);
    printf("Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100 * s.cor_ln_ppl);
    printf("Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s.ln_ppl_ratio.val,
           s.ln_ppl_ratio.err);
    printf("Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s.ppl_ratio.val, s.ppl_ratio.err);
    printf("Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n\n", s.ppl_diff.val, s.ppl_diff.err);
    printf("====== KL divergence statistics ======\n");
    printf("Mean    KLD: %10.6f ± %10.6f\n", s.kld.val, s.kld.err);
    printf("Maximum KLD: %10.6f\n99.9%%   KLD: %10.6f\n99.0%%   KLD: %10.6f\n", s.kld_max,
           s.kld_999, s.kld_990);
    printf("Median  KLD: %10.6f\n10.0%%   KLD: %10.6f\n 5.0%%   KLD: %10.6f\n", s.kld_median,
           s.kld_100, s.kld_050);
    printf(" 1.0%%   KLD: %10.6f\nMinimum KLD: %10.6f\n\n", s.kld_010, s.kld_min);
    printf("====== Token probability statistics ======\n");
    printf("Mean    Δp: %6.3f ± %5.3f %%\n", 100 * s.p_diff.val, 100 * s.p_diff.err);
    printf("Maximum Δp: %6.3f%%\n99.9%%   Δp: %6.3f%%\n99.0%%   Δp: %6.3f%%\n", 100 * s.dp_max,
           100 * s.dp_999, 100 * s.dp_990);
    printf("95.0%%   Δp: %6.3f%%\n90.0%%   Δp: %6.3f%%\n75.0%%   Δp: %6.3f%%\n", 100 * s.dp_950,
           100 * s.dp_900, 100 * s.dp_750);
    printf("Median  Δp: %6.3f%%\n25.0%%   Δp: %6.3f%%\n10.0%%   Δp: %6.3f%%\n", 100 * s.dp_median,
           100 * s.dp_250, 100 * s.dp_100);
    printf(" 5.0%%   Δp: %6.3f%%\n 1.0%%   Δp: %6.3f%%\n 0.1%%   Δp: %6.3f%%\n", 100 * s.dp_050,
           100 * s.dp_010, 100 * s.dp_001);
    printf("Minimum Δp: %6.3f%%\n", 100 * s.dp_min);
    printf("RMS Δp    : %6.3f ± %5.3f %%\n", 100 * s.rms_p_diff.val, 100 * s.rms_p_diff.err);
    printf("Same top p: %6.3f ± %5.3f %%\n", 100 * s.same_top.val, 100 * s.same_top.err);
    return 0;
}

/* ---- the chunk loop ------------------------------------------------------------------------ */

/* What one run does with each chunk's scored logits. */
struct scorer {
    struct elm_eval *e;             /* the evaluated model */
    struct elm_eval *teacher;       /* kld: the base model run alongside, or NULL */
    struct elm_logprobs_file *base; /* --kl-divergence: the records to score against */
    FILE *save;                     /* --save-logits */
    struct elm_ppl ppl;
    struct elm_kld kld;
    double *running; /* [n_chunk] running perplexity */
};

static int run_chunks(struct scorer *s, const struct elm_model *m, const int32_t *tokens,
                      int32_t n_ctx, int32_t n_chunk)
{
    const int32_t V = m->hp.n_vocab, first = elm_eval_first(n_ctx), ns = elm_eval_n_scored(n_ctx);
    const size_t nv = (size_t)elm_logprobs_nv(V);
    const bool kld = s->base || s->teacher;
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof *logits);
    uint16_t *recs = s->save || kld ? malloc((size_t)ns * nv * sizeof *recs) : NULL;
    int rc = !logits || ((s->save || kld) && !recs) ? -ENOMEM : 0;
    for (int32_t i = 0; i < n_chunk && !rc; i++) {
        const int32_t *tk = tokens + (size_t)i * (size_t)n_ctx;
        if (s->base)
            rc = elm_logprobs_read_chunk(s->base, i, recs);
        if (!rc && s->teacher && !(rc = elm_eval_chunk(s->teacher, tk, first, logits)))
            for (int32_t j = 0; j < ns; j++)
                elm_logprobs_encode(logits + (size_t)j * V, V, tk[first + j + 1], recs + j * nv);
        if (!rc)
            rc = elm_eval_chunk(s->e, tk, first, logits);
        for (int32_t j = 0; j < ns && !rc; j++) {
            const float *l = logits + (size_t)j * V;
            const int32_t tok = tk[first + j + 1];
            if (kld)
                rc = elm_kld_add(&s->kld, l, V, recs + j * nv, tok);
            else if (s->save) /* the base run's nll is the one its quantizer computes */
                elm_ppl_add(&s->ppl, elm_logprobs_encode(l, V, tok, recs + j * nv));
            else
                elm_ppl_add(&s->ppl, elm_eval_nll(l, V, tok));
        }
        if (!rc && s->save)
            rc = elm_logprobs_write(s->save, recs, (size_t)ns * nv);
        if (rc)
            break;
        if (kld) {
            print_kld_chunk(i, &s->kld);
        } else {
            s->running[i] = elm_ppl_value(&s->ppl);
            fprintf(stderr, "[%d/%d] PPL %.4f\n", i + 1, n_chunk, s->running[i]);
        }
    }
    free(logits);
    free(recs);
    return rc;
}

/* ---- perplexity ---------------------------------------------------------------------------- */

static void perplexity_usage(FILE *f)
{
    fprintf(f,
            "usage: elmctl perplexity MODEL TEXTFILE [OPTIONS]\n"
            "       elmctl perplexity MODEL --kl-divergence BASE [OPTIONS]\n"
            "Scores MODEL on TEXTFILE as llama.cpp's llama-perplexity does: the whole text's\n"
            "tokens cut into chunks of --ctx, each from an empty cache with its first token\n"
            "replaced by BOS (when the vocabulary adds one), the second half of each scored.\n"
            "Prints the running perplexity per chunk on stderr, then the final PPL +/- "
            "error.\n\n" EVAL_HELP
            "  --save-logits FILE    also write the log-probabilities of every scored position\n"
            "                        (llama.cpp's --kl-divergence-base format)\n"
            "  --kl-divergence BASE  score MODEL against BASE (written by --save-logits or by\n"
            "                        llama.cpp): its tokens and --ctx; TEXTFILE is not read\n"
            "  --json                {\"ppl\":P,\"ppl_err\":E,...,\"running_ppl\":[...]}, or the\n"
            "                        KL-divergence statistics\n");
}

int cli_cmd_perplexity(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *save = NULL, *base = NULL;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"save-logits", required_argument, 0, 'S'},
                                       {"kl-divergence", required_argument, 0, 'K'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int r = eval_opt(&o, c, optarg);
        if (r < 0)
            return CLI_USAGE;
        if (r)
            continue;
        switch (c) {
        case 'j':
            cli_json = true;
            break;
        case 'S':
            save = optarg;
            break;
        case 'K':
            base = optarg;
            break;
        case 'h':
            perplexity_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    const int npos = argc - optind;
    if (npos < 1 || npos > 2 || (!base && npos != 2))
        return cli_usage("perplexity needs MODEL and TEXTFILE (or --kl-divergence BASE)");
    if (base && save)
        return cli_usage("--save-logits and --kl-divergence exclude each other");
    struct elm_model *m = NULL;
    int ec = eval_load(argv[optind], &o, &m);
    if (ec)
        return ec;
    struct scorer s = {0};
    struct elm_logprobs_file lf = {0};
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0, n_ctx = (int32_t)o.ctx;
    const int32_t *tokens;
    char err[512] = "";
    if (base) {
        int rc = elm_logprobs_open(base, &lf, err, sizeof err);
        if (rc) {
            ec = cli_fail_file(base, rc, err);
            goto out;
        }
        if (lf.n_vocab != m->hp.n_vocab) {
            ec = cli_fail("%s has %d log-probs per position, the model %d tokens", base, lf.n_vocab,
                          m->hp.n_vocab);
            goto out;
        }
        n_ctx = lf.n_ctx;
        n_tok = lf.n_ctx * lf.n_chunk;
        n_chunk = o.chunks > 0 && o.chunks < lf.n_chunk ? (int32_t)o.chunks : lf.n_chunk;
        tokens = lf.tokens;
        s.base = &lf;
    } else {
        if ((ec = eval_tokens(m, argv[optind + 1], &ids, &n_tok)) ||
            (ec = eval_chunks(&o, n_tok, &n_chunk)))
            goto out;
        tokens = ids;
    }
    if ((ec = eval_runner(m, &o, n_ctx, &s.e)))
        goto out;
    if (!(s.running = calloc((size_t)n_chunk, sizeof *s.running))) {
        ec = cli_fail("out of memory");
        goto out;
    }
    if (save) {
        if (!(s.save = fopen(save, "wb")) ||
            elm_logprobs_write_header(s.save, n_ctx, m->hp.n_vocab, n_chunk, tokens)) {
            ec = cli_fail_file(save, -errno, "");
            goto out;
        }
    }
    fprintf(stderr, "elmctl: %d tokens, %d chunks of %d, %d scored per chunk\n", n_tok, n_chunk,
            n_ctx, elm_eval_n_scored(n_ctx));
    int rc = run_chunks(&s, m, tokens, n_ctx, n_chunk);
    if (!rc && s.save && fclose(s.save))
        rc = -errno;
    s.save = NULL;
    if (rc) {
        ec = cli_fail("evaluation failed: %s", elm_strerror(rc));
        goto out;
    }
    if (base)
        ec = print_kld_final(&s.kld, n_ctx, n_chunk);
    else
        print_ppl_final(&s.ppl, n_ctx, n_chunk, n_tok, s.running);
out:
    if (s.save)
        fclose(s.save);
    free(s.running);
    elm_kld_fini(&s.kld);
    elm_eval_destroy(&s.e);
    elm_logprobs_close(&lf);
    free(ids);
    elm_model_destroy(&m);
    return ec;
}

/* ---- kld ----------------------------------------------------------------------------------- */

static void kld_usage(FILE *f)
{
    fprintf(f, "usage: elmctl kld --teacher A --student B TEXTFILE [OPTIONS]\n"
               "KL-divergence of model B from model A (same vocabulary) on TEXTFILE, chunked and\n"
               "scored as `elmctl perplexity` does; A's log-probabilities are quantized as in a\n"
               "--save-logits file, so the numbers equal perplexity --save-logits with A then\n"
               "--kl-divergence with B.\n\n" EVAL_HELP
               "  --json                the statistics as one JSON object\n");
}

int cli_cmd_kld(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *ta = NULL, *sb = NULL;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"teacher", required_argument, 0, 'T'},
                                       {"student", required_argument, 0, 'S'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        int r = eval_opt(&o, c, optarg);
        if (r < 0)
            return CLI_USAGE;
        if (r)
            continue;
        switch (c) {
        case 'j':
            cli_json = true;
            break;
        case 'T':
            ta = optarg;
            break;
        case 'S':
            sb = optarg;
            break;
        case 'h':
            kld_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    if (!ta || !sb || argc - optind != 1)
        return cli_usage("kld needs --teacher A, --student B and TEXTFILE");
    struct elm_model *a = NULL, *b = NULL;
    struct scorer s = {0};
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0;
    int ec = eval_load(ta, &o, &a);
    if (ec || (ec = eval_load(sb, &o, &b)))
        goto out;
    if (a->hp.n_vocab != b->hp.n_vocab ||
        elm_vocab_add_bos(a->vocab) != elm_vocab_add_bos(b->vocab) ||
        elm_vocab_bos(a->vocab) != elm_vocab_bos(b->vocab)) {
        ec = cli_fail("%s and %s do not share a vocabulary", ta, sb);
        goto out;
    }
    if ((ec = eval_tokens(a, argv[optind], &ids, &n_tok)) ||
        (ec = eval_chunks(&o, n_tok, &n_chunk)) ||
        (ec = eval_runner(a, &o, (int32_t)o.ctx, &s.teacher)) ||
        (ec = eval_runner(b, &o, (int32_t)o.ctx, &s.e)))
        goto out;
    int rc = run_chunks(&s, b, ids, (int32_t)o.ctx, n_chunk);
    if (rc) {
        ec = cli_fail("evaluation failed: %s", elm_strerror(rc));
        goto out;
    }
    ec = print_kld_final(&s.kld, (int32_t)o.ctx, n_chunk);
out:
    elm_kld_fini(&s.kld);
    elm_eval_destroy(&s.e);
    elm_eval_destroy(&s.teacher);
    free(ids);
    elm_model_destroy(&a);
    elm_model_destroy(&b);
    return ec;
}
