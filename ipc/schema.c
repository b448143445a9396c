/* schema.c — what each control message may carry, and the validating decoder.
 *
 * The schema is data: one table gives each base tag its name and value type, one gives each
 * command the fields its request and its reply may carry. The requests, and the replies that fill
 * a public struct (STATUS, STATS, LOAD, a SESSIONS entry), use their field tables (ipc/fields.c)
 * as schemas, and those tables also name and type the optional tags. The decoder walks a frame
 * once, checks every field header against the bytes that remain before touching the value, checks
 * values by type and fields against the command's schema, and recurses one level into groups. Every
 * loop advances by at least one field header, so it ends; every read is bounded by the frame
 * length. elm_proto_finish checks each frame the builder (ipc/proto.c) made with the same decoder.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "ipc/fields.h"
#include "ipc/le.h"
#include "ipc/proto.h"
#include "ipc/schema.h"

/* ---------------------------------------------------------------------------------------------
 * Schema
 */

struct tag_def {
    const char *name;
    uint8_t type; /* enum elm_proto_type; 0 = not a tag */
};

static const struct tag_def tag_defs[ELM_TAG_LIMIT] = {
    [ELM_TAG_STATUS] = {"status", ELM_PT_I64},
    [ELM_TAG_MESSAGE] = {"message", ELM_PT_STR},
    [ELM_TAG_VERSION_MIN] = {"version_min", ELM_PT_U64},
    [ELM_TAG_VERSION_MAX] = {"version_max", ELM_PT_U64},
    [ELM_TAG_VERSION] = {"version", ELM_PT_U64},
    [ELM_TAG_CLIENT_NAME] = {"client_name", ELM_PT_STR},
    [ELM_TAG_DAEMON_VERSION] = {"daemon_version", ELM_PT_STR},
    [ELM_TAG_PID] = {"pid", ELM_PT_U64},
    [ELM_TAG_PATH] = {"path", ELM_PT_STR},
    [ELM_TAG_MODEL_NAME] = {"model_name", ELM_PT_STR},
    [ELM_TAG_N_CTX] = {"n_ctx", ELM_PT_U64},
    [ELM_TAG_N_THREADS] = {"n_threads", ELM_PT_U64},
    [ELM_TAG_N_VOCAB] = {"n_vocab", ELM_PT_U64},
    [ELM_TAG_SESSION_ID] = {"session_id", ELM_PT_U64},
    [ELM_TAG_REGION_SOCKET] = {"region_socket", ELM_PT_STR},
    [ELM_TAG_SHM_SIZE] = {"shm_size", ELM_PT_U64},
    [ELM_TAG_REQ_RING_SIZE] = {"req_ring_size", ELM_PT_U64},
    [ELM_TAG_EVT_RING_SIZE] = {"evt_ring_size", ELM_PT_U64},
    [ELM_TAG_SESSION] = {"session", ELM_PT_GROUP},
    [ELM_TAG_STATE] = {"state", ELM_PT_U64},
    [ELM_TAG_UPTIME_NS] = {"uptime_ns", ELM_PT_U64},
    [ELM_TAG_N_SESSIONS] = {"n_sessions", ELM_PT_U64},
    [ELM_TAG_MAX_SESSIONS] = {"max_sessions", ELM_PT_U64},
    [ELM_TAG_N_REQUESTS] = {"n_requests", ELM_PT_U64},
    [ELM_TAG_N_PROMPT_TOKENS] = {"n_prompt_tokens", ELM_PT_U64},
    [ELM_TAG_N_GEN_TOKENS] = {"n_gen_tokens", ELM_PT_U64},
    [ELM_TAG_PROMPT_NS] = {"prompt_ns", ELM_PT_U64},
    [ELM_TAG_GEN_NS] = {"gen_ns", ELM_PT_U64},
    [ELM_TAG_N_ERRORS] = {"n_errors", ELM_PT_U64},
    [ELM_TAG_GEN_TOKENS_PER_S] = {"gen_tokens_per_s", ELM_PT_F64},
    [ELM_TAG_RSS_BYTES] = {"rss_bytes", ELM_PT_U64},
    [ELM_TAG_LOAD_NS] = {"load_ns", ELM_PT_U64},
    [ELM_TAG_REGION_TOKEN] = {"region_token", ELM_PT_BYTES},
    [ELM_TAG_AGE_NS] = {"age_ns", ELM_PT_U64},
    [ELM_TAG_KEEP_ALIVE] = {"keep_alive", ELM_PT_STR},
};

/* The known tag's name and value type: base tags from tag_defs, optional ones from the field
 * tables (ipc/fields.c), where each is defined by the line that maps it to a struct member. */
static bool tag_lookup(uint16_t tag, struct tag_def *out)
{
    if (tag < ELM_TAG_LIMIT) {
        *out = tag_defs[tag];
        return out->type != 0;
    }
    const struct elm_field *f = (tag & ELM_TAG_OPTIONAL) ? elm_fields_find(tag) : NULL;
    if (!f)
        return false;
    out->name = f->name ? f->name : f->json;
    out->type = (uint8_t)elm_field_type(f);
    return true;
}

#define RQ ELM_FIELD_REQUIRED /* required (in a reply: required when STATUS is 0) */
#define RP ELM_FIELD_REPEAT   /* may appear more than once */

/* A schema is a field table (const struct elm_fields *): requests and the replies that fill a
 * public struct use theirs (ipc/fields.c); the other replies list their tags here. NULL: no
 * fields. */
// clang-format off
#define R(t, fl) {.tag = (t), .flags = (fl)}
#define SCHEMA(...) \
    (&(const struct elm_fields){.f = (const struct elm_field[]){__VA_ARGS__}, \
     .n = sizeof((const struct elm_field[]){__VA_ARGS__}) / sizeof(struct elm_field)})
#define NO_FIELDS NULL
// clang-format on

/* Replies implicitly also carry STATUS (required) and MESSAGE (optional). */
struct cmd_def {
    const char *name;
    bool is_request; /* false: reply-only (ERROR) */
    const struct elm_fields *req;
    const struct elm_fields *rep;
};

static const struct cmd_def cmd_defs[ELM_CMD_LIMIT] = {
    [ELM_CMD_HELLO] = {"hello", true, &elm_fields_hello_req,
                       SCHEMA(R(ELM_TAG_VERSION, RQ), R(ELM_TAG_VERSION_MIN, 0),
                              R(ELM_TAG_VERSION_MAX, 0), R(ELM_TAG_DAEMON_VERSION, 0),
                              R(ELM_TAG_PID, 0))},
    [ELM_CMD_STATUS] = {"status", true, NO_FIELDS, &elm_fields_status},
    [ELM_CMD_LOAD] = {"load", true, &elm_fields_load_req, &elm_fields_load},
    [ELM_CMD_UNLOAD] = {"unload", true, &elm_fields_unload_req, NO_FIELDS},
    [ELM_CMD_OPEN_SESSION] = {"open_session", true, &elm_fields_open_req,
                              SCHEMA(R(ELM_TAG_SESSION_ID, RQ), R(ELM_TAG_REGION_SOCKET, RQ),
                                     R(ELM_TAG_SHM_SIZE, RQ), R(ELM_TAG_REQ_RING_SIZE, RQ),
                                     R(ELM_TAG_EVT_RING_SIZE, RQ), R(ELM_TAG_N_CTX, 0),
                                     R(ELM_TAG_REGION_TOKEN, RQ))},
    [ELM_CMD_CLOSE_SESSION] = {"close_session", true, &elm_fields_session_req, NO_FIELDS},
    [ELM_CMD_CANCEL] = {"cancel", true, &elm_fields_session_req, NO_FIELDS},
    [ELM_CMD_SESSIONS] = {"sessions", true, NO_FIELDS, SCHEMA(R(ELM_TAG_SESSION, RP))},
    [ELM_CMD_STATS] = {"stats", true, NO_FIELDS, &elm_fields_stats},
    [ELM_CMD_SHUTDOWN] = {"shutdown", true, NO_FIELDS, NO_FIELDS},
    [ELM_CMD_ERROR] = {"error", false, NO_FIELDS, NO_FIELDS},
};

static const struct cmd_def *cmd_def(uint16_t cmd)
{
    return cmd < ELM_CMD_LIMIT && cmd_defs[cmd].name ? &cmd_defs[cmd] : NULL;
}

/* The fields of a group: one ELM_TAG_SESSION is one struct elm_session_info. */
static const struct elm_fields *group_schema(uint16_t tag)
{
    return tag == ELM_TAG_SESSION ? &elm_fields_session : NULL;
}

int elm_proto_tag_type(uint16_t tag)
{
    struct tag_def t;
    return tag_lookup(tag, &t) ? t.type : 0;
}

const char *elm_proto_tag_name(uint16_t tag)
{
    struct tag_def t;
    return tag_lookup(tag, &t) && t.name ? t.name : "unknown";
}

const char *elm_proto_cmd_name(uint16_t cmd)
{
    const struct cmd_def *d = cmd_def(cmd);
    return d ? d->name : "unknown";
}

/* ---------------------------------------------------------------------------------------------
 * Decoder
 */

/* What a scan found besides validity. */
struct scan_out {
    uint64_t seen; /* bit i: rule i present */
    bool has_status;
    bool has_message;
    int64_t status;
};

static int fail(const char **why, const char *what)
{
    if (why)
        *why = what;
    return ELM_EPROTO;
}

static int check_value(uint8_t type, const unsigned char *v, uint32_t n, const char **why)
{
    switch (type) {
    case ELM_PT_U64:
    case ELM_PT_I64:
        return n == 8 ? 0 : fail(why, "integer field is not 8 bytes");
    case ELM_PT_F64: {
        if (n != 8)
            return fail(why, "f64 field is not 8 bytes");
        double d;
        memcpy(&d, v, sizeof d);
        return isfinite(d) ? 0 : fail(why, "f64 field is not finite");
    }
    case ELM_PT_STR:
        if (n > ELM_PROTO_MAX_STR)
            return fail(why, "string too long");
        return memchr(v, 0, n) ? fail(why, "string contains NUL") : 0;
    case ELM_PT_BYTES:
    case ELM_PT_GROUP:
        return 0; /* groups are checked by the caller, against their schema */
    default:
        return fail(why, "unknown value type");
    }
}

/* Optional tags are never looked up here: scan() takes them before. A table has at most 64
 * fields (tests/ipc/test_fields.c checks), one bit each in scan_out.seen. */
static int find_rule(const struct elm_fields *s, uint16_t tag)
{
    for (unsigned i = 0; s && i < s->n && i < 64; i++)
        if (s->f[i].tag == tag)
            return (int)i;
    return -1;
}

static int check_required(const struct elm_fields *s, uint64_t seen, const char **why)
{
    for (unsigned i = 0; s && i < s->n && i < 64; i++)
        if ((s->f[i].flags & RQ) && !(seen & (1ull << i)))
            return fail(why, "required field missing");
    return 0;
}

/* Validates a field sequence against schema s. reply: STATUS/MESSAGE are allowed. depth 0 is
 * a body, 1 a group (groups do not nest). */
static int scan(const unsigned char *p, uint32_t len, const struct elm_fields *s, bool reply,
                int depth, struct scan_out *o, const char **why)
{
    memset(o, 0, sizeof *o);
    uint32_t off = 0;
    while (off < len) {
        if (len - off < ELM_PROTO_FIELD_HDR)
            return fail(why, "truncated field header");
        uint16_t tag = elm_rd16(p + off);
        uint16_t type = elm_rd16(p + off + 2);
        uint32_t n = elm_rd32(p + off + 4);
        off += ELM_PROTO_FIELD_HDR;
        if (n > len - off)
            return fail(why, "field runs past the end of the frame");
        const unsigned char *v = p + off;
        off += n;

        int known = elm_proto_tag_type(tag);
        if (!known) {
            if (tag & ELM_TAG_OPTIONAL)
                continue; /* a newer peer's optional field: skipped whole */
            return fail(why, "unknown field tag");
        }
        if (type != known)
            return fail(why, "field has the wrong type for its tag");
        int rc = check_value((uint8_t)type, v, n, why);
        if (rc < 0)
            return rc;
        if (tag & ELM_TAG_OPTIONAL)
            continue; /* typed, but not bound to a schema: allowed anywhere, repeatable */

        if (reply && depth == 0 && tag == ELM_TAG_STATUS) {
            if (o->has_status)
                return fail(why, "duplicate status");
            o->has_status = true;
            o->status = (int64_t)elm_rd64(v);
            continue;
        }
        if (reply && depth == 0 && tag == ELM_TAG_MESSAGE) {
            if (o->has_message)
                return fail(why, "duplicate message");
            o->has_message = true;
            continue;
        }
        int i = find_rule(s, tag);
        if (i < 0)
            return fail(why, "field not allowed in this message");
        if ((o->seen & (1ull << i)) && !(s->f[i].flags & RP))
            return fail(why, "duplicate field");
        o->seen |= 1ull << i;
        if (type == ELM_PT_GROUP) {
            const struct elm_fields *g = group_schema(tag);
            struct scan_out go;
            if (depth > 0 || !g)
                return fail(why, "nested group");
            rc = scan(v, n, g, false, depth + 1, &go, why);
            if (rc == 0)
                rc = check_required(g, go.seen, why);
            if (rc < 0)
                return rc;
        }
    }
    return 0;
}

int elm_proto_decode_header(const void *frame, size_t len, struct elm_proto_hdr *out)
{
    const unsigned char *b = frame;
    if (!frame || len < ELM_PROTO_HDR_SIZE || len > ELM_PROTO_MAX_FRAME)
        return ELM_EPROTO;
    if (b[0] != 'E' || b[1] != 'L' || b[2] != 'M')
        return ELM_EPROTO;
    out->version = b[3];
    out->cmd = elm_rd16(b + 4);
    out->flags = elm_rd16(b + 6);
    out->req_id = elm_rd32(b + 8);
    return 0;
}

int elm_proto_decode(const void *frame, size_t len, struct elm_proto_msg *out, const char **why)
{
    struct elm_proto_hdr h;
    if (elm_proto_decode_header(frame, len, &h) < 0)
        return fail(why, "bad magic or frame size");
    if (h.flags & ~ELM_PROTO_F_KNOWN)
        return fail(why, "unknown flags");
    const struct cmd_def *d = cmd_def(h.cmd);
    if (!d)
        return fail(why, "unknown command");
    bool reply = h.flags & ELM_PROTO_F_REPLY;
    if (!reply && !d->is_request)
        return fail(why, "command is reply-only");
    /* HELLO and ERROR are version-independent, so any client can negotiate or learn why not. */
    if (h.version == 0)
        return fail(why, "version 0");
    if (h.cmd != ELM_CMD_HELLO && h.cmd != ELM_CMD_ERROR &&
        !elm_proto_version_is_supported(h.version))
        return fail(why, "unsupported protocol version");

    const unsigned char *body = (const unsigned char *)frame + ELM_PROTO_HDR_SIZE;
    uint32_t blen = (uint32_t)(len - ELM_PROTO_HDR_SIZE);
    const struct elm_fields *s = reply ? d->rep : d->req;
    struct scan_out o;
    int rc = scan(body, blen, s, reply, 0, &o, why);
    if (rc < 0)
        return rc;
    int32_t status = 0;
    if (reply) {
        if (!o.has_status)
            return fail(why, "reply without status");
        if (o.status > 0 || o.status < INT32_MIN)
            return fail(why, "status out of range");
        if (h.cmd == ELM_CMD_ERROR && o.status == 0)
            return fail(why, "error reply with status 0");
        status = (int32_t)o.status;
    }
    /* A failed reply carries only what explains the failure; its success fields are optional. */
    if (status == 0) {
        rc = check_required(s, o.seen, why);
        if (rc < 0)
            return rc;
    }
    out->hdr = h;
    out->status = status;
    out->body.p = body;
    out->body.len = blen;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The builder's last step
 */

int elm_proto_finish(struct elm_proto_buf *b, const void **frame, size_t *len)
{
    if (!b)
        return -EINVAL;
    if (b->err)
        return b->err;
    if (b->len < ELM_PROTO_HDR_SIZE || b->group_at)
        return b->err = -EINVAL;
    struct elm_proto_msg m;
    if (elm_proto_decode(b->data, b->len, &m, NULL) < 0)
        return b->err = ELM_EPROTO;
    *frame = b->data;
    *len = b->len;
    return 0;
}
