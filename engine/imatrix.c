/* imatrix.c — the legacy llama.cpp imatrix file (read and write) and the accumulator that
 * produces its values (imatrix.h).
 *
 * Layout, little-endian, no padding, no magic (llama.cpp examples/imatrix at b4748):
 *   int32 n_entries
 *   n_entries x { int32 name_len; name_len bytes name; int32 ncall; int32 nval; float32[nval] }
 *   optional tail: int32 last_call; int32 dataset_len; dataset_len bytes dataset
 * llama-quantize reads the tail only when bytes remain after the entries, so it is optional here
 * too.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errmsg.h"
#include "elm/status.h"
#include "engine/imatrix.h"

/* Bounds that no real model reaches; they keep a corrupt count from asking for gigabytes. */
#define MAX_NAME    4096
#define MAX_ENTRIES (1 << 20)

/* ---- reading ------------------------------------------------------------------------------- */

struct cursor {
    const unsigned char *p;
    size_t left;
};

static int take(struct cursor *c, void *dst, size_t n)
{
    if (c->left < n)
        return -1;
    memcpy(dst, c->p, n);
    c->p += n;
    c->left -= n;
    return 0;
}

static int take_i32(struct cursor *c, int32_t *v)
{
    unsigned char b[4];
    if (take(c, b, 4))
        return -1;
    *v = (int32_t)((uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 |
                   (uint32_t)b[3] << 24);
    return 0;
}

static int read_all(const char *path, unsigned char **buf, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    int rc = 0;
    long n;
    if (fseek(f, 0, SEEK_END) || (n = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
        rc = -errno;
        goto out;
    }
    *buf = malloc(n > 0 ? (size_t)n : 1);
    if (!*buf) {
        rc = -ENOMEM;
        goto out;
    }
    if (fread(*buf, 1, (size_t)n, f) != (size_t)n) {
        rc = ferror(f) ? -EIO : ELM_EFORMAT;
        free(*buf);
        *buf = NULL;
        goto out;
    }
    *len = (size_t)n;
out:
    fclose(f);
    return rc;
}

static int parse_entry(struct cursor *c, struct elm_imatrix_entry *e, int32_t i, char *err,
                       size_t errlen)
{
    int32_t len;
    if (take_i32(c, &len) || len < 1 || len > MAX_NAME || (size_t)len > c->left)
        return elm_errf(err, errlen, ELM_EFORMAT, "imatrix entry %d: bad name length", i);
    if (!(e->name = malloc((size_t)len + 1)))
        return -ENOMEM;
    take(c, e->name, (size_t)len);
    e->name[len] = '\0';
    if (strlen(e->name) != (size_t)len)
        return elm_errf(err, errlen, ELM_EFORMAT, "imatrix entry %d: NUL in name", i);
    if (take_i32(c, &e->ncall) || take_i32(c, &e->nval))
        return elm_errf(err, errlen, ELM_EFORMAT, "imatrix entry '%s': truncated", e->name);
    if (e->ncall < 0 || e->nval < 1 || (size_t)e->nval > c->left / sizeof(float))
        return elm_errf(err, errlen, ELM_EFORMAT,
                        "imatrix entry '%s': bad ncall %d or nval %d for the bytes left", e->name,
                        e->ncall, e->nval);
    if (!(e->values = malloc((size_t)e->nval * sizeof(float))))
        return -ENOMEM;
    for (int32_t j = 0; j < e->nval; j++) {
        int32_t bits;
        take_i32(c, &bits);
        memcpy(&e->values[j], &bits, sizeof(float));
    }
    return 0;
}

static int parse(struct cursor *c, struct elm_imatrix *im, char *err, size_t errlen)
{
    int32_t n;
    /* the smallest entry is 4 + 1 + 4 + 4 + 4 bytes */
    if (take_i32(c, &n) || n < 1 || n > MAX_ENTRIES || (size_t)n > c->left / 17)
        return elm_errf(err, errlen, ELM_EFORMAT, "imatrix: bad entry count");
    if (!(im->entries = calloc((size_t)n, sizeof *im->entries)))
        return -ENOMEM;
    for (int32_t i = 0; i < n; i++) {
        im->n_entries = i + 1; /* so destroy frees what parse_entry allocated */
        int rc = parse_entry(c, &im->entries[i], i, err, errlen);
        if (rc)
            return rc;
        for (int32_t k = 0; k < i; k++)
            if (!strcmp(im->entries[k].name, im->entries[i].name))
                return elm_errf(err, errlen, ELM_EFORMAT, "imatrix: entry '%s' appears twice",
                                im->entries[i].name);
    }
    if (c->left == 0)
        return 0;
    int32_t dlen;
    if (take_i32(c, &im->last_call) || take_i32(c, &dlen) || im->last_call < 0 || dlen < 0 ||
        (size_t)dlen != c->left)
        return elm_errf(err, errlen, ELM_EFORMAT, "imatrix: bad trailer after the entries");
    if (!(im->dataset = malloc((size_t)dlen + 1)))
        return -ENOMEM;
    take(c, im->dataset, (size_t)dlen);
    im->dataset[dlen] = '\0';
    return 0;
}

int elm_imatrix_read(const char *path, struct elm_imatrix **out, char *err, size_t errlen)
{
    unsigned char *buf = NULL;
    size_t len = 0;
    int rc = read_all(path, &buf, &len);
    if (rc)
        return rc == ELM_EFORMAT ? elm_errf(err, errlen, rc, "imatrix: short read") : rc;
    struct elm_imatrix *im = calloc(1, sizeof *im);
    if (!im) {
        free(buf);
        return -ENOMEM;
    }
    struct cursor c = {buf, len};
    rc = parse(&c, im, err, errlen);
    free(buf);
    if (rc) {
        elm_imatrix_destroy(&im);
        return rc;
    }
    *out = im;
    return 0;
}

/* ---- writing ------------------------------------------------------------------------------- */

static int put_i32(FILE *f, int32_t v)
{
    const uint32_t u = (uint32_t)v;
    const unsigned char b[4] = {u & 0xff, u >> 8 & 0xff, u >> 16 & 0xff, u >> 24};
    return fwrite(b, 1, 4, f) == 4 ? 0 : -1;
}

static int put_all(FILE *f, const struct elm_imatrix *im)
{
    if (put_i32(f, im->n_entries))
        return -1;
    for (int32_t i = 0; i < im->n_entries; i++) {
        const struct elm_imatrix_entry *e = &im->entries[i];
        const int32_t len = (int32_t)strlen(e->name);
        if (put_i32(f, len) || fwrite(e->name, 1, (size_t)len, f) != (size_t)len ||
            put_i32(f, e->ncall) || put_i32(f, e->nval))
            return -1;
        for (int32_t j = 0; j < e->nval; j++) {
            int32_t bits;
            memcpy(&bits, &e->values[j], sizeof bits);
            if (put_i32(f, bits))
                return -1;
        }
    }
    const int32_t dlen = im->dataset ? (int32_t)strlen(im->dataset) : 0;
    if (put_i32(f, im->last_call) || put_i32(f, dlen) ||
        fwrite(im->dataset ? im->dataset : "", 1, (size_t)dlen, f) != (size_t)dlen)
        return -1;
    return 0;
}

int elm_imatrix_write(const char *path, const struct elm_imatrix *im)
{
    if (im->n_entries < 1 || (im->dataset && strlen(im->dataset) > INT32_MAX))
        return -EINVAL;
    for (int32_t i = 0; i < im->n_entries; i++) {
        const struct elm_imatrix_entry *e = &im->entries[i];
        const size_t len = strlen(e->name);
        if (len < 1 || len > MAX_NAME || e->nval < 1 || !e->values)
            return -EINVAL;
    }
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 32);
    if (!tmp)
        return -ENOMEM;
    snprintf(tmp, plen + 32, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    int rc = 0;
    if (!f) {
        rc = -errno;
        goto out;
    }
    if (put_all(f, im))
        rc = -EIO;
    if (fclose(f) && !rc)
        rc = -errno;
    if (!rc && rename(tmp, path))
        rc = -errno;
    if (rc)
        unlink(tmp);
out:
    free(tmp);
    return rc;
}

/* ---- lookup -------------------------------------------------------------------------------- */

const struct elm_imatrix_entry *elm_imatrix_find(const struct elm_imatrix *im, const char *name)
{
    for (int32_t i = 0; i < im->n_entries; i++)
        if (!strcmp(im->entries[i].name, name))
            return &im->entries[i];
    return NULL;
}

void elm_imatrix_weights(const struct elm_imatrix_entry *e, float *out)
{
    for (int32_t j = 0; j < e->nval; j++)
        out[j] = e->ncall > 0 ? e->values[j] / (float)e->ncall : e->values[j];
}

static void entries_free(struct elm_imatrix_entry *e, int32_t n)
{
    for (int32_t i = 0; i < n; i++) {
        free(e[i].name);
        free(e[i].values);
    }
    free(e);
}

void elm_imatrix_destroy(struct elm_imatrix **pim)
{
    if (!pim || !*pim)
        return;
    struct elm_imatrix *im = *pim;
    entries_free(im->entries, im->n_entries);
    free(im->dataset);
    free(im);
    *pim = NULL;
}

/* ---- accumulation -------------------------------------------------------------------------- */

struct acc_entry {
    char *name;
    int32_t ncall;
    int64_t ncols;
    float *sums;     /* [ncols] sum of x^2, in float as llama-imatrix keeps it */
    int64_t *counts; /* [ncols] rows added */
};

struct elm_imatrix_acc {
    struct acc_entry *e;
    int32_t n, cap;
};

int elm_imatrix_acc_create(struct elm_imatrix_acc **out)
{
    struct elm_imatrix_acc *a = calloc(1, sizeof *a);
    if (!a)
        return -ENOMEM;
    *out = a;
    return 0;
}

void elm_imatrix_acc_destroy(struct elm_imatrix_acc **pa)
{
    if (!pa || !*pa)
        return;
    struct elm_imatrix_acc *a = *pa;
    for (int32_t i = 0; i < a->n; i++) {
        free(a->e[i].name);
        free(a->e[i].sums);
        free(a->e[i].counts);
    }
    free(a->e);
    free(a);
    *pa = NULL;
}

static struct acc_entry *acc_entry(struct elm_imatrix_acc *a, const char *name, int64_t ncols)
{
    for (int32_t i = 0; i < a->n; i++)
        if (!strcmp(a->e[i].name, name))
            return &a->e[i];
    if (a->n == a->cap) {
        const int32_t cap = a->cap ? 2 * a->cap : 16;
        struct acc_entry *e = realloc(a->e, (size_t)cap * sizeof *e);
        if (!e)
            return NULL;
        a->e = e;
        a->cap = cap;
    }
    struct acc_entry *e = &a->e[a->n];
    *e = (struct acc_entry){.ncols = ncols};
    e->name = strdup(name);
    e->sums = calloc((size_t)ncols, sizeof *e->sums);
    e->counts = calloc((size_t)ncols, sizeof *e->counts);
    if (!e->name || !e->sums || !e->counts) {
        free(e->name);
        free(e->sums);
        free(e->counts);
        return NULL;
    }
    a->n++;
    return e;
}

int elm_imatrix_acc_add(struct elm_imatrix_acc *a, const char *name, const float *x, int64_t ncols,
                        int n)
{
    if (ncols < 1 || ncols > INT32_MAX || n < 0)
        return -EINVAL;
    struct acc_entry *e = acc_entry(a, name, ncols);
    if (!e)
        return -ENOMEM;
    if (e->ncols != ncols)
        return -EINVAL;
    e->ncall++;
    for (int t = 0; t < n; t++) {
        const float *r = x + (size_t)t * (size_t)ncols;
        for (int64_t j = 0; j < ncols; j++) {
            e->sums[j] += r[j] * r[j];
            e->counts[j]++;
        }
    }
    for (int64_t j = 0; j < ncols; j++)
        if (!isfinite(e->sums[j]))
            return -EINVAL;
    return 0;
}

int elm_imatrix_acc_get(const struct elm_imatrix_acc *a, const char *dataset,
                        struct elm_imatrix **out)
{
    struct elm_imatrix *im = calloc(1, sizeof *im);
    if (!im)
        return -ENOMEM;
    if (a->n && !(im->entries = calloc((size_t)a->n, sizeof *im->entries)))
        goto nomem;
    if (dataset && !(im->dataset = strdup(dataset)))
        goto nomem;
    for (int32_t i = 0; i < a->n; i++) {
        const struct acc_entry *s = &a->e[i];
        struct elm_imatrix_entry *d = &im->entries[i];
        im->n_entries = i + 1;
        d->name = strdup(s->name);
        d->values = malloc((size_t)s->ncols * sizeof(float));
        if (!d->name || !d->values)
            goto nomem;
        d->ncall = s->ncall;
        d->nval = (int32_t)s->ncols;
        /* llama-imatrix's stored value, in float: sum / count * ncall */
        for (int64_t j = 0; j < s->ncols; j++)
            d->values[j] = s->counts[j] ? s->sums[j] / (float)s->counts[j] * (float)s->ncall : 0.0f;
        if (s->ncall > im->last_call)
            im->last_call = s->ncall;
    }
    *out = im;
    return 0;
nomem:
    elm_imatrix_destroy(&im);
    return -ENOMEM;
}
