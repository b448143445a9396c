/* client_embed.c — libelmclient's embedding call: the texts go to the daemon in one EMBED
 * record (ipc/embed_rec.h), and their vectors come back as VECTOR records, one per text, in
 * order, then DONE; or an ERROR.
 *
 * Every record is popped into a private buffer and checked there, as client_session.c does for
 * tokens: it must belong to this request, the vectors must come in order with one width, and
 * DONE must come after the last. Anything else makes the session unusable (ELM_EPROTO).
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "ipc/embed_rec.h"
#include "libclient/internal.h"

_Static_assert(ELM_EMBED_MAX_TEXTS == ELM_REC_MAX_TEXTS, "texts per embedding request");
_Static_assert(ELM_REQUEST_SPECIAL == ELM_EMBED_F_PARSE_SPECIAL, "one 'parse special' flag");

/* Where the vectors of one call are gathered. */
struct embed_out {
    uint32_t id, n, next, n_embd;
    float *vec;         /* [n][n_embd], allocated at the first VECTOR */
    uint32_t *n_tokens; /* the caller's, or NULL */
};

static int push_embed(struct elm_session *s, const void *m)
{
    return elm_rec_embed_push(&s->r.req, m);
}

/* Builds the record of texts; -EINVAL for a NULL text or flags the daemon would refuse. */
static int to_embed(const char *const *texts, size_t n, uint32_t flags, uint32_t id,
                    struct elm_embed_msg *m)
{
    if (!texts || n == 0 || n > ELM_EMBED_MAX_TEXTS || (flags & ~(uint32_t)ELM_REQUEST_SPECIAL))
        return -EINVAL;
    m->hdr = (struct elm_rec_embed){.req_id = id, .flags = flags, .n_text = (uint32_t)n};
    for (size_t i = 0; i < n; i++) {
        if (!texts[i])
            return -EINVAL;
        size_t len = strlen(texts[i]);
        if (len > UINT32_MAX)
            return -EMSGSIZE;
        m->text[i] = texts[i];
        m->len[i] = (uint32_t)len;
    }
    return 0;
}

/* One VECTOR of the running request: the next index, the width of the first. */
static int take_vector(struct elm_session *s, const void *p, uint32_t len, struct embed_out *o)
{
    struct elm_rec_vector h;
    const void *v;
    if (elm_rec_vector_decode(p, len, &h, &v) < 0 || h.req_id != o->id || h.index != o->next ||
        h.index >= o->n || (o->vec && h.n_embd != o->n_embd))
        return session_set_broken(s, ELM_EPROTO);
    if (!o->vec) {
        o->n_embd = h.n_embd;
        if (!(o->vec = malloc((size_t)o->n * h.n_embd * sizeof *o->vec)))
            return -ENOMEM;
    }
    memcpy(o->vec + (size_t)h.index * h.n_embd, v, (size_t)h.n_embd * sizeof(float));
    if (o->n_tokens)
        o->n_tokens[h.index] = h.n_tokens;
    o->next++;
    return 0;
}

/* Reads the request's records until DONE or ERROR. Returns 0 when every vector came. */
static int collect(struct elm_session *s, unsigned char *buf, uint32_t cap, struct embed_out *o)
{
    for (;;) {
        struct elm_ring_rec rec;
        int rc = session_pop(s, buf, cap, &rec, -1);
        if (rc == -EINTR || rc == -ETIMEDOUT)
            continue;
        if (rc < 0)
            return rc;
        if (rec.type == ELM_REC_VECTOR) {
            if ((rc = take_vector(s, buf, rec.len, o)) < 0)
                return rc;
            continue;
        }
        if (rec.type == ELM_REC_DONE) {
            struct elm_rec_done d;
            if (elm_rec_done_decode(buf, rec.len, &d) < 0 || d.req_id != o->id ||
                (d.reason != ELM_DONE_CANCEL && o->next != o->n))
                return session_set_broken(s, ELM_EPROTO);
            return d.reason == ELM_DONE_CANCEL ? ELM_ECANCELED : 0;
        }
        struct elm_error_msg em;
        if (rec.type != ELM_REC_ERROR || elm_rec_error_decode(buf, rec.len, &em) < 0 ||
            em.req_id != o->id)
            return session_set_broken(s, ELM_EPROTO);
        memcpy(s->msg, em.msg, em.msg_len);
        s->msg[em.msg_len] = 0;
        return em.code;
    }
}

int elm_session_embed(elm_session *s, const char *const *texts, size_t n, uint32_t flags,
                      float **vecs, uint32_t *n_embd, uint32_t *n_tokens)
{
    if (!s || !vecs || !n_embd)
        return -EINVAL;
    if (s->broken)
        return s->broken;
    if (atomic_load(&s->running_id))
        return -EINPROGRESS;
    uint32_t id = s->last_id + 1 ? s->last_id + 1 : 1, size;
    struct elm_embed_msg *m = malloc(sizeof *m);
    /* room for the largest valid event: a VECTOR of the widest model, or an ERROR */
    uint32_t cap = elm_rec_vector_size(ELM_REC_MAX_EMBD);
    unsigned char *buf = malloc(cap > EVT_BUF ? cap : EVT_BUF);
    int rc = m && buf ? to_embed(texts, n, flags, id, m) : -ENOMEM;
    if (rc == 0 && (rc = elm_rec_embed_size(m, &size)) == 0 &&
        size > elm_ring_max_payload(&s->r.req))
        rc = -EMSGSIZE;
    if (rc == 0) {
        s->msg[0] = 0;
        pthread_mutex_lock(&s->prod_lock);
        rc = session_push_waiting(s, size, push_embed, m);
        if (rc == 0) {
            s->last_id = id;
            atomic_store(&s->running_id, id);
        }
        pthread_mutex_unlock(&s->prod_lock);
        if (rc < 0)
            rc = session_push_error(s, rc);
    }
    struct embed_out o = {.id = id, .n = (uint32_t)n, .n_tokens = n_tokens};
    if (rc == 0) {
        rc = collect(s, buf, cap > EVT_BUF ? cap : EVT_BUF, &o);
        atomic_store(&s->running_id, 0);
    }
    if (rc == 0) {
        *vecs = o.vec;
        *n_embd = o.n_embd;
        o.vec = NULL;
    }
    free(o.vec);
    free(buf);
    free(m);
    return rc;
}

const char *elm_session_last_message(const elm_session *s)
{
    return s ? s->msg : "";
}
