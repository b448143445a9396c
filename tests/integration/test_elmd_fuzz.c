/* test_elmd_fuzz.c — a hostile control peer: a seeded loop of 12,000 frames (random bytes,
 * truncated valid messages, valid headers with garbage fields, unknown commands, versions and
 * flags, mutated valid messages), each of which must get a reply that decodes — an ERROR reply
 * for every frame our own decoder rejects — after which the daemon still serves and counts
 * exactly those frames as malformed. Also: bad envelopes, an oversized frame, and a peer that
 * floods requests without reading the replies.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include "ipc/schema.h"
#include "tests/common/elmd_fixture.h"

#define N_FUZZ 12000

static uint64_t rng_state;

static uint64_t rnd(void)
{
    /* xorshift64*: deterministic from the seed, so a failure can be replayed */
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ull;
}

static void fill(unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (unsigned char)rnd();
}

/* Commands that change the daemon's state: a fuzz frame that happens to be a valid one of
 * these is not sent (the test is about bad input, not about loading random paths). */
static bool is_state_changing(uint16_t cmd)
{
    return cmd == ELM_CMD_LOAD || cmd == ELM_CMD_UNLOAD || cmd == ELM_CMD_OPEN_SESSION ||
           cmd == ELM_CMD_CLOSE_SESSION || cmd == ELM_CMD_CANCEL || cmd == ELM_CMD_SHUTDOWN;
}

/* A valid request of a harmless command, with fields. */
static size_t valid_frame(unsigned char *out, size_t cap)
{
    struct elm_proto_buf b;
    elm_proto_buf_init(&b);
    switch (rnd() % 4) {
    case 0:
        elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_HELLO, 0, (uint32_t)rnd());
        elm_proto_put_u64(&b, ELM_TAG_VERSION_MIN, ELM_PROTO_VERSION_MIN);
        elm_proto_put_u64(&b, ELM_TAG_VERSION_MAX, ELM_PROTO_VERSION_MIN + rnd() % 3);
        elm_proto_put_str(&b, ELM_TAG_CLIENT_NAME, "fuzzer");
        elm_proto_put_u64(&b, ELM_TAG_PID, rnd() % 100000);
        break;
    case 1:
        elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_STATUS, 0, (uint32_t)rnd());
        break;
    case 2:
        elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_STATS, 0, (uint32_t)rnd());
        break;
    default:
        /* a valid-looking LOAD: only ever sent truncated or mutated */
        elm_proto_begin(&b, ELM_PROTO_VERSION_MAX, ELM_CMD_LOAD, 0, (uint32_t)rnd());
        elm_proto_put_str(&b, ELM_TAG_PATH, "/nonexistent/model.gguf");
        elm_proto_put_u64(&b, ELM_TAG_N_CTX, 128);
        break;
    }
    const void *f;
    size_t n = 0;
    if (elm_proto_finish(&b, &f, &n) == 0 && n <= cap)
        memcpy(out, f, n);
    elm_proto_buf_fini(&b);
    return n;
}

static size_t fuzz_frame(unsigned char *p, size_t cap)
{
    size_t n;
    switch (rnd() % 6) {
    case 0: /* random bytes, sometimes with the magic */
        n = rnd() % 300;
        fill(p, n);
        if (n >= 3 && rnd() % 2)
            memcpy(p, "ELM", 3);
        return n;
    case 1: /* a valid message cut short */
        n = valid_frame(p, cap);
        return n ? rnd() % n : 0;
    case 2: /* a valid header, then garbage fields */
        n = 12 + rnd() % 200;
        fill(p, n);
        memcpy(p, "ELM", 3);
        p[3] = ELM_PROTO_VERSION_MAX;
        p[4] = (unsigned char)(1 + rnd() % 10);
        p[5] = 0;
        p[6] = p[7] = 0;
        if (rnd() % 2 && n >= 20) { /* a plausible field header with a lying length */
            p[12] = (unsigned char)(1 + rnd() % 40);
            p[13] = 0;
            p[14] = (unsigned char)(1 + rnd() % 6);
            p[15] = 0;
        }
        return n;
    case 3: { /* unknown command, version or flags on an otherwise valid frame */
        n = valid_frame(p, cap);
        switch (rnd() % 3) {
        case 0:
            p[4] = (unsigned char)(11 + rnd() % 200);
            p[5] = (unsigned char)(rnd() % 2);
            break;
        case 1:
            p[3] = (unsigned char)(rnd() % 2 ? 0 : ELM_PROTO_VERSION_MAX + 1 + rnd() % 200);
            break;
        default:
            p[6] = (unsigned char)(rnd() | 2);
            break;
        }
        return n;
    }
    case 4: /* a valid message with a few bytes flipped */
        n = valid_frame(p, cap);
        for (int k = 0; k < 1 + (int)(rnd() % 4) && n; k++)
            p[rnd() % n] ^= (unsigned char)(1 + rnd() % 255);
        return n;
    default: /* a reply sent to the daemon */
        n = valid_frame(p, cap);
        if (n >= 8)
            p[6] |= ELM_PROTO_F_REPLY;
        return n;
    }
}

static int teardown(void **state)
{
    struct td *t = *state;
    if (t) {
        if (getenv("ELMD_TEST_LOG"))
            td_dump_log(t);
        int rc = td_cleanup(t);
        free(t);
        return rc;
    }
    return 0;
}

static struct td *start(void **state)
{
    ELM_REQUIRE_MODEL(model, TD_MODEL);
    struct td *t = calloc(1, sizeof *t);
    *state = t;
    /* info, not debug: 12,000 debug lines would only slow the loop down */
    const char *extra[] = {"--log-level", "info", NULL};
    if (td_start(t, model, extra))
        fail_msg("elmd did not start");
    return t;
}

static void test_fuzz_control(void **state)
{
    struct td *t = start(state);
    struct tc c;
    tc_open_path(&c, t->dir);
    static unsigned char frame[ELM_PROTO_MAX_FRAME];
    rng_state = 0x5eed0f1e1d;
    uint64_t malformed = 0, sent = 0, errors = 0;
    while (sent < N_FUZZ) {
        size_t n = fuzz_frame(frame, sizeof frame);
        struct elm_proto_msg m;
        bool bad = elm_proto_decode(frame, n, &m, NULL) != 0 || (m.hdr.flags & ELM_PROTO_F_REPLY);
        if (!bad && is_state_changing(m.hdr.cmd))
            continue;
        struct elm_proto_hdr h = {0};
        bool hdr_ok = elm_proto_decode_header(frame, n, &h) == 0;
        assert_int_equal(tc_send_raw(&c, frame, n), 0);
        sent++;
        malformed += bad;
        int len = tc_recv_raw(&c, 5000);
        if (len < 0)
            fail_msg("frame %llu (%zu bytes): no reply: %s", (unsigned long long)sent, n,
                     elm_strerror(len));
        struct elm_proto_msg rep;
        assert_int_equal(elm_proto_decode(c.in, (size_t)len, &rep, NULL), 0);
        assert_true(rep.hdr.flags & ELM_PROTO_F_REPLY);
        if (bad) {
            assert_int_equal(rep.hdr.cmd, ELM_CMD_ERROR);
            assert_int_equal(rep.status, ELM_EPROTO);
            assert_int_equal(rep.hdr.req_id, hdr_ok ? h.req_id : 0);
            errors++;
        } else {
            assert_int_equal(rep.hdr.cmd, m.hdr.cmd);
            assert_int_equal(rep.hdr.req_id, m.hdr.req_id);
        }
    }
    print_message("%llu frames, %llu malformed (all answered with ERROR)\n",
                  (unsigned long long)sent, (unsigned long long)malformed);
    assert_true(malformed > N_FUZZ / 2);

    /* Still serving, and it counted exactly what our decoder rejects. */
    tc_begin(&c, ELM_CMD_HELLO);
    elm_proto_put_u64(&c.out, ELM_TAG_VERSION_MIN, ELM_PROTO_VERSION_MIN);
    elm_proto_put_u64(&c.out, ELM_TAG_VERSION_MAX, ELM_PROTO_VERSION_MAX);
    assert_int_equal(tc_call(&c, 5000), 0);
    assert_int_equal(tc_u64(&c, ELM_TAG_VERSION), ELM_PROTO_VERSION_MAX);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_string_equal(tc_str(&c, ELM_TAG_PATH), elm_test_model_path(TD_MODEL));
    assert_int_equal(tc_simple(&c, ELM_CMD_STATS), 0);
    assert_int_equal(tc_u64(&c, ELM_TAG_N_MALFORMED), malformed);
    assert_true(tc_u64(&c, ELM_TAG_N_CONTROL) >= sent + 3);
    tc_close(&c);
}

static void test_bad_envelopes_and_sizes(void **state)
{
    struct td *t = start(state);
    struct tc c;
    tc_open_path(&c, t->dir);
    unsigned char frame[64];
    size_t n = 0;
    rng_state = 7;
    while ((n = valid_frame(frame, sizeof frame)) == 0 || frame[4] == ELM_CMD_LOAD)
        ;
    /* A REQ-style empty delimiter is an envelope: the reply comes back inside the same one. */
    assert_true(zmq_send(c.sock, "", 0, ZMQ_SNDMORE) == 0);
    assert_true(zmq_send(c.sock, frame, n, 0) == (int)n);
    unsigned char buf[4096]; /* a whole reply: STATS with its per-model line is over 512 bytes */
    assert_int_equal(tc_recv_raw(&c, 5000), 0); /* the delimiter */
    int more;
    size_t sz = sizeof more;
    zmq_getsockopt(c.sock, ZMQ_RCVMORE, &more, &sz);
    assert_true(more);
    int len = zmq_recv(c.sock, buf, sizeof buf, 0);
    assert_true(len > 0 && (size_t)len <= sizeof buf);
    struct elm_proto_msg rep;
    assert_int_equal(elm_proto_decode(buf, (size_t)len, &rep, NULL), 0);
    assert_int_equal(rep.status, 0);
    /* Too many envelope frames: an ERROR (sent back inside what could be kept). */
    for (int i = 0; i < 4; i++)
        assert_true(zmq_send(c.sock, "xx", 2, ZMQ_SNDMORE) == 2);
    assert_true(zmq_send(c.sock, frame, n, 0) == (int)n);
    int64_t end = td_now_ms() + 5000;
    bool got_error = false;
    while (!got_error && td_now_ms() < end) {
        if (tc_recv_raw(&c, 1000) < 0)
            continue;
        if (elm_proto_decode(c.in, (size_t)c.in_len, &rep, NULL) == 0 &&
            rep.hdr.cmd == ELM_CMD_ERROR)
            got_error = true;
    }
    assert_true(got_error);
    tc_close(&c);

    /* A frame above the protocol's limit: ZeroMQ drops the peer before elmd reads it. */
    tc_open_path(&c, t->dir);
    size_t big = ELM_PROTO_MAX_FRAME * 2;
    unsigned char *p = calloc(1, big);
    memcpy(p, "ELM", 3);
    assert_int_equal(tc_send_raw(&c, p, big), 0);
    free(p);
    assert_int_equal(tc_recv_raw(&c, 500), -ETIMEDOUT);
    tc_close(&c);
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    tc_close(&c);
}

static void test_flood_without_reading(void **state)
{
    struct td *t = start(state);
    struct tc flood, c;
    tc_open_path(&flood, t->dir);
    unsigned char frame[64];
    size_t n;
    rng_state = 11;
    while ((n = valid_frame(frame, sizeof frame)) == 0 || frame[4] == ELM_CMD_LOAD)
        ;
    int64_t t0 = td_now_ms();
    for (int i = 0; i < 20000; i++)
        if (zmq_send(flood.sock, frame, n, ZMQ_DONTWAIT) < 0)
            break; /* our own send queue is full: enough */
    /* Another client is answered promptly meanwhile. */
    tc_open_path(&c, t->dir);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATS), 0);
    print_message("flood: answered another client after %lld ms; %llu replies dropped so far\n",
                  (long long)(td_now_ms() - t0), (unsigned long long)tc_u64(&c, ELM_TAG_N_DROPPED));
    tc_close(&flood);
    assert_int_equal(tc_simple(&c, ELM_CMD_STATUS), 0);
    tc_close(&c);
}

int main(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    alarm(300);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_fuzz_control, teardown),
        cmocka_unit_test_teardown(test_bad_envelopes_and_sizes, teardown),
        cmocka_unit_test_teardown(test_flood_without_reading, teardown),
    };
    if (getenv("ELMD_TEST_FILTER"))
        cmocka_set_test_filter(getenv("ELMD_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
