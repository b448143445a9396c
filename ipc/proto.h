/* proto.h — the control-message codec spoken over ZeroMQ between clients and elmd.
 *
 * One ZeroMQ frame is one message (docs/protocol.md is the full specification):
 *
 *   header (12 bytes): "ELM" | u8 version | u16 command | u16 flags | u32 request id
 *   body:              a sequence of fields {u16 tag | u16 type | u32 len | len bytes value}
 *
 * All integers little endian; no alignment or padding anywhere. A reply has flag REPLY, the
 * request's command and request id, a STATUS field (0 or a negative -errno / ELM_E* code) and
 * optionally a MESSAGE. A frame that cannot be attributed to a known command is answered with
 * command ERROR. Every command has a schema (which tags it allows, which are required, which
 * repeat); each tag has one value type everywhere. The decoder enforces all of it and returns
 * ELM_EPROTO for anything else: frames are untrusted input from another process.
 *
 * Extension: a tag with bit 0x8000 set (ELM_TAG_OPTIONAL) may be skipped by a receiver that does
 * not know it, so a newer peer can add such fields within a version (elm_proto_opt_tag below).
 * Unknown tags without the bit, unknown commands, unknown flags and unknown versions are errors.
 * Incompatible changes bump the version, negotiated once per connection with HELLO (see
 * elm_proto_negotiate).
 *
 * Versions: HELLO and ERROR have a frozen layout and are accepted whatever their version byte
 * (so a client of any version can negotiate and understand why it was refused); every other
 * frame must carry a version in [ELM_PROTO_VERSION_MIN, ELM_PROTO_VERSION_MAX].
 */
#ifndef ELM_IPC_PROTO_H
#define ELM_IPC_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "the codec assumes a little-endian host");

/* 2: a session's region is a sealed memfd fetched over the region socket (ipc/region.h), no
 * longer a named object: OPEN_SESSION's reply has REGION_SOCKET and REGION_TOKEN, not SHM_NAME.
 * A version-1 client could not map its session, so 1 is not spoken any more. */
#define ELM_PROTO_VERSION_MIN 2 /* oldest version this build speaks */
#define ELM_PROTO_VERSION_MAX 2 /* newest version this build speaks */
#define ELM_PROTO_HDR_SIZE    12
#define ELM_PROTO_FIELD_HDR   8
#define ELM_PROTO_MAX_FRAME   65536 /* bytes; larger frames are rejected unread */
#define ELM_PROTO_MAX_STR     4095  /* bytes of a str value: fits a PATH_MAX buffer with NUL */

enum elm_proto_flag {
    ELM_PROTO_F_REPLY = 0x1, /* a reply (from the daemon); otherwise a request */
    ELM_PROTO_F_KNOWN = 0x1,
};

enum elm_proto_cmd {
    ELM_CMD_HELLO = 1,         /* version negotiation */
    ELM_CMD_STATUS = 2,        /* daemon and model state */
    ELM_CMD_LOAD = 3,          /* load a model file */
    ELM_CMD_UNLOAD = 4,        /* drop the model */
    ELM_CMD_OPEN_SESSION = 5,  /* create a session and its shared region */
    ELM_CMD_CLOSE_SESSION = 6, /* end a session */
    ELM_CMD_CANCEL = 7,        /* cancel a session's running request */
    ELM_CMD_SESSIONS = 8,      /* list sessions */
    ELM_CMD_STATS = 9,         /* counters */
    ELM_CMD_SHUTDOWN = 10,     /* stop the daemon */
    ELM_CMD_ERROR = 63,        /* reply only: the request could not be attributed/decoded */
    ELM_CMD_LIMIT = 64,        /* command ids are < this */
};

enum elm_proto_type {
    ELM_PT_U64 = 1,   /* 8 bytes */
    ELM_PT_I64 = 2,   /* 8 bytes, two's complement */
    ELM_PT_F64 = 3,   /* 8 bytes IEEE-754 binary64, finite */
    ELM_PT_STR = 4,   /* 0..ELM_PROTO_MAX_STR bytes, no NUL, not NUL-terminated */
    ELM_PT_BYTES = 5, /* opaque */
    ELM_PT_GROUP = 6, /* a nested field sequence (one level deep), e.g. one session in a list */
};

#define ELM_TAG_OPTIONAL 0x8000 /* receivers that do not know the tag skip the field */

/* Field tags. The comment gives the value type; each tag has that type in every message. */
enum elm_proto_tag {
    ELM_TAG_STATUS = 1,            /* i64: 0 or -errno / ELM_E* (replies only) */
    ELM_TAG_MESSAGE = 2,           /* str: detail for humans */
    ELM_TAG_VERSION_MIN = 3,       /* u64 */
    ELM_TAG_VERSION_MAX = 4,       /* u64 */
    ELM_TAG_VERSION = 5,           /* u64: the version chosen */
    ELM_TAG_CLIENT_NAME = 6,       /* str */
    ELM_TAG_DAEMON_VERSION = 7,    /* str: e.g. "0.1.0" */
    ELM_TAG_PID = 8,               /* u64 */
    ELM_TAG_PATH = 9,              /* str: model file path */
    ELM_TAG_MODEL_NAME = 10,       /* str */
    ELM_TAG_N_CTX = 11,            /* u64: context tokens */
    ELM_TAG_N_THREADS = 12,        /* u64 */
    ELM_TAG_N_VOCAB = 13,          /* u64 */
    ELM_TAG_SESSION_ID = 14,       /* u64 */
    ELM_TAG_REGION_SOCKET = 15,    /* str: path of the region socket (ipc/region.h) */
    ELM_TAG_SHM_SIZE = 16,         /* u64: bytes of the session region */
    ELM_TAG_REQ_RING_SIZE = 17,    /* u64: request ring capacity */
    ELM_TAG_EVT_RING_SIZE = 18,    /* u64: event ring capacity */
    ELM_TAG_SESSION = 19,          /* group: one session (SESSIONS reply) */
    ELM_TAG_STATE = 20,            /* u64: enum elm_proto_session_state */
    ELM_TAG_UPTIME_NS = 21,        /* u64 */
    ELM_TAG_N_SESSIONS = 22,       /* u64 */
    ELM_TAG_MAX_SESSIONS = 23,     /* u64 */
    ELM_TAG_N_REQUESTS = 24,       /* u64 */
    ELM_TAG_N_PROMPT_TOKENS = 25,  /* u64 */
    ELM_TAG_N_GEN_TOKENS = 26,     /* u64 */
    ELM_TAG_PROMPT_NS = 27,        /* u64: time spent evaluating prompts */
    ELM_TAG_GEN_NS = 28,           /* u64: time spent generating */
    ELM_TAG_N_ERRORS = 29,         /* u64 */
    ELM_TAG_GEN_TOKENS_PER_S = 30, /* f64 */
    ELM_TAG_RSS_BYTES = 31,        /* u64 */
    ELM_TAG_LOAD_NS = 32,          /* u64 */
    ELM_TAG_AGE_NS = 33,           /* u64: time since the session was opened */
    ELM_TAG_KEEP_ALIVE = 34,       /* str (LOAD, OPEN_SESSION): "5m", "0", "-1" */
    ELM_TAG_REGION_TOKEN = 35,     /* bytes: ELM_REGION_TOKEN_LEN, shown to the region socket */
    ELM_TAG_LIMIT = 36,            /* known (non-optional) tags are < this */
};

/* Optional fields: elmd's diagnostics in STATUS, STATS and SESSIONS replies. They carry
 * ELM_TAG_OPTIONAL, so a receiver that does not know one skips it, and a newer daemon may add
 * more within a version; a receiver that knows one checks its type and value like any other
 * field. They are not bound to a command's schema (the daemon sends what it has). Their names
 * and types are defined by their lines in the field tables (ipc/fields.c); the names below are
 * for code that refers to a tag by itself. The comments give the type, for readers. */
enum elm_proto_opt_tag {
    /* STATUS: the model */
    ELM_TAG_ARCH = ELM_TAG_OPTIONAL | 0x100, /* str: "llama", "qwen2" */
    ELM_TAG_KERNEL,                          /* str: kernel variant, "avx2"... */
    ELM_TAG_N_PARAMS,                        /* u64: parameters (tensor elements) */
    ELM_TAG_N_LAYER,                         /* u64 */
    ELM_TAG_N_EMBD,                          /* u64 */
    ELM_TAG_N_CTX_TRAIN,                     /* u64 */
    ELM_TAG_KV_TYPE,                         /* str: "f16", "f32" or "q8_0" */
    /* STATUS: residency of the weights */
    ELM_TAG_WEIGHT_BYTES, /* u64: bytes of the data section */
    ELM_TAG_PINNED_BYTES, /* u64: bytes locked in memory (0: not pinned) */
    ELM_TAG_HUGE_BYTES,   /* u64: bytes on huge pages */
    ELM_TAG_HUGE_SHARE,   /* f64: huge_bytes / mapping size, 0..1 */
    ELM_TAG_BACKING,      /* str: "hugetlb", "thp" or "plain" */
    ELM_TAG_O_DIRECT,     /* u64: 1 when read with O_DIRECT */
    ELM_TAG_IO_URING,     /* u64: 1 when read with io_uring */
    ELM_TAG_LOAD_GBPS,    /* f64: read throughput, GB/s (1e9 bytes) */
    ELM_TAG_LOAD_NOTES,   /* str: fallbacks taken while loading */
    /* STATUS: a load in progress, or the last one that failed */
    ELM_TAG_LOADING_PATH, /* str */
    ELM_TAG_LOAD_DONE,    /* u64: bytes read so far */
    ELM_TAG_LOAD_TOTAL,   /* u64: bytes to read */
    ELM_TAG_LOAD_ERROR,   /* str */
    /* STATUS: the KV pool */
    ELM_TAG_KV_BYTES,    /* u64: bytes of the pool */
    ELM_TAG_KV_TOKENS,   /* u64: positions holding sessions' tokens */
    ELM_TAG_KV_CAPACITY, /* u64: positions the pool holds (pages x page positions) */
    /* STATS (and SESSIONS groups, per session) */
    ELM_TAG_N_MALFORMED,     /* u64: control frames that failed to decode */
    ELM_TAG_N_CONTROL,       /* u64: control frames received */
    ELM_TAG_N_DROPPED,       /* u64: replies that could not be sent */
    ELM_TAG_N_STEPS,         /* u64: forward passes */
    ELM_TAG_N_CLIENT_DEATHS, /* u64: sessions freed because the client died */
    ELM_TAG_N_RING_ERRORS,   /* u64: sessions closed for a bad record */
    ELM_TAG_TTFT_P50_NS,     /* u64: time to first token percentiles */
    ELM_TAG_TTFT_P90_NS,
    ELM_TAG_TTFT_P99_NS,
    ELM_TAG_ITL_P50_NS, /* u64: inter-token latency percentiles */
    ELM_TAG_ITL_P90_NS,
    ELM_TAG_ITL_P99_NS,
    ELM_TAG_N_REQUESTS_SESSION, /* u64 (SESSIONS groups): requests finished */
    /* STATUS: the KV pool's pages */
    ELM_TAG_KV_PAGES,       /* u64: pages in the pool */
    ELM_TAG_KV_PAGES_FREE,  /* u64: pages no session holds */
    ELM_TAG_KV_PAGE_BYTES,  /* u64: bytes of one page */
    ELM_TAG_KV_PAGE_TOKENS, /* u64: positions of one page */
    ELM_TAG_KV_BACKING,     /* str: "hugetlb", "thp" or "plain" */
    ELM_TAG_KV_LOCKED,      /* u64: 1 when the pool is locked in memory */
    ELM_TAG_N_QUEUED,       /* u64: requests waiting for KV memory */
    /* STATS: admission and prefix reuse */
    ELM_TAG_N_BUSY,            /* u64: requests refused ELM_EBUSY: no KV memory in time */
    ELM_TAG_N_PROMPT_REUSED,   /* u64: prompt tokens whose KV was kept from the history */
    ELM_TAG_N_KV_RECLAIMED,    /* u64: idle sessions whose pages were taken back */
    ELM_TAG_N_SESSIONS_OPENED, /* u64: sessions opened since the daemon started */
    ELM_TAG_N_PREEMPTIONS,     /* u64: running requests preempted for KV memory */
    ELM_TAG_N_RECOMPUTED,      /* u64: tokens the preempted requests evaluated again */
    /* several resident models */
    ELM_TAG_N_MODELS,           /* u64 (STATUS, STATS): models resident */
    ELM_TAG_MODELS,             /* str: each resident model; STATUS: its state and size; STATS:
                                   its requests and tokens */
    ELM_TAG_RESIDENT_BYTES,     /* u64 (STATUS): weights + KV pools of the resident models */
    ELM_TAG_MAX_RESIDENT_BYTES, /* u64 (STATUS): the budget */
    ELM_TAG_LOAD_WAIT,          /* str (STATUS): what a load waiting for room waits for */
    ELM_TAG_N_UNLOADS,          /* u64 (STATS): models unloaded (asked, keep_alive, budget) */
    /* STATS: how the compute threads waited (common/pool.h's elm_pool_stats) */
    ELM_TAG_N_POOL_BUSY,        /* u64: samples that found the machine busy */
    ELM_TAG_N_POOL_SAMPLES,     /* u64: samples of the machine */
    ELM_TAG_N_POOL_SLEEPS,      /* u64: times a compute thread slept */
    ELM_TAG_N_POOL_SPIN_SLEEPS, /* u64: of which after spinning in vain */
    ELM_TAG_POOL_DELAY_1,       /* u64: samples by run-delay share: < 1 % ... */
    ELM_TAG_POOL_DELAY_10,      /* < 10 % */
    ELM_TAG_POOL_DELAY_50,      /* < 50 % */
    ELM_TAG_POOL_DELAY_MORE,    /* more */
    ELM_TAG_POOL_GAP_01,        /* u64: gaps between parallel calls: < 0.1 ms ... */
    ELM_TAG_POOL_GAP_1,         /* < 1 ms */
    ELM_TAG_POOL_GAP_10,        /* < 10 ms */
    ELM_TAG_POOL_GAP_MORE,      /* more */
    ELM_TAG_N_POOL_PROBES,      /* u64: auto, busy: probes (a few calls spun) */
    ELM_TAG_N_POOL_PROBES_FREE, /* u64: of which found a free core for each thread */
    ELM_TAG_MATRIX_UNIT,        /* str (STATUS): "AMX" where the kernels hand it tiles */
    ELM_TAG_OPT_END,            /* known optional tags are < this */
};

enum elm_proto_session_state {
    ELM_SESSION_STATE_IDLE = 1,    /* no request queued */
    ELM_SESSION_STATE_RUNNING = 2, /* a request is being evaluated or generated */
    ELM_SESSION_STATE_CLOSING = 3, /* close requested, resources not yet released */
};

/* ---------------------------------------------------------------------------------------------
 * Decoding
 */

struct elm_proto_hdr {
    uint8_t version;
    uint16_t cmd;
    uint16_t flags;
    uint32_t req_id;
};

/* A validated field sequence (a message body or a group). Points into the caller's frame. */
struct elm_proto_view {
    const unsigned char *p;
    uint32_t len;
};

struct elm_proto_msg {
    struct elm_proto_hdr hdr;
    int32_t status;             /* replies: the STATUS field; requests: 0 */
    struct elm_proto_view body; /* read with the elm_proto_get_* functions */
};


/* Field accessors on a decoded body or group. The first field with the tag is returned.
 * Return 0, -ENOENT (absent) or ELM_EPROTO (the tag has another type). Outputs only on
 * success; str/bytes outputs point into the frame. */
int elm_proto_get_u64(const struct elm_proto_view *v, uint16_t tag, uint64_t *out);
int elm_proto_get_i64(const struct elm_proto_view *v, uint16_t tag, int64_t *out);
int elm_proto_get_f64(const struct elm_proto_view *v, uint16_t tag, double *out);
int elm_proto_get_str(const struct elm_proto_view *v, uint16_t tag, const char **s, uint32_t *len);
int elm_proto_get_bytes(const struct elm_proto_view *v, uint16_t tag, const void **p,
                        uint32_t *len);
/* Copies a str field into buf with a NUL. -ENOSPC when it does not fit (buf untouched). */
int elm_proto_copy_str(const struct elm_proto_view *v, uint16_t tag, char *buf, size_t cap);
/* Iterates the groups with this tag: start with *cursor = 0; returns 0 with *out set to the
 * next group and *cursor advanced, -ENOENT when there are no more. */
int elm_proto_next_group(const struct elm_proto_view *v, uint16_t tag, uint32_t *cursor,
                         struct elm_proto_view *out);

/* ---------------------------------------------------------------------------------------------
 * Encoding: a growable buffer and a builder that writes one frame into it.
 *
 * Errors are sticky: after the first failure (-ENOMEM, -EMSGSIZE past ELM_PROTO_MAX_FRAME,
 * -EINVAL) every put is a no-op returning that error, and elm_proto_finish reports it, so a
 * sequence of puts can be checked once at the end.
 */

struct elm_proto_buf {
    unsigned char *data; /* owned; valid until the next begin or elm_proto_buf_fini */
    size_t len;
    size_t cap;
    size_t group_at; /* offset of the open group's field header, or 0 */
    int err;         /* sticky error */
};

void elm_proto_buf_init(struct elm_proto_buf *b);
/* Frees the buffer and resets *b. NULL-safe. */
void elm_proto_buf_fini(struct elm_proto_buf *b);

/* Starts a frame (discarding any previous one). Returns 0 or the sticky error. */
int elm_proto_begin(struct elm_proto_buf *b, uint8_t version, uint16_t cmd, uint16_t flags,
                    uint32_t req_id);
/* Starts the reply to req: same version, command and request id, flag REPLY, STATUS = status
 * and, when msg is not NULL, MESSAGE = msg (truncated to ELM_PROTO_MAX_STR). */
int elm_proto_begin_reply(struct elm_proto_buf *b, const struct elm_proto_msg *req, int status,
                          const char *msg);
/* Starts an ERROR reply (status < 0) for a request that could not be decoded; req_id from
 * elm_proto_decode_header, or 0 when even the header was unreadable. */
int elm_proto_begin_error(struct elm_proto_buf *b, uint32_t req_id, int status, const char *msg);

int elm_proto_put_u64(struct elm_proto_buf *b, uint16_t tag, uint64_t v);
int elm_proto_put_i64(struct elm_proto_buf *b, uint16_t tag, int64_t v);
int elm_proto_put_f64(struct elm_proto_buf *b, uint16_t tag, double v);
int elm_proto_put_str(struct elm_proto_buf *b, uint16_t tag, const char *s);
int elm_proto_put_strn(struct elm_proto_buf *b, uint16_t tag, const char *s, size_t n);
int elm_proto_put_bytes(struct elm_proto_buf *b, uint16_t tag, const void *p, size_t n);
/* Opens a group field; the following puts go inside it until elm_proto_group_end. Groups do
 * not nest (-EINVAL). */
int elm_proto_group_begin(struct elm_proto_buf *b, uint16_t tag);
int elm_proto_group_end(struct elm_proto_buf *b);


/* ---------------------------------------------------------------------------------------------
 * Version negotiation and names
 */

/* Chooses the highest version in both [our_min, our_max] and [peer_min, peer_max]. Returns 0
 * with *chosen set; ELM_EPROTO when the ranges are disjoint or the peer's is malformed (min 0 or
 * min > max; a max beyond ours is fine: a newer peer); -EINVAL when ours is not within 1..255. */
int elm_proto_negotiate_range(uint64_t our_min, uint64_t our_max, uint64_t peer_min,
                              uint64_t peer_max, uint8_t *chosen);
/* The same with our range = [ELM_PROTO_VERSION_MIN, ELM_PROTO_VERSION_MAX]. The daemon calls
 * it with the client's HELLO fields; the client checks the reply's VERSION with
 * elm_proto_version_is_supported. */
int elm_proto_negotiate(uint64_t peer_min, uint64_t peer_max, uint8_t *chosen);
bool elm_proto_version_is_supported(uint64_t version);


#endif
