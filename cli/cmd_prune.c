/* cmd_prune.c — `elmctl prune`: layer pruning (engine/prune.h).
 *
 * With --layers N and a calibration text, each block's influence is measured as llama.cpp-style
 * tools and the layer-pruning literature do: 1 - cosine(block input, block output) of the
 * residual stream, averaged over every token of every chunk (the forward pass's hidden-state
 * observer); the N blocks that change the stream least are dropped. --drop I,J names the blocks
 * instead. With a text, the perplexity before and after is printed too (chunked as `elmctl
 * perplexity`).
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

/* Perplexity of m over n_chunk chunks of ids; with influence, each block's influence too. */
static int ppl_of(const struct elm_model *m, const struct eval_opts *o, const int32_t *ids,
                  int32_t n_chunk, double *influence, struct elm_ppl *ppl)
{
    struct elm_eval *e = NULL;
    const int32_t n_ctx = (int32_t)o->ctx, V = m->hp.n_vocab, first = elm_eval_first(n_ctx);
    int ec = eval_runner(m, o, n_ctx, &e);
    if (ec)
        return ec;
    if (influence) {
        int rc = elm_prune_measure(e, m, ids, n_chunk, influence, ppl);
        elm_eval_destroy(&e);
        return rc ? cli_fail("measuring the blocks: %s", elm_strerror(rc)) : 0;
    }
    float *logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof *logits);
    if (!logits) {
        elm_eval_destroy(&e);
        return cli_fail("out of memory");
    }
    *ppl = (struct elm_ppl){0};
    for (int32_t i = 0; i < n_chunk && !ec; i++) {
        const int32_t *tk = ids + (size_t)i * (size_t)n_ctx;
        int rc = elm_eval_chunk(e, tk, first, logits);
        if (rc)
            ec = cli_fail("chunk %d: %s", i + 1, elm_strerror(rc));
        for (int32_t j = 0; j < elm_eval_n_scored(n_ctx) && !rc; j++)
            elm_ppl_add(ppl, elm_eval_nll(logits + (size_t)j * V, V, tk[first + j + 1]));
    }
    free(logits);
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
    fprintf(f, "usage: elmctl prune MODEL [TEXTFILE] -o OUT (--layers N | --drop I,J,...)\n"
               "Writes MODEL without some of its blocks (renumbered, block_count updated). With\n"
               "--layers N, the N blocks of least influence on TEXTFILE (1 - cosine of each\n"
               "block's input and output, averaged over tokens) are dropped. Prints each block's\n"
               "influence, the parameters and file size before and after, and with TEXTFILE the\n"
               "perplexity before and after.\n\n" EVAL_HELP
               "  -o, --output OUT      the pruned file (required)\n"
               "  --layers N            drop the N least influential blocks (needs TEXTFILE)\n"
               "  --drop I,J,...        drop these blocks (0-based)\n"
               "  --json                one JSON object with the same numbers\n");
}

int cli_cmd_prune(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *out = NULL, *drop_arg = NULL;
    long n_drop = 0;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"output", required_argument, 0, 'o'},
                                       {"layers", required_argument, 0, 'L'},
                                       {"drop", required_argument, 0, 'D'},
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
        case 'h':
            prune_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    const int npos = argc - optind;
    if (npos < 1 || npos > 2 || !out || !n_drop == !drop_arg || (n_drop && npos != 2))
        return cli_usage("prune needs MODEL, -o OUT and --drop I,J or --layers N with TEXTFILE");
    const char *text = npos == 2 ? argv[optind + 1] : NULL;
    struct elm_model *m = NULL, *pm = NULL;
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0;
    bool *drop = NULL;
    double *influence = NULL;
    struct elm_ppl before = {0}, after = {0};
    int ec = eval_load(argv[optind], &o, &m);
    if (ec)
        return ec;
    const int32_t L = m->hp.n_layer;
    drop = calloc((size_t)L, sizeof *drop);
    influence = calloc((size_t)L, sizeof *influence);
    if (!drop || !influence) {
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
        if ((ec = ppl_of(m, &o, ids, n_chunk, influence, &before)))
            goto out;
        elm_prune_pick(influence, L, (int32_t)n_drop, drop);
        for (int32_t l = 0; l < L; l++)
            fprintf(stderr, "block %2d: influence %.6f%s\n", l, influence[l],
                    drop[l] ? "  (dropped)" : "");
    }
    struct elm_prune_stats st;
    char err[512] = "";
    int rc = elm_prune_layers(argv[optind], out, drop, L, &st, err, sizeof err);
    if (rc) {
        ec = cli_fail_file(out, rc, err);
        goto out;
    }
    if (text) { /* the pruned file must load as a model: elm's strict validation */
        if ((ec = eval_load(out, &o, &pm)) || (ec = ppl_of(pm, &o, ids, n_chunk, NULL, &after)))
            goto out;
    }
    if (cli_json) {
        json_t *dropped = json_array();
        for (int32_t l = 0; l < L; l++)
            if (drop[l])
                json_array_append_new(dropped, json_integer(l));
        json_t *j =
            json_pack("{sisisIsIsIsIso}", "n_layer_in", (int)st.n_layer_in, "n_layer_out",
                      (int)st.n_layer_out, "params_in", (json_int_t)st.params_in, "params_out",
                      (json_int_t)st.params_out, "bytes_in", (json_int_t)st.bytes_in, "bytes_out",
                      (json_int_t)st.bytes_out, "dropped", dropped);
        if (text) {
            json_t *infl = json_array();
            for (int32_t l = 0; l < L; l++)
                json_array_append_new(infl, cli_json_real(influence[l]));
            json_object_set_new(j, "influence", infl);
            json_object_set_new(j, "ppl_before", cli_json_real(elm_ppl_value(&before)));
            json_object_set_new(j, "ppl_after", cli_json_real(elm_ppl_value(&after)));
        }
        cli_json_print(j);
    } else {
        printf("blocks %d -> %d, parameters %llu -> %llu, file %llu -> %llu bytes\n", st.n_layer_in,
               st.n_layer_out, (unsigned long long)st.params_in, (unsigned long long)st.params_out,
               (unsigned long long)st.bytes_in, (unsigned long long)st.bytes_out);
        if (text)
            printf("perplexity %.4f -> %.4f\n", elm_ppl_value(&before), elm_ppl_value(&after));
    }
out:
    free(influence);
    free(drop);
    free(ids);
    elm_model_destroy(&pm);
    elm_model_destroy(&m);
    return ec;
}
