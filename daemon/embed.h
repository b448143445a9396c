/* embed.h — the engine thread's embedding requests (EMBED records, ipc/embed_rec.h): decoding
 * them, refusing a request the loaded model cannot serve (EMBED to a generative model, PROMPT to
 * an embedding model), running all the texts of one request in one pass of elm_model_embed, and
 * sending the vectors as the client's event ring makes room. Engine thread only.
 */
#ifndef ELMD_EMBED_H
#define ELMD_EMBED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "daemon/elmd.h"
#include "engine/model.h"

/* Most tokens of all the texts of one request together: the encoder's scratch (arch_bert.c
 * buf_alloc) takes about 5 n_embd + 2 n_ff floats per token, ~36 KiB for a 1024-wide model
 * (bge-large), so 8192 tokens stay near 300 MB; and the engine serves nobody else meanwhile. */
#define ELMD_EMBED_MAX_TOKENS 8192

/* Bytes a request buffer needs before the payload of a record of this type (read_requests puts
 * an EMBED's decoded struct there, so one free() releases both). */
size_t elmd_embed_extra(uint16_t rec_type);

/* Decodes the EMBED payload that follows the decoded struct in buf into p (p->embed, and its
 * req_id in p->msg.hdr.req_id, by which the scheduler answers and cancels every request).
 * Returns 0 or ELM_EPROTO. */
int elmd_embed_decode(struct elmd_prompt *p, void *buf, uint32_t len);

/* 0 when the model can serve p; else ELM_EUNSUPPORTED with the reason in msg. */
int elmd_embed_check_kind(const struct elm_model *m, const struct elmd_prompt *p, char *msg,
                          size_t cap);

/* Runs EMBED p on s (idle): tokenizes every text, embeds them in one pass, and starts sending
 * the vectors (s->emb). Returns 0, or an error for an ERROR reply with the reason in msg. */
int elmd_embed_start(struct elmd_session *s, const struct elmd_prompt *p, char *msg, size_t cap);

/* Sends what of s->emb fits the event ring, and DONE after the last vector. Returns true when
 * the request is over (s->emb is then NULL); false when it waits for room (s->paused). */
bool elmd_embed_flush(struct elmd_session *s);

/* Whether req_id is the EMBED whose vectors s is sending. */
bool elmd_embed_is_running(const struct elmd_session *s, uint32_t req_id);

/* Payload bytes of the next record s->emb sends (the engine waits for that much room). */
uint32_t elmd_embed_need(const struct elmd_session *s);

/* Ends s->emb early: DONE/CANCEL when code is 0 (once the ring has room), else ERROR(code). */
void elmd_embed_cancel(struct elmd_session *s, int code, const char *msg);

/* Frees an unfinished request (a session being destroyed). NULL-safe, nulls *pe. */
void elmd_embed_free(struct elmd_embed **pe);

#endif
