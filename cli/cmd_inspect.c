/* cmd_inspect.c — `elmctl inspect MODEL` and `elmctl quantize IN OUT TYPE`, as text for
 * people or (--json) one JSON document. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_json.h"
#include "cli/cli_util.h"
#include "elm/status.h"
#include "engine/chat.h"
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

/* A scalar value as text. */
static void put_scalar(const struct elm_gguf_kv *kv)
{
    switch (kv->type) {
    case ELM_GGUF_U8:
    case ELM_GGUF_U16:
    case ELM_GGUF_U32:
    case ELM_GGUF_U64:
        printf("%" PRIu64, kv->v.u64);
        break;
    case ELM_GGUF_I8:
    case ELM_GGUF_I16:
    case ELM_GGUF_I32:
    case ELM_GGUF_I64:
        printf("%" PRId64, kv->v.i64);
        break;
    case ELM_GGUF_F32:
    case ELM_GGUF_F64:
        printf("%g", kv->v.f64);
        break;
    case ELM_GGUF_BOOL:
        printf("%s", kv->v.u64 ? "true" : "false");
        break;
    case ELM_GGUF_STRING:
        put_str(kv->v.str, 120);
        break;
    default:
        printf("?");
        break;
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
            put_scalar(kv);
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

/* A scalar value as JSON: strings whole (invalid UTF-8 replaced), non-finite floats null. */
static json_t *json_scalar(const struct elm_gguf_kv *kv)
{
    switch (kv->type) {
    case ELM_GGUF_U8:
    case ELM_GGUF_U16:
    case ELM_GGUF_U32:
    case ELM_GGUF_U64:
        return json_integer((json_int_t)kv->v.u64);
    case ELM_GGUF_I8:
    case ELM_GGUF_I16:
    case ELM_GGUF_I32:
    case ELM_GGUF_I64:
        return json_integer((json_int_t)kv->v.i64);
    case ELM_GGUF_F32:
    case ELM_GGUF_F64:
        return cli_json_real(kv->v.f64);
    case ELM_GGUF_BOOL:
        return json_boolean(kv->v.u64);
    case ELM_GGUF_STRING:
        return cli_json_text(kv->v.str.ptr, kv->v.str.len);
    default:
        return json_null();
    }
}

/* "metadata": {key: value}; an array's value is {"type":T,"n":N} (its elements can be a whole
 * vocabulary: the text view does not list them either). */
static json_t *json_metadata(const struct elm_gguf *g)
{
    json_t *o = json_object();
    for (uint64_t i = 0; i < g->n_kv; i++) {
        const struct elm_gguf_kv *kv = &g->kv[i];
        json_t *v = kv->type == ELM_GGUF_ARRAY
                        ? json_pack("{sssI}", "type", elm_gguf_vtype_name(kv->arr_type), "n",
                                    (json_int_t)kv->arr_n)
                        : json_scalar(kv);
        json_t *k = cli_json_text(kv->key.ptr, kv->key.len); /* the key, made valid UTF-8 */
        if (k)
            json_object_set_new(o, json_string_value(k), v);
        else
            json_decref(v);
        json_decref(k);
    }
    return o;
}

static json_t *json_tensors(const struct elm_gguf *g)
{
    json_t *a = json_array();
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        const struct elm_type_info *ti = elm_type_get(t->type);
        json_t *shape = json_array();
        for (uint32_t d = 0; d < t->n_dims; d++)
            json_array_append_new(shape, json_integer(t->ne[d]));
        json_array_append_new(
            a, json_pack("{sosssosI}", "name", cli_json_text(t->name.ptr, t->name.len), "type",
                         ti ? ti->name : "?", "shape", shape, "bytes", (json_int_t)t->n_bytes));
    }
    return a;
}

/* ---- what a user of a chat model looks at: template, special tokens, size, quantization ---- */

/* The chat template elm renders for m, or NULL with why in err; *in_file: whether the file
 * has one (without, elm uses llama-server's default, chatml). */
static const char *chat_template(const struct elm_model *m, bool *in_file, char *err, size_t cap)
{
    enum elm_chat_tmpl t;
    *in_file = elm_gguf_find(m->gguf, "tokenizer.chat_template") != NULL;
    return elm_chat_model_template(m, NULL, &t, err, cap) ? NULL : elm_chat_name(t);
}

static uint64_t n_params(const struct elm_gguf *g)
{
    uint64_t n = 0;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        uint64_t e = 1;
        for (uint32_t d = 0; d < g->tensors[i].n_dims; d++)
            e *= (uint64_t)g->tensors[i].ne[d];
        n += e;
    }
    return n;
}

/* general.file_type (-1 when absent) and its name ("" when elm has none for it). */
static long file_type(const struct elm_gguf *g, const char **name)
{
    uint32_t ft;
    *name = "";
    if (elm_gguf_get_u32(g, "general.file_type", &ft))
        return -1;
    const char *n = elm_quantize_file_type_name(ft);
    *name = n ? n : "";
    return (long)ft;
}

static void print_token(const struct elm_vocab *v, const char *what, int32_t id)
{
    if (id < 0) {
        printf("%s -", what);
        return;
    }
    size_t len;
    const char *t = elm_vocab_text(v, id, &len);
    printf("%s %d ", what, (int)id);
    put_str((struct elm_gguf_str){len, t}, 40);
}

static void print_text_chat(const struct elm_model *m)
{
    const struct elm_vocab *v = m->vocab;
    char err[512];
    bool in_file;
    const char *tmpl = chat_template(m, &in_file, err, sizeof err);
    printf("chat template: %s%s\n", tmpl ? tmpl : err,
           in_file ? "" : " (the file has none: llama-server's default)");
    printf("special tokens: ");
    print_token(v, "bos", elm_vocab_bos(v));
    print_token(v, ", eos", elm_vocab_eos(v));
    print_token(v, ", eot", elm_vocab_eot(v));
    print_token(v, ", pad", elm_vocab_pad(v));
    print_token(v, ", unk", elm_vocab_unk(v));
    int n;
    const int32_t *eog = elm_vocab_eog(v, &n);
    printf("\nend of generation:");
    for (int i = 0; i < n; i++)
        print_token(v, i ? "," : "", eog[i]);
    putchar('\n');
}

/* The chat fields of inspect's "model" object, added to o. */
static void json_chat(json_t *o, const struct elm_model *m)
{
    const struct elm_vocab *v = m->vocab;
    char err[512];
    bool in_file;
    const char *tmpl = chat_template(m, &in_file, err, sizeof err);
    json_object_set_new(o, "chat_template_in_file", json_boolean(in_file));
    if (tmpl)
        json_object_set_new(o, "chat_template", json_string(tmpl));
    else
        cli_json_set_text(o, "chat_template_error", 19, err, strlen(err));
    json_object_set_new(o, "eot", json_integer(elm_vocab_eot(v)));
    json_object_set_new(o, "pad", json_integer(elm_vocab_pad(v)));
    json_object_set_new(o, "unk", json_integer(elm_vocab_unk(v)));
    int n;
    const int32_t *eog = elm_vocab_eog(v, &n);
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_integer(eog[i]));
    json_object_set_new(o, "eog", a);
}

/* Tensors per type: how a file is quantized (llama-quantize mixes types). */
static void count_types(const struct elm_gguf *g, uint64_t per_type[ELM_TYPE_COUNT])
{
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].type < ELM_TYPE_COUNT)
            per_type[g->tensors[i].type]++;
}

static void print_text_size(const struct elm_gguf *g)
{
    const char *ftn;
    long ft = file_type(g, &ftn);
    uint64_t per_type[ELM_TYPE_COUNT] = {0};
    count_types(g, per_type);
    printf("parameters: %" PRIu64 "; file type ", n_params(g));
    ft < 0 ? printf("-") : printf(ftn[0] ? "%ld (%s)" : "%ld", ft, ftn);
    printf("; tensors by type:");
    const char *sep = " ";
    for (int ty = 0; ty < ELM_TYPE_COUNT; ty++)
        if (per_type[ty]) {
            printf("%s%s %" PRIu64, sep, elm_type_get((uint32_t)ty)->name, per_type[ty]);
            sep = ", ";
        }
    putchar('\n');
}

/* Size and quantization: n_params, file_type (-1: none), file_type_name, tensor_types. */
static void json_size(json_t *j, const struct elm_gguf *g)
{
    const char *ftn;
    long ft = file_type(g, &ftn);
    json_object_set_new(j, "n_params", json_integer((json_int_t)n_params(g)));
    json_object_set_new(j, "file_type", json_integer(ft));
    if (ftn[0])
        json_object_set_new(j, "file_type_name", json_string(ftn));
    uint64_t per_type[ELM_TYPE_COUNT] = {0};
    count_types(g, per_type);
    json_t *o = json_object();
    for (int ty = 0; ty < ELM_TYPE_COUNT; ty++)
        if (per_type[ty])
            json_object_set_new(o, elm_type_get((uint32_t)ty)->name,
                                json_integer((json_int_t)per_type[ty]));
    json_object_set_new(j, "tensor_types", o);
}

static json_t *json_model(const struct elm_model *m)
{
    const struct elm_hparams *hp = &m->hp;
    const struct elm_vocab *v = m->vocab;
    json_t *o = json_pack(
        "{sssIsIsIsIsIsIsIsssIsosososbsssIsIsIsbsI}", "architecture", elm_arch_name(hp->arch),
        "n_embd", (json_int_t)hp->n_embd, "n_layer", (json_int_t)hp->n_layer, "n_head",
        (json_int_t)hp->n_head, "n_head_kv", (json_int_t)hp->n_head_kv, "head_dim",
        (json_int_t)hp->head_dim, "n_ff", (json_int_t)hp->n_ff, "n_ctx_train",
        (json_int_t)hp->n_ctx_train, "rope", hp->rope_mode == ELM_ROPE_NEOX ? "neox" : "norm",
        "n_rot", (json_int_t)hp->n_rot, "rope_base", cli_json_real(hp->rope_base), "rope_scale",
        cli_json_real(hp->rope_scale), "rms_eps", cli_json_real(hp->eps), "tied_output",
        m->output.data == m->tok_embd.data, "vocab", vocab_kinds[elm_vocab_kind(v)].json, "n_vocab",
        (json_int_t)elm_vocab_size(v), "bos", (json_int_t)elm_vocab_bos(v), "eos",
        (json_int_t)elm_vocab_eos(v), "add_bos", elm_vocab_add_bos(v), "weight_bytes",
        (json_int_t)m->weight_bytes);
    if (o)
        json_chat(o, m);
    return o;
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
           vocab_kinds[elm_vocab_kind(v)].text, elm_vocab_size(v), elm_vocab_bos(v),
           elm_vocab_eos(v), elm_vocab_add_bos(v) ? "yes" : "no");
    print_text_chat(m);
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
    "Shows the architecture, parameters, quantization (file type, tensors by type),\n"
    "hyperparameters and context, vocabulary, chat template (as elm recognises it), special\n"
    "and end-of-generation tokens, tensor types and sizes and all metadata of a GGUF file.\n\n"
    "  --json   print one JSON document: file, gguf_version, size, alignment, data_offset,\n"
    "           n_params, file_type (-1: none), file_type_name, tensor_types {type: count},\n"
    "           model (absent when elm cannot run the file; model_error says why; with\n"
    "           chat_template_in_file, chat_template or chat_template_error, bos, eos, eot,\n"
    "           pad, unk, eog [ids]),\n"
    "           tensors, metadata; an error is {\"error\":S,\"exit_code\":N}\n"
    "Exit status: 0 ok, 1 failure (the file cannot be read), 2 usage error.\n";

int cli_cmd_inspect(int argc, char **argv)
{
    static const struct option lo[] = {CLI_OPT_JSON, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'j':
            cli_json = true;
            break;
        case 'h':
            fputs(inspect_usage, stdout);
            return CLI_OK;
        default:
            return cli_bad_option(argv);
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
        json_t *j = json_object();
        cli_json_set_text(j, "file", 4, path, strlen(path));
        json_object_set_new(j, "gguf_version", json_integer(g->version));
        json_object_set_new(j, "size", json_integer((json_int_t)g->size));
        json_object_set_new(j, "alignment", json_integer((json_int_t)g->alignment));
        json_object_set_new(j, "data_offset", json_integer((json_int_t)g->data_offset));
        json_size(j, g);
        if (m)
            json_object_set_new(j, "model", json_model(m));
        else
            cli_json_set_text(j, "model_error", 11, err, strlen(err));
        json_object_set_new(j, "tensors", json_tensors(g));
        json_object_set_new(j, "metadata", json_metadata(g));
        cli_json_print(j);
    } else {
        printf("file: %s\nGGUF v%u, %" PRIu64 " bytes, alignment %" PRIu64 ", data at %" PRIu64
               "\n",
               path, g->version, g->size, g->alignment, g->data_offset);
        print_text_size(g);
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
        case 'p':
            pure = true;
            break;
        case 'I':
            imatrix = optarg;
            break;
        case 'T':
            if (!cli_int("--threads", optarg, 1, 1024, &threads))
                return CLI_USAGE;
            break;
        case 'j':
            cli_json = true;
            break;
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
        default:
            return cli_bad_option(argv);
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
        json_t *j = json_pack("{sIsIsIsI}", "n_quantized", (json_int_t)st.n_quantized, "n_kept",
                              (json_int_t)st.n_kept, "bytes_in", (json_int_t)st.bytes_in,
                              "bytes_out", (json_int_t)st.bytes_out);
        cli_json_set_text(j, "output", 6, out, strlen(out));
        cli_json_print(j);
    } else {
        printf("%s: %d tensors quantized, %d kept in F32, %.2f MB -> %.2f MB\n", out,
               st.n_quantized, st.n_kept, st.bytes_in / 1e6, st.bytes_out / 1e6);
    }
    return CLI_OK;
}
