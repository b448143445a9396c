/* gguf_writer.h — builds GGUF v3 files: used by the quantizer and by the benchmark's
 * synthetic-model generator.
 *
 * A writer collects key/value pairs (in insertion order; setting an existing key replaces its
 * value in place) and tensor descriptions, then writes the whole file in one go. Tensor bytes
 * are either borrowed from the caller (they must stay valid until write() returns) or produced
 * at write time by a fill callback, so that a multi-GB model never needs a second full copy in
 * memory: only one buffer as large as the largest filled tensor.
 *
 * Inputs are validated as the reader validates files (a writer must never produce a file that
 * elm_gguf_parse() rejects): value types known, no nested arrays, bools 0 or 1, no duplicate
 * tensor names, 1..4 dims each >= 1, known weight type, rows a multiple of the block size.
 * Failing calls return ELM_EFORMAT / ELM_EUNSUPPORTED / -EINVAL / -ENOMEM, leave the writer as it
 * was, and leave a message in elm_gguf_writer_error().
 *
 * Not thread-safe: one writer per thread.
 */
#ifndef ELM_GGUF_WRITER_H
#define ELM_GGUF_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine/gguf.h"

struct elm_gguf_writer; /* opaque */

/* A new, empty writer; the caller owns it (free with elm_gguf_writer_destroy). alignment is the
 * data alignment of the file: 0 means ELM_GGUF_DEFAULT_ALIGNMENT (32); otherwise a power of two.
 * Returns NULL when alignment is not a power of two or memory runs out. */
struct elm_gguf_writer *elm_gguf_writer_create(uint32_t alignment);

/* NULL-safe; sets *w to NULL. Borrowed tensor data is not touched. */
void elm_gguf_writer_destroy(struct elm_gguf_writer **w);

/* The message of the last failed call (empty string when none). Valid until the next call. */
const char *elm_gguf_writer_error(const struct elm_gguf_writer *w);

/* Copies a key/value pair from a parsed file, value bytes verbatim (the kv and its buffer may be
 * released afterwards). */
int elm_gguf_writer_copy_kv(struct elm_gguf_writer *w, const struct elm_gguf_kv *kv);

/* Scalar setters. key is a NUL-terminated string; an existing key of the same name is replaced
 * and keeps its position. */
int elm_gguf_writer_set_u32(struct elm_gguf_writer *w, const char *key, uint32_t v);
int elm_gguf_writer_set_i32(struct elm_gguf_writer *w, const char *key, int32_t v);
int elm_gguf_writer_set_f32(struct elm_gguf_writer *w, const char *key, float v);
int elm_gguf_writer_set_bool(struct elm_gguf_writer *w, const char *key, bool v);
int elm_gguf_writer_set_str(struct elm_gguf_writer *w, const char *key, const char *s);
/* Any scalar type (U8..F64 and BOOL, not STRING/ARRAY); value points to one element in host
 * representation (uint8_t for BOOL, double for F64 ...). */
int elm_gguf_writer_set_scalar(struct elm_gguf_writer *w, const char *key, uint32_t type,
                               const void *value);
/* Array of n scalar elements of elem_type (not STRING: use set_str_arr; not ARRAY: GGUF arrays
 * do not nest), copied from data (n * elm_gguf_vtype_size(elem_type) bytes). */
int elm_gguf_writer_set_arr(struct elm_gguf_writer *w, const char *key, uint32_t elem_type,
                            uint64_t n, const void *data);
/* Array of n NUL-terminated strings, copied. */
int elm_gguf_writer_set_str_arr(struct elm_gguf_writer *w, const char *key, const char *const *strs,
                                uint64_t n);

/* Adds a tensor of ggml type `type` with dims ne[0..n_dims) (ne[0] is the row). data holds its
 * n_bytes (rows * row bytes) and is BORROWED: it must stay valid until write() returns. name is
 * copied. Tensors are written in the order they are added. */
int elm_gguf_writer_add_tensor(struct elm_gguf_writer *w, const char *name, uint32_t type,
                               uint32_t n_dims, const int64_t *ne, const void *data);
/* As add_tensor, but the bytes are produced at write time: fill(ctx, dst, n_bytes) must write
 * all n_bytes of the tensor into dst (a scratch buffer reused between tensors). */
int elm_gguf_writer_add_tensor_fill(struct elm_gguf_writer *w, const char *name, uint32_t type,
                                    uint32_t n_dims, const int64_t *ne,
                                    void (*fill)(void *ctx, void *dst, uint64_t n_bytes),
                                    void *ctx);

/* Writes a GGUF v3 file to PATH atomically: into "PATH.tmp", fsync, then rename over PATH (the
 * temporary file is removed on failure). Each tensor's data is padded to the alignment, and
 * general.alignment is written when the alignment is not 32 or when the key was set or copied
 * (its value is then made to match the writer's alignment, which is authoritative).
 * Returns 0 or -errno / ELM_E* with a message naming PATH in err. May be called more than once. */
int elm_gguf_writer_write(struct elm_gguf_writer *w, const char *path, char *err, size_t errlen);

#endif
