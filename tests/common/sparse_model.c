/* sparse_model.c — see sparse_model.h. The writer cannot make holes, so the unused tensor is
 * written with 16 elements, then its first dimension is patched in the header and the file is
 * extended over it: it is the last tensor, so no other offset moves. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "engine/gguf.h"
#include "engine/gguf_writer.h"
#include "tests/common/sparse_model.h"

#define UNUSED_NAME "unused.weight"

static const float g_small[16];

/* Sets the first dimension of UNUSED_NAME's tensor info: after the name come n_dims (u32) and
 * ne[0] (i64). */
static int patch_ne0(int fd, uint64_t header_len, int64_t ne0, char *err, size_t errlen)
{
    unsigned char buf[1 << 16];
    size_t n = header_len < sizeof buf ? (size_t)header_len : sizeof buf;
    if (pread(fd, buf, n, 0) != (ssize_t)n)
        return elm_errf(err, errlen, -EIO, "cannot read the header back");
    size_t nl = strlen(UNUSED_NAME);
    for (size_t i = 0; i + nl + 12 <= n; i++) {
        if (memcmp(buf + i, UNUSED_NAME, nl))
            continue;
        if (pwrite(fd, &ne0, sizeof ne0, (off_t)(i + nl + 4)) != (ssize_t)sizeof ne0)
            return elm_errf(err, errlen, -EIO, "cannot patch the header");
        return 0;
    }
    return elm_errf(err, errlen, -ENOENT, "tensor info of %s not found", UNUSED_NAME);
}

int elm_test_write_sparse(const char *src, const char *dst, uint64_t unused_bytes, char *err,
                          size_t errlen)
{
    struct elm_gguf *g, *out = NULL;
    int rc = elm_gguf_open(src, &g, err, errlen);
    if (rc)
        return rc;
    struct elm_gguf_writer *w = elm_gguf_writer_create((uint32_t)g->alignment);
    for (uint64_t i = 0; i < g->n_kv; i++)
        elm_gguf_writer_copy_kv(w, &g->kv[i]);
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        const struct elm_gguf_tensor *t = &g->tensors[i];
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)t->name.len, t->name.ptr);
        elm_gguf_writer_add_tensor(w, name, t->type, t->n_dims, t->ne, elm_gguf_tensor_data(g, t));
    }
    int64_t ne = 16;
    elm_gguf_writer_add_tensor(w, UNUSED_NAME, 0 /* F32 */, 1, &ne, g_small);
    rc = elm_gguf_writer_write(w, dst, err, errlen);
    elm_gguf_writer_destroy(&w);
    elm_gguf_destroy(&g);
    if (rc == 0)
        rc = elm_gguf_open(dst, &out, err, errlen);
    if (rc)
        return rc;
    const struct elm_gguf_tensor *t = elm_gguf_find_tensor(out, UNUSED_NAME);
    uint64_t data_offset = out->data_offset, t_off = t ? t->offset : 0;
    elm_gguf_destroy(&out);
    int fd = open(dst, O_RDWR);
    if (fd < 0)
        return elm_errf(err, errlen, -errno, "cannot open %s: %s", dst, strerror(errno));
    rc = patch_ne0(fd, data_offset, (int64_t)(unused_bytes / 4), err, errlen);
    if (rc == 0 && ftruncate(fd, (off_t)(data_offset + t_off + unused_bytes)) != 0)
        rc = elm_errf(err, errlen, -errno, "cannot extend %s: %s", dst, strerror(errno));
    close(fd);
    return rc;
}
