/* cmd_inspect.c — `elmctl inspect MODEL` and `elmctl quantize IN OUT TYPE`. */
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
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

static void put_scalar(uint32_t type, const struct elm_gguf_kv *kv)
{
    switch (type) {
    case ELM_GGUF_U8: case ELM_GGUF_U16: case ELM_GGUF_U32: case ELM_GGUF_U64:
        printf("%" PRIu64, kv->v.u64);
        break;
    case ELM_GGUF_I8: case ELM_GGUF_I16: case ELM_GGUF_I32: case ELM_GGUF_I64:
        printf("%" PRId64, kv->v.i64);
        break;
    case ELM_GGUF_F32: case ELM_GGUF_F64: printf("%g", kv->v.f64); break;
    case ELM_GGUF_BOOL: printf("%s", kv->v.u64 ? "true" : "false"); break;
    case ELM_GGUF_STRING: put_str(kv->v.str, 120); break;
    default: printf("?"); break;
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
            put_scalar(kv->type, kv);
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

int cli_cmd_inspect(int argc, char **argv)
{
    if (argc == 2 && !strcmp(argv[1], "--help")) {
        printf("usage: elmctl inspect MODEL\nShows the architecture, hyperparameters, "
               "vocabulary, tensor types and sizes and all metadata of a GGUF file.\n");
        return 0;
    }
    if (argc != 2)
        return cli_fail("usage: elmctl inspect MODEL"), 2;
    char err[512];
    struct elm_gguf *g;
    int rc = elm_gguf_open(argv[1], &g, err, sizeof err);
    if (rc)
        return cli_fail("%s: %s", argv[1], err[0] ? err : elm_strerror(rc));
    printf("file: %s\nGGUF v%u, %" PRIu64 " bytes, alignment %" PRIu64 ", data at %" PRIu64 "\n",
           argv[1], g->version, g->size, g->alignment, g->data_offset);
    /* The model view needs a complete model; a vocab-only file still gets its metadata shown. */
    struct elm_model *m = NULL;
    struct elm_model_params mp = {.n_threads = 1};
    struct elm_gguf *g2;
    if (elm_gguf_open(argv[1], &g2, err, sizeof err) == 0) {
        if (elm_model_create(g2, NULL, &mp, &m, err, sizeof err) != 0) {
            elm_gguf_destroy(&g2);
            printf("model: not runnable by elm: %s\n", err);
        }
    }
    if (m) {
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
               elm_vocab_kind(v) == ELM_VOCAB_SPM ? "spm (llama)" : "bpe (gpt2)",
               elm_vocab_size(v), elm_vocab_bos(v), elm_vocab_eos(v),
               elm_vocab_add_bos(v) ? "yes" : "no");
        printf("weights: %" PRIu64 " bytes\n", m->weight_bytes);
        elm_model_destroy(&m);
    }
    print_tensors(g);
    print_metadata(g);
    elm_gguf_destroy(&g);
    return 0;
}

int cli_cmd_quantize(int argc, char **argv)
{
    static const struct option lo[] = {
        {"pure", no_argument, 0, 'p'},
        {"threads", required_argument, 0, 'T'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    bool pure = false;
    long threads = 0;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 'p': pure = true; break;
        case 'T':
            if (!cli_int("--threads", optarg, 1, 1024, &threads))
                return 2;
            break;
        case 'h':
            printf("usage: elmctl quantize [--pure] [--threads N] IN.gguf OUT.gguf TYPE\n"
                   "TYPE: %s\n"
                   "Without --pure the output and some attention-V / FFN-down layers get more\n"
                   "bits, as the widely used presets do. Tensors whose rows do not fit the\n"
                   "block size, and 1-D tensors, are kept in F32. All metadata is kept.\n",
                   elm_quantize_presets());
            return 0;
        default: return 2;
        }
    }
    if (argc - optind != 3)
        return cli_fail("usage: elmctl quantize [--pure] IN.gguf OUT.gguf TYPE"), 2;
    char err[512];
    struct elm_quantize_stats st;
    int rc = elm_quantize_file(argv[optind], argv[optind + 1], argv[optind + 2], pure,
                               (int)threads, &st, err, sizeof err);
    if (rc)
        return cli_fail("quantize: %s", err[0] ? err : elm_strerror(rc));
    printf("%s: %d tensors quantized, %d kept in F32, %.2f MB -> %.2f MB\n", argv[optind + 1],
           st.n_quantized, st.n_kept, st.bytes_in / 1e6, st.bytes_out / 1e6);
    return 0;
}
