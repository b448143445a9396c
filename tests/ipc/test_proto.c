/* test_proto.c — the control-message codec (ipc/proto.h).
 *
 * Round trips of every command's request and reply through the builder and the decoder; the
 * decoder's rejection of each kind of malformed frame, built by hand byte by byte; the builder's
 * sticky errors; version negotiation; and a seeded fuzz loop of random and mutated frames in
 * exactly-sized heap buffers (so ASan sees any out-of-bounds read): each frame must be rejected
 * with ELM_EPROTO or decode into a message whose every field can then be read.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm/client.h"
#include "elm/status.h"
#include "ipc/fields.h"
#include "ipc/proto.h"
#include "ipc/schema.h"
#include "tests/common/elm_test.h"

static uint64_t rng_next(uint64_t *s) /* splitmix64 */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static uint32_t rng_below(uint64_t *s, uint32_t n)
{
    return n ? (uint32_t)(rng_next(s) % n) : 0;
}

static const uint16_t all_cmds[] = {
    ELM_CMD_HELLO,         ELM_CMD_STATUS, ELM_CMD_LOAD,     ELM_CMD_UNLOAD, ELM_CMD_OPEN_SESSION,
    ELM_CMD_CLOSE_SESSION, ELM_CMD_CANCEL, ELM_CMD_SESSIONS, ELM_CMD_STATS,  ELM_CMD_SHUTDOWN,
};
#define N_CMDS (sizeof all_cmds / sizeof all_cmds[0])

/* Writes the request (reply=false) or successful reply of cmd with all its fields. */
static void build(struct elm_proto_buf *b, uint16_t cmd, bool reply)
{
    uint8_t v = ELM_PROTO_VERSION_MAX;
    if (reply)
        assert_int_equal(elm_proto_begin(b, v, cmd, ELM_PROTO_F_REPLY, 1000 + cmd), 0);
    else
        assert_int_equal(elm_proto_begin(b, v, cmd, 0, 1000 + cmd), 0);
    if (reply) {
        elm_proto_put_i64(b, ELM_TAG_STATUS, 0);
        elm_proto_put_str(b, ELM_TAG_MESSAGE, "ok");
    }
    switch (cmd * 2 + reply) {
    case ELM_CMD_HELLO * 2:
        elm_proto_put_u64(b, ELM_TAG_VERSION_MIN, 1);
        elm_proto_put_u64(b, ELM_TAG_VERSION_MAX, 3);
        elm_proto_put_str(b, ELM_TAG_CLIENT_NAME, "test");
        elm_proto_put_u64(b, ELM_TAG_PID, 4321);
        break;
    case ELM_CMD_HELLO * 2 + 1:
        elm_proto_put_u64(b, ELM_TAG_VERSION, 1);
        elm_proto_put_str(b, ELM_TAG_DAEMON_VERSION, "0.1.0");
        break;
    case ELM_CMD_STATUS * 2 + 1:
        elm_proto_put_u64(b, ELM_TAG_UPTIME_NS, 123456789);
        elm_proto_put_u64(b, ELM_TAG_N_SESSIONS, 2);
        elm_proto_put_str(b, ELM_TAG_PATH, "/models/tiny.gguf");
        elm_proto_put_u64(b, ELM_TAG_N_CTX, 2048);
        elm_proto_put_u64(b, ELM_TAG_N_THREADS, 8);
        elm_proto_put_u64(b, ELM_TAG_LOAD_NS, 1000);
        break;
    case ELM_CMD_LOAD * 2:
        elm_proto_put_str(b, ELM_TAG_PATH, "/models/tiny.gguf");
        elm_proto_put_u64(b, ELM_TAG_N_THREADS, 4);
        break;
    case ELM_CMD_LOAD * 2 + 1:
        elm_proto_put_str(b, ELM_TAG_MODEL_NAME, "tiny");
        elm_proto_put_u64(b, ELM_TAG_LOAD_NS, 5000000);
        break;
    case ELM_CMD_OPEN_SESSION * 2:
        elm_proto_put_u64(b, ELM_TAG_REQ_RING_SIZE, 1 << 20);
        break;
    case ELM_CMD_OPEN_SESSION * 2 + 1:
        elm_proto_put_u64(b, ELM_TAG_SESSION_ID, 77);
        elm_proto_put_str(b, ELM_TAG_REGION_SOCKET, "/run/user/0/elm/regions");
        elm_proto_put_bytes(b, ELM_TAG_REGION_TOKEN, "0123456789abcdef", 16);
        elm_proto_put_u64(b, ELM_TAG_SHM_SIZE, 64 + 512 + (1 << 20) + (1 << 16));
        elm_proto_put_u64(b, ELM_TAG_REQ_RING_SIZE, 1 << 20);
        elm_proto_put_u64(b, ELM_TAG_EVT_RING_SIZE, 1 << 16);
        break;
    case ELM_CMD_CLOSE_SESSION * 2:
    case ELM_CMD_CANCEL * 2:
        elm_proto_put_u64(b, ELM_TAG_SESSION_ID, 77);
        break;
    case ELM_CMD_SESSIONS * 2 + 1:
        for (uint64_t i = 1; i <= 3; i++) {
            elm_proto_group_begin(b, ELM_TAG_SESSION);
            elm_proto_put_u64(b, ELM_TAG_SESSION_ID, i);
            elm_proto_put_u64(b, ELM_TAG_STATE, ELM_SESSION_STATE_RUNNING);
            elm_proto_put_str(b, ELM_TAG_CLIENT_NAME, "c");
            elm_proto_group_end(b);
        }
        break;
    case ELM_CMD_STATS * 2 + 1:
        elm_proto_put_u64(b, ELM_TAG_UPTIME_NS, 1);
        elm_proto_put_u64(b, ELM_TAG_N_REQUESTS, 2);
        elm_proto_put_u64(b, ELM_TAG_N_PROMPT_TOKENS, 3);
        elm_proto_put_u64(b, ELM_TAG_N_GEN_TOKENS, 4);
        elm_proto_put_f64(b, ELM_TAG_GEN_TOKENS_PER_S, 42.5);
        break;
    default:
        break; /* no fields */
    }
}

static void test_roundtrip_all(void **state)
{
    (void)state;
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    for (size_t i = 0; i < N_CMDS; i++) {
        for (int reply = 0; reply < 2; reply++) {
            build(&b, all_cmds[i], reply);
            const void *f;
            size_t n;
            assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
            struct elm_proto_msg m;
            const char *why = NULL;
            int rc = elm_proto_decode(f, n, &m, &why);
            if (rc)
                fail_msg("%s %s: %s", elm_proto_cmd_name(all_cmds[i]), reply ? "reply" : "req",
                         why);
            assert_int_equal(m.hdr.cmd, all_cmds[i]);
            assert_int_equal(m.hdr.req_id, 1000 + all_cmds[i]);
            assert_int_equal(m.hdr.flags, reply ? ELM_PROTO_F_REPLY : 0);
            assert_int_equal(m.status, 0);
            assert_int_equal(m.body.len, n - ELM_PROTO_HDR_SIZE);
        }
    }
    /* Field values survive. */
    build(&b, ELM_CMD_OPEN_SESSION, true);
    const void *f;
    size_t n;
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    struct elm_proto_msg m;
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    uint64_t u;
    char name[64];
    assert_int_equal(elm_proto_get_u64(&m.body, ELM_TAG_SESSION_ID, &u), 0);
    assert_int_equal(u, 77);
    assert_int_equal(elm_proto_copy_str(&m.body, ELM_TAG_REGION_SOCKET, name, sizeof name), 0);
    assert_string_equal(name, "/run/user/0/elm/regions");
    assert_int_equal(elm_proto_copy_str(&m.body, ELM_TAG_REGION_SOCKET, name, 10), -ENOSPC);
    assert_int_equal(elm_proto_copy_str(&m.body, ELM_TAG_MESSAGE, name, sizeof name), 0);
    assert_string_equal(name, "ok");
    assert_int_equal(elm_proto_get_u64(&m.body, ELM_TAG_N_CTX, &u), -ENOENT);
    assert_int_equal(elm_proto_get_u64(&m.body, ELM_TAG_REGION_SOCKET, &u), ELM_EPROTO);
    int64_t st;
    assert_int_equal(elm_proto_get_i64(&m.body, ELM_TAG_STATUS, &st), 0);
    assert_int_equal(st, 0);

    build(&b, ELM_CMD_STATS, true);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    double d;
    assert_int_equal(elm_proto_get_f64(&m.body, ELM_TAG_GEN_TOKENS_PER_S, &d), 0);
    assert_true(d == 42.5);

    /* Groups: iterate the SESSIONS list. */
    build(&b, ELM_CMD_SESSIONS, true);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    uint32_t cur = 0;
    struct elm_proto_view g;
    uint64_t want = 1;
    while (elm_proto_next_group(&m.body, ELM_TAG_SESSION, &cur, &g) == 0) {
        assert_int_equal(elm_proto_get_u64(&g, ELM_TAG_SESSION_ID, &u), 0);
        assert_int_equal(u, want++);
        const char *s;
        uint32_t sl;
        assert_int_equal(elm_proto_get_str(&g, ELM_TAG_CLIENT_NAME, &s, &sl), 0);
        assert_int_equal(sl, 1);
    }
    assert_int_equal(want, 4);
    elm_proto_buf_fini(&b);
    elm_proto_buf_fini(&b);
    elm_proto_buf_fini(NULL);
}

static void test_error_replies(void **state)
{
    (void)state;
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    const void *f;
    size_t n;
    struct elm_proto_msg req, m;
    /* A failed open_session omits its success fields. */
    build(&b, ELM_CMD_OPEN_SESSION, false);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    void *copy = malloc(n);
    memcpy(copy, f, n);
    assert_int_equal(elm_proto_decode(copy, n, &req, NULL), 0);
    assert_int_equal(elm_proto_begin_reply(&b, &req, ELM_EBUSY, "too many sessions"), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    assert_int_equal(m.status, ELM_EBUSY);
    assert_int_equal(m.hdr.req_id, req.hdr.req_id);
    assert_int_equal(m.hdr.cmd, ELM_CMD_OPEN_SESSION);
    /* ... but a successful one must have them. */
    assert_int_equal(elm_proto_begin_reply(&b, &req, 0, NULL), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO);
    free(copy);

    assert_int_equal(elm_proto_begin_error(&b, 99, ELM_EPROTO, "unknown command"), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    assert_int_equal(m.hdr.cmd, ELM_CMD_ERROR);
    assert_int_equal(m.hdr.req_id, 99);
    assert_int_equal(m.status, ELM_EPROTO);
    assert_int_equal(elm_proto_begin_error(&b, 99, 0, "x"), -EINVAL);
    /* An error reply with status 0, or an ERROR request, is malformed. */
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_ERROR, ELM_PROTO_F_REPLY, 1), 0);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_ERROR, 0, 1), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO);
    elm_proto_buf_fini(&b);
}

/* ---------------------------------------------------------------------------------------------
 * Hand-made malformed frames
 */

struct raw {
    unsigned char b[ELM_PROTO_MAX_FRAME + 64];
    size_t n;
};

#define V ELM_PROTO_VERSION_MAX /* the version of the frames below */

static void raw_begin(struct raw *r, uint8_t version, uint16_t cmd, uint16_t flags)
{
    memcpy(r->b, "ELM", 3);
    r->b[3] = version;
    memcpy(r->b + 4, &cmd, 2);
    memcpy(r->b + 6, &flags, 2);
    uint32_t id = 5;
    memcpy(r->b + 8, &id, 4);
    r->n = 12;
}

static void raw_field(struct raw *r, uint16_t tag, uint16_t type, uint32_t len, const void *v)
{
    memcpy(r->b + r->n, &tag, 2);
    memcpy(r->b + r->n + 2, &type, 2);
    memcpy(r->b + r->n + 4, &len, 4);
    if (v)
        memcpy(r->b + r->n + 8, v, len);
    r->n += 8 + (v ? len : 0);
}

static void raw_u64(struct raw *r, uint16_t tag, uint64_t v)
{
    raw_field(r, tag, ELM_PT_U64, 8, &v);
}

/* Decodes r from an exactly-sized copy; returns the result. */
static int raw_decode(const struct raw *r, struct elm_proto_msg *m)
{
    void *copy = malloc(r->n ? r->n : 1);
    memcpy(copy, r->b, r->n);
    const char *why = NULL;
    int rc = elm_proto_decode(copy, r->n, m, &why);
    if (rc)
        assert_non_null(why);
    free(copy);
    return rc;
}

static void test_malformed(void **state)
{
    (void)state;
    static struct raw r;
    struct elm_proto_msg m;
    int64_t zero = 0, pos = 1, big = (int64_t)INT32_MIN - 1;

    raw_begin(&r, V, ELM_CMD_CANCEL, 0);
    raw_u64(&r, ELM_TAG_SESSION_ID, 1);
    assert_int_equal(raw_decode(&r, &m), 0); /* the baseline is valid */
    for (size_t cut = 0; cut < r.n; cut++) { /* every truncation */
        struct raw t = r;
        t.n = cut;
        assert_int_equal(raw_decode(&t, &m), ELM_EPROTO);
    }
    r.b[0] = 'X';
    assert_int_equal(raw_decode(&r, &m), ELM_EPROTO); /* magic */

#define EXPECT_BAD(...)                                                                            \
    do {                                                                                           \
        __VA_ARGS__;                                                                               \
        assert_int_equal(raw_decode(&r, &m), ELM_EPROTO);                                          \
    } while (0)
#define EXPECT_OK(...)                                                                             \
    do {                                                                                           \
        __VA_ARGS__;                                                                               \
        assert_int_equal(raw_decode(&r, &m), 0);                                                   \
    } while (0)

    EXPECT_BAD(raw_begin(&r, V, 0, 0));                  /* command 0 */
    EXPECT_BAD(raw_begin(&r, V, 11, 0));                 /* unknown command */
    EXPECT_BAD(raw_begin(&r, V, 0xffff, 0));             /* unknown command */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, 0x2)); /* unknown flag */
    EXPECT_BAD(raw_begin(&r, ELM_PROTO_VERSION_MAX + 1, ELM_CMD_SHUTDOWN, 0)); /* unsupported */
    EXPECT_BAD(raw_begin(&r, 1, ELM_CMD_SHUTDOWN, 0)); /* 1: before sealed regions, not spoken */
    EXPECT_BAD(raw_begin(&r, 0, ELM_CMD_SHUTDOWN, 0));   /* version 0 */
    EXPECT_OK(raw_begin(&r, V, ELM_CMD_SHUTDOWN, 0));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0)); /* session_id missing */
    EXPECT_BAD(raw_u64(&r, ELM_TAG_SESSION_ID, 1); raw_u64(&r, ELM_TAG_SESSION_ID, 2)); /* dup */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_u64(&r, ELM_TAG_PATH, 1)); /* wrong type for tag */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_u64(&r, ELM_TAG_N_CTX, 1)); /* not allowed here */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_u64(&r, 500, 1)); /* unknown critical tag */
    EXPECT_OK(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
              raw_field(&r, 0x8fff, 99, 3, "abc")); /* unknown optional: skipped */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_field(&r, 0x8fff, 99, 300, NULL)); /* ... but must fit */
    /* A known optional tag is typed: its type and value are checked, its place is not. */
    EXPECT_OK(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
              raw_u64(&r, ELM_TAG_KV_PAGES, 7); raw_u64(&r, ELM_TAG_KV_PAGES, 8));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_field(&r, ELM_TAG_KV_BACKING, ELM_PT_U64, 8, "12345678")); /* wrong type */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_field(&r, ELM_TAG_KV_PAGES, ELM_PT_U64, 4, "1234")); /* short integer */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0); raw_u64(&r, ELM_TAG_SESSION_ID, 1);
               raw_field(&r, ELM_TAG_KV_BACKING, ELM_PT_STR, 3, "a\0b")); /* NUL in string */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0);
               raw_field(&r, ELM_TAG_SESSION_ID, ELM_PT_U64, 4, "abcd")); /* short integer */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_CANCEL, 0);
               raw_field(&r, ELM_TAG_SESSION_ID, ELM_PT_U64, 0xffffffffu, NULL)); /* huge len */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_LOAD, 0);
               raw_field(&r, ELM_TAG_PATH, ELM_PT_STR, 5, "a\0b/c")); /* NUL in string */
    EXPECT_OK(raw_begin(&r, V, ELM_CMD_LOAD, 0); raw_field(&r, ELM_TAG_PATH, ELM_PT_STR, 0, ""));
    {
        static char longs[ELM_PROTO_MAX_STR + 1];
        memset(longs, 'a', sizeof longs);
        EXPECT_BAD(raw_begin(&r, V, ELM_CMD_LOAD, 0);
                   raw_field(&r, ELM_TAG_PATH, ELM_PT_STR, sizeof longs, longs));
        EXPECT_OK(raw_begin(&r, V, ELM_CMD_LOAD, 0);
                  raw_field(&r, ELM_TAG_PATH, ELM_PT_STR, sizeof longs - 1, longs));
    }
    /* Requests carry no status; replies must, in range. */
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, 0);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero));
    EXPECT_OK(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY);
              raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &pos));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &big));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero));
    EXPECT_BAD(raw_begin(&r, V, ELM_CMD_SHUTDOWN, ELM_PROTO_F_REPLY);
               raw_field(&r, ELM_TAG_STATUS, ELM_PT_U64, 8, &zero)); /* status is i64 */
    /* f64 must be finite. */
    double nan = NAN, fine = 1.0;
    raw_begin(&r, V, ELM_CMD_STATS, ELM_PROTO_F_REPLY);
    raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero);
    raw_u64(&r, ELM_TAG_UPTIME_NS, 1);
    raw_u64(&r, ELM_TAG_N_REQUESTS, 1);
    raw_u64(&r, ELM_TAG_N_PROMPT_TOKENS, 1);
    raw_u64(&r, ELM_TAG_N_GEN_TOKENS, 1);
    struct raw base = r;
    EXPECT_OK(raw_field(&r, ELM_TAG_GEN_TOKENS_PER_S, ELM_PT_F64, 8, &fine));
    r = base;
    EXPECT_BAD(raw_field(&r, ELM_TAG_GEN_TOKENS_PER_S, ELM_PT_F64, 8, &nan));
    /* Groups: required fields inside, no nesting, only where the schema allows. */
    unsigned char grp[64];
    struct raw in;
    raw_begin(&in, V, 1, 0);
    raw_u64(&in, ELM_TAG_SESSION_ID, 1);
    raw_u64(&in, ELM_TAG_STATE, 1);
    memcpy(grp, in.b + 12, in.n - 12);
    uint32_t glen = (uint32_t)(in.n - 12);
    raw_begin(&r, V, ELM_CMD_SESSIONS, ELM_PROTO_F_REPLY);
    raw_field(&r, ELM_TAG_STATUS, ELM_PT_I64, 8, &zero);
    base = r;
    EXPECT_OK(raw_field(&r, ELM_TAG_SESSION, ELM_PT_GROUP, glen, grp);
              raw_field(&r, ELM_TAG_SESSION, ELM_PT_GROUP, glen, grp));
    EXPECT_OK(r = base); /* an empty list */
    r = base;
    EXPECT_BAD(raw_field(&r, ELM_TAG_SESSION, ELM_PT_GROUP, 8 + 8, grp)); /* no STATE */
    r = base;
    EXPECT_BAD(raw_field(&r, ELM_TAG_SESSION, ELM_PT_GROUP, glen - 1, grp)); /* torn field */
    {
        unsigned char nested[128];
        struct raw g2;
        raw_begin(&g2, V, 1, 0);
        raw_u64(&g2, ELM_TAG_SESSION_ID, 1);
        raw_u64(&g2, ELM_TAG_STATE, 1);
        raw_field(&g2, ELM_TAG_SESSION, ELM_PT_GROUP, glen, grp);
        memcpy(nested, g2.b + 12, g2.n - 12);
        r = base;
        EXPECT_BAD(raw_field(&r, ELM_TAG_SESSION, ELM_PT_GROUP, (uint32_t)(g2.n - 12), nested));
    }
    /* Frame size bounds. */
    raw_begin(&r, V, ELM_CMD_LOAD, 0);
    r.n = ELM_PROTO_MAX_FRAME + 1;
    assert_int_equal(elm_proto_decode(r.b, r.n, &m, NULL), ELM_EPROTO);
    struct elm_proto_hdr h;
    assert_int_equal(elm_proto_decode_header(r.b, 12, &h), 0);
    assert_int_equal(h.req_id, 5);
    assert_int_equal(elm_proto_decode_header(r.b, 11, &h), ELM_EPROTO);
    assert_int_equal(elm_proto_decode(NULL, 0, &m, NULL), ELM_EPROTO);
#undef EXPECT_BAD
#undef EXPECT_OK
}

/* ---------------------------------------------------------------------------------------------
 * Builder errors and versions
 */

static void test_builder_errors(void **state)
{
    (void)state;
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    const void *f;
    size_t n;
    assert_int_equal(elm_proto_put_u64(&b, ELM_TAG_PID, 1), -EINVAL); /* no begin */
    assert_int_equal(elm_proto_finish(&b, &f, &n), -EINVAL);
    /* Past the frame limit: sticky -EMSGSIZE, cleared by the next begin. */
    static char chunk[ELM_PROTO_MAX_STR];
    memset(chunk, 'x', sizeof chunk);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_LOAD, 0, 1), 0);
    int rc = 0;
    for (int i = 0; i < 20 && rc == 0; i++)
        rc = elm_proto_put_strn(&b, ELM_TAG_PATH, chunk, sizeof chunk);
    assert_int_equal(rc, -EMSGSIZE);
    assert_int_equal(elm_proto_put_u64(&b, ELM_TAG_N_CTX, 1), -EMSGSIZE);
    assert_int_equal(elm_proto_finish(&b, &f, &n), -EMSGSIZE);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_LOAD, 0, 1), 0);
    assert_int_equal(elm_proto_put_strn(&b, ELM_TAG_PATH, chunk, ELM_PROTO_MAX_STR + 1), -EINVAL);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_LOAD, 0, 1), 0);
    assert_int_equal(elm_proto_put_str(&b, ELM_TAG_PATH, NULL), -EINVAL);
    /* Groups do not nest, and must be closed. */
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_SESSIONS, ELM_PROTO_F_REPLY, 1), 0);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
    assert_int_equal(elm_proto_group_begin(&b, ELM_TAG_SESSION), 0);
    assert_int_equal(elm_proto_group_begin(&b, ELM_TAG_SESSION), -EINVAL);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_SESSIONS, ELM_PROTO_F_REPLY, 1), 0);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, 0);
    assert_int_equal(elm_proto_group_begin(&b, ELM_TAG_SESSION), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), -EINVAL);
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_SESSIONS, ELM_PROTO_F_REPLY, 1), 0);
    assert_int_equal(elm_proto_group_end(&b), -EINVAL);
    /* A frame the peer would reject is caught by finish. */
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_LOAD, 0, 1), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO); /* path missing */
    assert_int_equal(elm_proto_begin(&b, 1, ELM_CMD_LOAD, 0, 1), 0);
    elm_proto_put_f64(&b, ELM_TAG_N_CTX, 1.0); /* wrong type */
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO);
    elm_proto_buf_fini(&b);
    assert_int_equal(elm_proto_begin(NULL, 1, 1, 0, 0), -EINVAL);
    assert_int_equal(elm_proto_put_u64(NULL, 1, 0), -EINVAL);
}

static void test_versions(void **state)
{
    (void)state;
    uint8_t v = 0;
    assert_int_equal(elm_proto_negotiate_range(1, 3, 2, 5, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(elm_proto_negotiate_range(2, 5, 1, 3, &v), 0);
    assert_int_equal(v, 3);
    assert_int_equal(elm_proto_negotiate_range(1, 1, 1, 1, &v), 0);
    assert_int_equal(v, 1);
    assert_int_equal(elm_proto_negotiate_range(1, 3, 1, 1000, &v), 0); /* a newer peer */
    assert_int_equal(v, 3);
    v = 0;
    assert_int_equal(elm_proto_negotiate_range(1, 2, 3, 4, &v), ELM_EPROTO); /* too new */
    assert_int_equal(elm_proto_negotiate_range(3, 4, 1, 2, &v), ELM_EPROTO); /* too old */
    assert_int_equal(elm_proto_negotiate_range(1, 2, 2, 1, &v), ELM_EPROTO); /* min > max */
    assert_int_equal(elm_proto_negotiate_range(1, 2, 0, 0, &v), ELM_EPROTO);
    assert_int_equal(v, 0); /* untouched on failure */
    assert_int_equal(elm_proto_negotiate_range(0, 2, 1, 2, &v), -EINVAL);
    assert_int_equal(elm_proto_negotiate_range(1, 256, 1, 2, &v), -EINVAL);
    assert_int_equal(elm_proto_negotiate(ELM_PROTO_VERSION_MIN, ELM_PROTO_VERSION_MAX, &v), 0);
    assert_int_equal(v, ELM_PROTO_VERSION_MAX);
    assert_int_equal(elm_proto_negotiate(ELM_PROTO_VERSION_MAX + 1, 200, &v), ELM_EPROTO);
    assert_true(elm_proto_version_is_supported(ELM_PROTO_VERSION_MIN));
    assert_false(elm_proto_version_is_supported(ELM_PROTO_VERSION_MAX + 1));
    assert_false(elm_proto_version_is_supported(0));

    /* HELLO and ERROR decode whatever the version byte, so a future client can negotiate and a
     * client of any version can read why it was refused; other commands cannot. */
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    const void *f;
    size_t n;
    struct elm_proto_msg m;
    assert_int_equal(elm_proto_begin(&b, 9, ELM_CMD_HELLO, 0, 1), 0);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MIN, 7);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MAX, 9);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    uint64_t lo, hi;
    assert_int_equal(elm_proto_get_u64(&m.body, ELM_TAG_VERSION_MIN, &lo), 0);
    assert_int_equal(elm_proto_get_u64(&m.body, ELM_TAG_VERSION_MAX, &hi), 0);
    assert_int_equal(elm_proto_negotiate(lo, hi, &v), ELM_EPROTO); /* daemon refuses... */
    void *req = malloc(n);
    memcpy(req, f, n);
    assert_int_equal(elm_proto_decode(req, n, &m, NULL), 0);
    assert_int_equal(elm_proto_begin_reply(&b, &m, ELM_EPROTO, "daemon speaks 1..1"), 0);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MIN, ELM_PROTO_VERSION_MIN);
    elm_proto_put_u64(&b, ELM_TAG_VERSION_MAX, ELM_PROTO_VERSION_MAX);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0); /* ...and says which it speaks */
    assert_int_equal(elm_proto_decode(f, n, &m, NULL), 0);
    assert_int_equal(m.status, ELM_EPROTO);
    assert_int_equal(m.hdr.version, 9);
    free(req);
    assert_int_equal(elm_proto_begin(&b, 9, ELM_CMD_STATUS, 0, 1), 0);
    assert_int_equal(elm_proto_finish(&b, &f, &n), ELM_EPROTO);
    assert_int_equal(elm_proto_begin(&b, 9, ELM_CMD_ERROR, ELM_PROTO_F_REPLY, 1), 0);
    elm_proto_put_i64(&b, ELM_TAG_STATUS, ELM_EPROTO);
    assert_int_equal(elm_proto_finish(&b, &f, &n), 0);
    elm_proto_buf_fini(&b);

    assert_string_equal(elm_proto_cmd_name(ELM_CMD_OPEN_SESSION), "open_session");
    assert_string_equal(elm_proto_cmd_name(999), "unknown");
    assert_string_equal(elm_proto_tag_name(ELM_TAG_REGION_SOCKET), "region_socket");
    assert_string_equal(elm_proto_tag_name(ELM_TAG_REGION_TOKEN), "region_token");
    assert_string_equal(elm_proto_tag_name(0x8001), "unknown");
    assert_string_equal(elm_proto_tag_name(ELM_TAG_ARCH), "arch");
    assert_string_equal(elm_proto_tag_name(ELM_TAG_N_KV_RECLAIMED), "n_kv_reclaimed");
    assert_string_equal(elm_proto_tag_name(ELM_TAG_OPT_END), "unknown");
    assert_int_equal(elm_proto_tag_type(ELM_TAG_HUGE_SHARE), ELM_PT_F64);
    assert_int_equal(elm_proto_tag_type(ELM_TAG_KV_BACKING), ELM_PT_STR);
    /* every optional tag has a name and a type */
    for (uint16_t t = ELM_TAG_ARCH; t < ELM_TAG_OPT_END; t++) {
        assert_true(elm_proto_tag_type(t) != 0);
        assert_string_not_equal(elm_proto_tag_name(t), "unknown");
    }
    assert_int_equal(elm_proto_tag_type(ELM_TAG_SESSION), ELM_PT_GROUP);
    assert_int_equal(elm_proto_tag_type(0), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Fuzz
 */

/* Reads every field of an accepted message the way a daemon or client would. */
static void touch(const struct elm_proto_msg *m)
{
    for (uint16_t tag = 1; tag < ELM_TAG_LIMIT; tag++) {
        uint64_t u;
        int64_t i;
        double d;
        const char *s;
        const void *p;
        uint32_t n;
        char buf[ELM_PROTO_MAX_STR + 1];
        elm_proto_get_u64(&m->body, tag, &u);
        elm_proto_get_i64(&m->body, tag, &i);
        if (elm_proto_get_f64(&m->body, tag, &d) == 0)
            assert_true(isfinite(d));
        if (elm_proto_get_str(&m->body, tag, &s, &n) == 0) {
            assert_true(n <= ELM_PROTO_MAX_STR);
            assert_null(memchr(s, 0, n));
        }
        elm_proto_get_bytes(&m->body, tag, &p, &n);
        elm_proto_copy_str(&m->body, tag, buf, sizeof buf);
    }
    /* and through the field tables, as libelmclient reads replies (any result but a crash) */
    static struct elm_daemon_status st;
    struct elm_daemon_stats ds = {0};
    struct elm_load_result lr = {0};
    memset(&st, 0, sizeof st);
    elm_fields_get(&m->body, &elm_fields_status, &st);
    elm_fields_get(&m->body, &elm_fields_stats, &ds);
    elm_fields_get(&m->body, &elm_fields_load, &lr);
    uint32_t cur = 0;
    struct elm_proto_view g;
    while (elm_proto_next_group(&m->body, ELM_TAG_SESSION, &cur, &g) == 0) {
        uint64_t u;
        struct elm_session_info si = {0};
        assert_int_equal(elm_proto_get_u64(&g, ELM_TAG_SESSION_ID, &u), 0);
        assert_int_equal(elm_proto_get_u64(&g, ELM_TAG_STATE, &u), 0);
        elm_fields_get(&g, &elm_fields_session, &si);
    }
}

static void test_fuzz(void **state)
{
    (void)state;
    /* Corpus: every valid frame from the round trips. */
    enum { NC = 2 * N_CMDS + 1 };
    unsigned char *corpus[NC];
    size_t clen[NC];
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    for (size_t k = 0; k < NC; k++) {
        if (k < 2 * N_CMDS)
            build(&b, all_cmds[k / 2], k % 2);
        else
            elm_proto_begin_error(&b, 3, ELM_EPROTO, "bad");
        const void *f;
        assert_int_equal(elm_proto_finish(&b, &f, &clen[k]), 0);
        corpus[k] = malloc(clen[k]);
        memcpy(corpus[k], f, clen[k]);
    }
    elm_proto_buf_fini(&b);

    uint64_t s = 0xf022;
    unsigned char *tmp = malloc(4096);
    int accepted = 0;
    const int iterations = 200000;
    for (int it = 0; it < iterations; it++) {
        size_t len;
        if (it % 5 == 0) { /* random bytes, often with a plausible header */
            len = rng_below(&s, 200);
            for (size_t i = 0; i < len; i++)
                tmp[i] = (unsigned char)rng_next(&s);
            if (len >= 12 && rng_below(&s, 2)) {
                memcpy(tmp, "ELM\x01", 4);
                tmp[4] = (unsigned char)(1 + rng_below(&s, 11));
                tmp[5] = 0;
                tmp[6] = (unsigned char)rng_below(&s, 2);
                tmp[7] = 0;
            }
        } else { /* a valid frame, mutated */
            size_t k = rng_below(&s, NC);
            len = clen[k];
            memcpy(tmp, corpus[k], len);
            for (int n = 1 + (int)rng_below(&s, 3); n > 0 && len; n--) {
                size_t at = rng_below(&s, (uint32_t)len);
                switch (rng_below(&s, 6)) {
                case 0:
                    tmp[at] = (unsigned char)rng_next(&s);
                    break;
                case 1:
                    tmp[at] ^= (unsigned char)(1u << rng_below(&s, 8));
                    break;
                case 2:
                    len = at;
                    break;
                case 3: /* a field length word set to something near the truth */
                    if (at + 4 <= len) {
                        uint32_t v = (uint32_t)(len - at) + rng_below(&s, 16) - 8;
                        memcpy(tmp + at, &v, 4);
                    }
                    break;
                case 4: /* duplicate a chunk */
                    if (len + 16 < 4096 && at + 16 <= len) {
                        memmove(tmp + at + 16, tmp + at, len - at);
                        len += 16;
                    }
                    break;
                default:
                    tmp[at] = 0;
                    break;
                }
            }
        }
        unsigned char *frame = malloc(len ? len : 1);
        memcpy(frame, tmp, len);
        struct elm_proto_msg m;
        int rc = elm_proto_decode(frame, len, &m, NULL);
        if (rc == 0) {
            assert_true(m.body.p == frame + ELM_PROTO_HDR_SIZE);
            assert_int_equal(m.body.len, len - ELM_PROTO_HDR_SIZE);
            touch(&m);
            accepted++;
        } else {
            assert_int_equal(rc, ELM_EPROTO);
        }
        free(frame);
    }
    free(tmp);
    for (size_t k = 0; k < NC; k++)
        free(corpus[k]);
    print_message("proto fuzz: %d frames, %d accepted\n", iterations, accepted);
    assert_true(accepted > 100);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip_all), cmocka_unit_test(test_error_replies),
        cmocka_unit_test(test_malformed),     cmocka_unit_test(test_builder_errors),
        cmocka_unit_test(test_versions),      cmocka_unit_test(test_fuzz),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
