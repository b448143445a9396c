/* seeds.c — elm_fuzz_seeds OUT: writes a starting corpus for every fuzz target into
 * OUT/<target>/, made by elm's own encoders rather than stored in the repository: tiny
 * synthetic models written by engine/gguf_writer (gguf, model), real control frames (proto),
 * real session records and rings (records), and the tokenizer test texts of the shared test
 * data split into one input each (tok_*; skipped with a note when the data is missing).
 * scripts/fuzz.sh runs it before every run; fuzz/corpus/ holds the committed part.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "fuzz/fuzz_util.h"
#include "ipc/fields.h"
#include "ipc/proto.h"
#include "ipc/region.h"
#include "ipc/ring.h"
#include "ipc/schema.h"
#include "ipc/session_shm.h"
#include "kernels/kernels.h"

static const char *out_dir;

static void put(const char *target, const char *name, const void *p, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", out_dir, target);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/%s", out_dir, target, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "seeds: cannot write %s\n", path);
        exit(1);
    }
}

/* ---- gguf, model: a one-layer llama with a 16-token SentencePiece vocabulary ---------------- */

static void fill(void *ctx, void *dst, uint64_t n)
{
    unsigned char *b = dst;
    for (uint64_t i = 0; i < n; i++) /* small values whatever the type: F32 and Q8_0 stay finite */
        b[i] = (i % 4 == 3 || i % 34 == 1) ? 0x3c : (unsigned char)(i * 37);
    (void)ctx;
}

static void write_model(const char *name, uint32_t type, int with_tensors)
{
    static const char *tokens[16] = {"<unk>",
                                     "<s>",
                                     "</s>",
                                     "\xe2\x96\x81",
                                     "a",
                                     "b",
                                     "c",
                                     "ab",
                                     "\xe2\x96\x81"
                                     "a",
                                     "<0x0A>",
                                     "<0xE2>",
                                     "h",
                                     "i",
                                     "hi",
                                     "\xe2\x96\x81"
                                     "hi",
                                     "<|user|>"};
    float scores[16];
    int32_t types[16];
    for (int i = 0; i < 16; i++) {
        scores[i] = -(float)i;
        types[i] = i < 3 ? (i == 0 ? 2 : 3) : (i == 9 || i == 10) ? 6 : i == 15 ? 4 : 1;
    }
    const int64_t E = 32, F = 64, V = 16;
    struct elm_gguf_writer *w = elm_gguf_writer_create(0);
    char err[256], tmp[4096];
    elm_gguf_writer_set_str(w, "general.architecture", "llama");
    elm_gguf_writer_set_str(w, "general.name", "fuzz-seed");
    elm_gguf_writer_set_u32(w, "llama.context_length", 64);
    elm_gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)E);
    elm_gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)F);
    elm_gguf_writer_set_u32(w, "llama.block_count", 1);
    elm_gguf_writer_set_u32(w, "llama.attention.head_count", 4);
    elm_gguf_writer_set_u32(w, "llama.attention.head_count_kv", 2);
    elm_gguf_writer_set_u32(w, "llama.rope.dimension_count", 8);
    elm_gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    elm_gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    elm_gguf_writer_set_str_arr(w, "tokenizer.ggml.tokens", tokens, 16);
    elm_gguf_writer_set_arr(w, "tokenizer.ggml.scores", ELM_GGUF_F32, 16, scores);
    elm_gguf_writer_set_arr(w, "tokenizer.ggml.token_type", ELM_GGUF_I32, 16, types);
    elm_gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    elm_gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    elm_gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (with_tensors) {
        struct {
            const char *name;
            int64_t ne0, ne1;
            int matrix;
        } t[] = {{"token_embd.weight", E, V, 1},        {"output_norm.weight", E, 1, 0},
                 {"blk.0.attn_norm.weight", E, 1, 0},   {"blk.0.attn_q.weight", E, E, 1},
                 {"blk.0.attn_k.weight", E, E / 2, 1},  {"blk.0.attn_v.weight", E, E / 2, 1},
                 {"blk.0.attn_output.weight", E, E, 1}, {"blk.0.ffn_norm.weight", E, 1, 0},
                 {"blk.0.ffn_gate.weight", E, F, 1},    {"blk.0.ffn_up.weight", E, F, 1},
                 {"blk.0.ffn_down.weight", F, E, 1}};
        for (size_t k = 0; k < sizeof t / sizeof *t; k++) {
            int64_t ne[2] = {t[k].ne0, t[k].ne1};
            elm_gguf_writer_add_tensor_fill(w, t[k].name, t[k].matrix ? type : ELM_TYPE_F32,
                                            t[k].ne1 > 1 ? 2 : 1, ne, fill, NULL);
        }
    }
    snprintf(tmp, sizeof tmp, "%s/%s", out_dir, name);
    if (elm_gguf_writer_write(w, tmp, err, sizeof err) < 0) {
        fprintf(stderr, "seeds: %s: %s\n", name, err);
        exit(1);
    }
    elm_gguf_writer_destroy(&w);
    /* the same bytes seed both GGUF targets */
    FILE *f = fopen(tmp, "rb");
    static unsigned char buf[1 << 20];
    size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    remove(tmp);
    put("gguf", name, buf, n);
    put("model", name, buf, n);
}

/* ---- proto: one well-formed frame of every request and reply shape ----------------------------
 */

static void frame(const char *name, struct elm_proto_buf *b)
{
    const void *p;
    size_t n;
    if (elm_proto_finish(b, &p, &n) < 0) {
        fprintf(stderr, "seeds: frame %s does not decode\n", name);
        exit(1);
    }
    put("proto", name, p, n);
}

static void write_frames(void)
{
    struct elm_proto_buf b;
    const uint8_t v = ELM_PROTO_VERSION_MAX;
    elm_proto_buf_init(&b);
    elm_proto_begin(&b, v, ELM_CMD_HELLO, 0, 1);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MIN, ELM_PROTO_VERSION_MIN);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MAX, ELM_PROTO_VERSION_MAX);
    elm_proto_put_str(&b, ELM_TAG_CLIENT_NAME, "elmctl");
    frame("hello", &b);
    elm_proto_begin(&b, v, ELM_CMD_LOAD, 0, 2);
    elm_proto_put_str(&b, ELM_TAG_PATH, "/models/stories260K.gguf");
    elm_proto_put_u64(&b, ELM_TAG_N_CTX, 256);
    elm_proto_put_u64(&b, ELM_TAG_N_THREADS, 2);
    frame("load", &b);
    elm_proto_begin(&b, v, ELM_CMD_OPEN_SESSION, 0, 3);
    elm_proto_put_u64(&b, ELM_TAG_PID, 4242);
    frame("open_session", &b);
    elm_proto_begin(&b, v, ELM_CMD_CLOSE_SESSION, 0, 4);
    elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, 7);
    frame("close_session", &b);
    elm_proto_begin(&b, v, ELM_CMD_CANCEL, 0, 5);
    elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, 7);
    frame("cancel", &b);
    static const uint16_t bare[] = {ELM_CMD_STATUS, ELM_CMD_UNLOAD, ELM_CMD_SESSIONS, ELM_CMD_STATS,
                                    ELM_CMD_SHUTDOWN};
    for (size_t i = 0; i < sizeof bare / sizeof *bare; i++) {
        elm_proto_begin(&b, v, bare[i], 0, (uint32_t)(10 + i));
        frame(elm_proto_cmd_name(bare[i]), &b);
    }
    /* replies: what a client decodes */
    elm_proto_begin(&b, v, ELM_CMD_SESSIONS, ELM_PROTO_F_REPLY, 8);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
    for (int s = 0; s < 2; s++) {
        elm_proto_group_begin(&b, ELM_TAG_SESSION);
        elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, (uint64_t)s + 1);
        elm_proto_put_u64(&b, ELM_TAG_PID, 100 + (uint64_t)s);
        elm_proto_put_u64(&b, ELM_TAG_STATE, 1);
        elm_proto_put_u64(&b, ELM_TAG_AGE_NS, 123456789);
        elm_proto_group_end(&b);
    }
    frame("sessions_reply", &b);
    elm_proto_begin(&b, v, ELM_CMD_OPEN_SESSION, ELM_PROTO_F_REPLY, 3);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
    elm_proto_put_u64(&b, ELM_TAG_SESSION_ID, 1);
    elm_proto_put_str(&b, ELM_TAG_REGION_SOCKET, "/run/user/1000/elm/regions");
    elm_proto_put_bytes(&b, ELM_TAG_REGION_TOKEN, "0123456789abcdef", ELM_REGION_TOKEN_LEN);
    elm_proto_put_u64(&b, ELM_TAG_SHM_SIZE, 64 + 2 * 256 + (1 << 20) + (1 << 16));
    elm_proto_put_u64(&b, ELM_TAG_REQ_RING_SIZE, 1 << 20);
    elm_proto_put_u64(&b, ELM_TAG_EVT_RING_SIZE, 1 << 16);
    frame("open_session_reply", &b);
    /* every reply table as the daemon fills it, from a zeroed struct of the table's type */
    for (const struct elm_fields *const *t = elm_fields_all; *t; t++) {
        const uint16_t cmd = *t == &elm_fields_status    ? ELM_CMD_STATUS
                             : *t == &elm_fields_stats   ? ELM_CMD_STATS
                             : *t == &elm_fields_session ? ELM_CMD_SESSIONS
                                                         : ELM_CMD_LOAD;
        void *obj = calloc(1, (*t)->size);
        char name[64];
        if (!obj)
            continue;
        elm_proto_begin(&b, v, cmd, ELM_PROTO_F_REPLY, 20 + cmd);
        elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
        if (cmd == ELM_CMD_SESSIONS)
            elm_proto_group_begin(&b, ELM_TAG_SESSION);
        elm_fields_put(&b, *t, obj, ~0u);
        if (cmd == ELM_CMD_SESSIONS)
            elm_proto_group_end(&b);
        free(obj);
        const void *p;
        size_t n;
        snprintf(name, sizeof name, "%s_table_reply", (*t)->what);
        if (elm_proto_finish(&b, &p, &n) == 0) /* a table whose required fields need values */
            put("proto", name, p, n);
    }
    elm_proto_begin_error(&b, 99, -EINVAL, "bad frame");
    frame("error_reply", &b);
    elm_proto_buf_fini(&b);
}

/* ---- records: payloads as the encoders write them, and whole rings -----------------------------
 */

static void write_records(void)
{
    const char *stops[1] = {"\n\n"};
    struct elm_prompt_msg pm = {.hdr = {.req_id = 1,
                                        .flags = ELM_PROMPT_F_ADD_BOS,
                                        .n_predict = 16,
                                        .top_k = 40,
                                        .temp = 0.8f,
                                        .top_p = 0.95f,
                                        .min_p = 0.05f,
                                        .repeat_penalty = 1.1f,
                                        .repeat_last_n = 64,
                                        .n_stop = 1,
                                        .seed = 42,
                                        .prompt_len = 16},
                                .text = "Once upon a time"};
    unsigned char buf[512 + 1];
    uint32_t n;
    pm.stop[0] = stops[0];
    pm.stop_len[0] = 2;
    buf[0] = 0; /* mode 0: PROMPT */
    if (elm_rec_prompt_encode(&pm, buf + 1, sizeof buf - 1, &n) < 0) {
        fprintf(stderr, "seeds: cannot encode a prompt\n");
        exit(1);
    }
    put("records", "prompt", buf, n + 1);

    /* a session region after a client pushed a prompt and a cancel: modes 5 (its request ring,
     * with the head values the client published) and 7 (the whole region) */
    size_t size;
    struct elm_session_rings cl;
    unsigned char *region = NULL;
    if (elm_session_shm_size(512, 512, &size) < 0 ||
        !(region = aligned_alloc(ELM_RING_CACHELINE, size)) ||
        elm_session_shm_init(region, size, 512, 512) < 0 ||
        elm_session_shm_attach(region, size, 512, 512, ELM_SESSION_CLIENT, &cl) < 0) {
        fprintf(stderr, "seeds: cannot lay out a session region\n");
        exit(1);
    }
    uint32_t heads[4];
    elm_rec_prompt_push(&cl.req, &pm);
    heads[0] = heads[1] = cl.req.pos;
    elm_rec_cancel_push(&cl.req, 1);
    heads[2] = heads[3] = cl.req.pos;
    unsigned char ring[1 + 16 + 512];
    ring[0] = 5;
    memcpy(ring + 1, heads, 16);
    memcpy(ring + 17, cl.req.data, 512);
    put("records", "request_ring", ring, sizeof ring);
    unsigned char *whole = malloc(1 + size);
    if (!whole)
        exit(1);
    whole[0] = 7;
    memcpy(whole + 1, region, size);
    put("records", "region", whole, 1 + size);
    free(whole);
    free(region);

    /* the event ring's producer side (mode 6): lengths and tails as a consumer would publish */
    const unsigned char prod[] = {6, 4, 0, 0, 0, 0, 10, 16, 0, 0, 0, 200, 48, 0, 0, 0};
    put("records", "event_ring", prod, sizeof prod);
    /* the fixed-size records (modes 1-4) */
    const unsigned char cancel[] = {1, 7, 0, 0, 0, 0, 0, 0, 0};
    put("records", "cancel", cancel, sizeof cancel);
    const unsigned char token[] = {2, 72, 1, 0, 0, 5, 0, 0, 0, ' ', 't', 'i', 'm', 'e'};
    put("records", "token", token, sizeof token);
    struct elm_rec_done d = {.req_id = 1,
                             .reason = ELM_DONE_STOP,
                             .n_prompt = 5,
                             .n_gen = 9,
                             .t_first_ns = 1000,
                             .t_total_ns = 90000};
    buf[0] = 3;
    memcpy(buf + 1, &d, sizeof d);
    put("records", "done", buf, 1 + sizeof d);
    struct elm_rec_error e = {.req_id = 1, .code = -EINVAL, .msg_len = 12};
    buf[0] = 4;
    memcpy(buf + 1, &e, sizeof e);
    memcpy(buf + 1 + sizeof e, "prompt empty", 12);
    put("records", "error", buf, 1 + sizeof e + 12);
}

/* ---- tok_*: the shared tokenizer test texts, one input per text -------------------------------
 */

static void write_texts(const char *target, const char *rel, int prefix)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", elm_fuzz_models_dir(), rel);
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "seeds: %s missing: no %s seeds from it\n", path, target);
        return;
    }
    static char all[1 << 16];
    size_t n = fread(all, 1, sizeof all - 1, f), k = 0;
    fclose(f);
    all[n] = 0;
    static const char sep[] = "\n__ggml_vocab_test__\n";
    for (char *p = all; p && *p; k++) {
        char *end = strstr(p, sep);
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char name[32], in[4096];
        in[0] = (char)(k & 3); /* every flags value */
        in[1] = (char)k;       /* tok_bpe: another pre-tokenizer each time */
        if (len > sizeof in - prefix)
            len = sizeof in - prefix;
        memcpy(in + prefix, p, len);
        snprintf(name, sizeof name, "text%03zu", k);
        put(target, name, in, len + (size_t)prefix);
        p = end ? end + sizeof sep - 1 : NULL;
    }
}

/* ---- chat: conversations as a client encodes them, one per format ---------------------------
 */

static void write_chats(void)
{
    static const struct elm_rec_message conv[] = {
        {"system", "Be brief.", 6, 9},
        {"user", "Hello, how are you?", 4, 19},
        {"assistant", "Fine <|im_end|> [INST] </s>", 9, 27},
        {"user", " caf\xc3\xa9 \n", 4, 8},
    };
    uint8_t buf[1024];
    uint32_t n = 0;
    if (elm_rec_messages_size(conv, 4, &n) || n + 1 > sizeof buf ||
        elm_rec_messages_encode(conv, 4, buf + 1, (uint32_t)sizeof buf - 1))
        return;
    for (int k = 0; k < 48; k++) {
        char name[32];
        buf[0] = (uint8_t)(k * 37); /* a different format and buffer size each */
        snprintf(name, sizeof name, "conv%02d", k);
        put("chat", name, buf, n + 1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: elm_fuzz_seeds OUT_DIR\n");
        return 2;
    }
    out_dir = argv[1];
    if (mkdir(out_dir, 0755) < 0 && errno != EEXIST) {
        perror(out_dir);
        return 1;
    }
    write_model("vocab_only.gguf", ELM_TYPE_F32, 0);
    write_model("llama_f32.gguf", ELM_TYPE_F32, 1);
    write_model("llama_q8_0.gguf", ELM_TYPE_Q8_0, 1);
    write_frames();
    write_records();
    write_chats();
    write_texts("tok_spm", "vocab/ggml-vocab-llama-spm.gguf.inp", 1);
    write_texts("tok_wpm", "vocab/ggml-vocab-bert-bge.gguf.inp", 1);
    write_texts("tok_bpe", "vocab/ggml-vocab-gpt-2.gguf.inp", 2);
    return 0;
}
