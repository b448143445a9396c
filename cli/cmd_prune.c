/* cmd_prune.c — `elmctl prune`: layer, FFN-width and attention-head pruning (engine/prune.h).
 *
 * With --layers N and a calibration text, each block's influence is measured as llama.cpp-style
 * tools and the layer-pruning literature do: 1 - cosine(block input, block output) of the
 * residual stream, averaged over every token of every chunk (the forward pass's hidden-state
 * observer); the N blocks that change the stream least are dropped. --drop I,J names the blocks
 * instead. --ffn F and --heads N measure the inputs of ffn_down and attn_output on the text (the
 * matmul observer, as the importance matrix does) and cut the least important FFN channels or
 * KV groups of every layer (prune_width.c). With a text, the perplexity before and after and
 * the KL-divergence of the pruned model from the original are printed too (chunked as `elmctl
 * perplexity`, the original's log-probabilities quantized as in a --save-logits file).
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
#include "engine/prune.h"

/* Perplexity of m over n_chunk chunks of ids (with an observer, NULL for none), and with a
 * teacher (NULL: none) the KL-divergence of m from it into kld. */
static int ppl_of(const struct elm_model *m, const struct eval_opts *o, const int32_t *ids,
                  int32_t n_chunk, const struct elm_matmul_observer *obs,
                  const struct elm_model *teacher, struct elm_ppl *ppl, struct elm_kld *kld)
{
    struct elm_eval *e = NULL, *te = NULL;
    const int32_t n_ctx = (int32_t)o->ctx, V = m->hp.n_vocab, first = elm_eval_first(n_ctx);
    const int32_t ns = elm_eval_n_scored(n_ctx), nv = elm_logprobs_nv(V);
    int ec = eval_runner(m, o, n_ctx, &e);
    if (!ec && teacher)
        ec = eval_runner(teacher, o, n_ctx, &te);
    if (ec) {
        elm_eval_destroy(&e);
        return ec;
    }
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof *logits);
    uint16_t *recs = teacher ? malloc((size_t)ns * (size_t)nv * sizeof *recs) : NULL;
    if (!logits || (teacher && !recs))
        ec = cli_fail("out of memory");
    elm_eval_set_observer(e, obs);
    *ppl = (struct elm_ppl){0};
    for (int32_t i = 0; i < n_chunk && !ec; i++) {
        const int32_t *tk = ids + (size_t)i * (size_t)n_ctx;
        int rc = te ? elm_eval_chunk(te, tk, first, logits) : 0;
        for (int32_t j = 0; j < ns && te && !rc; j++)
            elm_logprobs_encode(logits + (size_t)j * V, V, tk[first + j + 1],
                                recs + (size_t)j * nv);
        if (!rc)
            rc = elm_eval_chunk(e, tk, first, logits);
        for (int32_t j = 0; j < ns && !rc; j++) {
            elm_ppl_add(ppl, elm_eval_nll(logits + (size_t)j * V, V, tk[first + j + 1]));
            if (te)
                rc = elm_kld_add(kld, logits + (size_t)j * V, V, recs + (size_t)j * nv,
                                 tk[first + j + 1]);
        }
        if (rc)
            ec = cli_fail("chunk %d: %s", i + 1, elm_strerror(rc));
    }
    free(recs);
    free(logits);
    elm_eval_destroy(&te);
    elm_eval_destroy(&e);
    return ec;
}

static int parse_drop(const char *s, bool *drop, int32_t n_layer)
{
    char *end;
    for (;;) {
        long v = strtol(s, &end, 10);
        if (end == s || v < 0 || v >= n_layer)
            return cli_usage("--drop: '%s' is not a block number below %d", s, n_layer);
        drop[v] = true;
        if (*end == '\0')
            return 0;
        if (*end != ',')
            return cli_usage("--drop expects numbers separated by commas");
        s = end + 1;
    }
}

static void prune_usage(FILE *f)
{
    fprintf(f, "usage: elmctl prune MODEL [TEXTFILE] -o OUT (--layers N | --drop I,J,... |\n"
               "                    --ffn FRACTION | --heads N)\n"
               "Writes a smaller copy of MODEL. --layers N drops the N blocks of least influence\n"
               "on TEXTFILE (1 - cosine of each block's input and output, averaged over tokens);\n"
               "--drop names the blocks. --ffn removes that fraction of every layer's FFN\n"
               "channels and --heads N that many KV groups (a K/V head with its query heads) of\n"
               "every layer, those of least |W| x activation norm on TEXTFILE (F32/F16 files;\n"
               "quantize after pruning). Prints the parameters and file size before and after,\n"
               "and with TEXTFILE the perplexity before and after and the KL-divergence of the\n"
               "pruned model from MODEL.\n\n" EVAL_HELP
               "  -o, --output OUT      the pruned file (required)\n"
               "  --layers N            drop the N least influential blocks (needs TEXTFILE)\n"
               "  --drop I,J,...        drop these blocks (0-based)\n"
               "  --ffn FRACTION        remove this fraction (0-1) of each FFN's channels\n"
               "                        (needs TEXTFILE)\n"
               "  --heads N             remove N KV groups per layer (needs TEXTFILE)\n"
               "  --json                one JSON object with the same numbers\n");
}

/* Blocks measured by elm_prune_measure: the n_drop of lowest influence are marked in drop. */
static void pick_layers(const double *influence, int32_t L, long n_drop, bool *drop)
{
    elm_prune_pick(influence, L, (int32_t)n_drop, drop);
    for (int32_t l = 0; l < L; l++)
        fprintf(stderr, "block %2d: influence %.6f%s\n", l, influence[l],
                drop[l] ? "  (dropped)" : "");
}

/* The blocks' influence over n_chunk chunks of ids, and the chunks' perplexity in *ppl. */
static int measure_blocks(const struct elm_model *m, const struct eval_opts *o, const int32_t *ids,
                          int32_t n_chunk, double *influence, struct elm_ppl *ppl)
{
    struct elm_eval *e = NULL;
    int ec = eval_runner(m, o, (int32_t)o->ctx, &e);
    if (ec)
        return ec;
    int rc = elm_prune_measure(e, m, ids, n_chunk, influence, ppl);
    elm_eval_destroy(&e);
    return rc ? cli_fail("measuring the blocks: %s", elm_strerror(rc)) : 0;
}

static void print_result(const struct elm_prune_stats *st, const struct elm_model *pm,
                         const bool *drop, const double *influence, int32_t L,
                         const struct elm_ppl *before, const struct elm_ppl *after,
                         const struct elm_kld *kld)
{
    struct elm_kld_stats ks = {0};
    const bool text = kld && kld->count > 0 && elm_kld_stats(kld, &ks) == 0;
    if (cli_json) {
        json_t *dropped = json_array(), *widths = json_array();
        for (int32_t l = 0; l < L; l++)
            if (drop[l])
                json_array_append_new(dropped, json_integer(l));
        for (int32_t l = 0; pm && l < pm->hp.n_layer; l++)
            json_array_append_new(widths, json_pack("{sisisi}", "n_ff", (int)pm->layers[l].n_ff,
                                                    "n_head", (int)pm->layers[l].n_head,
                                                    "n_head_kv", (int)pm->layers[l].n_head_kv));
        json_t *j =
            json_pack("{sisisIsIsIsIsoso}", "n_layer_in", (int)st->n_layer_in, "n_layer_out",
                      (int)st->n_layer_out, "params_in", (json_int_t)st->params_in, "params_out",
                      (json_int_t)st->params_out, "bytes_in", (json_int_t)st->bytes_in, "bytes_out",
                      (json_int_t)st->bytes_out, "dropped", dropped, "layers", widths);
        if (influence) {
            json_t *infl = json_array();
            for (int32_t l = 0; l < L; l++)
                json_array_append_new(infl, cli_json_real(influence[l]));
            json_object_set_new(j, "influence", infl);
        }
        if (text) {
            json_object_set_new(j, "ppl_before", cli_json_real(elm_ppl_value(before)));
            json_object_set_new(j, "ppl_after", cli_json_real(elm_ppl_value(after)));
            json_object_set_new(j, "kld_mean", cli_json_real(ks.kld.val));
            json_object_set_new(j, "kld_mean_err", cli_json_real(ks.kld.err));
            json_object_set_new(j, "same_top", cli_json_real(ks.same_top.val));
        }
        cli_json_print(j);
        return;
    }
    printf("blocks %d -> %d, parameters %llu -> %llu, file %llu -> %llu bytes\n", st->n_layer_in,
           st->n_layer_out, (unsigned long long)st->params_in, (unsigned long long)st->params_out,
           (unsigned long long)st->bytes_in, (unsigned long long)st->bytes_out);
    if (pm) {
        printf("per layer (n_ff/n_head/n_head_kv):");
        for (int32_t l = 0; l < pm->hp.n_layer; l++)
            printf(" %d/%d/%d", pm->layers[l].n_ff, pm->layers[l].n_head, pm->layers[l].n_head_kv);
        printf("\n");
    }
    if (text)
        printf("perplexity %.4f -> %.4f, KLD %.6f ± %.6f, same top %.2f%%\n", elm_ppl_value(before),
               elm_ppl_value(after), ks.kld.val, ks.kld.err, 100 * ks.same_top.val);
}

int cli_cmd_prune(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *out = NULL, *drop_arg = NULL;
    long n_drop = 0, n_heads = 0;
    double ffn = -1;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"output", required_argument, 0, 'o'},
                                       {"layers", required_argument, 0, 'L'},
                                       {"drop", required_argument, 0, 'D'},
                                       {"ffn", required_argument, 0, 'F'},
                                       {"heads", required_argument, 0, 'H'},
                                       {"help", no_argument, 0, 'h'},
                                       {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "ho:", lo, NULL)) != -1) {
        int r = eval_opt(&o, c, optarg);
        if (r < 0)
            return CLI_USAGE;
        if (r)
            continue;
        switch (c) {
        case 'j':
            cli_json = true;
            break;
        case 'o':
            out = optarg;
            break;
        case 'L':
            if (!cli_int("--layers", optarg, 1, 1 << 20, &n_drop))
                return CLI_USAGE;
            break;
        case 'D':
            drop_arg = optarg;
            break;
        case 'F':
            if (!cli_float("--ffn", optarg, 0.0, 0.99, &ffn))
                return CLI_USAGE;
            break;
        case 'H':
            if (!cli_int("--heads", optarg, 1, 1 << 20, &n_heads))
                return CLI_USAGE;
            break;
        case 'h':
            prune_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    const int npos = argc - optind;
    const int modes = (n_drop > 0) + (drop_arg != NULL) + (ffn >= 0) + (n_heads > 0);
    if (npos < 1 || npos > 2 || !out || modes != 1 || (!drop_arg && npos != 2))
        return cli_usage("prune needs MODEL, -o OUT and one of --drop I,J or --layers N, --ffn F, "
                         "--heads N with TEXTFILE");
    const char *text = npos == 2 ? argv[optind + 1] : NULL;
    struct elm_model *m = NULL, *pm = NULL;
    struct elm_prune_acts *acts = NULL;
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0;
    bool *drop = NULL;
    double *influence = NULL; /* --layers with TEXTFILE: each block's measured influence */
    struct elm_ppl before = {0}, after = {0};
    struct elm_kld kld = {0};
    int ec = eval_load(argv[optind], &o, &m);
    if (ec)
        return ec;
    const int32_t L = m->hp.n_layer;
    drop = calloc((size_t)L, sizeof *drop);
    influence = n_drop ? calloc((size_t)L, sizeof *influence) : NULL;
    if (!drop || (n_drop && !influence) ||
        ((ffn >= 0 || n_heads) && elm_prune_acts_create(m, &acts))) {
        ec = cli_fail("out of memory");
        goto out;
    }
    if (drop_arg && (ec = parse_drop(drop_arg, drop, L)))
        goto out;
    if (n_drop >= L) {
        ec = cli_usage("--layers %ld would leave no block of %d", n_drop, L);
        goto out;
    }
    if (text) {
        if ((ec = eval_tokens(m, text, &ids, &n_tok)) || (ec = eval_chunks(&o, n_tok, &n_chunk)))
            goto out;
        if (n_drop) {
            if ((ec = measure_blocks(m, &o, ids, n_chunk, influence, &before)))
                goto out;
            pick_layers(influence, L, n_drop, drop);
        } else {
            /* --ffn, --heads: the same passes measure the channels (--drop: nothing to measure) */
            struct elm_matmul_observer obs = {0};
            if (acts)
                obs = elm_prune_acts_observer(acts);
            if ((ec = ppl_of(m, &o, ids, n_chunk, acts ? &obs : NULL, NULL, &before, NULL)))
                goto out;
        }
    }
    struct elm_prune_stats st;
    char err[512] = "";
    int rc = ffn >= 0  ? elm_prune_ffn(m, acts, ffn, out, &st, err, sizeof err)
             : n_heads ? elm_prune_heads(m, acts, (int32_t)n_heads, out, &st, err, sizeof err)
                       : elm_prune_layers(argv[optind], out, drop, L, &st, err, sizeof err);
    if (rc) {
        ec = cli_fail_file(out, rc, err);
        goto out;
    }
    /* the pruned file must load as a model: elm's strict validation, widths against tensors */
    if ((ec = eval_load(out, &o, &pm)))
        goto out;
    if (text && (ec = ppl_of(pm, &o, ids, n_chunk, NULL, m, &after, &kld)))
        goto out;
    print_result(&st, pm, drop, influence, L, &before, &after, text ? &kld : NULL);
out:
    elm_kld_fini(&kld);
    elm_prune_acts_destroy(&acts);
    free(influence);
    free(drop);
    free(ids);
    elm_model_destroy(&pm);
    elm_model_destroy(&m);
    return ec;
}
