/* cmd_embed.c — `elmctl embed`: the embedding vectors of texts, from elmd's embedding model
 * (libelmclient's elm_session_embed) or, with --local MODEL, from the engine in this process.
 *
 * The texts are the arguments; without any, the lines of stdin when it is not a terminal (or
 * '-'), one text per non-empty line. They are embedded ELM_EMBED_MAX_TEXTS at a time, each
 * batch in one pass (through elmd, fewer when a batch has more tokens than elmd takes at once).
 * Output: one line per text, its floats with 9 significant digits (a float32 printed so it reads
 * back exactly), or with --json one document
 * {"n_embd":N,"embeddings":[{"index":I,"n_tokens":N,"embedding":[...]}...]}. Both paths print
 * the same bytes for the same model: the pass is the same code and batch-invariant.
 */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_client.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "elm/status.h"
#include "engine/model.h"

struct embed_opts {
    const char *model; /* --local */
    const char *runtime_dir;
    const char *kernel;
    long threads;
    bool special;
    struct elm_session_params sp; /* --model, --keep-alive (the daemon's) */
};

/* Where the vectors go: printed as they come, batch by batch. */
struct printer {
    size_t n_done; /* texts printed so far */
    uint32_t n_embd;
    json_t *items; /* --json: the embeddings so far, printed as one document at the end */
};

static void embed_usage(FILE *f)
{
    fprintf(f,
            "usage: elmctl embed [--local MODEL] [OPTIONS] TEXT... | -\n"
            "Prints the embedding of each TEXT (pooled as the model says, L2-normalised, as\n"
            "llama.cpp's server does), from elmd's embedding model or with --local from MODEL\n"
            "run in this process. Without TEXT (or with '-'), each non-empty line of stdin is\n"
            "one text.\n\n"
            "  --local MODEL       run MODEL (a GGUF embedding model, e.g. bert) here\n"
            "  --runtime-dir DIR   the daemon's directory (default $ELM_RUNTIME_DIR, else\n"
            "                      $XDG_RUNTIME_DIR/elm)\n" CLI_MODEL_USAGE
            "  --special           let control-token text in TEXT become control tokens\n"
            "  --threads N         compute threads (default: CPU count)          [--local]\n"
            "  --kernel NAME       force a kernel variant (ref, avx2, ...)         [--local]\n"
            "  --json              one JSON document: {\"n_embd\":N,\"embeddings\":[{\"index\":I,\n"
            "                      \"n_tokens\":N,\"embedding\":[...]},...]}\n"
            "Text output: one line per text, its n_embd values separated by spaces.\n"
            "Exit status: 0 ok, 1 failure, 2 usage error.\n");
}

static void print_batch(struct printer *p, const float *v, uint32_t n_embd, const uint32_t *n_tok,
                        size_t n)
{
    p->n_embd = n_embd;
    if (cli_json && !p->items)
        p->items = json_array();
    for (size_t i = 0; i < n; i++, p->n_done++) {
        const float *x = v + i * n_embd;
        if (cli_json) {
            json_t *e = json_array();
            for (uint32_t k = 0; k < n_embd; k++)
                json_array_append_new(e, json_real((double)x[k]));
            json_array_append_new(p->items,
                                  json_pack("{sIsIso}", "index", (json_int_t)p->n_done, "n_tokens",
                                            (json_int_t)n_tok[i], "embedding", e));
            continue;
        }
        for (uint32_t k = 0; k < n_embd; k++)
            printf(k ? " %.9g" : "%.9g", (double)x[k]);
        putchar('\n');
    }
}

/* Prints the --json document when ok; frees what the printer holds either way. */
static void print_end(struct printer *p, bool ok)
{
    if (ok && cli_json)
        cli_json_print(json_pack("{sIso}", "n_embd", (json_int_t)p->n_embd, "embeddings",
                                 p->items ? p->items : json_array()));
    else
        json_decref(p->items);
    p->items = NULL;
    fflush(stdout);
}

/* ---- in this process ------------------------------------------------------------------------ */

static int embed_local(const struct embed_opts *o, char **texts, size_t n)
{
    struct elm_model_params mp = {.n_threads = (int)o->threads, .kernel = o->kernel};
    struct elm_model *m = NULL;
    char err[512] = "";
    int rc = elm_model_load(o->model, &mp, &m, err, sizeof err);
    if (rc)
        return cli_fail_file(o->model, rc, err);
    int exit_code = CLI_OK;
    struct printer pr = {0};
    if (!elm_model_is_embedding(m)) {
        exit_code = cli_fail("%s: the model (%s) generates text; embed needs an embedding model "
                             "(bert)",
                             o->model, elm_arch_name(m->hp.arch));
        goto out;
    }
    const uint32_t E = (uint32_t)m->hp.n_embd;
    for (size_t b = 0; b < n && exit_code == CLI_OK; b += ELM_EMBED_MAX_TEXTS) {
        size_t k = n - b < ELM_EMBED_MAX_TEXTS ? n - b : ELM_EMBED_MAX_TEXTS;
        int32_t *ids[ELM_EMBED_MAX_TEXTS] = {0}, n_ids[ELM_EMBED_MAX_TEXTS];
        uint32_t n_tok[ELM_EMBED_MAX_TEXTS];
        float *v = malloc(k * E * sizeof *v);
        rc = v ? 0 : -ENOMEM;
        for (size_t i = 0; i < k && rc == 0; i++) {
            rc = elm_tokenize_alloc(m->vocab, texts[b + i], strlen(texts[b + i]), true, o->special,
                                    &ids[i], &n_ids[i]);
            n_tok[i] = rc ? 0 : (uint32_t)n_ids[i];
        }
        if (rc == 0)
            rc = elm_model_embed(m, (const int32_t *const *)ids, n_ids, (int)k, v);
        if (rc == 0)
            print_batch(&pr, v, E, n_tok, k);
        else
            exit_code = cli_fail("cannot embed: %s", elm_strerror(rc));
        for (size_t i = 0; i < k; i++)
            free(ids[i]);
        free(v);
    }
out:
    print_end(&pr, exit_code == CLI_OK);
    elm_model_destroy(&m);
    return exit_code;
}

/* ---- through elmd --------------------------------------------------------------------------- */

static int embed_remote(const struct embed_opts *o, char **texts, size_t n, size_t bytes)
{
    if (o->threads || o->kernel)
        fprintf(stderr, "elmctl: --threads and --kernel apply to --local only\n");
    elm_client *c = NULL;
    elm_session *s = NULL;
    struct printer pr = {0};
    int exit_code = cli_connect(o->runtime_dir, &c);
    if (exit_code)
        return exit_code;
    /* the request ring must hold the largest batch: all the texts at most */
    struct elm_session_params sp = o->sp;
    if (bytes > (1u << 20))
        sp.max_prompt_bytes = bytes > UINT32_MAX / 2 ? UINT32_MAX / 2 : (uint32_t)bytes;
    int rc;
    if ((exit_code = cli_session_open(c, &sp, &s)))
        goto out;
    /* Up to ELM_EMBED_MAX_TEXTS texts per request; a request with more tokens than elmd takes
     * in one (ELM_ECONTEXT for several texts) is split in halves until it fits. */
    size_t k = ELM_EMBED_MAX_TEXTS;
    for (size_t b = 0; b < n;) {
        k = n - b < k ? n - b : k;
        uint32_t n_tok[ELM_EMBED_MAX_TEXTS], E = 0;
        float *v = NULL;
        rc = elm_session_embed(s, (const char *const *)texts + b, k,
                               o->special ? ELM_REQUEST_SPECIAL : 0, &v, &E, n_tok);
        if (rc == ELM_ECONTEXT && k > 1) {
            k /= 2;
            continue;
        }
        if (rc) {
            const char *msg = elm_session_last_message(s);
            exit_code = cli_fail("cannot embed: %s", *msg ? msg : elm_strerror(rc));
            goto out;
        }
        print_batch(&pr, v, E, n_tok, k);
        free(v);
        b += k;
    }
out:
    print_end(&pr, exit_code == CLI_OK);
    elm_session_close(&s);
    elm_client_close(&c);
    return exit_code;
}

/* ---- the command ---------------------------------------------------------------------------- */

/* The non-empty lines of text, in place (text is cut at each newline). *out is malloc'ed. */
static int split_lines(char *text, size_t len, char ***out, size_t *n)
{
    size_t cap = 0, k = 0;
    char **v = NULL;
    for (size_t i = 0; i < len;) {
        char *nl = memchr(text + i, '\n', len - i);
        size_t end = nl ? (size_t)(nl - text) : len;
        text[end] = 0;
        if (end > i && k == cap) {
            char **nv = realloc(v, (cap = cap ? 2 * cap : 16) * sizeof *v);
            if (!nv) {
                free(v);
                return cli_fail("out of memory");
            }
            v = nv;
        }
        if (end > i)
            v[k++] = text + i;
        i = end + 1;
    }
    *out = v;
    *n = k;
    return 0;
}

int cli_cmd_embed(int argc, char **argv)
{
    static const struct option lo[] = {
        {"local", required_argument, 0, 'L'},
        {"special", no_argument, 0, 'x'},
        {"threads", required_argument, 0, 'T'},
        {"kernel", required_argument, 0, 'G'},
        {"runtime-dir", required_argument, 0, 'D'},
        {"model", required_argument, 0, 'M'},
        {"keep-alive", required_argument, 0, 'A'},
        CLI_OPT_JSON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    struct embed_opts o = {.runtime_dir = cli_runtime_dir};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        if (cli_model_opt(c, &o.sp))
            continue;
        switch (c) {
        case 'L':
            o.model = optarg;
            break;
        case 'x':
            o.special = true;
            break;
        case 'T':
            if (!cli_int("--threads", optarg, 1, 1024, &o.threads))
                return CLI_USAGE;
            break;
        case 'G':
            o.kernel = optarg;
            break;
        case 'D':
            o.runtime_dir = optarg;
            break;
        case 'j':
            cli_json = true;
            break;
        case 'h':
            embed_usage(stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
        }
    }
    char **texts = argv + optind, **lines = NULL, *input = NULL;
    size_t n = (size_t)(argc - optind), bytes = 0;
    int exit_code = CLI_OK;
    if (n == 0 || (n == 1 && !strcmp(texts[0], "-"))) {
        size_t len;
        bool given;
        exit_code = cli_read_text(NULL, (int)n, texts, &input, &len, &given);
        if (exit_code == CLI_OK && !given)
            exit_code = cli_usage("embed needs TEXT arguments or texts on stdin, one per line");
        if (exit_code == CLI_OK)
            exit_code = split_lines(input, len, &lines, &n);
        if (exit_code == CLI_OK && n == 0)
            exit_code = cli_usage("no text on stdin (one text per non-empty line)");
        texts = lines;
    }
    for (size_t i = 0; exit_code == CLI_OK && i < n; i++)
        bytes += strlen(texts[i]) + 4;
    if (exit_code == CLI_OK)
        exit_code = o.model ? embed_local(&o, texts, n) : embed_remote(&o, texts, n, bytes);
    free(lines);
    free(input);
    return exit_code;
}
