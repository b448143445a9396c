/* embed_rec.h — the session records of an embedding request (docs/protocol.md 2.4): EMBED on
 * the request ring (several texts, embedded in one pass), VECTOR on the event ring (one pooled,
 * normalised vector per text). The conversation is that of a PROMPT (session_shm.h): an EMBED is
 * answered, in order, by one VECTOR per text (index 0, 1, ...) and then exactly one DONE or
 * ERROR carrying its req_id; CANCEL ends it early with DONE/CANCEL.
 *
 * Decoders take the private copy elm_ring_pop() made and check every count and length against
 * what remains of the payload; anything malformed is ELM_EPROTO. Texts point into that copy and
 * are not NUL-terminated.
 */
#ifndef ELM_IPC_EMBED_REC_H
#define ELM_IPC_EMBED_REC_H

#include <stdint.h>

#include "ipc/ring.h"

#define ELM_REC_MAX_TEXTS 256   /* texts of one EMBED: one pass of the encoder */
#define ELM_REC_MAX_EMBD  16384 /* floats of one VECTOR (real embedding models: 384..4096) */

#define ELM_EMBED_F_PARSE_SPECIAL 0x2u /* as PROMPT's: control-token text becomes tokens */
#define ELM_EMBED_F_KNOWN         0x2u

/* EMBED: struct elm_rec_embed, then n_text times a u32 length and that many bytes of text. */
struct elm_rec_embed {
    uint32_t req_id;   /* chosen by the client, echoed in VECTOR/DONE/ERROR */
    uint32_t flags;    /* ELM_EMBED_F_*; unknown bits are rejected */
    uint32_t n_text;   /* 1..ELM_REC_MAX_TEXTS */
    uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct elm_rec_embed) == 16, "EMBED fixed part");

/* An embedding request, decoded or to be encoded. */
struct elm_embed_msg {
    struct elm_rec_embed hdr;
    const char *text[ELM_REC_MAX_TEXTS]; /* hdr.n_text entries, not NUL-terminated */
    uint32_t len[ELM_REC_MAX_TEXTS];
};

/* Payload bytes m encodes to. Returns 0 or -EINVAL (m invalid). */
int elm_rec_embed_size(const struct elm_embed_msg *m, uint32_t *out);
/* Appends m to a request ring. Returns 0, -EINVAL, -ENOMEM or a ring error (-EAGAIN when
 * full: wait for space and retry; -EMSGSIZE when it can never fit). */
int elm_rec_embed_push(struct elm_ring *r, const struct elm_embed_msg *m);
/* Decodes an EMBED payload into *out (its pointers point into p). Returns 0 or ELM_EPROTO. */
int elm_rec_embed_decode(const void *p, uint32_t len, struct elm_embed_msg *out);

/* VECTOR: struct elm_rec_vector, then n_embd little-endian float32 values, all finite. */
struct elm_rec_vector {
    uint32_t req_id;
    uint32_t index;    /* which text of the request, < its n_text; in order */
    uint32_t n_embd;   /* 1..ELM_REC_MAX_EMBD */
    uint32_t n_tokens; /* tokens the text became ([CLS] and [SEP] included) */
};
_Static_assert(sizeof(struct elm_rec_vector) == 16, "VECTOR fixed part");

/* Payload bytes of a VECTOR of n_embd floats. */
static inline uint32_t elm_rec_vector_size(uint32_t n_embd)
{
    return (uint32_t)sizeof(struct elm_rec_vector) + n_embd * (uint32_t)sizeof(float);
}

/* Appends a VECTOR (v: hdr->n_embd floats, borrowed). Returns 0, -EINVAL or a ring error. */
int elm_rec_vector_push(struct elm_ring *r, const struct elm_rec_vector *hdr, const float *v);
/* Decodes a VECTOR payload: *hdr, and *v pointing at its floats inside p (which need not be
 * aligned: copy them out with memcpy). Returns 0 or ELM_EPROTO. */
int elm_rec_vector_decode(const void *p, uint32_t len, struct elm_rec_vector *hdr, const void **v);

#endif
