/* gguf.c — the validating GGUF reader declared in gguf.h.
 *
 * A model file is untrusted input: it may be truncated, corrupted or crafted. The parser therefore
 * walks the file once through a bounds-checked cursor, checks every count against the bytes that
 * remain before it allocates anything, does all size arithmetic with overflow checks, and only
 * then hands out pointers into the buffer. After elm_gguf_parse() succeeds, every string, array
 * and tensor described by the result lies inside the buffer, so the rest of the engine may use
 * them without re-checking. Messages name the key or tensor at fault (sanitized: a crafted name
 * must not be able to inject terminal escapes into a log).
 *
 * Values are decoded with memcpy: GGUF is little endian, fields are unaligned, and elm only runs
 * on little-endian hosts (checked below at compile time).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/checked.h"
#include "elm/status.h"
#include "engine/gguf.h"
#include "kernels/kernels.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c decodes little-endian fields with memcpy: port it before using a big-endian host"
#endif

/* The smallest possible encodings, used to bound counts before allocating: a KV is a u64 key
 * length, a key of at least one byte, a u32 type and a value of at least one byte (u8/i8/bool);
 * a tensor info is a u64 name length, a name of at least one byte, a u32 n_dims, one u64 dim,
 * a u32 type and a u64 offset. */
#define MIN_KV_BYTES     (8 + 1 + 4 + 1)
#define MIN_TENSOR_BYTES (8 + 1 + 4 + 8 + 4 + 8)
#define HEADER_BYTES     (4 + 4 + 8 + 8)
/* No real tensor comes near this; it keeps n_elements * block_bytes far from overflowing. */
#define MAX_ELEMENTS (UINT64_C(1) << 62)
/* Sanitized names in messages are cut after this many source bytes. */
#define NAME_CAP 64

/* ---------------------------------------------------------------------------------------------
 * Value types
 */

static const struct {
    const char *name;
    uint8_t size; /* 0: variable length */
} vtypes[ELM_GGUF_VTYPE_COUNT] = {
    [ELM_GGUF_U8] = {"u8", 1},         [ELM_GGUF_I8] = {"i8", 1},
    [ELM_GGUF_U16] = {"u16", 2},       [ELM_GGUF_I16] = {"i16", 2},
    [ELM_GGUF_U32] = {"u32", 4},       [ELM_GGUF_I32] = {"i32", 4},
    [ELM_GGUF_F32] = {"f32", 4},       [ELM_GGUF_BOOL] = {"bool", 1},
    [ELM_GGUF_STRING] = {"string", 0}, [ELM_GGUF_ARRAY] = {"array", 0},
    [ELM_GGUF_U64] = {"u64", 8},       [ELM_GGUF_I64] = {"i64", 8},
    [ELM_GGUF_F64] = {"f64", 8},
};

size_t elm_gguf_vtype_size(uint32_t t)
{
    return t < ELM_GGUF_VTYPE_COUNT ? vtypes[t].size : 0;
}

const char *elm_gguf_vtype_name(uint32_t t)
{
    return t < ELM_GGUF_VTYPE_COUNT ? vtypes[t].name : "unknown";
}

static bool vtype_is_unsigned(uint32_t t)
{
    return t == ELM_GGUF_U8 || t == ELM_GGUF_U16 || t == ELM_GGUF_U32 || t == ELM_GGUF_U64;
}

static bool vtype_is_signed(uint32_t t)
{
    return t == ELM_GGUF_I8 || t == ELM_GGUF_I16 || t == ELM_GGUF_I32 || t == ELM_GGUF_I64;
}

const char *elm_gguf_str_format(struct elm_gguf_str s, char *dst, size_t dstlen)
{
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    if (dstlen == 0)
        return dst;
    for (uint64_t i = 0; i < s.len && i < NAME_CAP; i++) {
        unsigned char c = (unsigned char)s.ptr[i];
        bool plain = c >= 0x20 && c < 0x7f && c != '\\' && c != '\'';
        size_t need = plain ? 1 : 4;
        if (o + need + 1 > dstlen)
            break;
        if (plain) {
            dst[o++] = (char)c;
        } else {
            dst[o++] = '\\';
            dst[o++] = 'x';
            dst[o++] = hex[c >> 4];
            dst[o++] = hex[c & 15];
        }
    }
    if (s.len > NAME_CAP && o + 4 <= dstlen) {
        memcpy(dst + o, "...", 3);
        o += 3;
    }
    dst[o] = 0;
    return dst;
}

bool elm_gguf_str_eq(struct elm_gguf_str s, const char *c)
{
    if (!c || (!s.ptr && s.len))
        return false;
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

/* ---------------------------------------------------------------------------------------------
 * Bounds-checked cursor. Invariant: pos <= size. Every failure writes "<ctx>: <problem>".
 */

struct cursor {
    const uint8_t *buf;
    uint64_t size;
    uint64_t pos;
    char ctx[NAME_CAP * 4 + 32]; /* what is being read: "header", "key 'x'", "tensor 'y'" */
    char *err;
    size_t errlen;
};

static int fail(struct cursor *c, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct cursor *c, int code, const char *fmt, ...)
{
    if (c->err && c->errlen > 0) {
        int n = snprintf(c->err, c->errlen, "%s: ", c->ctx);
        if (n >= 0 && (size_t)n < c->errlen) {
            va_list ap;
            va_start(ap, fmt);
            vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
            va_end(ap);
        }
    }
    return code;
}

/* Names the current item in later messages. */
static void set_ctx_name(struct cursor *c, const char *kind, struct elm_gguf_str name)
{
    char buf[NAME_CAP * 4 + 8];
    snprintf(c->ctx, sizeof c->ctx, "%s '%s'", kind, elm_gguf_str_format(name, buf, sizeof buf));
}

static int need(struct cursor *c, uint64_t n, const char *what)
{
    if (n > c->size - c->pos)
        return fail(c, ELM_EFORMAT,
                    "truncated: %s needs %" PRIu64 " bytes at offset %" PRIu64 ", %" PRIu64 " left",
                    what, n, c->pos, c->size - c->pos);
    return 0;
}

static int rd_u32(struct cursor *c, uint32_t *v, const char *what)
{
    int rc = need(c, 4, what);
    if (rc)
        return rc;
    memcpy(v, c->buf + c->pos, 4);
    c->pos += 4;
    return 0;
}

static int rd_u64(struct cursor *c, uint64_t *v, const char *what)
{
    int rc = need(c, 8, what);
    if (rc)
        return rc;
    memcpy(v, c->buf + c->pos, 8);
    c->pos += 8;
    return 0;
}

static int rd_str(struct cursor *c, struct elm_gguf_str *s, const char *what)
{
    uint64_t len;
    int rc = rd_u64(c, &len, what);
    if (rc)
        return rc;
    if ((rc = need(c, len, what)))
        return rc;
    s->len = len;
    s->ptr = (const char *)c->buf + c->pos;
    c->pos += len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Key/value section
 */

static void decode_scalar(uint32_t type, const uint8_t *p, struct elm_gguf_kv *kv)
{
    uint8_t u8;
    uint16_t u16;
    uint32_t u32;
    int8_t i8;
    int16_t i16;
    int32_t i32;
    float f32;

    switch (type) {
    case ELM_GGUF_U8:
    case ELM_GGUF_BOOL:
        memcpy(&u8, p, 1);
        kv->v.u64 = u8;
        break;
    case ELM_GGUF_U16:
        memcpy(&u16, p, 2);
        kv->v.u64 = u16;
        break;
    case ELM_GGUF_U32:
        memcpy(&u32, p, 4);
        kv->v.u64 = u32;
        break;
    case ELM_GGUF_U64:
        memcpy(&kv->v.u64, p, 8);
        break;
    case ELM_GGUF_I8:
        memcpy(&i8, p, 1);
        kv->v.i64 = i8;
        break;
    case ELM_GGUF_I16:
        memcpy(&i16, p, 2);
        kv->v.i64 = i16;
        break;
    case ELM_GGUF_I32:
        memcpy(&i32, p, 4);
        kv->v.i64 = i32;
        break;
    case ELM_GGUF_I64:
        memcpy(&kv->v.i64, p, 8);
        break;
    case ELM_GGUF_F32:
        memcpy(&f32, p, 4);
        kv->v.f64 = f32;
        break;
    case ELM_GGUF_F64:
        memcpy(&kv->v.f64, p, 8);
        break;
    default:
        break;
    }
}

/* Every bool byte must be 0 or 1: anything else is corruption, and readers that test "== 1"
 * and "!= 0" would disagree about it. */
static int check_bools(struct cursor *c, const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return fail(c, ELM_EFORMAT, "bool value %u is neither 0 nor 1", p[i]);
    return 0;
}

static int parse_array(struct cursor *c, struct elm_gguf_kv *kv)
{
    uint32_t et;
    uint64_t n, bytes;
    int rc;

    if ((rc = rd_u32(c, &et, "array element type")) || (rc = rd_u64(c, &n, "array length")))
        return rc;
    if (et == ELM_GGUF_ARRAY)
        return fail(c, ELM_EFORMAT, "nested arrays are not supported");
    if (et >= ELM_GGUF_VTYPE_COUNT)
        return fail(c, ELM_EFORMAT, "unknown array element type %" PRIu32, et);
    kv->arr_type = et;
    kv->arr_n = n;
    kv->raw = c->buf + c->pos;

    if (et == ELM_GGUF_STRING) {
        /* Each element needs at least its 8-byte length: bounds the loop by the file size. */
        uint64_t start = c->pos;
        if (n > (c->size - c->pos) / 8)
            return fail(c, ELM_EFORMAT,
                        "array of %" PRIu64 " strings cannot fit in the %" PRIu64 " bytes left", n,
                        c->size - c->pos);
        for (uint64_t i = 0; i < n; i++) {
            struct elm_gguf_str s;
            if ((rc = rd_str(c, &s, "string array element")))
                return rc;
        }
        kv->raw_len = c->pos - start;
        return 0;
    }
    if (elm_mul_overflow_u64(n, vtypes[et].size, &bytes) || bytes > c->size - c->pos)
        return fail(c, ELM_EFORMAT,
                    "array of %" PRIu64 " %s elements does not fit in the %" PRIu64 " bytes left",
                    n, vtypes[et].name, c->size - c->pos);
    if (et == ELM_GGUF_BOOL && (rc = check_bools(c, c->buf + c->pos, n)))
        return rc;
    kv->raw_len = bytes;
    c->pos += bytes;
    return 0;
}

static int parse_kv(struct cursor *c, uint64_t index, struct elm_gguf_kv *kv)
{
    int rc;

    snprintf(c->ctx, sizeof c->ctx, "key #%" PRIu64, index);
    if ((rc = rd_str(c, &kv->key, "key")))
        return rc;
    if (kv->key.len == 0)
        return fail(c, ELM_EFORMAT, "empty key");
    set_ctx_name(c, "key", kv->key);
    if ((rc = rd_u32(c, &kv->type, "value type")))
        return rc;
    if (kv->type >= ELM_GGUF_VTYPE_COUNT)
        return fail(c, ELM_EFORMAT, "unknown value type %" PRIu32, kv->type);

    if (kv->type == ELM_GGUF_ARRAY)
        return parse_array(c, kv);
    kv->raw = c->buf + c->pos;
    if (kv->type == ELM_GGUF_STRING) {
        /* raw covers the length prefix too, as for the elements of a string array, so that
         * raw/raw_len is the value exactly as serialized (the writer copies it verbatim). */
        uint64_t start = c->pos;
        if ((rc = rd_str(c, &kv->v.str, "string value")))
            return rc;
        kv->raw_len = c->pos - start;
        return 0;
    }
    kv->raw_len = vtypes[kv->type].size;
    if ((rc = need(c, kv->raw_len, vtypes[kv->type].name)))
        return rc;
    if (kv->type == ELM_GGUF_BOOL && (rc = check_bools(c, kv->raw, 1)))
        return rc;
    decode_scalar(kv->type, kv->raw, kv);
    c->pos += kv->raw_len;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Duplicate detection and overlap checks: sort pointers, compare neighbours.
 */

static int cmp_str(const struct elm_gguf_str *x, const struct elm_gguf_str *y)
{
    uint64_t n = x->len < y->len ? x->len : y->len;
    int r = n ? memcmp(x->ptr, y->ptr, n) : 0;
    if (r)
        return r;
    return x->len < y->len ? -1 : x->len > y->len;
}

static int cmp_str_ptr(const void *a, const void *b)
{
    return cmp_str(*(const struct elm_gguf_str *const *)a, *(const struct elm_gguf_str *const *)b);
}

/* Finds a name that occurs twice among n names spaced `stride` bytes apart; NULL if none (or
 * -ENOMEM through *rc). */
static const struct elm_gguf_str *find_duplicate(const void *first, size_t stride, uint64_t n,
                                                 int *rc)
{
    const struct elm_gguf_str **v;
    const struct elm_gguf_str *dup = NULL;

    *rc = 0;
    if (n < 2)
        return NULL;
    v = malloc(n * sizeof *v);
    if (!v) {
        *rc = -ENOMEM;
        return NULL;
    }
    for (uint64_t i = 0; i < n; i++)
        v[i] = (const struct elm_gguf_str *)((const char *)first + i * stride);
    qsort(v, n, sizeof *v, cmp_str_ptr);
    for (uint64_t i = 1; i < n && !dup; i++)
        if (cmp_str_ptr(&v[i - 1], &v[i]) == 0)
            dup = v[i];
    free(v);
    return dup;
}

static bool same_value(const struct elm_gguf_kv *a, const struct elm_gguf_kv *b)
{
    return a->type == b->type && a->arr_type == b->arr_type && a->arr_n == b->arr_n &&
           a->raw_len == b->raw_len && memcmp(a->raw, b->raw, a->raw_len) == 0;
}

/* Orders keys by name, then by position in the file. */
static int cmp_kv_ptr(const void *a, const void *b)
{
    const struct elm_gguf_kv *x = *(const struct elm_gguf_kv *const *)a;
    const struct elm_gguf_kv *y = *(const struct elm_gguf_kv *const *)b;
    int r = cmp_str(&x->key, &y->key);
    return r ? r : (x > y) - (x < y);
}

/* A key written twice with the same type and the same bytes is kept once (the first): nothing is
 * ambiguous, and a converter branch wrote general.file_type twice (vocab/ggml-vocab-dbrx.gguf,
 * whose tokenizer vectors elm must pass). A key repeated with another value is refused. */
static int drop_repeated_keys(struct cursor *c, struct elm_gguf *g)
{
    struct elm_gguf_kv **v;
    bool *drop;
    uint64_t n = 0;

    if (g->n_kv < 2)
        return 0;
    v = malloc(g->n_kv * sizeof *v);
    drop = calloc(g->n_kv, sizeof *drop);
    if (!v || !drop) {
        free(v), free(drop);
        return fail(c, -ENOMEM, "out of memory");
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        v[i] = &g->kv[i];
    qsort(v, g->n_kv, sizeof *v, cmp_kv_ptr);
    for (uint64_t i = 1, first = 0; i < g->n_kv; i++) {
        if (cmp_str(&v[first]->key, &v[i]->key)) {
            first = i;
            continue;
        }
        if (!same_value(v[first], v[i])) {
            set_ctx_name(c, "key", v[i]->key);
            free(v), free(drop);
            return fail(c, ELM_EFORMAT, "duplicate key with a different value");
        }
        drop[v[i] - g->kv] = true;
    }
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (!drop[i])
            g->kv[n++] = g->kv[i];
    g->n_kv = n;
    free(v), free(drop);
    return 0;
}

static int cmp_tensor_offset(const void *a, const void *b)
{
    const struct elm_gguf_tensor *x = *(const struct elm_gguf_tensor *const *)a;
    const struct elm_gguf_tensor *y = *(const struct elm_gguf_tensor *const *)b;
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

static int check_overlap(struct cursor *c, const struct elm_gguf *g)
{
    const struct elm_gguf_tensor **v;
    int rc = 0;

    if (g->n_tensors < 2)
        return 0;
    v = malloc(g->n_tensors * sizeof *v);
    if (!v)
        return fail(c, -ENOMEM, "out of memory");
    for (uint64_t i = 0; i < g->n_tensors; i++)
        v[i] = &g->tensors[i];
    qsort(v, g->n_tensors, sizeof *v, cmp_tensor_offset);
    for (uint64_t i = 1; i < g->n_tensors; i++) {
        /* offset + n_bytes was checked not to overflow when the tensor was parsed */
        if (v[i - 1]->offset + v[i - 1]->n_bytes > v[i]->offset) {
            char a[NAME_CAP * 4 + 8], b[NAME_CAP * 4 + 8];
            snprintf(c->ctx, sizeof c->ctx, "tensor data");
            rc = fail(c, ELM_EFORMAT, "tensors '%s' and '%s' overlap",
                      elm_gguf_str_format(v[i - 1]->name, a, sizeof a),
                      elm_gguf_str_format(v[i]->name, b, sizeof b));
            break;
        }
    }
    free(v);
    return rc;
}

/* ---------------------------------------------------------------------------------------------
 * Tensor infos
 */

static int parse_tensor(struct cursor *c, uint64_t index, uint64_t alignment,
                        struct elm_gguf_tensor *t)
{
    const struct elm_type_info *ti;
    uint64_t n = 1, blocks;
    int rc;

    snprintf(c->ctx, sizeof c->ctx, "tensor #%" PRIu64, index);
    if ((rc = rd_str(c, &t->name, "tensor name")))
        return rc;
    if (t->name.len == 0)
        return fail(c, ELM_EFORMAT, "empty tensor name");
    set_ctx_name(c, "tensor", t->name);
    if ((rc = rd_u32(c, &t->n_dims, "n_dims")))
        return rc;
    if (t->n_dims < 1 || t->n_dims > ELM_GGUF_MAX_DIMS)
        return fail(c, ELM_EFORMAT, "n_dims %" PRIu32 " is not in 1..%d", t->n_dims,
                    ELM_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < ELM_GGUF_MAX_DIMS; d++) {
        uint64_t ne = 1;
        if (d < t->n_dims && (rc = rd_u64(c, &ne, "dimension")))
            return rc;
        if (ne < 1 || ne > (uint64_t)INT64_MAX)
            return fail(c, ELM_EFORMAT, "dimension %" PRIu32 " is %" PRId64 " (must be >= 1)", d,
                        (int64_t)ne);
        if (elm_mul_overflow_u64(n, ne, &n) || n > MAX_ELEMENTS)
            return fail(c, ELM_EFORMAT, "element count overflows (dimension %" PRIu32 ")", d);
        t->ne[d] = (int64_t)ne;
    }
    t->n_elements = n;
    if ((rc = rd_u32(c, &t->type, "tensor type")))
        return rc;
    /* Ids inside ggml's range that elm does not run are "unsupported"; beyond it, corruption.
     * Q8_1 and Q8_K are activation formats that no weight file may use. */
    ti = elm_type_get(t->type);
    if (!ti || !ti->is_weight)
        return fail(c, t->type < ELM_TYPE_COUNT ? ELM_EUNSUPPORTED : ELM_EFORMAT,
                    "tensor type id %" PRIu32 " is not a weight type elm supports", t->type);
    if ((uint64_t)t->ne[0] % (uint64_t)ti->block != 0)
        return fail(c, ELM_EFORMAT,
                    "row of %" PRId64 " elements is not a multiple of the %s block size %d",
                    t->ne[0], ti->name, (int)ti->block);
    blocks = n / (uint64_t)ti->block;
    if (elm_mul_overflow_u64(blocks, (uint64_t)ti->block_bytes, &t->n_bytes))
        return fail(c, ELM_EFORMAT, "byte size overflows");
    if ((rc = rd_u64(c, &t->offset, "tensor offset")))
        return rc;
    if (t->offset % alignment != 0)
        return fail(c, ELM_EFORMAT,
                    "offset %" PRIu64 " is not a multiple of the alignment %" PRIu64, t->offset,
                    alignment);
    return 0;
}

/* general.alignment, when present, must be a nonzero power-of-two u32 (as llama.cpp requires). */
static int read_alignment(struct cursor *c, const struct elm_gguf *g, uint64_t *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, "general.alignment");

    *out = ELM_GGUF_DEFAULT_ALIGNMENT;
    if (!kv)
        return 0;
    snprintf(c->ctx, sizeof c->ctx, "key 'general.alignment'");
    if (kv->type != ELM_GGUF_U32)
        return fail(c, ELM_EFORMAT, "type is %s, expected u32", elm_gguf_vtype_name(kv->type));
    if (kv->v.u64 == 0 || (kv->v.u64 & (kv->v.u64 - 1)) != 0)
        return fail(c, ELM_EFORMAT, "value %" PRIu64 " is not a power of two", kv->v.u64);
    *out = kv->v.u64;
    return 0;
}

static int parse_header(struct cursor *c, struct elm_gguf *g)
{
    uint64_t kv_min, t_min, total;
    uint32_t version;
    int rc;

    snprintf(c->ctx, sizeof c->ctx, "header");
    if (c->size < 4 || memcmp(c->buf, "GGUF", 4) != 0)
        return fail(c, ELM_EFORMAT, "not a GGUF file (bad magic)");
    c->pos = 4;
    if ((rc = rd_u32(c, &version, "version")))
        return rc;
    if (version == 1)
        return fail(c, ELM_EUNSUPPORTED,
                    "unsupported GGUF v1 (re-convert the model with a current converter)");
    if (version != 2 && version != 3)
        return fail(c, ELM_EFORMAT, "unknown GGUF version %" PRIu32 " (elm reads v2 and v3)",
                    version);
    g->version = version;
    if ((rc = rd_u64(c, &g->n_tensors, "tensor count")) ||
        (rc = rd_u64(c, &g->n_kv, "key/value count")))
        return rc;
    /* Both sections share the rest of the file: refuse counts it could not possibly hold before
     * allocating arrays sized by them. */
    if (elm_mul_overflow_u64(g->n_kv, MIN_KV_BYTES, &kv_min) ||
        elm_mul_overflow_u64(g->n_tensors, MIN_TENSOR_BYTES, &t_min) ||
        elm_add_overflow_u64(kv_min, t_min, &total) || total > c->size - c->pos)
        return fail(c, ELM_EFORMAT,
                    "%" PRIu64 " keys and %" PRIu64 " tensors cannot fit in a file of %" PRIu64
                    " bytes",
                    g->n_kv, g->n_tensors, c->size);
    return 0;
}

static int parse_all(struct cursor *c, struct elm_gguf *g)
{
    const struct elm_gguf_str *dup;
    int rc;

    if ((rc = parse_header(c, g)))
        return rc;
    g->kv = calloc(g->n_kv ? g->n_kv : 1, sizeof *g->kv);
    g->tensors = calloc(g->n_tensors ? g->n_tensors : 1, sizeof *g->tensors);
    if (!g->kv || !g->tensors)
        return fail(c, -ENOMEM, "out of memory");

    for (uint64_t i = 0; i < g->n_kv; i++)
        if ((rc = parse_kv(c, i, &g->kv[i])))
            return rc;
    if ((rc = drop_repeated_keys(c, g)))
        return rc;
    if ((rc = read_alignment(c, g, &g->alignment)))
        return rc;

    for (uint64_t i = 0; i < g->n_tensors; i++)
        if ((rc = parse_tensor(c, i, g->alignment, &g->tensors[i])))
            return rc;
    dup = find_duplicate(&g->tensors[0].name, sizeof g->tensors[0], g->n_tensors, &rc);
    if (rc)
        return fail(c, rc, "out of memory");
    if (dup) {
        set_ctx_name(c, "tensor", *dup);
        return fail(c, ELM_EFORMAT, "duplicate tensor name");
    }

    snprintf(c->ctx, sizeof c->ctx, "tensor data");
    if (elm_align_up_u64(c->pos, g->alignment, &g->data_offset))
        return fail(c, ELM_EFORMAT, "data offset overflows");
    g->data_size = 0;
    if (g->n_tensors == 0) {
        /* Vocab-only files end right after the header, without padding to the data start. */
        if (g->data_offset > c->size)
            g->data_offset = c->size;
        return 0;
    }
    if (g->data_offset > c->size)
        return fail(c, ELM_EFORMAT,
                    "data section starts at %" PRIu64 ", beyond the end of the file (%" PRIu64
                    " bytes)",
                    g->data_offset, c->size);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        uint64_t end;
        if (elm_add_overflow_u64(t->offset, t->n_bytes, &end) || end > c->size - g->data_offset) {
            set_ctx_name(c, "tensor", t->name);
            return fail(c, ELM_EFORMAT,
                        "data [%" PRIu64 ", +%" PRIu64 ") lies outside the data section (%" PRIu64
                        " bytes)",
                        t->offset, t->n_bytes, c->size - g->data_offset);
        }
        if (end > g->data_size)
            g->data_size = end;
    }
    return check_overlap(c, g);
}

/* ---------------------------------------------------------------------------------------------
 * Public entry points
 */

int elm_gguf_parse(const void *buf, size_t size, struct elm_gguf **out, char *err, size_t errlen)
{
    struct cursor c = {.buf = buf, .size = size, .err = err, .errlen = err ? errlen : 0};
    struct elm_gguf *g;
    int rc;

    if (c.errlen)
        err[0] = 0;
    if (!buf && size)
        return -EINVAL;
    g = calloc(1, sizeof *g);
    if (!g) {
        snprintf(c.ctx, sizeof c.ctx, "gguf");
        return fail(&c, -ENOMEM, "out of memory");
    }
    g->base = buf;
    g->size = size;
    rc = parse_all(&c, g);
    if (rc) {
        elm_gguf_destroy(&g);
        return rc;
    }
    *out = g;
    return 0;
}

int elm_gguf_open_fd(int fd, const char *path, struct elm_gguf **out, char *err, size_t errlen)
{
    struct elm_gguf *g = NULL;
    struct stat st;
    void *map;
    int rc;

    if (!err)
        errlen = 0;
    if (errlen)
        err[0] = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
        return rc;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        return S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
    }
    if (st.st_size < HEADER_BYTES) {
        /* also avoids mmap's EINVAL on an empty file */
        snprintf(err, errlen, "%s: %lld bytes is too small for a GGUF file", path,
                 (long long)st.st_size);
        return ELM_EFORMAT;
    }
    map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot map: %s", path, strerror(-rc));
        return rc;
    }

    char msg[512];
    rc = elm_gguf_parse(map, (size_t)st.st_size, &g, msg, sizeof msg);
    if (rc) {
        snprintf(err, errlen, "%s: %s", path, msg);
        munmap(map, (size_t)st.st_size);
        return rc;
    }
    g->map = map;
    g->map_len = (size_t)st.st_size;
    *out = g;
    return 0;
}

int elm_gguf_open_file(const char *path, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    /* O_NONBLOCK: opening a FIFO for reading waits for a writer (forever, if none comes), and a
     * device's open may wait too. Regular files ignore the flag; it is cleared once the file is
     * known to be one, so no later read sees EAGAIN. */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    int rc = 0;
    struct stat st;
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot open: %s", path, strerror(-rc));
        return rc;
    }
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(-rc));
    } else if (!S_ISREG(st.st_mode)) {
        rc = S_ISDIR(st.st_mode) ? -EISDIR : -EINVAL;
        snprintf(err, errlen, "%s: not a regular file", path);
    } else {
        int fl = fcntl(fd, F_GETFL);
        if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
            rc = -errno;
            snprintf(err, errlen, "%s: cannot clear O_NONBLOCK: %s", path, strerror(-rc));
        }
    }
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int elm_gguf_open(const char *path, struct elm_gguf **out, char *err, size_t errlen)
{
    if (!err)
        errlen = 0;
    int fd = elm_gguf_open_file(path, err, errlen);
    if (fd < 0)
        return fd;
    int rc = elm_gguf_open_fd(fd, path, out, err, errlen);
    close(fd); /* the mapping keeps the file alive */
    return rc;
}

void elm_gguf_destroy(struct elm_gguf **g)
{
    if (!g || !*g)
        return;
    if ((*g)->map)
        munmap((*g)->map, (*g)->map_len);
    free((*g)->kv);
    free((*g)->tensors);
    free(*g);
    *g = NULL;
}

const struct elm_gguf_kv *elm_gguf_find(const struct elm_gguf *g, const char *key)
{
    if (!g || !key)
        return NULL;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (elm_gguf_str_eq(g->kv[i].key, key))
            return &g->kv[i];
    return NULL;
}

const struct elm_gguf_tensor *elm_gguf_find_tensor(const struct elm_gguf *g, const char *name)
{
    if (!g || !name)
        return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (elm_gguf_str_eq(g->tensors[i].name, name))
            return &g->tensors[i];
    return NULL;
}

const void *elm_gguf_tensor_data(const struct elm_gguf *g, const struct elm_gguf_tensor *t)
{
    if (!g || !t)
        return NULL;
    return g->base + g->data_offset + t->offset;
}

/* ---------------------------------------------------------------------------------------------
 * Typed getters
 */

/* The integer value of kv: *neg tells its sign and *u holds its bits (two's complement when
 * negative). ELM_EFORMAT when kv is not of an integer type. */
static int kv_integer(const struct elm_gguf_kv *kv, bool *neg, uint64_t *u)
{
    if (vtype_is_unsigned(kv->type)) {
        *neg = false;
        *u = kv->v.u64;
        return 0;
    }
    if (vtype_is_signed(kv->type)) {
        *neg = kv->v.i64 < 0;
        *u = (uint64_t)kv->v.i64;
        return 0;
    }
    return ELM_EFORMAT;
}

int elm_gguf_get_u32(const struct elm_gguf *g, const char *key, uint32_t *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    bool neg;
    uint64_t u;

    if (!kv)
        return -ENOENT;
    if (kv_integer(kv, &neg, &u) || neg || u > UINT32_MAX)
        return ELM_EFORMAT;
    *out = (uint32_t)u;
    return 0;
}

int elm_gguf_get_i32(const struct elm_gguf *g, const char *key, int32_t *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    bool neg;
    uint64_t u;

    if (!kv)
        return -ENOENT;
    if (kv_integer(kv, &neg, &u))
        return ELM_EFORMAT;
    if (neg ? (int64_t)u < INT32_MIN : u > INT32_MAX)
        return ELM_EFORMAT;
    *out = (int32_t)(int64_t)u;
    return 0;
}

int elm_gguf_get_f32(const struct elm_gguf *g, const char *key, float *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);

    if (!kv)
        return -ENOENT;
    if (kv->type != ELM_GGUF_F32 && kv->type != ELM_GGUF_F64)
        return ELM_EFORMAT;
    /* an F64 beyond float's range would silently become infinity */
    if (isfinite(kv->v.f64) && fabs(kv->v.f64) > 3.4028234663852886e38)
        return ELM_EFORMAT;
    *out = (float)kv->v.f64;
    return 0;
}

int elm_gguf_get_bool(const struct elm_gguf *g, const char *key, bool *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);

    if (!kv)
        return -ENOENT;
    if (kv->type != ELM_GGUF_BOOL)
        return ELM_EFORMAT;
    *out = kv->v.u64 != 0;
    return 0;
}

int elm_gguf_get_str(const struct elm_gguf *g, const char *key, struct elm_gguf_str *out)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);

    if (!kv)
        return -ENOENT;
    if (kv->type != ELM_GGUF_STRING)
        return ELM_EFORMAT;
    *out = kv->v.str;
    return 0;
}

int elm_gguf_get_arr(const struct elm_gguf *g, const char *key, uint32_t elem_type, uint64_t *n,
                     const void **data)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);

    if (!kv)
        return -ENOENT;
    if (kv->type != ELM_GGUF_ARRAY || kv->arr_type != elem_type)
        return ELM_EFORMAT;
    *n = kv->arr_n;
    *data = kv->raw;
    return 0;
}

int elm_gguf_get_str_arr(const struct elm_gguf *g, const char *key, struct elm_gguf_str *out,
                         uint64_t n)
{
    const struct elm_gguf_kv *kv = elm_gguf_find(g, key);
    const uint8_t *p;

    if (!kv)
        return -ENOENT;
    if (kv->type != ELM_GGUF_ARRAY || kv->arr_type != ELM_GGUF_STRING || kv->arr_n != n)
        return ELM_EFORMAT;
    /* every length was checked against the buffer when the file was parsed */
    p = kv->raw;
    for (uint64_t i = 0; i < n; i++) {
        memcpy(&out[i].len, p, 8);
        out[i].ptr = (const char *)p + 8;
        p += 8 + out[i].len;
    }
    return 0;
}
