/* proto.c — control-message codec: the frame builder and the field accessors of a decoded
 * frame. What each command may carry, and the decoder that enforces it, are ipc/schema.c.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "ipc/le.h"
#include "ipc/proto.h"

/* ---------------------------------------------------------------------------------------------
 * Accessors (on validated views; still bounds-checked so a misuse cannot read out of bounds)
 */

static int find_field(const struct elm_proto_view *v, uint16_t tag, uint32_t *cursor,
                      uint16_t *type, const unsigned char **val, uint32_t *n)
{
    uint32_t off = *cursor;
    while (off < v->len && v->len - off >= ELM_PROTO_FIELD_HDR) {
        uint16_t t = elm_rd16(v->p + off);
        uint32_t len = elm_rd32(v->p + off + 4);
        if (len > v->len - off - ELM_PROTO_FIELD_HDR)
            break;
        if (t == tag) {
            *type = elm_rd16(v->p + off + 2);
            *val = v->p + off + ELM_PROTO_FIELD_HDR;
            *n = len;
            *cursor = off + ELM_PROTO_FIELD_HDR + len;
            return 0;
        }
        off += ELM_PROTO_FIELD_HDR + len;
    }
    return -ENOENT;
}

static int get_fixed(const struct elm_proto_view *v, uint16_t tag, uint16_t want, uint64_t *raw)
{
    uint32_t cur = 0, n;
    uint16_t type;
    const unsigned char *val;
    if (!v || find_field(v, tag, &cur, &type, &val, &n) < 0)
        return -ENOENT;
    if (type != want || n != 8)
        return ELM_EPROTO;
    *raw = elm_rd64(val);
    return 0;
}

int elm_proto_get_u64(const struct elm_proto_view *v, uint16_t tag, uint64_t *out)
{
    return get_fixed(v, tag, ELM_PT_U64, out);
}

int elm_proto_get_i64(const struct elm_proto_view *v, uint16_t tag, int64_t *out)
{
    uint64_t raw;
    int rc = get_fixed(v, tag, ELM_PT_I64, &raw);
    if (rc == 0)
        *out = (int64_t)raw;
    return rc;
}

int elm_proto_get_f64(const struct elm_proto_view *v, uint16_t tag, double *out)
{
    uint64_t raw;
    int rc = get_fixed(v, tag, ELM_PT_F64, &raw);
    if (rc == 0)
        memcpy(out, &raw, sizeof *out);
    return rc;
}

static int get_var(const struct elm_proto_view *v, uint16_t tag, uint16_t want,
                   const unsigned char **p, uint32_t *len)
{
    uint32_t cur = 0, n;
    uint16_t type;
    const unsigned char *val;
    if (!v || find_field(v, tag, &cur, &type, &val, &n) < 0)
        return -ENOENT;
    if (type != want)
        return ELM_EPROTO;
    *p = val;
    *len = n;
    return 0;
}

int elm_proto_get_str(const struct elm_proto_view *v, uint16_t tag, const char **s, uint32_t *len)
{
    const unsigned char *p;
    uint32_t n;
    int rc = get_var(v, tag, ELM_PT_STR, &p, &n);
    if (rc == 0) {
        *s = (const char *)p;
        *len = n;
    }
    return rc;
}

int elm_proto_get_bytes(const struct elm_proto_view *v, uint16_t tag, const void **p, uint32_t *len)
{
    const unsigned char *q;
    uint32_t n;
    int rc = get_var(v, tag, ELM_PT_BYTES, &q, &n);
    if (rc == 0) {
        *p = q;
        *len = n;
    }
    return rc;
}

int elm_proto_copy_str(const struct elm_proto_view *v, uint16_t tag, char *buf, size_t cap)
{
    const char *s;
    uint32_t n;
    int rc = elm_proto_get_str(v, tag, &s, &n);
    if (rc < 0)
        return rc;
    if (!buf || (size_t)n >= cap)
        return -ENOSPC;
    memcpy(buf, s, n);
    buf[n] = '\0';
    return 0;
}

int elm_proto_next_group(const struct elm_proto_view *v, uint16_t tag, uint32_t *cursor,
                         struct elm_proto_view *out)
{
    uint32_t cur = *cursor, n;
    uint16_t type;
    const unsigned char *val;
    for (;;) {
        if (!v || find_field(v, tag, &cur, &type, &val, &n) < 0)
            return -ENOENT;
        if (type == ELM_PT_GROUP)
            break;
    }
    out->p = val;
    out->len = n;
    *cursor = cur;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Builder
 */

static int set_err(struct elm_proto_buf *b, int rc)
{
    if (!b->err)
        b->err = rc;
    return b->err;
}

/* Makes room for n more bytes, within ELM_PROTO_MAX_FRAME. */
static int reserve(struct elm_proto_buf *b, size_t n)
{
    if (b->err)
        return b->err;
    if (n > ELM_PROTO_MAX_FRAME - b->len)
        return set_err(b, -EMSGSIZE);
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    unsigned char *d = realloc(b->data, cap);
    if (!d)
        return set_err(b, -ENOMEM);
    b->data = d;
    b->cap = cap;
    return 0;
}

static void wr16(unsigned char *p, uint16_t v)
{
    memcpy(p, &v, sizeof v);
}

static void wr32(unsigned char *p, uint32_t v)
{
    memcpy(p, &v, sizeof v);
}

static int put_field(struct elm_proto_buf *b, uint16_t tag, uint16_t type, const void *v, size_t n)
{
    if (!b)
        return -EINVAL;
    if (b->len < ELM_PROTO_HDR_SIZE)
        return set_err(b, -EINVAL); /* no begin */
    int rc = reserve(b, ELM_PROTO_FIELD_HDR + n);
    if (rc < 0)
        return rc;
    unsigned char *p = b->data + b->len;
    wr16(p, tag);
    wr16(p + 2, type);
    wr32(p + 4, (uint32_t)n);
    if (n)
        memcpy(p + ELM_PROTO_FIELD_HDR, v, n);
    b->len += ELM_PROTO_FIELD_HDR + n;
    return 0;
}

void elm_proto_buf_init(struct elm_proto_buf *b)
{
    memset(b, 0, sizeof *b);
}

void elm_proto_buf_fini(struct elm_proto_buf *b)
{
    if (!b)
        return;
    free(b->data);
    memset(b, 0, sizeof *b);
}

int elm_proto_begin(struct elm_proto_buf *b, uint8_t version, uint16_t cmd, uint16_t flags,
                    uint32_t req_id)
{
    if (!b)
        return -EINVAL;
    b->len = 0;
    b->group_at = 0;
    b->err = 0;
    int rc = reserve(b, ELM_PROTO_HDR_SIZE);
    if (rc < 0)
        return rc;
    unsigned char *p = b->data;
    p[0] = 'E';
    p[1] = 'L';
    p[2] = 'M';
    p[3] = version;
    wr16(p + 4, cmd);
    wr16(p + 6, flags);
    wr32(p + 8, req_id);
    b->len = ELM_PROTO_HDR_SIZE;
    return 0;
}

static int put_status(struct elm_proto_buf *b, int status, const char *msg)
{
    int rc = elm_proto_put_i64(b, ELM_TAG_STATUS, status);
    if (rc == 0 && msg)
        rc = elm_proto_put_strn(b, ELM_TAG_MESSAGE, msg, strnlen(msg, ELM_PROTO_MAX_STR));
    return rc;
}

int elm_proto_begin_reply(struct elm_proto_buf *b, const struct elm_proto_msg *req, int status,
                          const char *msg)
{
    if (!req)
        return -EINVAL;
    int rc = elm_proto_begin(b, req->hdr.version, req->hdr.cmd, ELM_PROTO_F_REPLY, req->hdr.req_id);
    return rc < 0 ? rc : put_status(b, status, msg);
}

int elm_proto_begin_error(struct elm_proto_buf *b, uint32_t req_id, int status, const char *msg)
{
    if (status >= 0)
        return -EINVAL;
    int rc = elm_proto_begin(b, ELM_PROTO_VERSION_MIN, ELM_CMD_ERROR, ELM_PROTO_F_REPLY, req_id);
    return rc < 0 ? rc : put_status(b, status, msg);
}

int elm_proto_put_u64(struct elm_proto_buf *b, uint16_t tag, uint64_t v)
{
    return put_field(b, tag, ELM_PT_U64, &v, sizeof v);
}

int elm_proto_put_i64(struct elm_proto_buf *b, uint16_t tag, int64_t v)
{
    return put_field(b, tag, ELM_PT_I64, &v, sizeof v);
}

int elm_proto_put_f64(struct elm_proto_buf *b, uint16_t tag, double v)
{
    return put_field(b, tag, ELM_PT_F64, &v, sizeof v);
}

int elm_proto_put_strn(struct elm_proto_buf *b, uint16_t tag, const char *s, size_t n)
{
    if (b && (n > ELM_PROTO_MAX_STR || (n && !s)))
        return set_err(b, -EINVAL);
    return put_field(b, tag, ELM_PT_STR, s, n);
}

int elm_proto_put_str(struct elm_proto_buf *b, uint16_t tag, const char *s)
{
    if (b && !s)
        return set_err(b, -EINVAL);
    return elm_proto_put_strn(b, tag, s, s ? strlen(s) : 0);
}

int elm_proto_put_bytes(struct elm_proto_buf *b, uint16_t tag, const void *p, size_t n)
{
    if (b && n && !p)
        return set_err(b, -EINVAL);
    return put_field(b, tag, ELM_PT_BYTES, p, n);
}

int elm_proto_group_begin(struct elm_proto_buf *b, uint16_t tag)
{
    if (b && b->group_at)
        return set_err(b, -EINVAL); /* groups do not nest */
    size_t at = b ? b->len : 0;
    int rc = put_field(b, tag, ELM_PT_GROUP, NULL, 0);
    if (rc == 0)
        b->group_at = at; /* >= ELM_PROTO_HDR_SIZE, so never 0 */
    return rc;
}

int elm_proto_group_end(struct elm_proto_buf *b)
{
    if (!b)
        return -EINVAL;
    if (b->err)
        return b->err;
    if (!b->group_at)
        return set_err(b, -EINVAL);
    wr32(b->data + b->group_at + 4, (uint32_t)(b->len - b->group_at - ELM_PROTO_FIELD_HDR));
    b->group_at = 0;
    return 0;
}


/* ---------------------------------------------------------------------------------------------
 * Versions
 */

int elm_proto_negotiate_range(uint64_t our_min, uint64_t our_max, uint64_t peer_min,
                              uint64_t peer_max, uint8_t *chosen)
{
    if (our_min == 0 || our_min > our_max || our_max > 255)
        return -EINVAL; /* our own range: a programming error */
    if (peer_min == 0 || peer_min > peer_max)
        return ELM_EPROTO;
    uint64_t lo = our_min > peer_min ? our_min : peer_min;
    uint64_t hi = our_max < peer_max ? our_max : peer_max;
    if (lo > hi)
        return ELM_EPROTO;
    *chosen = (uint8_t)hi;
    return 0;
}

int elm_proto_negotiate(uint64_t peer_min, uint64_t peer_max, uint8_t *chosen)
{
    return elm_proto_negotiate_range(ELM_PROTO_VERSION_MIN, ELM_PROTO_VERSION_MAX, peer_min,
                                     peer_max, chosen);
}

bool elm_proto_version_is_supported(uint64_t version)
{
    return version >= ELM_PROTO_VERSION_MIN && version <= ELM_PROTO_VERSION_MAX;
}
