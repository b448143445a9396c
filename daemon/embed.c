/* embed.c — embedding requests on the engine thread (embed.h).
 *
 * A loaded model is either generative or an embedding model (elm_model_is_embedding), and every
 * session is on that model, so an EMBED never shares a pass with a PROMPT: the engine runs the
 * request's texts through one elm_model_embed call (one pass over all their tokens, each
 * sequence computed as alone) when it starts, then sends one VECTOR per text. The vectors of a
 * request may not all fit the event ring at once: the rest wait in s->emb and go out as the
 * client reads (the session is then paused, and the engine sleeps on the ring's space word),
 * so a slow reader stalls only itself. DONE carries n_prompt = the texts' tokens and n_gen = the
 * vectors sent.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/log.h"
#include "daemon/embed.h"
#include "daemon/engine_thread.h"
#include "elm/status.h"
#include "ipc/embed_rec.h"

struct elmd_embed {
    uint32_t req_id;
    uint32_t n, next; /* vectors, and the next one to send */
    uint32_t n_embd;
    float *vec;      /* [n][n_embd] */
    uint32_t *n_tok; /* [n]: tokens of each text */
    uint32_t n_tokens;
    uint64_t t_recv, t_done; /* PROMPT received, vectors computed */
    bool cancelled;          /* send DONE/CANCEL instead of the remaining vectors */
};

size_t elmd_embed_extra(uint16_t rec_type)
{
    return rec_type == ELM_REC_EMBED ? sizeof(struct elm_embed_msg) : 0;
}

int elmd_embed_decode(struct elmd_prompt *p, void *buf, uint32_t len)
{
    struct elm_embed_msg *m = buf;
    int rc = elm_rec_embed_decode((char *)buf + sizeof *m, len, m);
    if (rc)
        return rc;
    p->embed = m;
    p->msg.hdr.req_id = m->hdr.req_id;
    return 0;
}

int elmd_embed_check_kind(const struct elm_model *m, const struct elmd_prompt *p, char *msg,
                          size_t cap)
{
    bool emb = elm_model_is_embedding(m);
    if (emb == (p->embed != NULL))
        return 0;
    if (emb)
        snprintf(msg, cap,
                 "the loaded model (%s) is an embedding model: it embeds texts and "
                 "cannot generate",
                 elm_arch_name(m->hp.arch));
    else
        snprintf(msg, cap,
                 "the loaded model (%s) generates text: load an embedding model "
                 "(bert) to embed texts",
                 elm_arch_name(m->hp.arch));
    return ELM_EUNSUPPORTED;
}

void elmd_embed_free(struct elmd_embed **pe)
{
    if (!pe || !*pe)
        return;
    free((*pe)->vec);
    free((*pe)->n_tok);
    free(*pe);
    *pe = NULL;
}

/* Every text's tokens ([CLS] ... [SEP], as the vocabulary adds them), checked against the
 * model's context and the request's token budget before anything is computed. */
static int tokenize_all(const struct elm_model *m, const struct elm_embed_msg *em, int32_t **ids,
                        int32_t *n_ids, char *msg, size_t cap)
{
    bool special = em->hdr.flags & ELM_EMBED_F_PARSE_SPECIAL;
    int64_t total = 0;
    for (uint32_t i = 0; i < em->hdr.n_text; i++) {
        int rc = elm_tokenize_alloc(m->vocab, em->text[i], em->len[i], true, special, &ids[i],
                                    &n_ids[i]);
        if (rc)
            return snprintf(msg, cap, "text %u: %s", i, elm_strerror(rc)), rc;
        if (n_ids[i] == 0)
            return snprintf(msg, cap, "text %u has no tokens", i), -EINVAL;
        if (n_ids[i] > m->hp.n_ctx_train)
            return snprintf(msg, cap, "text %u has %d tokens but the model's context holds %d", i,
                            n_ids[i], m->hp.n_ctx_train),
                   ELM_ECONTEXT;
        total += n_ids[i];
    }
    if (total > ELMD_EMBED_MAX_TOKENS)
        return snprintf(msg, cap,
                        "the texts have %lld tokens together; one request embeds at most %d: "
                        "send fewer texts per request",
                        (long long)total, ELMD_EMBED_MAX_TOKENS),
               ELM_ECONTEXT;
    return 0;
}

int elmd_embed_start(struct elmd_session *s, const struct elmd_prompt *p, char *msg, size_t cap)
{
    const struct elm_model *m = s->model;
    const struct elm_embed_msg *em = p->embed;
    const uint32_t n = em->hdr.n_text, E = (uint32_t)m->hp.n_embd;
    if (E > ELM_REC_MAX_EMBD || elm_rec_vector_size(E) > elm_ring_max_payload(&s->rings.evt)) {
        snprintf(msg, cap, "a vector of %u floats does not fit the session's event ring", E);
        return -EMSGSIZE;
    }
    int32_t *ids[ELM_REC_MAX_TEXTS] = {0}, n_ids[ELM_REC_MAX_TEXTS] = {0};
    struct elmd_embed *o = calloc(1, sizeof *o);
    int rc = o ? 0 : -ENOMEM;
    if (rc == 0 && (!(o->vec = malloc((size_t)n * E * sizeof *o->vec)) ||
                    !(o->n_tok = malloc(n * sizeof *o->n_tok))))
        rc = -ENOMEM;
    if (rc == 0)
        rc = tokenize_all(m, em, ids, n_ids, msg, cap);
    if (rc == 0)
        elmd_compute_threads(m);
    if (rc == 0 && (rc = elm_model_embed(m, (const int32_t *const *)ids, n_ids, (int)n, o->vec)))
        snprintf(msg, cap, "the encoder failed: %s", elm_strerror(rc));
    for (uint32_t i = 0; i < n; i++)
        free(ids[i]);
    if (rc) {
        if (rc == -ENOMEM)
            snprintf(msg, cap, "out of memory for %u texts", n);
        elmd_embed_free(&o);
        return rc;
    }
    o->req_id = em->hdr.req_id;
    o->n = n;
    o->n_embd = E;
    for (uint32_t i = 0; i < n; i++) {
        o->n_tok[i] = (uint32_t)n_ids[i];
        o->n_tokens += (uint32_t)n_ids[i];
    }
    o->t_recv = p->t_recv_ns;
    o->t_done = elmd_now_ns();
    s->emb = o;
    s->last_used_ns = o->t_done;
    elm_debug("session %llu: request %u: %u texts, %u tokens embedded", (unsigned long long)s->id,
              o->req_id, n, o->n_tokens);
    elmd_embed_flush(s);
    return 0;
}

bool elmd_embed_is_running(const struct elmd_session *s, uint32_t req_id)
{
    return s->emb && s->emb->req_id == req_id;
}

uint32_t elmd_embed_need(const struct elmd_session *s)
{
    const struct elmd_embed *o = s->emb;
    if (o && !o->cancelled && o->next < o->n)
        return elm_rec_vector_size(o->n_embd);
    return sizeof(struct elm_rec_done);
}

/* The request is over: its counters, then DONE (room was checked). */
static void finish(struct elmd_session *s, enum elm_done_reason reason)
{
    struct elmd_embed *o = s->emb;
    uint64_t now = elmd_now_ns();
    struct elm_rec_done dn = {.req_id = o->req_id,
                              .reason = reason,
                              .n_prompt = o->n_tokens,
                              .n_gen = o->next,
                              .t_first_ns = o->t_done - o->t_recv,
                              .t_total_ns = now - o->t_recv};
    /* not paused any more: the engine would otherwise wake for this ring's room forever */
    s->paused = false;
    s->step.req++;
    s->step.prompt_tok += o->n_tokens;
    s->step.prompt_ns += o->t_done - o->t_recv;
    elmd_embed_free(&s->emb);
    s->last_used_ns = now;
    elmd_flush_now(s);
    if (!s->dead)
        elmd_check_push(s, elm_rec_done_push(&s->rings.evt, &dn));
}

bool elmd_embed_flush(struct elmd_session *s)
{
    struct elmd_embed *o = s->emb;
    while (o && !s->dead) {
        if (!elm_ring_is_ready(&s->rings.evt, elmd_embed_need(s))) {
            s->paused = true;
            return false;
        }
        if (o->cancelled || o->next == o->n) {
            finish(s, o->cancelled ? ELM_DONE_CANCEL : ELM_DONE_EOS);
            return true;
        }
        struct elm_rec_vector h = {.req_id = o->req_id,
                                   .index = o->next,
                                   .n_embd = o->n_embd,
                                   .n_tokens = o->n_tok[o->next]};
        elmd_check_push(
            s, elm_rec_vector_push(&s->rings.evt, &h, o->vec + (size_t)o->next * o->n_embd));
        o->next++;
    }
    return true;
}

void elmd_embed_cancel(struct elmd_session *s, int code, const char *msg)
{
    struct elmd_embed *o = s->emb;
    if (!o)
        return;
    if (code == 0) {
        o->cancelled = true;
        elmd_embed_flush(s);
        return;
    }
    uint32_t req_id = o->req_id;
    s->paused = false;
    s->step.req++;
    s->step.err++;
    elmd_embed_free(&s->emb);
    elmd_flush_now(s);
    elmd_push_error(s, req_id, code, msg);
}
