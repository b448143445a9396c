/* session_shm.h — the layout of a session's shared region and the records its rings carry.
 *
 * A session region (one POSIX shm object per session, ipc/shm.h) holds a 64-byte header and two
 * rings (ipc/ring.h), each ring starting a 128-byte line of its own (ELM_RING_CACHELINE):
 *
 *   offset 0                            struct elm_session_shm (64 bytes, then 64 unused)
 *   offset 128                          request ring: client -> daemon (PROMPT, CANCEL)
 *   offset E = 128 + 512 + up(req_cap)  event ring:   daemon -> client (TOKEN, DONE, ERROR)
 *   total  E + 512 + evt_cap bytes      (512: a ring header; up(): rounded up to 128)
 *
 * The daemon creates and initialises the region; both sides attach with the capacities they
 * know from their own state (the daemon) or from the open_session reply (the client). The
 * header is only compared against those numbers, never used to compute an address.
 *
 * Records are fixed-layout little-endian structs (explicit sizes, no implicit padding, checked
 * by _Static_assert below) followed by a variable part. Decoders take the private copy that
 * elm_ring_pop() produced, check every length and value, and return ELM_EPROTO for anything
 * malformed (the ring itself reports ELM_ERING). Decoded strings point into that copy and are
 * NOT NUL-terminated. Encoders return -EINVAL for invalid input (a caller bug).
 *
 * Conversation: every PROMPT is answered, in order, by zero or more TOKEN records and then
 * exactly one DONE or ERROR record carrying the PROMPT's req_id. CANCEL asks the daemon to end
 * the request with that req_id early (DONE with reason CANCEL); cancelling a request that has
 * already finished or is unknown is not an error and produces nothing.
 */
#ifndef ELM_IPC_SESSION_SHM_H
#define ELM_IPC_SESSION_SHM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/ring.h"

#define ELM_SESSION_SHM_MAGIC   0x534d4c45u /* "ELMS" */
/* 2: DONE n_prompt counts evaluated tokens; no CONTEXT reason. 3: rings on 128-byte lines, and
 * the heartbeat */
#define ELM_SESSION_SHM_VERSION 3u

/* Defaults a daemon may use: a prompt must fit one request record, an event ring only has to
 * absorb a burst of tokens while the client is descheduled. */
#define ELM_SESSION_DEFAULT_REQ_CAPACITY (1u << 20)
#define ELM_SESSION_DEFAULT_EVT_CAPACITY (1u << 16)

struct elm_session_shm {
    uint32_t magic;          /* ELM_SESSION_SHM_MAGIC */
    uint16_t layout_version; /* ELM_SESSION_SHM_VERSION */
    uint16_t header_size;    /* sizeof(struct elm_session_shm) */
    uint32_t req_capacity;   /* data bytes of the request ring */
    uint32_t evt_capacity;   /* data bytes of the event ring */
    uint64_t req_offset;     /* byte offset of the request ring's header */
    uint64_t evt_offset;     /* byte offset of the event ring's header */
    uint64_t total_size;     /* bytes of the whole region */
    uint32_t ring_version;   /* ELM_RING_VERSION */
    uint32_t heartbeat;      /* the daemon bumps it while it runs (docs/protocol.md, 2.2) */
    uint32_t reserved[4];    /* 0 */
};
_Static_assert(sizeof(struct elm_session_shm) == 64, "session header is one cache line");

enum elm_session_side { ELM_SESSION_DAEMON = 1, ELM_SESSION_CLIENT = 2 };

/* This process's views of a session's two rings: as the daemon it produces evt and consumes
 * req; as the client the reverse. */
struct elm_session_rings {
    struct elm_ring req; /* client -> daemon */
    struct elm_ring evt; /* daemon -> client */
};

/* Daemon: bumps the region's heartbeat (any thread; atomic). */
void elm_session_shm_beat(void *base);
/* Client: the heartbeat's current value (atomic load: the daemon writes it concurrently). */
uint32_t elm_session_shm_heartbeat(const void *base);

/* Bytes of a region with these ring capacities. Returns 0 or -EINVAL (invalid capacity). */
int elm_session_shm_size(uint32_t req_cap, uint32_t evt_cap, size_t *out);

/* Daemon, before sending the region's name: writes the header and two empty rings into base
 * (size bytes, ELM_RING_CACHELINE-aligned, must equal elm_session_shm_size()). Returns 0 or
 * -EINVAL. */
int elm_session_shm_init(void *base, size_t size, uint32_t req_cap, uint32_t evt_cap);

/* Either side: checks the header against the expected capacities and size, and attaches ring
 * views for that side. Returns 0, -EINVAL (bad arguments) or ELM_ERING (the region is not a
 * session of that shape). *out is written only on success. */
int elm_session_shm_attach(void *base, size_t size, uint32_t req_cap, uint32_t evt_cap,
                           enum elm_session_side side, struct elm_session_rings *out);

/* ---------------------------------------------------------------------------------------------
 * Record types (the u16 type of a ring record)
 */

enum elm_rec_type {
    ELM_REC_PROMPT = 1,  /* request ring: generate from a prompt */
    ELM_REC_CANCEL = 2,  /* request ring: stop a request early */
    ELM_REC_EMBED = 4,   /* request ring: embed texts (ipc/embed_rec.h) */
    ELM_REC_TOKEN = 16,  /* event ring: one generated token and its text */
    ELM_REC_DONE = 17,   /* event ring: a request finished */
    ELM_REC_ERROR = 18,  /* event ring: a request failed */
    ELM_REC_VECTOR = 20, /* event ring: one text's embedding (ipc/embed_rec.h) */
};

bool elm_rec_is_request(uint16_t type);       /* PROMPT, CANCEL or EMBED */
bool elm_rec_is_event(uint16_t type);         /* TOKEN, DONE, ERROR or VECTOR */
const char *elm_rec_type_name(uint16_t type); /* static string; "unknown" for others */

/* Bounds enforced by encoders and decoders. */
#define ELM_REC_MAX_STOP      8    /* stop strings per prompt */
#define ELM_REC_MAX_STOP_LEN  128  /* bytes per stop string (>= 1) */
#define ELM_REC_MAX_PIECE     1024 /* bytes of one token's text */
#define ELM_REC_MAX_ERROR_MSG 1024 /* bytes of an error message (longer ones are truncated) */

/* ---------------------------------------------------------------------------------------------
 * PROMPT: struct elm_rec_prompt, then prompt_len prompt bytes, then n_stop stop strings, each
 * a u32 length (1..ELM_REC_MAX_STOP_LEN) followed by that many bytes. Nothing after the last.
 */

#define ELM_PROMPT_F_ADD_BOS       0x1u /* prepend the model's BOS token */
#define ELM_PROMPT_F_PARSE_SPECIAL 0x2u /* match control-token text (trusted input only) */
#define ELM_PROMPT_F_KEEP_CONTEXT  0x4u /* continue after the session's previous tokens */
#define ELM_PROMPT_F_MESSAGES      0x8u /* the prompt text is a conversation (below), which the
                                           daemon renders with the model's chat template; not
                                           with KEEP_CONTEXT (the history is in the messages) */
#define ELM_PROMPT_F_KNOWN         0xFu

struct elm_rec_prompt {
    uint32_t req_id;        /* chosen by the client, echoed in DONE/ERROR */
    uint32_t flags;         /* ELM_PROMPT_F_*; unknown bits are rejected */
    uint32_t n_predict;     /* most tokens to generate; 0 = until EOS, a stop or the context */
    int32_t top_k;          /* >= 0; 0 disables top-k */
    float temp;             /* finite, >= 0; 0 = greedy */
    float top_p;            /* [0, 1] */
    float min_p;            /* [0, 1] */
    float repeat_penalty;   /* finite, > 0; 1 = off */
    uint32_t repeat_last_n; /* tokens the penalty looks back over */
    uint32_t n_stop;        /* <= ELM_REC_MAX_STOP */
    uint64_t seed;          /* sampler seed */
    uint32_t prompt_len;    /* bytes of prompt text that follow */
    uint32_t reserved;      /* 0 */
};
_Static_assert(sizeof(struct elm_rec_prompt) == 56, "PROMPT fixed part");
_Static_assert(offsetof(struct elm_rec_prompt, seed) == 40, "PROMPT seed offset");

/* A prompt request, decoded or to be encoded. */
struct elm_prompt_msg {
    struct elm_rec_prompt hdr;          /* hdr.prompt_len, hdr.n_stop describe the rest */
    const char *text;                   /* hdr.prompt_len bytes, not NUL-terminated */
    const char *stop[ELM_REC_MAX_STOP]; /* hdr.n_stop entries, not NUL-terminated */
    uint32_t stop_len[ELM_REC_MAX_STOP];
};

/* Payload bytes m encodes to. Returns 0 or -EINVAL (m invalid). */
int elm_rec_prompt_size(const struct elm_prompt_msg *m, uint32_t *out);
/* Appends m to a request ring (gathered, no intermediate copy). Returns 0, -EINVAL or a ring
 * error (-EAGAIN when full: wait for space and retry; -EMSGSIZE when it can never fit). */
int elm_rec_prompt_push(struct elm_ring *r, const struct elm_prompt_msg *m);
/* Encodes m into buf (cap bytes). Returns 0, -EINVAL or -EMSGSIZE. *len written on success. */
int elm_rec_prompt_encode(const struct elm_prompt_msg *m, void *buf, uint32_t cap, uint32_t *len);
/* Decodes a PROMPT payload. out's pointers point into p. Returns 0 or ELM_EPROTO. */
int elm_rec_prompt_decode(const void *p, uint32_t len, struct elm_prompt_msg *out);

/* ---------------------------------------------------------------------------------------------
 * Messages: with ELM_PROMPT_F_MESSAGES the prompt text is 1..ELM_REC_MAX_MESSAGES messages back
 * to back, each u32 role_len (1..ELM_REC_MAX_ROLE_LEN), the role's bytes, u32 content_len, the
 * content's bytes, filling prompt_len exactly.
 */

#define ELM_REC_MAX_MESSAGES 4096
#define ELM_REC_MAX_ROLE_LEN 64

struct elm_rec_message {
    const char *role, *content; /* not NUL-terminated */
    uint32_t role_len, content_len;
};

/* Bytes n messages encode to. Returns 0 or -EINVAL (a count or role length out of bounds, a
 * total beyond UINT32_MAX). */
int elm_rec_messages_size(const struct elm_rec_message *m, uint32_t n, uint32_t *out);
/* Encodes n messages into buf (cap bytes, at least their size). Returns 0, -EINVAL, -EMSGSIZE. */
int elm_rec_messages_encode(const struct elm_rec_message *m, uint32_t n, void *buf, uint32_t cap);
/* Decodes a conversation: *n is its message count; the first min(n, cap) are written to out
 * (may be NULL with cap 0: validation only), pointing into p. Returns 0 or ELM_EPROTO. */
int elm_rec_messages_decode(const void *p, uint32_t len, struct elm_rec_message *out,
                            uint32_t cap, uint32_t *n);

/* ---------------------------------------------------------------------------------------------
 * CANCEL
 */

struct elm_rec_cancel {
    uint32_t req_id;   /* the request to stop */
    uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct elm_rec_cancel) == 8, "CANCEL layout");

int elm_rec_cancel_push(struct elm_ring *r, uint32_t req_id);
int elm_rec_cancel_decode(const void *p, uint32_t len, uint32_t *req_id);

/* ---------------------------------------------------------------------------------------------
 * TOKEN: struct elm_rec_token, then piece_len bytes of the token's text (a UTF-8 fragment: a
 * multi-byte character may be split across tokens; the client concatenates).
 */

struct elm_rec_token {
    int32_t id;         /* >= 0, the token id in the loaded model's vocabulary */
    uint32_t piece_len; /* <= ELM_REC_MAX_PIECE */
};
_Static_assert(sizeof(struct elm_rec_token) == 8, "TOKEN fixed part");

struct elm_token_msg {
    int32_t id;
    uint32_t piece_len;
    const char *piece; /* not NUL-terminated */
};

int elm_rec_token_push(struct elm_ring *r, int32_t id, const void *piece, uint32_t piece_len);
int elm_rec_token_decode(const void *p, uint32_t len, struct elm_token_msg *out);

/* ---------------------------------------------------------------------------------------------
 * DONE
 */

enum elm_done_reason {
    ELM_DONE_EOS = 1,    /* the model produced end-of-sequence */
    ELM_DONE_LENGTH = 2, /* n_predict tokens were generated, or the context is full */
    ELM_DONE_STOP = 3,   /* a stop string matched (its text is not sent) */
    ELM_DONE_CANCEL = 4, /* cancelled by CANCEL or the control channel */
    ELM_DONE_LAST = ELM_DONE_CANCEL,
};

struct elm_rec_done {
    uint32_t req_id;
    uint32_t reason;     /* enum elm_done_reason */
    uint32_t n_prompt;   /* prompt tokens evaluated (history whose KV was kept not counted) */
    uint32_t n_gen;      /* tokens generated (TOKEN records sent) */
    uint64_t t_first_ns; /* from PROMPT received to first token (0 if none) */
    uint64_t t_total_ns; /* from PROMPT received to DONE */
};
_Static_assert(sizeof(struct elm_rec_done) == 32, "DONE layout");

int elm_rec_done_push(struct elm_ring *r, const struct elm_rec_done *d);
int elm_rec_done_decode(const void *p, uint32_t len, struct elm_rec_done *out);

/* ---------------------------------------------------------------------------------------------
 * ERROR: struct elm_rec_error, then msg_len bytes of message (UTF-8, no NUL).
 */

struct elm_rec_error {
    uint32_t req_id;
    int32_t code;      /* < 0: -errno or ELM_E* */
    uint32_t msg_len;  /* <= ELM_REC_MAX_ERROR_MSG */
    uint32_t reserved; /* 0 */
};
_Static_assert(sizeof(struct elm_rec_error) == 16, "ERROR fixed part");

struct elm_error_msg {
    uint32_t req_id;
    int32_t code;
    uint32_t msg_len;
    const char *msg; /* not NUL-terminated */
};

/* msg may be NULL; a message longer than ELM_REC_MAX_ERROR_MSG is truncated (an error report
 * should not fail for being verbose). code must be < 0. */
int elm_rec_error_push(struct elm_ring *r, uint32_t req_id, int code, const char *msg);
int elm_rec_error_decode(const void *p, uint32_t len, struct elm_error_msg *out);

#endif
