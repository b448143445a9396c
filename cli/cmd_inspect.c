/* cmd_inspect.c — `elmctl inspect MODEL` and `elmctl quantize IN OUT TYPE`, as text for
 * people or (--json) one JSON document. */
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "elm/status.h"
#include "engine/model.h"
#include "engine/quantize.h"

/* Prints a string value with control characters escaped, at most max bytes. */
static void put_str(struct elm_gguf_str s, size_t max)
{
    putchar('"');
    for (uint64_t i = 0; i < s.len && i < max; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20 || c == 0x7f)
            printf("\\x%02x", c);
        else
            putchar(c);
    }
    putchar('"');
    if (s.len > max)
        printf("... (%" PRIu64 " bytes)", s.len);
}

/* A scalar value as text, or (json) as a JSON value: strings escaped whole, non-finite floats
 * null. */
static void put_scalar(const struct elm_gguf_kv *kv, bool json)
{
    switch (kv->type) {
    case ELM_GGUF_U8: case ELM_GGUF_U16: case ELM_GGUF_U32: case ELM_GGUF_U64:
        printf("%" PRIu64, kv->v.u64);
        break;
    case ELM_GGUF_I8: case ELM_GGUF_I16: case ELM_GGUF_I32: case ELM_GGUF_I64:
        printf("%" PRId64, kv->v.i64);
        break;
    case ELM_GGUF_F32: case ELM_GGUF_F64:
        if (!json)
            printf("%g", kv->v.f64);
        else
            isfinite(kv->v.f64) ? printf("%.17g", kv->v.f64) : printf("null");
        break;
    case ELM_GGUF_BOOL: printf("%s", kv->v.u64 ? "true" : "false"); break;
    case ELM_GGUF_STRING:
        json ? cli_json_str(kv->v.str.ptr, kv->v.str.len) : put_str(kv->v.str, 120);
        break;
    default: printf(json ? "null" : "?"); break;
    }
}

static void print_metadata(const struct elm_gguf *g)
{
    printf("\nmetadata (%" PRIu64 " keys):\n", g->n_kv);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct elm_gguf_kv *kv = &g->kv[i];
        printf("  %-44.*s ", (int)kv->key.len, kv->key.ptr);
        if (kv->type == ELM_GGUF_ARRAY)
            printf("[%s x %" PRIu64 "]", elm_gguf_vtype_name(kv->arr_type), kv->arr_n);
        else
            put_scalar(kv, false);
        putchar('\n');
    }
}

static void print_tensors(const struct elm_gguf *g)
{
    printf("\ntensors (%" PRIu64 "):\n", g->n_tensors);
    uint64_t per_type[ELM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        const struct elm_type_info *ti = elm_type_get(t->type);
        printf("  %-32.*s %-6s [", (int)t->name.len, t->name.ptr, ti ? ti->name : "?");
        for (uint32_t d = 0; d < t->n_dims; d++)
            printf(d ? ", %" PRId64 : "%" PRId64, t->ne[d]);
        printf("] %" PRIu64 " bytes\n", t->n_bytes);
        if (t->type < ELM_TYPE_COUNT)
            per_type[t->type] += t->n_bytes;
    }
    printf("\nbytes by type:");
    for (int ty = 0; ty < ELM_TYPE_COUNT; ty++)
        if (per_type[ty])
            printf(" %s %" PRIu64, elm_type_get((uint32_t)ty)->name, per_type[ty]);
    putchar('\n');
}

/* enum elm_vocab_kind: the JSON name and the text (with tokenizer.ggml.model's name). */
static const struct {
    const char *json, *text;
} vocab_kinds[] = {
    [ELM_VOCAB_SPM] = {"spm", "spm (llama)"},
    [ELM_VOCAB_BPE] = {"bpe", "bpe (gpt2)"},
    [ELM_VOCAB_WPM] = {"wordpiece", "wordpiece (bert)"},
};

/* ---- inspect --json: one document with the same facts ---------------------------------------- */

/* "metadata": {key: value}; an array's value is {"type":T,"n":N} (its elements can be a whole
 * vocabulary: the text view does not list them either). */
static void json_metadata(struct cli_jw *j, const struct elm_gguf *g)
{
    cli_jw_key(j, "metadata");
    struct cli_jw o;
    cli_jw_open(&o);
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct elm_gguf_kv *kv = &g->kv[i];
        if (!o.first)
            putchar(',');
        o.first = false;
        cli_json_str(kv->key.ptr, kv->key.len);
        putchar(':');
        if (kv->type == ELM_GGUF_ARRAY) {
            struct cli_jw a;
            cli_jw_open(&a);
            cli_jw_str(&a, "type", elm_gguf_vtype_name(kv->arr_type));
            cli_jw_u64(&a, "n", kv->arr_n);
            cli_jw_close(&a);
        } else {
            put_scalar(kv, true);
        }
    }
    cli_jw_close(&o);
}

static void json_tensors(struct cli_jw *j, const struct elm_gguf *g)
{
    cli_jw_key(j, "tensors");
    putchar('[');
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        const struct elm_type_info *ti = elm_type_get(t->type);
        struct cli_jw o;
        fputs(i ? "," : "", stdout);
        cli_jw_open(&o);
        cli_jw_strn(&o, "name", t->name.ptr, t->name.len);
        cli_jw_str(&o, "type", ti ? ti->name : "?");
        cli_jw_key(&o, "shape");
        for (uint32_t d = 0; d < t->n_dims; d++)
            printf(d ? ",%" PRId64 : "[%" PRId64, t->ne[d]);
        fputs(t->n_dims ? "]" : "[]", stdout);
        cli_jw_u64(&o, "bytes", t->n_bytes);
        cli_jw_close(&o);
    }
    putchar(']');
}

static void json_model(struct cli_jw *j, const struct elm_model *m)
{
    const struct elm_hparams *hp = &m->hp;
    const struct elm_vocab *v = m->vocab;
    cli_jw_key(j, "model");
    struct cli_jw o;
    cli_jw_open(&o);
    cli_jw_str(&o, "architecture", elm_arch_name(hp->arch));
    cli_jw_i64(&o, "n_embd", hp->n_embd);
    cli_jw_i64(&o, "n_layer", hp->n_layer);
    cli_jw_i64(&o, "n_head", hp->n_head);
    cli_jw_i64(&o, "n_head_kv", hp->n_head_kv);
    cli_jw_i64(&o, "head_dim", hp->head_dim);
    cli_jw_i64(&o, "n_ff", hp->n_ff);
    cli_jw_i64(&o, "n_ctx_train", hp->n_ctx_train);
    cli_jw_str(&o, "rope", hp->rope_mode == ELM_ROPE_NEOX ? "neox" : "norm");
    cli_jw_i64(&o, "n_rot", hp->n_rot);
    cli_jw_f64(&o, "rope_base", hp->rope_base);
    cli_jw_f64(&o, "rope_scale", hp->rope_scale);
    cli_jw_f64(&o, "rms_eps", hp->eps);
    cli_jw_bool(&o, "tied_output", m->output.data == m->tok_embd.data);
    cli_jw_str(&o, "vocab", vocab_kinds[elm_vocab_kind(v)].json);
    cli_jw_i64(&o, "n_vocab", elm_vocab_size(v));
    cli_jw_i64(&o, "bos", elm_vocab_bos(v));
    cli_jw_i64(&o, "eos", elm_vocab_eos(v));
    cli_jw_bool(&o, "add_bos", elm_vocab_add_bos(v));
    cli_jw_u64(&o, "weight_bytes", m->weight_bytes);
    cli_jw_close(&o);
}

static void print_text_model(const struct elm_model *m)
{
    const struct elm_hparams *hp = &m->hp;
    printf("architecture: %s\n", elm_arch_name(hp->arch));
    printf("hyperparameters: n_embd %d, n_layer %d, n_head %d, n_head_kv %d, head_dim %d, "
           "n_ff %d, n_ctx_train %d\n",
           hp->n_embd, hp->n_layer, hp->n_head, hp->n_head_kv, hp->head_dim, hp->n_ff,
           hp->n_ctx_train);
    printf("rope: %s, dims %d, base %g, scale %g; rms eps %g; output %s\n",
           hp->rope_mode == ELM_ROPE_NEOX ? "neox" : "norm", hp->n_rot, hp->rope_base,
           hp->rope_scale, hp->eps, m->output.data == m->tok_embd.data ? "tied" : "separate");
    const struct elm_vocab *v = m->vocab;
    printf("vocabulary: %s, %d tokens, bos %d, eos %d, add_bos %s\n",
           vocab_kinds[elm_vocab_kind(v)].text, elm_vocab_size(v),
           elm_vocab_bos(v), elm_vocab_eos(v), elm_vocab_add_bos(v) ? "yes" : "no");
    printf("weights: %" PRIu64 " bytes\n", m->weight_bytes);
}

/* The model view needs a complete model; a vocab-only file still gets its metadata shown, with
 * why it is not runnable in err. NULL then. */
static struct elm_model *open_model(const char *path, char *err, size_t cap)
{
    struct elm_model *m = NULL;
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_gguf *g2;
    if (elm_gguf_open(path, &g2, err, cap) == 0 &&
        elm_model_create(g2, NULL, &mp, &m, err, cap) != 0)
        elm_gguf_destroy(&g2);
    return m;
}

static const char inspect_usage[] =
    "usage: elmctl inspect [--json] MODEL\n"
    "Shows the architecture, hyperparameters, vocabulary, tensor types and sizes and all\n"
    "metadata of a GGUF file.\n\n"
    "  --json   print one JSON document: file, gguf_version, size, alignment, data_offset,\n"
    "           model (absent when elm cannot run the file; model_error says why), tensors,\n"
    "           metadata; an error is {\"error\":S,\"exit_code\":N}\n"
    "Exit status: 0 ok, 1 failure (the file cannot be read), 2 usage error.\n";

int cli_cmd_inspect(int argc, char **argv)
{
    static const struct option lo[] = {CLI_OPT_JSON, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j': cli_json = true; break;
        case 'h': fputs(inspect_usage, stdout); return CLI_OK;
        default: return cli_bad_option(argv);
        }
    }
    if (argc - optind != 1)
        return cli_usage("inspect takes one MODEL argument (see --help)");
    const char *path = argv[optind];
    char err[512] = "";
    struct elm_gguf *g;
    int rc = elm_gguf_open(path, &g, err, sizeof err);
    if (rc)
        return cli_fail_file(path, rc, err);
    err[0] = 0;
    struct elm_model *m = open_model(path, err, sizeof err);
    if (cli_json) {
        struct cli_jw j;
        cli_jw_open(&j);
        cli_jw_str(&j, "file", path);
        cli_jw_u64(&j, "gguf_version", g->version);
        cli_jw_u64(&j, "size", g->size);
        cli_jw_u64(&j, "alignment", g->alignment);
        cli_jw_u64(&j, "data_offset", g->data_offset);
        if (m)
            json_model(&j, m);
        else
            cli_jw_str(&j, "model_error", err);
        json_tensors(&j, g);
        json_metadata(&j, g);
        cli_jw_close(&j);
        putchar('\n');
    } else {
        printf("file: %s\nGGUF v%u, %" PRIu64 " bytes, alignment %" PRIu64
               ", data at %" PRIu64 "\n",
               path, g->version, g->size, g->alignment, g->data_offset);
        if (m)
            print_text_model(m);
        else
            printf("model: not runnable by elm: %s\n", err);
        print_tensors(g);
        print_metadata(g);
    }
    elm_model_destroy(&m);
    elm_gguf_destroy(&g);
    return CLI_OK;
}

int cli_cmd_quantize(int argc, char **argv)
{
    static const struct option lo[] = {
        {"pure", no_argument, 0, 'p'},
        {"threads", required_argument, 0, 'T'},
        {"imatrix", required_argument, 0, 'I'},
        CLI_OPT_JSON,
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bool pure = false;
    long threads = 0;
    const char *imatrix = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'p': pure = true; break;
        case 'I': imatrix = optarg; break;
        case 'T':
            if (!cli_int("--threads", optarg, 1, 1024, &threads))
                return CLI_USAGE;
            break;
        case 'j': cli_json = true; break;
        case 'h':
            printf("usage: elmctl quantize [--pure] [--imatrix FILE] [--threads N] [--json] IN.gguf "
                   "OUT.gguf TYPE\n"
                   "TYPE: %s\n"
                   "Without --pure the output and some attention-V / FFN-down layers get more\n"
                   "bits, as the widely used presets do. Tensors whose rows do not fit the\n"
                   "block size, and 1-D tensors, are kept in F32. All metadata is kept.\n\n"
                   "  --pure       every quantizable tensor gets TYPE\n"
                   "  --imatrix FILE  llama.cpp importance matrix (llama-imatrix or elmctl\n"
                   "               imatrix): weighs each weight column by its activations\n"
                   "               where llama-quantize does (Q4_0..Q5_1, K-quants, IQ4)\n"
                   "  --threads N  compute threads (default: CPU count)\n"
                   "  --json       print {\"output\":S,\"n_quantized\":N,\"n_kept\":N,\n"
                   "               \"bytes_in\":N,\"bytes_out\":N}; an error is\n"
                   "               {\"error\":S,\"exit_code\":N}\n"
                   "Exit status: 0 ok, 1 failure, 2 usage error (an unknown TYPE too).\n",
                   elm_quantize_presets());
            return CLI_OK;
        default: return cli_bad_option(argv);
        }
    }
    if (argc - optind != 3)
        return cli_usage("usage: elmctl quantize [--pure] [--imatrix FILE] [--threads N] IN.gguf "
                         "OUT.gguf TYPE");
    const char *in = argv[optind], *out = argv[optind + 1], *type = argv[optind + 2];
    if (!elm_quantize_preset_known(type))
        return cli_usage("unknown type '%s' (one of: %s)", type, elm_quantize_presets());
    char err[512] = "";
    struct elm_quantize_stats st;
    int rc = elm_quantize_file_imatrix(in, out, type, pure, imatrix, (int)threads, &st, err,
                                       sizeof err);
    if (rc)
        return cli_fail("quantize: %s", err[0] ? err : elm_strerror(rc));
    if (cli_json) {
        struct cli_jw j;
        cli_jw_open(&j);
        cli_jw_str(&j, "output", out);
        cli_jw_i64(&j, "n_quantized", st.n_quantized);
        cli_jw_i64(&j, "n_kept", st.n_kept);
        cli_jw_u64(&j, "bytes_in", st.bytes_in);
        cli_jw_u64(&j, "bytes_out", st.bytes_out);
        cli_jw_close(&j);
        putchar('\n');
    } else {
        printf("%s: %d tensors quantized, %d kept in F32, %.2f MB -> %.2f MB\n", out,
               st.n_quantized, st.n_kept, st.bytes_in / 1e6, st.bytes_out / 1e6);
    }
    return CLI_OK;
}
