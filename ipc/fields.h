/* fields.h — the control protocol's field tables: one line per field of every reply that maps to
 * a public struct (STATUS, STATS, one SESSIONS entry, LOAD), and of every request that carries
 * fields (HELLO, LOAD, OPEN_SESSION, CLOSE_SESSION and CANCEL).
 *
 * A line says everything about a field once: its wire tag, its name on the wire, the struct
 * member that holds it (offset, C type, size), which values are valid, whether the reply must
 * carry it, and how elmctl shows it (JSON key, text row and fragment, unit). From these tables
 *   - the codec knows the names and value types of the optional tags and the schemas of these
 *     replies (ipc/proto.c),
 *   - elmd writes its replies from a filled public struct (elm_fields_put),
 *   - libelmclient reads them back into the same struct (elm_fields_get),
 *   - elmctl prints them as text and JSON (cli/report.c),
 *   - tests/ipc/test_fields.c round-trips every line.
 * Requests go the other way: libelmclient fills a request struct (below) and writes it with
 * elm_fields_put; elmd reads it with elm_fields_get_request, which checks every value against
 * its line's bounds and names the field and the bound when one is out; elmctl takes the bounds
 * of its options from the same lines (elm_field_bounds). The decoder uses these tables as the
 * requests' schemas.
 * So a new status or stats value is a member in the public struct (include/elm/client.h), a name
 * for its tag in enum elm_proto_opt_tag (ipc/proto.h), a line here (ipc/fields.c), and the line
 * in elmd that computes it (docs/protocol.md 1.8 shows the diff). New fields take an optional
 * tag: older peers skip them, so the protocol version stays.
 *
 * Every field's default is zero: "" for strings, false, 0. A receiver starts from a zeroed
 * struct, so an absent field reads as its default.
 */
#ifndef ELM_IPC_FIELDS_H
#define ELM_IPC_FIELDS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ipc/proto.h"

/* How the member is stored in its struct. Every integer kind travels as u64. */
enum elm_field_ctype {
    ELM_CT_U64 = 1, /* uint64_t */
    ELM_CT_U32,     /* uint32_t */
    ELM_CT_INT,     /* int */
    ELM_CT_LONG,    /* long */
    ELM_CT_BOOL,    /* bool: 0 or 1 on the wire */
    ELM_CT_F64,     /* double: f64 on the wire */
    ELM_CT_STR,     /* char[size], NUL-terminated: str on the wire, cut to size - 1 when read */
};

enum elm_field_flag {
    ELM_FIELD_REQUIRED = 0x1, /* a successful reply must carry it (base tags only: the decoder
                                 checks it, and optional tags may always be left out) */
    ELM_FIELD_REPEAT = 0x2,   /* may appear more than once (schemas of groups in a list) */
    ELM_FIELD_NONZERO = 0x4,  /* sent only when not its default; elmctl's text skips it too */
    ELM_FIELD_WHOLE = 0x8,    /* strings: one longer than the buffer is refused, never cut */
};

/* How elmctl shows a value in its text output (JSON always has the plain number or string). */
enum elm_field_unit {
    ELM_UNIT_PLAIN = 0, /* the integer, the string, or a double with one decimal */
    ELM_UNIT_SECONDS,   /* nanoseconds shown as "1.234 s" */
    ELM_UNIT_DURATION,  /* nanoseconds shown as "1h 2m 3s" */
    ELM_UNIT_MS,        /* nanoseconds shown as milliseconds, "12.3" */
    ELM_UNIT_BYTES,     /* "1.5 MiB" */
    ELM_UNIT_COUNT,     /* a large count, "1.2M" */
    ELM_UNIT_SHARE,     /* a fraction 0..1 shown as "42%" */
    ELM_UNIT_YESNO,     /* "yes" or "no" */
    ELM_UNIT_NAMES,     /* an index into the field's names[], e.g. a session state */
};

struct elm_field {
    uint16_t tag;      /* wire tag (enum elm_proto_tag or elm_proto_opt_tag) */
    uint8_t ctype;     /* enum elm_field_ctype */
    uint8_t flags;     /* enum elm_field_flag */
    uint8_t section;   /* 0: always sent; else a bit the sender passes to elm_fields_put */
    uint8_t unit;      /* enum elm_field_unit */
    uint32_t size;     /* bytes of the member (a string's buffer) */
    size_t offset;     /* of the member in the table's struct */
    uint64_t min, max; /* integers: the values a receiver accepts (max 0: the C type's) */
    const char *name;  /* wire name (elm_proto_tag_name); NULL: the same as json */
    const char *json;  /* elmctl --json key: the member's name; lines sharing one form an array */
    const char *row;   /* elmctl's text row (or column) label; NULL: not in the text */
    const char *text;  /* the row's fragment, "%s" standing for the value (columns: unused) */
    int8_t width;      /* column width in lists (< 0: left-aligned, cut; 0: unpadded) */
    const char *const *names; /* ELM_UNIT_NAMES: names[value], for values min..max */
};

/* One table: the fields of one reply (or of one group in a reply), in the order elmctl shows
 * them. At most 64 fields (the decoder keeps one bit per field while it scans). */
struct elm_fields {
    const char *what; /* "status", "stats"... for messages */
    const struct elm_field *f;
    unsigned n;
    size_t size; /* of the struct the offsets are in */
};

/* The reply tables. Their structs are in include/elm/client.h. */
extern const struct elm_fields elm_fields_status;  /* STATUS: struct elm_daemon_status */
extern const struct elm_fields elm_fields_stats;   /* STATS: struct elm_daemon_stats */
extern const struct elm_fields elm_fields_session; /* one SESSION group: elm_session_info */
extern const struct elm_fields elm_fields_load;    /* LOAD: struct elm_load_result */
/* All of them, NULL-terminated (for lookups by tag and for tests). */
extern const struct elm_fields *const elm_fields_all[];

/* The request structs: internal to elm (libelmclient builds them, elmd reads them), so they
 * live here, not in include/elm/. A zero integer means "elmd's default" wherever a line is
 * NONZERO (then it is not sent at all). */
struct elm_hello_req {
    uint64_t version_min, version_max; /* the client's protocol range */
    char client_name[64];              /* for logs; cut */
    uint64_t pid;                      /* the client's; informative only */
};

struct elm_load_req {
    char path[ELM_PROTO_MAX_STR + 1]; /* absolute, resolved by the client */
    uint32_t n_ctx;                   /* context tokens per session; 0: elmd's */
    uint32_t n_threads;               /* compute threads; 0: elmd's */
    char name[64];                    /* what requests call it; "": the file's stem */
    char keep_alive[32];              /* "5m", "0", "-1"; "": elmd's keep_alive */
};

struct elm_open_req {
    uint64_t n_ctx;         /* 0: the model's; checked by elmd against the KV pool, not here */
    uint32_t req_ring_size; /* bytes; 0: the default (power of two, checked by elmd) */
    uint32_t evt_ring_size; /* bytes; 0: the default */
    char client_name[64];   /* the same size as elm_session_info's; cut */
    long pid;               /* the client's, watched by elmd to free the session if it dies */
    char model[64];         /* the resident model's name; "": the default (first loaded) */
    char keep_alive[32];    /* the model's keep_alive from now on; "": unchanged */
};

struct elm_unload_req {
    char name[64]; /* the model; "": every model */
};

struct elm_session_req {
    uint64_t session_id; /* CLOSE_SESSION and CANCEL */
};

#define ELM_REQ_MAX_CTX     (1u << 20)  /* LOAD: context tokens */
#define ELM_REQ_MAX_THREADS 1024u       /* LOAD: compute threads */
#define ELM_REQ_MAX_RING    (64u << 20) /* OPEN_SESSION, per ring: a session must not pin GiBs */

/* The request tables (the schemas of the requests in ipc/proto.c). */
extern const struct elm_fields elm_fields_hello_req;   /* HELLO: struct elm_hello_req */
extern const struct elm_fields elm_fields_load_req;    /* LOAD: struct elm_load_req */
extern const struct elm_fields elm_fields_open_req;    /* OPEN_SESSION: struct elm_open_req */
extern const struct elm_fields elm_fields_session_req; /* CLOSE_SESSION, CANCEL */
extern const struct elm_fields elm_fields_unload_req;  /* UNLOAD: struct elm_unload_req */
/* All of them, NULL-terminated. Kept apart from elm_fields_all: a base tag (N_CTX, PID) may
 * carry other bounds in a request than in a reply, and elm_fields_find looks up replies. */
extern const struct elm_fields *const elm_fields_requests[];

/* Sections of the STATUS table: the model's fields, and a load in progress. */
enum elm_fields_status_section {
    ELM_STATUS_MODEL = 0x1,
    ELM_STATUS_LOADING = 0x2,
};

/* Appends t's fields to the frame being built, read from obj (a struct of t's type, borrowed):
 * every field whose section is 0 or in sections, except NONZERO ones holding their default.
 * Returns 0 or the builder's sticky error. */
int elm_fields_put(struct elm_proto_buf *b, const struct elm_fields *t, const void *obj,
                   unsigned sections);

/* Reads t's fields from a decoded body or group into obj (the caller's struct of t's type,
 * zeroed by the caller: absent fields keep their default). Strings longer than their buffer are
 * cut, unless the line is WHOLE. Returns 0, or ELM_EPROTO when a field has the wrong type or a
 * value out of its bounds or a required field is absent (obj is then partly written). */
int elm_fields_get(const struct elm_proto_view *v, const struct elm_fields *t, void *obj);

/* Reads a request's fields from a decoded body into obj (zeroed by the caller), checking every
 * value against its line: 0; -EINVAL when an integer is out of its bounds or a WHOLE string
 * does not fit its buffer, with msg (cap bytes) saying which field and which bound; ELM_EPROTO
 * when a field has the wrong type or a required one is absent. obj is partly written on error. */
int elm_fields_get_request(const struct elm_proto_view *v, const struct elm_fields *t, void *obj,
                           char *msg, size_t cap);

/* The line of t with this tag, or NULL. */
const struct elm_field *elm_fields_line(const struct elm_fields *t, uint16_t tag);
/* The values t's line for tag accepts: 0 with *min and *max set, or -ENOENT. */
int elm_field_bounds(const struct elm_fields *t, uint16_t tag, uint64_t *min, uint64_t *max);

/* The first line with this tag in any reply table, or NULL. */
const struct elm_field *elm_fields_find(uint16_t tag);
/* The wire type of a line (enum elm_proto_type). */
int elm_field_type(const struct elm_field *f);

/* The member of f in obj: integers (and bools) widened to u64 (a long or int as its two's
 * complement), doubles, strings. Each only for its own kinds of ctype. */
uint64_t elm_field_u64(const struct elm_field *f, const void *obj);
double elm_field_f64(const struct elm_field *f, const void *obj);
const char *elm_field_str(const struct elm_field *f, const void *obj);
/* Whether the member holds its default (0, false, ""). */
bool elm_field_is_default(const struct elm_field *f, const void *obj);
/* Whether a signed C type (int, long): print it signed. */
bool elm_field_is_signed(const struct elm_field *f);

#endif
