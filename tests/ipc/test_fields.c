/* test_fields.c — the control protocol's field tables (ipc/fields.h), walked line by line.
 *
 * Each line must describe its struct member (offset and size inside the struct, a size that
 * matches its C type), agree with the codec on its tag's name and value type, and be the only
 * line with its tag in its table. Then every table round-trips: a struct with a distinct value
 * in every member is written with elm_fields_put into a real reply frame, checked by the decoder,
 * and read back with elm_fields_get into a zeroed struct, member by member; a struct of defaults
 * sends only what a reply must carry; a value past a line's bounds is refused, a string longer
 * than its buffer is cut.
 *
 * The request tables get the same walk in the other direction: a filled request struct is
 * written into a real request frame (so the decoder checks it against the request's schema,
 * which is the table), and read back with elm_fields_get_request; a value past a line's bounds
 * is refused with -EINVAL and a message naming the field and the bound; a WHOLE string that
 * does not fit is refused, never cut; elm_field_bounds gives the bounds elmctl checks.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "elm/client.h"
#include "elm/status.h"
#include "ipc/fields.h"
#include "ipc/proto.h"
#include "ipc/schema.h"
#include "tests/common/elm_test.h"

/* The message each table belongs to: a reply's (a SESSIONS entry travels in a SESSION group),
 * or the request it is the schema of (CLOSE_SESSION's also serves CANCEL). */
static const struct {
    const struct elm_fields *t;
    uint16_t cmd;
} table_cmds[] = {
    {&elm_fields_status, ELM_CMD_STATUS},
    {&elm_fields_stats, ELM_CMD_STATS},
    {&elm_fields_load, ELM_CMD_LOAD},
    {&elm_fields_session, ELM_CMD_SESSIONS},
    {&elm_fields_hello_req, ELM_CMD_HELLO},
    {&elm_fields_load_req, ELM_CMD_LOAD},
    {&elm_fields_open_req, ELM_CMD_OPEN_SESSION},
    {&elm_fields_session_req, ELM_CMD_CLOSE_SESSION},
    {&elm_fields_unload_req, ELM_CMD_UNLOAD},
};

static uint16_t table_cmd(const struct elm_fields *t)
{
    for (size_t i = 0; i < sizeof table_cmds / sizeof table_cmds[0]; i++)
        if (table_cmds[i].t == t)
            return table_cmds[i].cmd;
    fail_msg("no command for table %s", t->what);
    return 0;
}

static size_t ctype_size(uint8_t ct)
{
    switch (ct) {
    case ELM_CT_U64:
        return sizeof(uint64_t);
    case ELM_CT_U32:
        return sizeof(uint32_t);
    case ELM_CT_INT:
        return sizeof(int);
    case ELM_CT_LONG:
        return sizeof(long);
    case ELM_CT_BOOL:
        return sizeof(bool);
    case ELM_CT_F64:
        return sizeof(double);
    default:
        return 0; /* strings: any size */
    }
}

/* Line i of t describes its member (inside the struct, the size of its C type) and is the only
 * line with its tag in t, with the codec's type for that tag. */
static void check_member_and_tag(const struct elm_fields *t, unsigned i)
{
    const struct elm_field *f = &t->f[i];
    assert_true(f->offset + f->size <= t->size);
    if (f->ctype == ELM_CT_STR)
        assert_true(f->size >= 2);
    else
        assert_int_equal(f->size, ctype_size(f->ctype));
    assert_non_null(f->json);
    for (unsigned k = 0; k < i; k++)
        assert_int_not_equal(t->f[k].tag, f->tag);
    assert_int_equal(elm_proto_tag_type(f->tag), elm_field_type(f));
}

static void test_lines(void **state)
{
    unsigned n_tables = 0;
    for (const struct elm_fields *const *tp = elm_fields_all; *tp; tp++, n_tables++) {
        const struct elm_fields *t = *tp;
        assert_true(t->n > 0 && t->n <= 64); /* the decoder keeps a bit per field */
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            check_member_and_tag(t, i);
            if (f->tag & ELM_TAG_OPTIONAL) /* the line defines the tag; the decoder skips it */
                assert_false(f->flags & ELM_FIELD_REQUIRED);
            else
                assert_true(f->tag < ELM_TAG_LIMIT);
            assert_string_equal(elm_proto_tag_name(f->tag), f->name ? f->name : f->json);
            /* the same tag means the same thing in every table */
            const struct elm_field *first = elm_fields_find(f->tag);
            assert_int_equal(elm_field_type(first), elm_field_type(f));
            /* bounds and names */
            assert_true(f->max == 0 || f->min <= f->max);
            if (f->unit == ELM_UNIT_NAMES) {
                assert_non_null(f->names);
                for (uint64_t v = f->min; v <= f->max; v++)
                    assert_non_null(f->names[v]);
            }
            /* text: a fragment has at most one "%s" */
            if (f->text) {
                const char *at = strstr(f->text, "%s");
                assert_true(!at || !strstr(at + 2, "%s"));
                assert_null(strchr(at ? at + 2 : f->text, '%'));
            }
        }
    }
    assert_int_equal(n_tables, 4);
    /* every optional tag the codec names is defined by a line */
    for (uint16_t t = ELM_TAG_ARCH; t < ELM_TAG_OPT_END; t++)
        assert_non_null(elm_fields_find(t));
    assert_null(elm_fields_find(0xffff));
    assert_null(elm_fields_find(ELM_TAG_REGION_SOCKET)); /* OPEN_SESSION has no public struct */
}

/* ---------------------------------------------------------------------------------------------
 * Round trips
 */

/* A value for line i that no other line of the table has, within the line's bounds. */
static void fill(const struct elm_field *f, unsigned i, void *obj)
{
    unsigned char *p = (unsigned char *)obj + f->offset;
    uint64_t v = 1000 + i;
    if (f->max)
        v = f->min + i % (f->max - f->min + 1);
    if (v == 0)
        v = 1;
    switch (f->ctype) {
    case ELM_CT_U64:
        *(uint64_t *)p = v;
        break;
    case ELM_CT_U32:
        *(uint32_t *)p = (uint32_t)v;
        break;
    case ELM_CT_INT:
        *(int *)p = (int)v;
        break;
    case ELM_CT_LONG:
        *(long *)p = (long)v;
        break;
    case ELM_CT_BOOL:
        *(bool *)p = true;
        break;
    case ELM_CT_F64:
        *(double *)p = i + 0.25;
        break;
    case ELM_CT_STR:
        snprintf((char *)p, f->size, "v%u", i);
        break;
    }
}

static void assert_same(const struct elm_field *f, const void *a, const void *b)
{
    if (f->ctype == ELM_CT_STR)
        assert_string_equal(elm_field_str(f, a), elm_field_str(f, b));
    else if (f->ctype == ELM_CT_F64)
        assert_true(elm_field_f64(f, a) == elm_field_f64(f, b));
    else
        assert_int_equal(elm_field_u64(f, a), elm_field_u64(f, b));
}

/* Builds t's reply from the fields of sub (a subset of t's lines, or t) read from obj, plus
 * one extra u64 field when extra_tag is not 0; decodes it into *m. Returns the finish result. */
static int build(struct elm_proto_buf *b, const struct elm_fields *t, const struct elm_fields *sub,
                 const void *obj, unsigned sections, uint16_t extra_tag, uint64_t extra,
                 struct elm_proto_msg *m, struct elm_proto_view *body)
{
    const void *frame;
    size_t len;
    uint16_t cmd = table_cmd(t);
    assert_int_equal(elm_proto_begin(b, ELM_PROTO_VERSION_MAX, cmd, ELM_PROTO_F_REPLY, 7), 0);
    elm_proto_put_i64(b, ELM_TAG_STATUS, 0);
    if (cmd == ELM_CMD_SESSIONS)
        elm_proto_group_begin(b, ELM_TAG_SESSION);
    assert_int_equal(elm_fields_put(b, sub, obj, sections), 0);
    if (extra_tag)
        elm_proto_put_u64(b, extra_tag, extra);
    if (cmd == ELM_CMD_SESSIONS)
        elm_proto_group_end(b);
    int rc = elm_proto_finish(b, &frame, &len);
    if (rc < 0)
        return rc;
    assert_int_equal(elm_proto_decode(frame, len, m, NULL), 0);
    *body = m->body;
    if (cmd == ELM_CMD_SESSIONS) {
        uint32_t cur = 0;
        assert_int_equal(elm_proto_next_group(&m->body, ELM_TAG_SESSION, &cur, body), 0);
    }
    return 0;
}

static void test_roundtrip(void **state)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    for (const struct elm_fields *const *tp = elm_fields_all; *tp; tp++) {
        const struct elm_fields *t = *tp;
        void *in = calloc(1, t->size), *out = calloc(1, t->size);
        assert_non_null(in);
        assert_non_null(out);
        for (unsigned i = 0; i < t->n; i++)
            fill(&t->f[i], i, in);
        struct elm_proto_msg m;
        struct elm_proto_view v;
        assert_int_equal(build(&b, t, t, in, ~0u, 0, 0, &m, &v), 0);
        for (unsigned i = 0; i < t->n; i++) { /* every line is on the wire, with its type */
            const struct elm_field *f = &t->f[i];
            uint64_t u;
            double d;
            const char *s;
            uint32_t n;
            if (elm_field_type(f) == ELM_PT_U64)
                assert_int_equal(elm_proto_get_u64(&v, f->tag, &u), 0);
            else if (elm_field_type(f) == ELM_PT_F64)
                assert_int_equal(elm_proto_get_f64(&v, f->tag, &d), 0);
            else
                assert_int_equal(elm_proto_get_str(&v, f->tag, &s, &n), 0);
        }
        assert_int_equal(elm_fields_get(&v, t, out), 0);
        for (unsigned i = 0; i < t->n; i++)
            assert_same(&t->f[i], in, out);
        free(in);
        free(out);
    }
    elm_proto_buf_fini(&b);
}

/* Defaults: a zeroed struct sends its always-sent lines (as zeros) and no NONZERO or sectioned
 * line; reading that back gives zeros again. A line whose smallest valid value is above 0 (a
 * session's state) holds that instead: 0 is not a value it can send. */
static void test_defaults(void **state)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    for (const struct elm_fields *const *tp = elm_fields_all; *tp; tp++) {
        const struct elm_fields *t = *tp;
        void *in = calloc(1, t->size), *out = calloc(1, t->size);
        assert_non_null(in);
        assert_non_null(out);
        for (unsigned i = 0; i < t->n; i++)
            if (t->f[i].min)
                fill(&t->f[i], 0, in); /* = min */
        struct elm_proto_msg m;
        struct elm_proto_view v;
        assert_int_equal(build(&b, t, t, in, 0, 0, 0, &m, &v), 0);
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            bool sent = !f->section && !(f->flags & ELM_FIELD_NONZERO);
            const char *s;
            uint32_t n;
            uint64_t u;
            double d;
            int rc = elm_field_type(f) == ELM_PT_STR   ? elm_proto_get_str(&v, f->tag, &s, &n)
                     : elm_field_type(f) == ELM_PT_F64 ? elm_proto_get_f64(&v, f->tag, &d)
                                                       : elm_proto_get_u64(&v, f->tag, &u);
            assert_int_equal(rc, sent ? 0 : -ENOENT);
        }
        memset(out, 0xa5, t->size);
        for (unsigned i = 0; i < t->n; i++) /* members start at their default */
            memset((char *)out + t->f[i].offset, 0, t->f[i].size);
        assert_int_equal(elm_fields_get(&v, t, out), 0);
        for (unsigned i = 0; i < t->n; i++)
            assert_same(&t->f[i], in, out);
        free(in);
        free(out);
    }
    elm_proto_buf_fini(&b);
}

/* The largest value the member holds, as elm_fields_get bounds it. */
static uint64_t type_max(const struct elm_field *f)
{
    uint64_t m = f->ctype == ELM_CT_U32    ? UINT32_MAX
                 : f->ctype == ELM_CT_INT  ? INT_MAX
                 : f->ctype == ELM_CT_LONG ? LONG_MAX
                 : f->ctype == ELM_CT_BOOL ? 1
                                           : UINT64_MAX;
    return f->max && f->max < m ? f->max : m;
}

/* t without its line i, in rest (t->n lines of room). */
static struct elm_fields without(const struct elm_fields *t, unsigned i, struct elm_field *rest)
{
    unsigned n = 0;
    for (unsigned k = 0; k < t->n; k++)
        if (k != i)
            rest[n++] = t->f[k];
    return (struct elm_fields){.f = rest, .n = n, .size = t->size};
}

/* One bounded line f of table t: sub is t without f, in a filled struct, out one to read into;
 * max is the largest value f accepts. */
typedef void (*bound_check)(struct elm_proto_buf *b, const struct elm_fields *t,
                            const struct elm_field *f, const struct elm_fields *sub, const void *in,
                            void *out, uint64_t max);

/* Calls check for every integer line of the tables whose bounds are narrower than a u64's.
 * Returns how many it checked. */
static unsigned for_each_bounded(const struct elm_fields *const *tables, bound_check check)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    unsigned checked = 0;
    for (const struct elm_fields *const *tp = tables; *tp; tp++) {
        const struct elm_fields *t = *tp;
        void *in = calloc(1, t->size), *out = calloc(1, t->size);
        struct elm_field *rest = calloc(t->n, sizeof *rest);
        assert_true(in && out && rest);
        for (unsigned i = 0; i < t->n; i++)
            fill(&t->f[i], i, in);
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            uint64_t max = type_max(f);
            if (elm_field_type(f) != ELM_PT_U64 || max == UINT64_MAX)
                continue;
            struct elm_fields sub = without(t, i, rest);
            memset(out, 0, t->size);
            check(&b, t, f, &sub, in, out, max);
            checked++;
        }
        free(rest);
        free(in);
        free(out);
    }
    elm_proto_buf_fini(&b);
    return checked;
}

/* A reply's line: its largest value is read, one more is ELM_EPROTO (and its smallest, one
 * less, when it has one above 0). The table without the line, then the line's tag with a
 * chosen value. */
static void check_reply_bound(struct elm_proto_buf *b, const struct elm_fields *t,
                              const struct elm_field *f, const struct elm_fields *sub,
                              const void *in, void *out, uint64_t max)
{
    struct elm_proto_msg m;
    struct elm_proto_view v;
    assert_int_equal(build(b, t, sub, in, ~0u, f->tag, max, &m, &v), 0);
    assert_int_equal(elm_fields_get(&v, t, out), 0);
    assert_int_equal(elm_field_u64(f, out), f->ctype == ELM_CT_BOOL ? 1 : max);
    assert_int_equal(build(b, t, sub, in, ~0u, f->tag, max + 1, &m, &v), 0);
    assert_int_equal(elm_fields_get(&v, t, out), ELM_EPROTO);
    if (f->min) {
        assert_int_equal(build(b, t, sub, in, ~0u, f->tag, f->min - 1, &m, &v), 0);
        assert_int_equal(elm_fields_get(&v, t, out), ELM_EPROTO);
    }
}

static void test_bounds(void **state)
{
    /* the u32, int, long and bool members of the four tables */
    assert_true(for_each_bounded(elm_fields_all, check_reply_bound) >= 10);
}

/* A string as long as its buffer (one byte too many for the NUL) is cut, not refused; a
 * required line that is absent is refused. */
static void test_strings_and_required(void **state)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    char *big = malloc(ELM_PROTO_MAX_STR + 1);
    assert_non_null(big);
    memset(big, 'x', ELM_PROTO_MAX_STR);
    big[ELM_PROTO_MAX_STR] = 0;
    unsigned cut = 0;
    for (const struct elm_fields *const *tp = elm_fields_all; *tp; tp++) {
        const struct elm_fields *t = *tp;
        void *in = calloc(1, t->size), *out = calloc(1, t->size);
        assert_true(in && out);
        for (unsigned i = 0; i < t->n; i++)
            fill(&t->f[i], i, in);
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            if (f->ctype != ELM_CT_STR || f->size > ELM_PROTO_MAX_STR)
                continue;
            struct elm_proto_msg m;
            struct elm_proto_view v;
            const void *frame;
            size_t len;
            uint16_t cmd = table_cmd(t);
            /* the line's value, overlong: sent by hand in place of the struct's */
            struct elm_field *rest = calloc(t->n, sizeof *rest);
            unsigned n = 0;
            for (unsigned k = 0; k < t->n; k++)
                if (k != i)
                    rest[n++] = t->f[k];
            struct elm_fields sub = {.f = rest, .n = n, .size = t->size};
            elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, cmd, ELM_PROTO_F_REPLY, 7);
            elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
            if (cmd == ELM_CMD_SESSIONS)
                elm_proto_group_begin(&b, ELM_TAG_SESSION);
            elm_fields_put(&b, &sub, in, ~0u);
            elm_proto_put_strn(&b, f->tag, big, f->size);
            if (cmd == ELM_CMD_SESSIONS)
                elm_proto_group_end(&b);
            assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
            assert_int_equal(elm_proto_decode(frame, len, &m, NULL), 0);
            v = m.body;
            uint32_t cur = 0;
            if (cmd == ELM_CMD_SESSIONS)
                assert_int_equal(elm_proto_next_group(&m.body, ELM_TAG_SESSION, &cur, &v), 0);
            memset(out, 0, t->size);
            assert_int_equal(elm_fields_get(&v, t, out), 0);
            assert_int_equal(strlen(elm_field_str(f, out)), f->size - 1);
            free(rest);
            cut++;
        }
        /* A body without t's required lines (a HELLO reply's): the decoder would refuse it
         * as t's reply; elm_fields_get refuses it too. */
        bool has_required = false;
        for (unsigned i = 0; i < t->n; i++)
            has_required |= (t->f[i].flags & ELM_FIELD_REQUIRED) != 0;
        if (has_required) {
            const void *frame;
            size_t len;
            struct elm_proto_msg m;
            elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_HELLO, ELM_PROTO_F_REPLY, 7);
            elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
            elm_proto_put_u64(&b, ELM_TAG_VERSION, 1);
            assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
            assert_int_equal(elm_proto_decode(frame, len, &m, NULL), 0);
            memset(out, 0, t->size);
            assert_int_equal(elm_fields_get(&m.body, t, out), ELM_EPROTO);
        }
        free(in);
        free(out);
    }
    assert_true(cut >= 10);
    free(big);
    elm_proto_buf_fini(&b);
}

/* ---------------------------------------------------------------------------------------------
 * Requests
 */

/* Builds t's request from the fields of sub read from obj, plus one u64 field when extra_tag is
 * not 0, and decodes it into *m. Returns the finish result. */
static int build_request(struct elm_proto_buf *b, const struct elm_fields *t,
                         const struct elm_fields *sub, const void *obj, uint16_t extra_tag,
                         uint64_t extra, struct elm_proto_msg *m)
{
    const void *frame;
    size_t len;
    assert_int_equal(elm_proto_begin(b, ELM_PROTO_VERSION_MAX, table_cmd(t), 0, 9), 0);
    elm_fields_put(b, sub, obj, 0);
    if (extra_tag)
        elm_proto_put_u64(b, extra_tag, extra);
    int rc = elm_proto_finish(b, &frame, &len);
    if (rc < 0)
        return rc;
    assert_int_equal(elm_proto_decode(frame, len, m, NULL), 0);
    assert_int_equal(m->hdr.flags & ELM_PROTO_F_REPLY, 0);
    return 0;
}

static void test_request_lines(void **state)
{
    unsigned n_tables = 0;
    for (const struct elm_fields *const *tp = elm_fields_requests; *tp; tp++, n_tables++) {
        const struct elm_fields *t = *tp;
        assert_true(t->n > 0 && t->n <= 64);
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            check_member_and_tag(t, i);
            /* requests carry base tags only: an optional one would be skipped unchecked */
            assert_true(f->tag < ELM_TAG_LIMIT);
            assert_string_equal(elm_proto_tag_name(f->tag), f->name ? f->name : f->json);
            assert_true(f->max == 0 || f->min <= f->max);
            assert_null(f->row); /* nothing prints a request */
        }
    }
    assert_int_equal(n_tables, 5);
    /* the limits elmctl and elmd share */
    uint64_t min, max;
    assert_int_equal(elm_field_bounds(&elm_fields_load_req, ELM_TAG_N_CTX, &min, &max), 0);
    assert_int_equal(min, 0);
    assert_int_equal(max, 1u << 20);
    assert_int_equal(elm_field_bounds(&elm_fields_load_req, ELM_TAG_N_THREADS, &min, &max), 0);
    assert_int_equal(max, 1024);
    assert_int_equal(elm_field_bounds(&elm_fields_open_req, ELM_TAG_REQ_RING_SIZE, &min, &max), 0);
    assert_int_equal(max, 64u << 20);
    assert_int_equal(elm_field_bounds(&elm_fields_open_req, ELM_TAG_PID, &min, &max), 0);
    assert_int_equal(max, INT32_MAX);
    assert_int_equal(elm_field_bounds(&elm_fields_load_req, ELM_TAG_PID, &min, &max), -ENOENT);
    assert_true(elm_fields_line(&elm_fields_load_req, ELM_TAG_PATH)->flags & ELM_FIELD_WHOLE);
}

/* Every line of every request travels and comes back; a struct of defaults sends only the lines
 * that are not NONZERO, and reads back as defaults. */
static void test_request_roundtrip(void **state)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    for (const struct elm_fields *const *tp = elm_fields_requests; *tp; tp++) {
        const struct elm_fields *t = *tp;
        void *in = calloc(1, t->size), *out = calloc(1, t->size), *zero = calloc(1, t->size);
        assert_true(in && out && zero);
        char msg[128] = "";
        struct elm_proto_msg m;
        for (unsigned i = 0; i < t->n; i++)
            fill(&t->f[i], i, in);
        assert_int_equal(build_request(&b, t, t, in, 0, 0, &m), 0);
        assert_int_equal(elm_fields_get_request(&m.body, t, out, msg, sizeof msg), 0);
        for (unsigned i = 0; i < t->n; i++)
            assert_same(&t->f[i], in, out);

        /* defaults: what a request must carry (HELLO's versions, LOAD's path...) stays */
        for (unsigned i = 0; i < t->n; i++)
            if (t->f[i].flags & ELM_FIELD_REQUIRED)
                fill(&t->f[i], i, zero);
        assert_int_equal(build_request(&b, t, t, zero, 0, 0, &m), 0);
        for (unsigned i = 0; i < t->n; i++) {
            const struct elm_field *f = &t->f[i];
            const char *s;
            uint32_t n;
            uint64_t u;
            int rc = elm_field_type(f) == ELM_PT_STR ? elm_proto_get_str(&m.body, f->tag, &s, &n)
                                                     : elm_proto_get_u64(&m.body, f->tag, &u);
            assert_int_equal(rc, (f->flags & ELM_FIELD_NONZERO) ? -ENOENT : 0);
        }
        memset(out, 0, t->size);
        assert_int_equal(elm_fields_get_request(&m.body, t, out, msg, sizeof msg), 0);
        for (unsigned i = 0; i < t->n; i++)
            assert_same(&t->f[i], zero, out);

        /* a body without the required lines: refused, the message names the first one */
        bool has_required = false;
        for (unsigned i = 0; i < t->n; i++)
            has_required |= (t->f[i].flags & ELM_FIELD_REQUIRED) != 0;
        if (has_required) {
            struct elm_proto_view empty = {0};
            assert_int_equal(elm_fields_get_request(&empty, t, out, msg, sizeof msg), ELM_EPROTO);
            assert_non_null(strstr(msg, "missing"));
        }
        free(in);
        free(out);
        free(zero);
    }
    elm_proto_buf_fini(&b);
}

/* A request's line: its largest value is read, one more is -EINVAL with a message naming the
 * field, the value and the bound (and its smallest, one less, when above 0). */
static void check_request_bound(struct elm_proto_buf *b, const struct elm_fields *t,
                                const struct elm_field *f, const struct elm_fields *sub,
                                const void *in, void *out, uint64_t max)
{
    struct elm_proto_msg m;
    char msg[128] = "", want[128];
    assert_int_equal(build_request(b, t, sub, in, f->tag, max, &m), 0);
    assert_int_equal(elm_fields_get_request(&m.body, t, out, msg, sizeof msg), 0);
    assert_int_equal(elm_field_u64(f, out), max);
    assert_int_equal(build_request(b, t, sub, in, f->tag, max + 1, &m), 0);
    assert_int_equal(elm_fields_get_request(&m.body, t, out, msg, sizeof msg), -EINVAL);
    snprintf(want, sizeof want, "%s %llu is out of range [%llu, %llu]", elm_proto_tag_name(f->tag),
             (unsigned long long)max + 1, (unsigned long long)f->min, (unsigned long long)max);
    assert_string_equal(msg, want);
    assert_int_equal(elm_fields_get(&m.body, t, out), ELM_EPROTO); /* as a reply would */
    if (f->min) {
        assert_int_equal(build_request(b, t, sub, in, f->tag, f->min - 1, &m), 0);
        assert_int_equal(elm_fields_get_request(&m.body, t, out, msg, sizeof msg), -EINVAL);
    }
}

static void test_request_bounds(void **state)
{
    /* LOAD's n_ctx and n_threads, OPEN_SESSION's rings and pid */
    assert_int_equal(for_each_bounded(elm_fields_requests, check_request_bound), 5);
}

/* A WHOLE string is refused when it does not fit, both ways: elm_fields_put fails (sticky
 * -EINVAL) on a buffer without its NUL, elm_fields_get_request on a longer value; a string that
 * is not WHOLE (a client name) is cut. A small table stands in for LOAD's, whose path buffer
 * holds the longest string the codec carries. */
struct small_load {
    char path[8];
    char name[4];
};

static void test_request_strings(void **state)
{
    static const struct elm_field lines[] = {
        {.tag = ELM_TAG_PATH,
         .ctype = ELM_CT_STR,
         .flags = ELM_FIELD_WHOLE,
         .offset = offsetof(struct small_load, path),
         .size = 8,
         .json = "path"},
        {.tag = ELM_TAG_CLIENT_NAME,
         .ctype = ELM_CT_STR,
         .offset = offsetof(struct small_load, name),
         .size = 4,
         .json = "client_name"},
    };
    const struct elm_fields t = {
        .what = "small", .f = lines, .n = 2, .size = sizeof(struct small_load)};
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    struct elm_proto_msg m;
    const void *frame;
    size_t len;
    char msg[128] = "";
    struct small_load in, out;

    memcpy(in.path, "/abcdefg", 8); /* no NUL */
    strcpy(in.name, "abc");
    elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_LOAD, 0, 9);
    assert_int_equal(elm_fields_put(&b, &t, &in, 0), -EINVAL);
    assert_int_equal(elm_proto_finish(&b, &frame, &len), -EINVAL);

    elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_OPEN_SESSION, 0, 9);
    elm_proto_put_str(&b, ELM_TAG_CLIENT_NAME, "a long name");
    assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
    assert_int_equal(elm_proto_decode(frame, len, &m, NULL), 0);
    memset(&out, 0, sizeof out);
    assert_int_equal(elm_fields_get_request(&m.body, &t, &out, msg, sizeof msg), 0);
    assert_string_equal(out.name, "a l");

    elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_LOAD, 0, 9);
    elm_proto_put_str(&b, ELM_TAG_PATH, "/abcdefg");
    assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
    assert_int_equal(elm_proto_decode(frame, len, &m, NULL), 0);
    memset(&out, 0, sizeof out);
    assert_int_equal(elm_fields_get_request(&m.body, &t, &out, msg, sizeof msg), -EINVAL);
    assert_string_equal(msg, "path is longer than 7 bytes");
    assert_int_equal(elm_fields_get(&m.body, &t, &out), ELM_EPROTO);

    elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_LOAD, 0, 9);
    elm_proto_put_str(&b, ELM_TAG_PATH, "/abcdef"); /* 7 bytes: fits with its NUL */
    assert_int_equal(elm_proto_finish(&b, &frame, &len), 0);
    assert_int_equal(elm_proto_decode(frame, len, &m, NULL), 0);
    assert_int_equal(elm_fields_get_request(&m.body, &t, &out, msg, sizeof msg), 0);
    assert_string_equal(out.path, "/abcdef");

    /* the real path line takes the longest string the codec carries */
    assert_true(elm_fields_line(&elm_fields_load_req, ELM_TAG_PATH)->size > ELM_PROTO_MAX_STR);
    elm_proto_buf_fini(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines),
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_bounds),
        cmocka_unit_test(test_strings_and_required),
        cmocka_unit_test(test_request_lines),
        cmocka_unit_test(test_request_roundtrip),
        cmocka_unit_test(test_request_bounds),
        cmocka_unit_test(test_request_strings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
