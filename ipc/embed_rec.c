/* embed_rec.c — encoders and decoders of the EMBED and VECTOR records (embed_rec.h).
 *
 * As in session_shm.c, decoders are a trust boundary: every count is checked against its bound
 * and every length against what remains of the payload before use, and the payload must be
 * consumed exactly. Host byte order is little endian (ring.h asserts it).
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "elm/status.h"
#include "ipc/embed_rec.h"
#include "ipc/session_shm.h"

static bool embed_hdr_is_valid(const struct elm_rec_embed *h)
{
    return !(h->flags & ~ELM_EMBED_F_KNOWN) && h->n_text >= 1 && h->n_text <= ELM_REC_MAX_TEXTS &&
           h->reserved == 0;
}

int elm_rec_embed_size(const struct elm_embed_msg *m, uint32_t *out)
{
    if (!m || !embed_hdr_is_valid(&m->hdr))
        return -EINVAL;
    uint64_t n = sizeof m->hdr;
    for (uint32_t i = 0; i < m->hdr.n_text; i++) {
        if (m->len[i] && !m->text[i])
            return -EINVAL;
        n += 4 + (uint64_t)m->len[i];
    }
    if (n > UINT32_MAX)
        return -EINVAL;
    *out = (uint32_t)n;
    return 0;
}

int elm_rec_embed_push(struct elm_ring *r, const struct elm_embed_msg *m)
{
    uint32_t size;
    int rc = elm_rec_embed_size(m, &size);
    if (rc < 0)
        return rc;
    /* One contiguous copy: up to 2 segments per text would exceed ELM_RING_MAX_IOV, and the
     * copy costs little next to running the encoder over the texts. */
    char *buf = malloc(size), *b = buf;
    if (!buf)
        return -ENOMEM;
    memcpy(b, &m->hdr, sizeof m->hdr);
    b += sizeof m->hdr;
    for (uint32_t i = 0; i < m->hdr.n_text; i++) {
        memcpy(b, &m->len[i], 4);
        if (m->len[i])
            memcpy(b + 4, m->text[i], m->len[i]);
        b += 4 + m->len[i];
    }
    rc = elm_ring_push(r, ELM_REC_EMBED, buf, size);
    free(buf);
    return rc;
}

int elm_rec_embed_decode(const void *p, uint32_t len, struct elm_embed_msg *out)
{
    struct elm_rec_embed h;
    if (!p || !out || len < sizeof h)
        return ELM_EPROTO;
    memcpy(&h, p, sizeof h);
    if (!embed_hdr_is_valid(&h))
        return ELM_EPROTO;
    const char *b = (const char *)p + sizeof h;
    uint32_t left = len - (uint32_t)sizeof h;
    for (uint32_t i = 0; i < h.n_text; i++) {
        uint32_t n;
        if (left < 4)
            return ELM_EPROTO;
        memcpy(&n, b, 4);
        b += 4;
        left -= 4;
        if (n > left)
            return ELM_EPROTO;
        out->text[i] = b;
        out->len[i] = n;
        b += n;
        left -= n;
    }
    if (left != 0)
        return ELM_EPROTO;
    out->hdr = h;
    return 0;
}

static bool vector_hdr_is_valid(const struct elm_rec_vector *h)
{
    return h->n_embd >= 1 && h->n_embd <= ELM_REC_MAX_EMBD;
}

int elm_rec_vector_push(struct elm_ring *r, const struct elm_rec_vector *hdr, const float *v)
{
    if (!hdr || !v || !vector_hdr_is_valid(hdr))
        return -EINVAL;
    for (uint32_t i = 0; i < hdr->n_embd; i++)
        if (!isfinite(v[i]))
            return -EINVAL;
    struct iovec iov[2] = {{(void *)hdr, sizeof *hdr},
                           {(void *)v, (size_t)hdr->n_embd * sizeof *v}};
    return elm_ring_pushv(r, ELM_REC_VECTOR, 0, iov, 2);
}

int elm_rec_vector_decode(const void *p, uint32_t len, struct elm_rec_vector *hdr, const void **v)
{
    struct elm_rec_vector h;
    if (!p || !hdr || !v || len < sizeof h)
        return ELM_EPROTO;
    memcpy(&h, p, sizeof h);
    if (!vector_hdr_is_valid(&h) || len != elm_rec_vector_size(h.n_embd))
        return ELM_EPROTO;
    const char *f = (const char *)p + sizeof h;
    for (uint32_t i = 0; i < h.n_embd; i++) {
        float x;
        memcpy(&x, f + (size_t)i * sizeof x, sizeof x);
        if (!isfinite(x))
            return ELM_EPROTO;
    }
    *hdr = h;
    *v = f;
    return 0;
}
