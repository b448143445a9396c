/* gguf_writer.c — the GGUF v3 writer declared in gguf_writer.h.
 *
 * Each key/value pair is kept as its serialized value (the bytes that follow the u32 type
 * field in the file), so that copying a KV from a parsed file is a verbatim byte copy and
 * writing is a straight dump. Tensors keep a borrowed pointer or a fill callback; offsets are
 * assigned only at write time. The file goes to "<path>.tmp" first and is renamed over the
 * target after fsync, so a crash or a full disk never leaves a half-written model under the
 * real name.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/checked.h"
#include "elm/status.h"
#include "engine/gguf_writer.h"
#include "kernels/kernels.h"

#define NAME_MSG     260                 /* elm_gguf_str_format() output size */
#define MAX_ELEMENTS (UINT64_C(1) << 62) /* as the reader */

struct wkv {
    char *key; /* copy, NUL-terminated for convenience; key_len counts (a copied key may hold
                * any byte, NUL included) */
    size_t key_len;
    uint32_t type;
    uint8_t *val; /* serialized value: for arrays, element type + count + elements */
    size_t val_len;
};

struct wtensor {
    char *name;
    size_t name_len;
    uint32_t n_dims;
    int64_t ne[ELM_GGUF_MAX_DIMS];
    uint32_t type;
    uint64_t n_bytes;
    const void *data; /* borrowed; NULL when fill is used */
    void (*fill)(void *ctx, void *dst, uint64_t n_bytes);
    void *ctx;
};

struct elm_gguf_writer {
    uint32_t alignment;
    struct wkv *kv;
    size_t n_kv, cap_kv;
    struct wtensor *t;
    size_t n_t, cap_t;
    char msg[512];
};

static int wfail(struct elm_gguf_writer *w, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int wfail(struct elm_gguf_writer *w, int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->msg, sizeof w->msg, fmt, ap);
    va_end(ap);
    return code;
}

static const char *fmt_name(const char *p, size_t len, char *buf)
{
    struct elm_gguf_str s = {len, p};
    return elm_gguf_str_format(s, buf, NAME_MSG);
}

struct elm_gguf_writer *elm_gguf_writer_create(uint32_t alignment)
{
    struct elm_gguf_writer *w;

    if (alignment == 0)
        alignment = ELM_GGUF_DEFAULT_ALIGNMENT;
    if ((alignment & (alignment - 1)) != 0)
        return NULL;
    w = calloc(1, sizeof *w);
    if (w)
        w->alignment = alignment;
    return w;
}

void elm_gguf_writer_destroy(struct elm_gguf_writer **pw)
{
    struct elm_gguf_writer *w;

    if (!pw || !*pw)
        return;
    w = *pw;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++)
        free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
    *pw = NULL;
}

const char *elm_gguf_writer_error(const struct elm_gguf_writer *w)
{
    return w ? w->msg : "no writer";
}

/* ---------------------------------------------------------------------------------------------
 * Key/value pairs
 */

static struct wkv *find_kv(struct elm_gguf_writer *w, const char *key, size_t len)
{
    for (size_t i = 0; i < w->n_kv; i++)
        if (w->kv[i].key_len == len && memcmp(w->kv[i].key, key, len) == 0)
            return &w->kv[i];
    return NULL;
}

/* Stores (key, type, val) taking ownership of val (freed on failure too). Replaces the value of
 * an existing key in place, so that the order of keys stays the order they were first set. */
static int put_kv(struct elm_gguf_writer *w, const char *key, size_t key_len, uint32_t type,
                  uint8_t *val, size_t val_len)
{
    struct wkv *kv;
    char *k;

    w->msg[0] = 0;
    if (key_len == 0) {
        free(val);
        return wfail(w, ELM_EFORMAT, "empty key");
    }
    kv = find_kv(w, key, key_len);
    if (kv) {
        free(kv->val);
        kv->type = type;
        kv->val = val;
        kv->val_len = val_len;
        return 0;
    }
    if (w->n_kv == w->cap_kv) {
        size_t cap = w->cap_kv ? 2 * w->cap_kv : 16;
        struct wkv *nk = realloc(w->kv, cap * sizeof *nk);
        if (!nk) {
            free(val);
            return wfail(w, -ENOMEM, "out of memory");
        }
        w->kv = nk;
        w->cap_kv = cap;
    }
    k = malloc(key_len + 1);
    if (!k) {
        free(val);
        return wfail(w, -ENOMEM, "out of memory");
    }
    memcpy(k, key, key_len);
    k[key_len] = 0;
    w->kv[w->n_kv++] = (struct wkv){k, key_len, type, val, val_len};
    return 0;
}

/* A malloc'ed buffer of n bytes (at least 1, so that an empty array still has a pointer). */
static uint8_t *alloc_val(struct elm_gguf_writer *w, uint64_t n)
{
    uint8_t *p = n <= SIZE_MAX ? malloc(n ? n : 1) : NULL;
    if (!p)
        wfail(w, -ENOMEM, "out of memory");
    return p;
}

static bool bools_valid(const uint8_t *p, uint64_t n)
{
    for (uint64_t i = 0; i < n; i++)
        if (p[i] > 1)
            return false;
    return true;
}

/* True when p[0..len) holds exactly n serialized strings (u64 length + bytes each). */
static bool strings_valid(const uint8_t *p, uint64_t len, uint64_t n)
{
    uint64_t pos = 0, sl;

    for (uint64_t i = 0; i < n; i++) {
        if (len - pos < 8)
            return false;
        memcpy(&sl, p + pos, 8);
        if (sl > len - pos - 8)
            return false;
        pos += 8 + sl;
    }
    return pos == len;
}

int elm_gguf_writer_copy_kv(struct elm_gguf_writer *w, const struct elm_gguf_kv *kv)
{
    char nb[NAME_MSG];
    uint64_t len, esz;
    uint8_t *val;

    if (!w || !kv || !kv->key.ptr || (kv->raw_len && !kv->raw))
        return w ? wfail(w, -EINVAL, "copy_kv: NULL argument") : -EINVAL;
    fmt_name(kv->key.ptr, kv->key.len, nb);
    if (kv->type >= ELM_GGUF_VTYPE_COUNT)
        return wfail(w, ELM_EFORMAT, "key '%s': unknown value type %" PRIu32, nb, kv->type);
    /* The kv normally comes from elm_gguf_parse() and is valid; a hand-made one is checked so
     * that the writer never emits bytes the reader would reject. */
    if (kv->type == ELM_GGUF_ARRAY) {
        if (kv->arr_type >= ELM_GGUF_VTYPE_COUNT || kv->arr_type == ELM_GGUF_ARRAY)
            return wfail(w, ELM_EFORMAT, "key '%s': invalid array element type %" PRIu32, nb,
                         kv->arr_type);
        esz = elm_gguf_vtype_size(kv->arr_type);
        if (esz ? elm_mul_overflow_u64(kv->arr_n, esz, &len) || len != kv->raw_len
                : !strings_valid(kv->raw, kv->raw_len, kv->arr_n))
            return wfail(w, ELM_EFORMAT, "key '%s': array length does not match its bytes", nb);
        if (kv->arr_type == ELM_GGUF_BOOL && !bools_valid(kv->raw, kv->arr_n))
            return wfail(w, ELM_EFORMAT, "key '%s': bool element is neither 0 nor 1", nb);
        if (elm_add_overflow_u64(kv->raw_len, 12, &len))
            return wfail(w, ELM_EFORMAT, "key '%s': array too large", nb);
        if (!(val = alloc_val(w, len)))
            return -ENOMEM;
        memcpy(val, &kv->arr_type, 4);
        memcpy(val + 4, &kv->arr_n, 8);
        memcpy(val + 12, kv->raw, kv->raw_len);
    } else {
        esz = elm_gguf_vtype_size(kv->type);
        len = kv->raw_len;
        if (esz ? len != esz : !strings_valid(kv->raw, len, 1))
            return wfail(w, ELM_EFORMAT, "key '%s': value has %" PRIu64 " bytes", nb, len);
        if (kv->type == ELM_GGUF_BOOL && !bools_valid(kv->raw, 1))
            return wfail(w, ELM_EFORMAT, "key '%s': bool is neither 0 nor 1", nb);
        if (!(val = alloc_val(w, len)))
            return -ENOMEM;
        memcpy(val, kv->raw, len);
    }
    return put_kv(w, kv->key.ptr, kv->key.len, kv->type, val, len);
}

int elm_gguf_writer_set_scalar(struct elm_gguf_writer *w, const char *key, uint32_t type,
                               const void *value)
{
    size_t n = elm_gguf_vtype_size(type);
    uint8_t *val;

    if (!w || !key || !value)
        return w ? wfail(w, -EINVAL, "set: NULL argument") : -EINVAL;
    if (n == 0)
        return wfail(w, ELM_EFORMAT, "key '%s': %s is not a scalar type", key,
                     elm_gguf_vtype_name(type));
    if (type == ELM_GGUF_BOOL && !bools_valid(value, 1))
        return wfail(w, ELM_EFORMAT, "key '%s': bool is neither 0 nor 1", key);
    if (!(val = alloc_val(w, n)))
        return -ENOMEM;
    memcpy(val, value, n); /* little-endian host: the in-memory bytes are the file bytes */
    return put_kv(w, key, strlen(key), type, val, n);
}

int elm_gguf_writer_set_u32(struct elm_gguf_writer *w, const char *key, uint32_t v)
{
    return elm_gguf_writer_set_scalar(w, key, ELM_GGUF_U32, &v);
}

int elm_gguf_writer_set_i32(struct elm_gguf_writer *w, const char *key, int32_t v)
{
    return elm_gguf_writer_set_scalar(w, key, ELM_GGUF_I32, &v);
}

int elm_gguf_writer_set_f32(struct elm_gguf_writer *w, const char *key, float v)
{
    return elm_gguf_writer_set_scalar(w, key, ELM_GGUF_F32, &v);
}

int elm_gguf_writer_set_bool(struct elm_gguf_writer *w, const char *key, bool v)
{
    uint8_t b = v ? 1 : 0;
    return elm_gguf_writer_set_scalar(w, key, ELM_GGUF_BOOL, &b);
}

int elm_gguf_writer_set_str(struct elm_gguf_writer *w, const char *key, const char *s)
{
    uint64_t len;
    uint8_t *val;

    if (!w || !key || !s)
        return w ? wfail(w, -EINVAL, "set_str: NULL argument") : -EINVAL;
    len = strlen(s);
    if (!(val = alloc_val(w, 8 + len)))
        return -ENOMEM;
    memcpy(val, &len, 8);
    memcpy(val + 8, s, len);
    return put_kv(w, key, strlen(key), ELM_GGUF_STRING, val, 8 + len);
}

int elm_gguf_writer_set_arr(struct elm_gguf_writer *w, const char *key, uint32_t elem_type,
                            uint64_t n, const void *data)
{
    size_t esz = elm_gguf_vtype_size(elem_type);
    uint64_t bytes, total;
    uint8_t *val;

    if (!w || !key || (n && !data))
        return w ? wfail(w, -EINVAL, "set_arr: NULL argument") : -EINVAL;
    if (esz == 0)
        return wfail(w, ELM_EFORMAT, "key '%s': arrays of %s are not supported here", key,
                     elm_gguf_vtype_name(elem_type));
    if (elm_mul_overflow_u64(n, esz, &bytes) || elm_add_overflow_u64(bytes, 12, &total))
        return wfail(w, ELM_EFORMAT, "key '%s': array of %" PRIu64 " elements is too large", key,
                     n);
    if (elem_type == ELM_GGUF_BOOL && !bools_valid(data, n))
        return wfail(w, ELM_EFORMAT, "key '%s': bool element is neither 0 nor 1", key);
    if (!(val = alloc_val(w, total)))
        return -ENOMEM;
    memcpy(val, &elem_type, 4);
    memcpy(val + 4, &n, 8);
    if (bytes)
        memcpy(val + 12, data, bytes);
    return put_kv(w, key, strlen(key), ELM_GGUF_ARRAY, val, total);
}

int elm_gguf_writer_set_str_arr(struct elm_gguf_writer *w, const char *key, const char *const *strs,
                                uint64_t n)
{
    uint32_t et = ELM_GGUF_STRING;
    uint64_t total = 12;
    uint8_t *val, *p;

    if (!w || !key || (n && !strs))
        return w ? wfail(w, -EINVAL, "set_str_arr: NULL argument") : -EINVAL;
    for (uint64_t i = 0; i < n; i++) {
        if (!strs[i])
            return wfail(w, -EINVAL, "key '%s': string %" PRIu64 " is NULL", key, i);
        if (elm_add_overflow_u64(total, 8 + (uint64_t)strlen(strs[i]), &total))
            return wfail(w, ELM_EFORMAT, "key '%s': array too large", key);
    }
    if (!(val = alloc_val(w, total)))
        return -ENOMEM;
    memcpy(val, &et, 4);
    memcpy(val + 4, &n, 8);
    p = val + 12;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t len = strlen(strs[i]);
        memcpy(p, &len, 8);
        memcpy(p + 8, strs[i], len);
        p += 8 + len;
    }
    return put_kv(w, key, strlen(key), ELM_GGUF_ARRAY, val, total);
}

/* ---------------------------------------------------------------------------------------------
 * Tensors
 */

static int add_tensor(struct elm_gguf_writer *w, const char *name, uint32_t type, uint32_t n_dims,
                      const int64_t *ne, const void *data, void (*fill)(void *, void *, uint64_t),
                      void *ctx)
{
    const struct elm_type_info *ti;
    struct wtensor t = {.n_dims = n_dims, .type = type, .data = data, .fill = fill, .ctx = ctx};
    uint64_t n = 1;
    char nb[NAME_MSG];

    if (!w)
        return -EINVAL;
    w->msg[0] = 0;
    if (!name || !ne || (!data && !fill))
        return wfail(w, -EINVAL, "add_tensor: NULL argument");
    t.name_len = strlen(name);
    fmt_name(name, t.name_len, nb);
    if (t.name_len == 0)
        return wfail(w, ELM_EFORMAT, "empty tensor name");
    for (size_t i = 0; i < w->n_t; i++)
        if (strcmp(w->t[i].name, name) == 0)
            return wfail(w, ELM_EFORMAT, "tensor '%s': duplicate tensor name", nb);
    if (n_dims < 1 || n_dims > ELM_GGUF_MAX_DIMS)
        return wfail(w, ELM_EFORMAT, "tensor '%s': n_dims %" PRIu32 " is not in 1..%d", nb, n_dims,
                     ELM_GGUF_MAX_DIMS);
    for (uint32_t d = 0; d < ELM_GGUF_MAX_DIMS; d++) {
        t.ne[d] = d < n_dims ? ne[d] : 1;
        if (t.ne[d] < 1)
            return wfail(w, ELM_EFORMAT,
                         "tensor '%s': dimension %" PRIu32 " is %" PRId64 " (must be >= 1)", nb, d,
                         t.ne[d]);
        if (elm_mul_overflow_u64(n, (uint64_t)t.ne[d], &n) || n > MAX_ELEMENTS)
            return wfail(w, ELM_EFORMAT, "tensor '%s': element count overflows", nb);
    }
    ti = elm_type_get(type);
    if (!ti || !ti->is_weight)
        return wfail(w, ELM_EUNSUPPORTED,
                     "tensor '%s': type id %" PRIu32 " is not a weight type elm supports", nb,
                     type);
    if (t.ne[0] % ti->block != 0)
        return wfail(w, ELM_EFORMAT,
                     "tensor '%s': row of %" PRId64 " elements is not a multiple of the %s "
                     "block size %d",
                     nb, t.ne[0], ti->name, (int)ti->block);
    if (elm_mul_overflow_u64(n / (uint64_t)ti->block, (uint64_t)ti->block_bytes, &t.n_bytes))
        return wfail(w, ELM_EFORMAT, "tensor '%s': byte size overflows", nb);

    if (w->n_t == w->cap_t) {
        size_t cap = w->cap_t ? 2 * w->cap_t : 64;
        struct wtensor *nt = realloc(w->t, cap * sizeof *nt);
        if (!nt)
            return wfail(w, -ENOMEM, "out of memory");
        w->t = nt;
        w->cap_t = cap;
    }
    t.name = strdup(name);
    if (!t.name)
        return wfail(w, -ENOMEM, "out of memory");
    w->t[w->n_t++] = t;
    return 0;
}

int elm_gguf_writer_add_tensor(struct elm_gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne, const void *data)
{
    if (!data)
        return w ? wfail(w, -EINVAL, "add_tensor: NULL data") : -EINVAL;
    return add_tensor(w, name, type, n_dims, ne, data, NULL, NULL);
}

int elm_gguf_writer_add_tensor_fill(struct elm_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne,
                                    void (*fill)(void *ctx, void *dst, uint64_t n_bytes), void *ctx)
{
    if (!fill)
        return w ? wfail(w, -EINVAL, "add_tensor_fill: NULL fill") : -EINVAL;
    return add_tensor(w, name, type, n_dims, ne, NULL, fill, ctx);
}

/* ---------------------------------------------------------------------------------------------
 * Writing. Output goes through stdio with a large buffer; the first error sticks in out.err
 * and every later put is a no-op, so the write path can check once at the end.
 */

struct out {
    FILE *f;
    int err; /* first -errno */
    uint64_t pos;
};

static void put(struct out *o, const void *p, size_t n)
{
    if (o->err || n == 0)
        return;
    if (fwrite(p, 1, n, o->f) != n)
        o->err = errno ? -errno : -EIO;
    o->pos += n;
}

static void put_u32(struct out *o, uint32_t v)
{
    put(o, &v, 4);
}

static void put_u64(struct out *o, uint64_t v)
{
    put(o, &v, 8);
}

static void pad_to(struct out *o, uint64_t align)
{
    static const uint8_t zeros[256];
    uint64_t target;

    if (elm_align_up_u64(o->pos, align, &target)) {
        o->err = o->err ? o->err : -EOVERFLOW;
        return;
    }
    while (o->pos < target) {
        uint64_t n = target - o->pos < sizeof zeros ? target - o->pos : sizeof zeros;
        put(o, zeros, (size_t)n);
    }
}

/* Makes general.alignment present and equal to the writer's alignment when the file needs it
 * (alignment != 32) or when the caller set or copied the key (a stale value would misplace the
 * data for every reader). */
static int sync_alignment_key(struct elm_gguf_writer *w)
{
    if (w->alignment == ELM_GGUF_DEFAULT_ALIGNMENT &&
        !find_kv(w, "general.alignment", strlen("general.alignment")))
        return 0;
    return elm_gguf_writer_set_u32(w, "general.alignment", w->alignment);
}

/* Header, KVs, tensor infos, then each tensor's data padded to the alignment (the last one
 * too: llama.cpp reads the data section as the sum of padded sizes). */
static void write_body(struct elm_gguf_writer *w, struct out *o, uint8_t *scratch)
{
    uint64_t off = 0;

    put(o, "GGUF", 4);
    put_u32(o, 3);
    put_u64(o, w->n_t);
    put_u64(o, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_u64(o, w->kv[i].key_len);
        put(o, w->kv[i].key, w->kv[i].key_len);
        put_u32(o, w->kv[i].type);
        put(o, w->kv[i].val, w->kv[i].val_len);
    }
    for (size_t i = 0; i < w->n_t; i++) {
        const struct wtensor *t = &w->t[i];
        put_u64(o, t->name_len);
        put(o, t->name, t->name_len);
        put_u32(o, t->n_dims);
        for (uint32_t d = 0; d < t->n_dims; d++)
            put_u64(o, (uint64_t)t->ne[d]);
        put_u32(o, t->type);
        put_u64(o, off);
        if (elm_add_overflow_u64(off, t->n_bytes, &off) ||
            elm_align_up_u64(off, w->alignment, &off))
            o->err = o->err ? o->err : -EOVERFLOW;
    }
    pad_to(o, w->alignment);
    for (size_t i = 0; i < w->n_t && !o->err; i++) {
        const struct wtensor *t = &w->t[i];
        if (t->fill) {
            memset(scratch, 0, t->n_bytes); /* never write stale heap bytes if fill is lazy */
            t->fill(t->ctx, scratch, t->n_bytes);
            put(o, scratch, t->n_bytes);
        } else {
            put(o, t->data, t->n_bytes);
        }
        pad_to(o, w->alignment);
    }
}

int elm_gguf_writer_write(struct elm_gguf_writer *w, const char *path, char *err, size_t errlen)
{
    struct out o = {0};
    uint8_t *scratch = NULL;
    uint64_t scratch_len = 0;
    char *tmp = NULL;
    int fd = -1, rc;

    if (!err)
        errlen = 0;
    if (errlen)
        err[0] = 0;
    if (!w || !path)
        return -EINVAL;
    if ((rc = sync_alignment_key(w))) {
        snprintf(err, errlen, "%s: %s", path, w->msg);
        return rc;
    }
    for (size_t i = 0; i < w->n_t; i++)
        if (w->t[i].fill && w->t[i].n_bytes > scratch_len)
            scratch_len = w->t[i].n_bytes;
    tmp = malloc(strlen(path) + 5);
    scratch = scratch_len ? (scratch_len <= SIZE_MAX ? malloc(scratch_len) : NULL) : NULL;
    if (!tmp || (scratch_len && !scratch)) {
        rc = -ENOMEM;
        snprintf(err, errlen, "%s: out of memory", path);
        goto out_free;
    }
    strcpy(tmp, path);
    strcat(tmp, ".tmp");

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot create: %s", tmp, strerror(-rc));
        goto out_free;
    }
    o.f = fdopen(fd, "wb");
    if (!o.f) {
        rc = -errno;
        close(fd);
        snprintf(err, errlen, "%s: %s", tmp, strerror(-rc));
        goto out_unlink;
    }
    setvbuf(o.f, NULL, _IOFBF, 1 << 20);
    errno = 0;
    write_body(w, &o, scratch);
    if (!o.err && fflush(o.f) != 0)
        o.err = -errno;
    if (!o.err && fsync(fileno(o.f)) != 0)
        o.err = -errno;
    if (fclose(o.f) != 0 && !o.err)
        o.err = -errno;
    if (o.err) {
        rc = o.err;
        snprintf(err, errlen, "%s: write failed: %s", tmp, strerror(-rc));
        goto out_unlink;
    }
    if (rename(tmp, path) != 0) {
        rc = -errno;
        snprintf(err, errlen, "%s: cannot rename to %s: %s", tmp, path, strerror(-rc));
        goto out_unlink;
    }
    rc = 0;
    goto out_free;

out_unlink:
    unlink(tmp);
out_free:
    free(scratch);
    free(tmp);
    return rc;
}
