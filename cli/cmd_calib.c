/* cmd_calib.c — `elmctl imatrix` and `elmctl distill-data`: what a model does on calibration
 * text, collected for the quantizer (an importance matrix, engine/imatrix.h) or for training a
 * student (the teacher's top-k log-probabilities per position; docs/compression.md).
 *
 * Both chunk the text as `elmctl perplexity` does (engine/eval.h). imatrix follows llama.cpp's
 * llama-imatrix: every position of every chunk feeds the matrix, through the forward pass's
 * matmul observer; only matmuls of blk.* weights (output.weight with --process-output) over at
 * least 16 rows count, with their F32 input.
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
#include "engine/imatrix.h"

/* ---- imatrix ------------------------------------------------------------------------------- */

#define N_ROLES  (ELM_MAT_OUTPUT + 1)
#define MIN_ROWS 16 /* llama-imatrix ignores smaller batches */

struct collector {
    struct elm_imatrix_acc *acc;
    char (*names)[64]; /* [n_layer * N_ROLES + 1]: the tensor each matmul feeds, "" to skip */
    int n_layer;
    int rc; /* the first error */
};

static void observe(void *ctx, int layer, enum elm_mat_role role, const float *x, int64_t ncols,
                    int n)
{
    struct collector *c = ctx;
    const char *name =
        layer < 0 ? c->names[c->n_layer * N_ROLES] : c->names[layer * N_ROLES + role];
    if (c->rc || !name[0] || n < MIN_ROWS)
        return;
    c->rc = elm_imatrix_acc_add(c->acc, name, x, ncols, n);
}

/* The GGUF tensor behind each (layer, role). phi3's fused attn_qkv and gate|up ffn_up are one
 * tensor seen through views (model.h): they are collected once, from Q and from UP, which get
 * the same rows as K, V and GATE. */
static void name_tensors(const struct elm_model *m, struct collector *c, bool output)
{
    static const char *const suffix[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                         "ffn_gate", "ffn_up", "ffn_down"};
    for (int l = 0; l < c->n_layer; l++) {
        char qkv[64];
        snprintf(qkv, sizeof qkv, "blk.%d.attn_qkv.weight", l);
        const bool fused = elm_gguf_find_tensor(m->gguf, qkv) != NULL;
        for (int r = 0; r < ELM_MAT_OUTPUT; r++) {
            char *d = c->names[l * N_ROLES + r];
            snprintf(d, 64, "blk.%d.%s.weight", l, suffix[r]);
            if (fused && r == ELM_MAT_Q)
                snprintf(d, 64, "%s", qkv);
            if (!elm_gguf_find_tensor(m->gguf, d))
                d[0] = '\0'; /* K, V of a fused QKV; GATE of a fused gate|up; bert's gate */
        }
    }
    snprintf(c->names[c->n_layer * N_ROLES], 64, "%s",
             output && elm_gguf_find_tensor(m->gguf, "output.weight") ? "output.weight" : "");
}

static void imatrix_usage(FILE *f)
{
    fprintf(f,
            "usage: elmctl imatrix MODEL TEXTFILE -o FILE [OPTIONS]\n"
            "Collects an importance matrix (per input column, the mean square activation of\n"
            "every matmul) over TEXTFILE, chunked as `elmctl perplexity` does, into FILE in\n"
            "llama.cpp's imatrix format (llama-quantize --imatrix and elmctl quantize\n"
            "--imatrix read it). Prints the running perplexity per chunk on stderr.\n\n" EVAL_HELP
            "  -o, --output FILE     where to write the matrix (required)\n"
            "  --process-output      collect output.weight too\n"
            "  --json                {\"entries\":N,\"chunks\":N,\"ppl\":P,\"ppl_err\":E}\n");
}

int cli_cmd_imatrix(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *out = NULL;
    bool output = false;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"output", required_argument, 0, 'o'},
                                       {"process-output", no_argument, 0, 'P'},
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
        case 'P':
            output = true;
            break;
        case 'h':
            imatrix_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    if (argc - optind != 2 || !out)
        return cli_usage("imatrix needs MODEL, TEXTFILE and -o FILE");
    const char *text = argv[optind + 1];
    struct elm_model *m = NULL;
    struct elm_eval *e = NULL;
    struct elm_imatrix *im = NULL;
    struct collector col = {0};
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0;
    float *logits = NULL;
    int ec = eval_load(argv[optind], &o, &m);
    if (ec || (ec = eval_tokens(m, text, &ids, &n_tok)) ||
        (ec = eval_chunks(&o, n_tok, &n_chunk)) || (ec = eval_runner(m, &o, (int32_t)o.ctx, &e)))
        goto out;
    const int32_t n_ctx = (int32_t)o.ctx, V = m->hp.n_vocab, first = elm_eval_first(n_ctx);
    col.n_layer = m->hp.n_layer;
    col.names = calloc((size_t)col.n_layer * N_ROLES + 1, sizeof *col.names);
    logits = malloc((size_t)(n_ctx - first) * (size_t)V * sizeof *logits);
    if (!col.names || !logits || elm_imatrix_acc_create(&col.acc)) {
        ec = cli_fail("out of memory");
        goto out;
    }
    name_tensors(m, &col, output);
    elm_eval_set_observer(e, &(struct elm_matmul_observer){.fn = observe, .ctx = &col});
    fprintf(stderr, "elmctl: %d tokens, %d chunks of %d\n", n_tok, n_chunk, n_ctx);
    struct elm_ppl ppl = {0};
    for (int32_t i = 0; i < n_chunk; i++) {
        const int32_t *tk = ids + (size_t)i * (size_t)n_ctx;
        int rc = elm_eval_chunk(e, tk, first, logits);
        if (rc || (rc = col.rc)) {
            ec = cli_fail("chunk %d: %s", i + 1, elm_strerror(rc));
            goto out;
        }
        for (int32_t j = 0; j < elm_eval_n_scored(n_ctx); j++)
            elm_ppl_add(&ppl, elm_eval_nll(logits + (size_t)j * V, V, tk[first + j + 1]));
        fprintf(stderr, "[%d/%d] PPL %.4f\n", i + 1, n_chunk, elm_ppl_value(&ppl));
    }
    int rc = elm_imatrix_acc_get(col.acc, text, &im);
    if (!rc && im->n_entries == 0)
        rc = -ENODATA;
    if (rc || (rc = elm_imatrix_write(out, im))) {
        ec = cli_fail_file(out, rc, rc == -ENODATA ? "no matmul had 16 rows: raise --ctx" : "");
        goto out;
    }
    if (cli_json)
        cli_json_print(json_pack("{sisisoso}", "entries", im->n_entries, "chunks", (int)n_chunk,
                                 "ppl", cli_json_real(elm_ppl_value(&ppl)), "ppl_err",
                                 cli_json_real(elm_ppl_err(&ppl))));
    else
        printf("wrote %s: %d entries over %d chunks; PPL = %.4f +/- %.5f\n", out, im->n_entries,
               n_chunk, elm_ppl_value(&ppl), elm_ppl_err(&ppl));
out:
    elm_imatrix_destroy(&im);
    elm_imatrix_acc_destroy(&col.acc);
    free(col.names);
    free(logits);
    free(ids);
    elm_eval_destroy(&e);
    elm_model_destroy(&m);
    return ec;
}

/* ---- distill-data -------------------------------------------------------------------------- */

/* File layout (little-endian; docs/compression.md has a reader):
 *   "ELMDIST1", int32 n_vocab, n_ctx, n_chunk, top_k,
 *   int32 tokens[n_chunk * n_ctx] as evaluated (BOS in place of each chunk's first token when
 *   the vocabulary adds BOS),
 *   then for every chunk and every position j = 0 .. n_ctx - 1 (the distribution of the token
 *   after position j): int32 ids[top_k], float32 logprobs[top_k], most likely first. */
#define DIST_MAGIC "ELMDIST1"

/* The k largest of l (ties: lower id first) into ids, largest first, by a min-heap. */
static void top_k(const float *l, int32_t n, int32_t k, int32_t *ids)
{
    int32_t h = 0;
    /* worse(a, b): a ranks below b */
#define WORSE(a, b) (l[a] < l[b] || (l[a] == l[b] && (a) > (b)))
    for (int32_t i = 0; i < n; i++) {
        if (h == k && !WORSE(ids[0], i))
            continue;
        int32_t p;
        if (h < k) { /* sift up */
            p = h++;
            while (p > 0 && WORSE(i, ids[(p - 1) / 2])) {
                ids[p] = ids[(p - 1) / 2];
                p = (p - 1) / 2;
            }
            ids[p] = i;
            continue;
        }
        p = 0; /* replace the root, sift down */
        for (;;) {
            int32_t c = 2 * p + 1;
            if (c >= h)
                break;
            if (c + 1 < h && WORSE(ids[c + 1], ids[c]))
                c++;
            if (!WORSE(ids[c], i))
                break;
            ids[p] = ids[c];
            p = c;
        }
        ids[p] = i;
    }
    for (int32_t end = h - 1; end > 0; end--) { /* heap sort: worst to the back */
        int32_t top = ids[0], x = ids[end], p = 0;
        ids[end] = top;
        for (;;) {
            int32_t c = 2 * p + 1;
            if (c >= end)
                break;
            if (c + 1 < end && WORSE(ids[c + 1], ids[c]))
                c++;
            if (!WORSE(ids[c], x))
                break;
            ids[p] = ids[c];
            p = c;
        }
        ids[p] = x;
    }
#undef WORSE
    /* the heap sort left them best first */
}

static void distill_usage(FILE *f)
{
    fprintf(f, "usage: elmctl distill-data TEACHER TEXTFILE -o FILE [OPTIONS]\n"
               "Writes TEACHER's top-k next-token log-probabilities at every position of\n"
               "TEXTFILE (chunked as `elmctl perplexity` does) to FILE, the input of a student\n"
               "training run; docs/compression.md gives the format and a reader.\n\n" EVAL_HELP
               "  -o, --output FILE     where to write (required)\n"
               "  --top-k K             log-probs kept per position (default 16)\n");
}

int cli_cmd_distill_data(int argc, char **argv)
{
    struct eval_opts o;
    eval_opts_default(&o, 512);
    const char *out = NULL;
    long k = 16;
    static const struct option lo[] = {EVAL_LONG_OPTS,
                                       CLI_OPT_JSON,
                                       {"output", required_argument, 0, 'o'},
                                       {"top-k", required_argument, 0, 'k'},
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
        case 'k':
            if (!cli_int("--top-k", optarg, 1, 1 << 16, &k))
                return CLI_USAGE;
            break;
        case 'h':
            distill_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    if (argc - optind != 2 || !out)
        return cli_usage("distill-data needs TEACHER, TEXTFILE and -o FILE");
    struct elm_model *m = NULL;
    struct elm_eval *e = NULL;
    int32_t *ids = NULL, n_tok = 0, n_chunk = 0, *top = NULL;
    float *logits = NULL, *lp = NULL;
    FILE *f = NULL;
    int ec = eval_load(argv[optind], &o, &m);
    if (ec || (ec = eval_tokens(m, argv[optind + 1], &ids, &n_tok)) ||
        (ec = eval_chunks(&o, n_tok, &n_chunk)) || (ec = eval_runner(m, &o, (int32_t)o.ctx, &e)))
        goto out;
    const int32_t n_ctx = (int32_t)o.ctx, V = m->hp.n_vocab;
    const int32_t K = k < V ? (int32_t)k : V;
    logits = malloc((size_t)n_ctx * (size_t)V * sizeof *logits);
    top = malloc((size_t)K * sizeof *top);
    lp = malloc((size_t)K * sizeof *lp);
    if (!logits || !top || !lp) {
        ec = cli_fail("out of memory");
        goto out;
    }
    /* the tokens as evaluated: BOS in place of each chunk's first when the vocabulary adds it */
    if (elm_vocab_add_bos(m->vocab) && elm_vocab_bos(m->vocab) >= 0)
        for (int32_t i = 0; i < n_chunk; i++)
            ids[(size_t)i * (size_t)n_ctx] = elm_vocab_bos(m->vocab);
    const int32_t h[4] = {V, n_ctx, n_chunk, K};
    if (!(f = fopen(out, "wb")) || fwrite(DIST_MAGIC, 1, 8, f) != 8 ||
        fwrite(h, sizeof h, 1, f) != 1 ||
        fwrite(ids, sizeof *ids, (size_t)n_chunk * (size_t)n_ctx, f) !=
            (size_t)n_chunk * (size_t)n_ctx) {
        ec = cli_fail_file(out, -errno, "");
        goto out;
    }
    for (int32_t i = 0; i < n_chunk; i++) {
        int rc = elm_eval_chunk(e, ids + (size_t)i * (size_t)n_ctx, 0, logits);
        if (rc) {
            ec = cli_fail("chunk %d: %s", i + 1, elm_strerror(rc));
            goto out;
        }
        for (int32_t j = 0; j < n_ctx; j++) {
            const float *l = logits + (size_t)j * (size_t)V;
            top_k(l, V, K, top);
            /* log-softmax as elm_eval_nll computes it: top[0] holds the max, so its nll is
             * log(sum exp(l - max)), and every other log-prob follows without another sum */
            const double lse = elm_eval_nll(l, V, top[0]);
            for (int32_t t = 0; t < K; t++)
                lp[t] = (float)((double)(l[top[t]] - l[top[0]]) - lse);
            if (fwrite(top, sizeof *top, (size_t)K, f) != (size_t)K ||
                fwrite(lp, sizeof *lp, (size_t)K, f) != (size_t)K) {
                ec = cli_fail_file(out, -EIO, "");
                goto out;
            }
        }
        fprintf(stderr, "[%d/%d]\n", i + 1, n_chunk);
    }
    int rc = fclose(f);
    f = NULL;
    if (rc) {
        ec = cli_fail_file(out, -errno, "");
        goto out;
    }
    if (cli_json)
        cli_json_print(json_pack("{sIsisisi}", "positions", (json_int_t)n_chunk * n_ctx, "chunks",
                                 (int)n_chunk, "n_ctx", (int)n_ctx, "top_k", (int)K));
    else
        printf("wrote %s: %d chunks of %d positions, top %d log-probs each\n", out, n_chunk, n_ctx,
               K);
out:
    if (f)
        fclose(f);
    free(lp);
    free(top);
    free(logits);
    free(ids);
    elm_eval_destroy(&e);
    elm_model_destroy(&m);
    return ec;
}
