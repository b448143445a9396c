/* gguf.h — a validating reader for GGUF files (v2 and v3), the llama.cpp model format.
 *
 * Layout (little endian): magic "GGUF", u32 version, u64 n_tensors, u64 n_kv, then n_kv
 * key/value pairs, then n_tensors tensor infos, then padding to general.alignment (default 32),
 * then the tensor data section. Every count, length, dimension, type id, offset and size is
 * validated with checked arithmetic during parsing, so that once elm_gguf_parse() succeeds the
 * rest of the engine may trust the structure: every string, array and tensor it describes lies
 * inside the buffer. Errors name the offending key or tensor in the caller's err buffer.
 *
 * Strings point into the parsed buffer and are NOT NUL-terminated; use the length.
 */
#ifndef ELM_GGUF_H
#define ELM_GGUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELM_GGUF_DEFAULT_ALIGNMENT 32
#define ELM_GGUF_MAX_DIMS          4

enum elm_gguf_vtype {
    ELM_GGUF_U8 = 0,
    ELM_GGUF_I8 = 1,
    ELM_GGUF_U16 = 2,
    ELM_GGUF_I16 = 3,
    ELM_GGUF_U32 = 4,
    ELM_GGUF_I32 = 5,
    ELM_GGUF_F32 = 6,
    ELM_GGUF_BOOL = 7,
    ELM_GGUF_STRING = 8,
    ELM_GGUF_ARRAY = 9,
    ELM_GGUF_U64 = 10,
    ELM_GGUF_I64 = 11,
    ELM_GGUF_F64 = 12,
    ELM_GGUF_VTYPE_COUNT
};

struct elm_gguf_str {
    uint64_t len;
    const char *ptr; /* inside the buffer, not NUL-terminated */
};

struct elm_gguf_kv {
    struct elm_gguf_str key;
    uint32_t type;      /* enum elm_gguf_vtype */
    uint32_t arr_type;  /* element type when type == ARRAY (never ARRAY itself: no nesting) */
    uint64_t arr_n;     /* element count when type == ARRAY */
    const uint8_t *raw; /* the value's bytes in the buffer (for arrays: the first element) */
                        /* (a STRING's raw includes its u64 length: raw_len = 8 + len, as each
                         * element of a STRING array does; raw is the value as serialized) */
    uint64_t raw_len;   /* byte length of the value (for arrays: all elements) */
    union {             /* decoded scalar value (not for arrays) */
        uint64_t u64;   /* every unsigned integer type and bool */
        int64_t i64;    /* every signed integer type */
        double f64;     /* F32 and F64 */
        struct elm_gguf_str str;
    } v;
};

struct elm_gguf_tensor {
    struct elm_gguf_str name;
    uint32_t n_dims;
    int64_t ne[ELM_GGUF_MAX_DIMS]; /* ne[0] is the contiguous (row) dimension; unused dims = 1 */
    uint32_t type;                 /* ggml type id, see kernels/kernels.h (enum elm_type) */
    uint64_t offset;               /* from the start of the data section */
    uint64_t n_elements;
    uint64_t n_bytes;
};

struct elm_gguf {
    uint32_t version;
    uint64_t n_kv;
    uint64_t n_tensors;
    uint64_t alignment;
    struct elm_gguf_kv *kv;          /* [n_kv], owned */
    struct elm_gguf_tensor *tensors; /* [n_tensors], owned */
    const uint8_t *base;             /* the whole file */
    uint64_t size;                   /* file size in bytes */
    uint64_t data_offset;            /* start of the tensor data section in the file */
    uint64_t data_size;              /* bytes from data_offset to the end of the last tensor */
    /* ownership of the mapping when opened by elm_gguf_open() */
    void *map;
    size_t map_len;
};

/* Maps PATH read-only and parses it. On success *out is a new object the caller owns (free with
 * elm_gguf_destroy). On failure returns ELM_EFORMAT / ELM_EUNSUPPORTED / -errno and writes a
 * message naming the problem into err (if errlen > 0); *out is untouched. */
int elm_gguf_open(const char *path, struct elm_gguf **out, char *err, size_t errlen);

/* Opens PATH read-only for elm_gguf_open_fd, refusing anything but a regular file without
 * blocking (a FIFO with no writer would hang open() forever). Returns the descriptor (the caller
 * closes it) or -errno with a message naming the file in err. */
int elm_gguf_open_file(const char *path, char *err, size_t errlen);

/* The same on a file the caller opened (and still owns: fd may be closed afterwards, the mapping
 * keeps the file alive). path only names the file in messages. */
int elm_gguf_open_fd(int fd, const char *path, struct elm_gguf **out, char *err, size_t errlen);

/* Parses a GGUF image in memory. The buffer is borrowed: it must outlive *out. */
int elm_gguf_parse(const void *buf, size_t size, struct elm_gguf **out, char *err, size_t errlen);

/* NULL-safe; unmaps if this object mapped the file; sets *g to NULL. */
void elm_gguf_destroy(struct elm_gguf **g);

/* Lookups by exact name; NULL when absent. */
const struct elm_gguf_kv *elm_gguf_find(const struct elm_gguf *g, const char *key);
const struct elm_gguf_tensor *elm_gguf_find_tensor(const struct elm_gguf *g, const char *name);

/* Pointer to a tensor's bytes inside the file (validated at parse time). */
const void *elm_gguf_tensor_data(const struct elm_gguf *g, const struct elm_gguf_tensor *t);

/* Typed getters. Return 0 on success, -ENOENT when the key is absent, ELM_EFORMAT when it has a
 * different type or the value does not fit (any integer type is accepted for the integer getters
 * when the value is in range). */
int elm_gguf_get_u32(const struct elm_gguf *g, const char *key, uint32_t *out);
int elm_gguf_get_i32(const struct elm_gguf *g, const char *key, int32_t *out);
int elm_gguf_get_f32(const struct elm_gguf *g, const char *key, float *out); /* F32 or F64 */
int elm_gguf_get_bool(const struct elm_gguf *g, const char *key, bool *out);
int elm_gguf_get_str(const struct elm_gguf *g, const char *key, struct elm_gguf_str *out);
/* Array of the given element type: *n and *data (pointer to the first element in the file). */
int elm_gguf_get_arr(const struct elm_gguf *g, const char *key, uint32_t elem_type,
                     uint64_t *n, const void **data);
/* Fills out[0..n) with the strings of a STRING array of exactly n elements (n from get_arr). */
int elm_gguf_get_str_arr(const struct elm_gguf *g, const char *key, struct elm_gguf_str *out,
                         uint64_t n);

/* True when s equals the C string c. */
bool elm_gguf_str_eq(struct elm_gguf_str s, const char *c);

/* Size in bytes of one element of a scalar value type; 0 for STRING/ARRAY/unknown. */
size_t elm_gguf_vtype_size(uint32_t t);
const char *elm_gguf_vtype_name(uint32_t t);

/* Writes s into dst for messages: printable ASCII as is, any other byte (and ' and \) as \xNN,
 * cut after 64 source bytes with "..." appended. NUL-terminates when dstlen > 0; 4 * 64 + 4 bytes
 * hold any result. Returns dst. */
const char *elm_gguf_str_format(struct elm_gguf_str s, char *dst, size_t dstlen);

#endif
