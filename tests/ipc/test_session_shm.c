/* test_session_shm.c — session region records (ipc/session_shm.h): encoders, decoders, and a
 * whole conversation between two processes.
 *
 * Every record type round-trips through a real ring. Decoders are fed every truncation of a
 * valid payload, hand-made hostile payloads (lengths that overflow, counts past their bounds,
 * NaN parameters, trailing bytes) and a seeded fuzz loop of random and mutated payloads in
 * exactly-sized heap buffers (ASan): each must be rejected with ELM_EPROTO or decode to values
 * that respect every documented bound. Finally a forked "daemon" maps the region by name and
 * answers prompts with TOKEN and DONE records while the parent plays the client.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "elm/status.h"
#include "ipc/session_shm.h"
#include "ipc/shm.h"
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

static const char *stops[] = {"</s>", "\n\nUser:", "###"};

static struct elm_prompt_msg sample_prompt(void)
{
    struct elm_prompt_msg m;
    memset(&m, 0, sizeof m);
    m.hdr.req_id = 42;
    m.hdr.flags = ELM_PROMPT_F_ADD_BOS;
    m.hdr.n_predict = 128;
    m.hdr.top_k = 40;
    m.hdr.temp = 0.8f;
    m.hdr.top_p = 0.95f;
    m.hdr.min_p = 0.05f;
    m.hdr.repeat_penalty = 1.1f;
    m.hdr.repeat_last_n = 64;
    m.hdr.seed = 0x1234567890abcdefull;
    m.text = "Once upon a time";
    m.hdr.prompt_len = (uint32_t)strlen(m.text);
    m.hdr.n_stop = 3;
    for (int i = 0; i < 3; i++) {
        m.stop[i] = stops[i];
        m.stop_len[i] = (uint32_t)strlen(stops[i]);
    }
    return m;
}

/* A ring pair in heap memory for round trips. */
struct pair {
    void *mem;
    struct elm_session_rings d, c; /* daemon's and client's views */
};

static void pair_new(struct pair *p, uint32_t req_cap, uint32_t evt_cap)
{
    size_t size;
    assert_int_equal(elm_session_shm_size(req_cap, evt_cap, &size), 0);
    p->mem = aligned_alloc(ELM_RING_CACHELINE,
                           (size + ELM_RING_CACHELINE - 1) & ~(size_t)(ELM_RING_CACHELINE - 1));
    assert_non_null(p->mem);
    assert_int_equal(elm_session_shm_init(p->mem, size, req_cap, evt_cap), 0);
    assert_int_equal(
        elm_session_shm_attach(p->mem, size, req_cap, evt_cap, ELM_SESSION_DAEMON, &p->d), 0);
    assert_int_equal(
        elm_session_shm_attach(p->mem, size, req_cap, evt_cap, ELM_SESSION_CLIENT, &p->c), 0);
}

/* ---------------------------------------------------------------------------------------------
 * Round trips
 */

static void test_layout(void **state)
{
    (void)state;
    size_t size;
    assert_int_equal(elm_session_shm_size(4096, 1024, &size), 0);
    assert_int_equal(size, 128 + 512 + 4096 + 512 + 1024);
    assert_int_equal(elm_session_shm_size(4096, 1000, &size), -EINVAL);
    /* a request ring shorter than a line: the event ring still starts a line of its own */
    assert_int_equal(elm_session_shm_size(64, 64, &size), 0);
    assert_int_equal(size, 128 + 512 + 128 + 512 + 64);
    assert_int_equal(elm_session_shm_size(4096, 1024, &size), 0);
    struct pair p;
    pair_new(&p, 4096, 1024);
    const struct elm_session_shm *h = p.mem;
    assert_int_equal(h->magic, ELM_SESSION_SHM_MAGIC);
    assert_int_equal(h->req_offset, 128);
    assert_int_equal(h->evt_offset, 128 + 512 + 4096);
    assert_int_equal(p.d.req.role, ELM_RING_CONSUMER);
    assert_int_equal(p.d.evt.role, ELM_RING_PRODUCER);
    assert_int_equal(elm_session_shm_init(p.mem, size - 64, 4096, 1024), -EINVAL); /* size */
    assert_int_equal(elm_session_shm_init((char *)p.mem + 64, size, 4096, 1024),
                     -EINVAL); /* 64-aligned is not a 128-byte line */
    assert_true(elm_rec_is_request(ELM_REC_PROMPT) && !elm_rec_is_request(ELM_REC_TOKEN));
    assert_true(elm_rec_is_event(ELM_REC_DONE) && !elm_rec_is_event(ELM_REC_CANCEL));
    assert_string_equal(elm_rec_type_name(ELM_REC_ERROR), "error");
    assert_string_equal(elm_rec_type_name(999), "unknown");
    free(p.mem);
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p, 4096, 4096);
    unsigned char buf[4096];
    struct elm_ring_rec rec;

    struct elm_prompt_msg m = sample_prompt(), d;
    uint32_t size, len;
    assert_int_equal(elm_rec_prompt_size(&m, &size), 0);
    assert_int_equal(size, 56 + 16 + 3 * 4 + 4 + 7 + 3);
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &m), 0);
    assert_int_equal(elm_rec_cancel_push(&p.c.req, 42), 0);
    assert_int_equal(elm_ring_pop(&p.d.req, &rec, buf, sizeof buf), 0);
    assert_int_equal(rec.type, ELM_REC_PROMPT);
    assert_int_equal(rec.len, size);
    assert_int_equal(elm_rec_prompt_decode(buf, rec.len, &d), 0);
    assert_memory_equal(&d.hdr, &m.hdr, sizeof m.hdr);
    assert_memory_equal(d.text, m.text, m.hdr.prompt_len);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d.stop_len[i], m.stop_len[i]);
        assert_memory_equal(d.stop[i], m.stop[i], m.stop_len[i]);
    }
    assert_null(d.stop[3]);
    /* encode() produces the same bytes as push() */
    unsigned char enc[4096];
    assert_int_equal(elm_rec_prompt_encode(&m, enc, sizeof enc, &len), 0);
    assert_int_equal(len, size);
    assert_memory_equal(enc, buf, len);
    assert_int_equal(elm_rec_prompt_encode(&m, enc, len - 1, &len), -EMSGSIZE);

    uint32_t id;
    assert_int_equal(elm_ring_pop(&p.d.req, &rec, buf, sizeof buf), 0);
    assert_int_equal(rec.type, ELM_REC_CANCEL);
    assert_int_equal(elm_rec_cancel_decode(buf, rec.len, &id), 0);
    assert_int_equal(id, 42);

    struct elm_rec_done done = {42, ELM_DONE_STOP, 5, 2, 1000, 2000}, dd;
    assert_int_equal(elm_rec_token_push(&p.d.evt, 15043, "Hello", 5), 0);
    assert_int_equal(elm_rec_token_push(&p.d.evt, 0, NULL, 0), 0);
    assert_int_equal(elm_rec_done_push(&p.d.evt, &done), 0);
    assert_int_equal(elm_rec_error_push(&p.d.evt, 43, ELM_ECONTEXT, "prompt too long"), 0);
    assert_int_equal(elm_rec_error_push(&p.d.evt, 44, -ENOMEM, NULL), 0);

    struct elm_token_msg t;
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(rec.type, ELM_REC_TOKEN);
    assert_int_equal(elm_rec_token_decode(buf, rec.len, &t), 0);
    assert_int_equal(t.id, 15043);
    assert_int_equal(t.piece_len, 5);
    assert_memory_equal(t.piece, "Hello", 5);
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(elm_rec_token_decode(buf, rec.len, &t), 0);
    assert_int_equal(t.piece_len, 0);
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(rec.type, ELM_REC_DONE);
    assert_int_equal(elm_rec_done_decode(buf, rec.len, &dd), 0);
    assert_memory_equal(&dd, &done, sizeof done);
    struct elm_error_msg e;
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(elm_rec_error_decode(buf, rec.len, &e), 0);
    assert_int_equal(e.req_id, 43);
    assert_int_equal(e.code, ELM_ECONTEXT);
    assert_memory_equal(e.msg, "prompt too long", e.msg_len);
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(elm_rec_error_decode(buf, rec.len, &e), 0);
    assert_int_equal(e.msg_len, 0);
    free(p.mem);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p, 256, 4096);
    struct elm_prompt_msg m = sample_prompt();
    uint32_t size;
    struct {
        int field;
        float v;
    } bad_f[] = {
        {0, NAN}, {0, -1.0f}, {0, INFINITY}, {1, 1.5f}, {1, NAN}, {2, -0.1f}, {3, 0.0f}, {3, NAN},
    };
    for (size_t i = 0; i < sizeof bad_f / sizeof bad_f[0]; i++) {
        struct elm_prompt_msg b = m;
        float *f[] = {&b.hdr.temp, &b.hdr.top_p, &b.hdr.min_p, &b.hdr.repeat_penalty};
        *f[bad_f[i].field] = bad_f[i].v;
        assert_int_equal(elm_rec_prompt_size(&b, &size), -EINVAL);
        assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    }
    struct elm_prompt_msg b = m;
    b.hdr.flags = 0x100;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.hdr.n_stop = ELM_REC_MAX_STOP + 1;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.stop_len[1] = 0;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.stop_len[1] = ELM_REC_MAX_STOP_LEN + 1;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.hdr.top_k = -1;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.hdr.top_p = 1.0001f; /* common/sampling.h's range, as in the engine and libelmclient */
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    b = m;
    b.text = NULL;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EINVAL);
    /* Fits the codec, not the 256-byte ring: the ring says so. */
    static char big[300];
    memset(big, 'a', sizeof big);
    b = m;
    b.text = big;
    b.hdr.prompt_len = sizeof big;
    assert_int_equal(elm_rec_prompt_push(&p.c.req, &b), -EMSGSIZE);
    /* Wrong direction: a client view cannot produce events. */
    /* Direction is the reader's check (elm_rec_is_request): the codec only sees a ring. */
    assert_int_equal(elm_rec_token_push(&p.c.req, 1, "x", 1), 0);
    assert_int_equal(elm_rec_token_push(&p.c.evt, 1, "x", 1), -EINVAL); /* consumer view */
    assert_int_equal(elm_rec_token_push(&p.d.evt, -1, "x", 1), -EINVAL);
    assert_int_equal(elm_rec_token_push(&p.d.evt, 1, big, ELM_REC_MAX_PIECE + 1), -EINVAL);
    struct elm_rec_done done = {1, 0, 0, 0, 0, 0};
    assert_int_equal(elm_rec_done_push(&p.d.evt, &done), -EINVAL);
    done.reason = ELM_DONE_LAST + 1;
    assert_int_equal(elm_rec_done_push(&p.d.evt, &done), -EINVAL);
    assert_int_equal(elm_rec_error_push(&p.d.evt, 1, 0, "no"), -EINVAL);
    /* An over-long message is truncated, not refused. */
    static char longmsg[ELM_REC_MAX_ERROR_MSG + 100];
    memset(longmsg, 'm', sizeof longmsg - 1);
    assert_int_equal(elm_rec_error_push(&p.d.evt, 1, -EIO, longmsg), 0);
    unsigned char buf[4096];
    struct elm_ring_rec rec;
    struct elm_error_msg e;
    assert_int_equal(elm_ring_pop(&p.c.evt, &rec, buf, sizeof buf), 0);
    assert_int_equal(elm_rec_error_decode(buf, rec.len, &e), 0);
    assert_int_equal(e.msg_len, ELM_REC_MAX_ERROR_MSG);
    free(p.mem);
}

/* ---------------------------------------------------------------------------------------------
 * Hostile payloads
 */

/* Decodes p with every decoder; each must reject it or return values within bounds. Returns
 * how many accepted it. */
static int decode_all(const unsigned char *p, uint32_t len)
{
    int ok = 0;
    struct elm_prompt_msg m;
    if (elm_rec_prompt_decode(p, len, &m) == 0) {
        assert_true(m.hdr.n_stop <= ELM_REC_MAX_STOP);
        assert_true(m.text >= (const char *)p &&
                    m.text + m.hdr.prompt_len <= (const char *)p + len);
        for (uint32_t i = 0; i < m.hdr.n_stop; i++) {
            assert_true(m.stop_len[i] >= 1 && m.stop_len[i] <= ELM_REC_MAX_STOP_LEN);
            assert_true(m.stop[i] >= (const char *)p &&
                        m.stop[i] + m.stop_len[i] <= (const char *)p + len);
        }
        assert_true(isfinite(m.hdr.temp) && m.hdr.top_p >= 0 && m.hdr.top_p <= 1);
        ok++;
    }
    uint32_t id;
    ok += elm_rec_cancel_decode(p, len, &id) == 0;
    struct elm_token_msg t;
    if (elm_rec_token_decode(p, len, &t) == 0) {
        assert_true(t.id >= 0 && t.piece_len <= ELM_REC_MAX_PIECE && t.piece_len + 8 == len);
        ok++;
    }
    struct elm_rec_done d;
    if (elm_rec_done_decode(p, len, &d) == 0) {
        assert_true(d.reason >= ELM_DONE_EOS && d.reason <= ELM_DONE_LAST);
        ok++;
    }
    struct elm_error_msg e;
    if (elm_rec_error_decode(p, len, &e) == 0) {
        assert_true(e.code < 0 && e.msg_len <= ELM_REC_MAX_ERROR_MSG && e.msg_len + 16 == len);
        ok++;
    }
    return ok;
}

static void test_decode_hostile(void **state)
{
    (void)state;
    struct elm_prompt_msg m = sample_prompt(), d;
    unsigned char enc[1024];
    uint32_t len;
    assert_int_equal(elm_rec_prompt_encode(&m, enc, sizeof enc, &len), 0);
    /* Every truncation, in an exactly-sized buffer. */
    for (uint32_t n = 0; n < len; n++) {
        unsigned char *b = malloc(n ? n : 1);
        memcpy(b, enc, n);
        assert_int_equal(elm_rec_prompt_decode(b, n, &d), ELM_EPROTO);
        free(b);
    }
    /* Trailing byte, hostile counts and lengths. */
    enc[len] = 0;
    assert_int_equal(elm_rec_prompt_decode(enc, len + 1, &d), ELM_EPROTO);
    struct elm_rec_prompt h;
    memcpy(&h, enc, sizeof h);
    struct {
        size_t off;
        uint32_t v;
    } pokes[] = {
        {offsetof(struct elm_rec_prompt, prompt_len), 0xffffffffu},
        {offsetof(struct elm_rec_prompt, prompt_len), 0xfffffff0u},
        {offsetof(struct elm_rec_prompt, n_stop), 9},
        {offsetof(struct elm_rec_prompt, n_stop), 0x80000000u},
        {offsetof(struct elm_rec_prompt, flags), 0x10},
        {offsetof(struct elm_rec_prompt, flags), 0x8}, /* MESSAGES, but the text is not */
        {offsetof(struct elm_rec_prompt, reserved), 1},
        {offsetof(struct elm_rec_prompt, top_k), 0xffffffffu},
        {offsetof(struct elm_rec_prompt, temp), 0x7fc00000u},           /* NaN */
        {offsetof(struct elm_rec_prompt, repeat_penalty), 0x80000000u}, /* -0.0 */
        {sizeof h + 16, 0xffffffffu},                                   /* first stop length */
        {sizeof h + 16, 0},
        {sizeof h + 16, 129},
    };
    for (size_t i = 0; i < sizeof pokes / sizeof pokes[0]; i++) {
        unsigned char b[1024];
        memcpy(b, enc, len);
        memcpy(b + pokes[i].off, &pokes[i].v, 4);
        assert_int_equal(elm_rec_prompt_decode(b, len, &d), ELM_EPROTO);
    }
    unsigned char tok[12] = {1, 0, 0, 0, 4, 0, 0, 0, 'a', 'b', 'c', 'd'};
    struct elm_token_msg t;
    assert_int_equal(elm_rec_token_decode(tok, 12, &t), 0);
    assert_int_equal(elm_rec_token_decode(tok, 11, &t), ELM_EPROTO);
    tok[4] = 0xff; /* piece_len 255 + ... beyond the payload */
    assert_int_equal(elm_rec_token_decode(tok, 12, &t), ELM_EPROTO);
    tok[4] = 4;
    tok[3] = 0x80; /* negative id */
    assert_int_equal(elm_rec_token_decode(tok, 12, &t), ELM_EPROTO);
    uint32_t id;
    unsigned char cancel[8] = {1, 0, 0, 0, 1, 0, 0, 0};
    assert_int_equal(elm_rec_cancel_decode(cancel, 8, &id), ELM_EPROTO); /* reserved != 0 */
    assert_int_equal(elm_rec_cancel_decode(cancel, 4, &id), ELM_EPROTO);
    assert_int_equal(elm_rec_done_decode(cancel, 8, NULL), ELM_EPROTO);
    /* Reason 5 (once "context", now reported as LENGTH) and 0 are not valid reasons. */
    struct elm_rec_done dn = {1, ELM_DONE_LENGTH, 3, 4, 5, 6}, got;
    assert_int_equal(elm_rec_done_decode(&dn, sizeof dn, &got), 0);
    assert_int_equal(got.reason, ELM_DONE_LENGTH);
    dn.reason = 5;
    assert_int_equal(elm_rec_done_decode(&dn, sizeof dn, &got), ELM_EPROTO);
    dn.reason = 0;
    assert_int_equal(elm_rec_done_decode(&dn, sizeof dn, &got), ELM_EPROTO);
    assert_int_equal(elm_rec_prompt_decode(NULL, 0, &d), ELM_EPROTO);
}

static void test_decode_fuzz(void **state)
{
    (void)state;
    uint64_t s = 0x5eed;
    struct elm_prompt_msg m = sample_prompt();
    unsigned char seeds[4][256];
    uint32_t seed_len[4];
    assert_int_equal(elm_rec_prompt_encode(&m, seeds[0], 256, &seed_len[0]), 0);
    struct elm_rec_token t = {7, 3};
    memcpy(seeds[1], &t, 8);
    memcpy(seeds[1] + 8, "abc", 3);
    seed_len[1] = 11;
    struct elm_rec_done d = {1, ELM_DONE_EOS, 1, 2, 3, 4};
    memcpy(seeds[2], &d, sizeof d);
    seed_len[2] = sizeof d;
    struct elm_rec_error e = {1, -5, 2, 0};
    memcpy(seeds[3], &e, sizeof e);
    memcpy(seeds[3] + 16, "no", 2);
    seed_len[3] = 18;
    int accepted = 0;
    for (int it = 0; it < 100000; it++) {
        uint32_t len;
        unsigned char tmp[300];
        if (it % 4 == 0) { /* random bytes */
            len = rng_below(&s, 120);
            for (uint32_t i = 0; i < len; i++)
                tmp[i] = (unsigned char)rng_next(&s);
        } else { /* a valid payload, mutated */
            int k = (int)rng_below(&s, 4);
            len = seed_len[k];
            memcpy(tmp, seeds[k], len);
            for (int n = 1 + (int)rng_below(&s, 4); n > 0 && len; n--) {
                uint32_t at = rng_below(&s, len);
                switch (rng_below(&s, 4)) {
                case 0:
                    tmp[at] = (unsigned char)rng_next(&s);
                    break;
                case 1:
                    tmp[at] ^= (unsigned char)(1u << rng_below(&s, 8));
                    break;
                case 2:
                    len = at;
                    break; /* truncate */
                default:
                    len += len < 290 ? rng_below(&s, 8) : 0;
                    break; /* extend */
                }
            }
        }
        unsigned char *b = malloc(len ? len : 1);
        memcpy(b, tmp, len);
        accepted += decode_all(b, len);
        free(b);
    }
    print_message("record fuzz: 100000 payloads, %d decodes accepted\n", accepted);
    assert_true(accepted > 1000);
}

/* ---------------------------------------------------------------------------------------------
 * A conversation between two processes
 */

#define N_PROMPTS 200

static int fake_daemon(int fd, size_t size)
{
    alarm(60);
    struct elm_shm shm;
    struct elm_session_rings r;
    if (elm_shm_adopt(&shm, dup(fd), size) ||
        elm_session_shm_attach(shm.base, shm.size, 4096, 1024, ELM_SESSION_DAEMON, &r))
        return 10;
    unsigned char buf[4096];
    for (int served = 0; served < N_PROMPTS;) {
        struct elm_ring_rec rec;
        int rc = elm_ring_pop(&r.req, &rec, buf, sizeof buf);
        if (rc == -EAGAIN) {
            if (elm_ring_wait_data(&r.req, 10000) != 0)
                return 11;
            continue;
        }
        struct elm_prompt_msg m;
        if (rc != 0 || rec.type != ELM_REC_PROMPT || elm_rec_prompt_decode(buf, rec.len, &m))
            return 12;
        /* One token per prompt byte, its text the byte; then DONE. The event ring is small,
         * so the daemon often waits for the client to make room. */
        for (uint32_t i = 0; i < m.hdr.prompt_len; i++) {
            while ((rc = elm_rec_token_push(&r.evt, (int32_t)i, m.text + i, 1)) == -EAGAIN)
                if (elm_ring_wait_space(&r.evt, 9, 10000) != 0)
                    return 13;
            if (rc)
                return 14;
        }
        struct elm_rec_done d = {
            m.hdr.req_id, ELM_DONE_LENGTH, m.hdr.prompt_len, m.hdr.prompt_len, 1, 2};
        while ((rc = elm_rec_done_push(&r.evt, &d)) == -EAGAIN)
            if (elm_ring_wait_space(&r.evt, sizeof d, 10000) != 0)
                return 15;
        served++;
    }
    elm_ring_close(&r.evt);
    elm_shm_close(&shm);
    return 0;
}

static void test_conversation(void **state)
{
    (void)state;
    size_t size;
    assert_int_equal(elm_session_shm_size(4096, 1024, &size), 0);
    struct elm_shm shm;
    assert_int_equal(elm_shm_create(&shm, size), 0);
    assert_int_equal(elm_session_shm_init(shm.base, size, 4096, 1024), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0)
        _exit(fake_daemon(shm.fd, size));
    struct elm_session_rings r;
    assert_int_equal(elm_session_shm_attach(shm.base, size, 4096, 1024, ELM_SESSION_CLIENT, &r), 0);
    uint64_t s = 99;
    char text[600];
    unsigned char buf[2048];
    for (uint32_t req = 1; req <= N_PROMPTS; req++) {
        struct elm_prompt_msg m = sample_prompt();
        m.hdr.req_id = req;
        m.hdr.prompt_len = 1 + rng_below(&s, sizeof text);
        for (uint32_t i = 0; i < m.hdr.prompt_len; i++)
            text[i] = (char)('a' + rng_below(&s, 26));
        m.text = text;
        assert_int_equal(elm_rec_prompt_push(&r.req, &m), 0);
        for (uint32_t got = 0;;) {
            struct elm_ring_rec rec;
            int rc = elm_ring_pop(&r.evt, &rec, buf, sizeof buf);
            if (rc == -EAGAIN) {
                assert_int_equal(elm_ring_wait_data(&r.evt, 10000), 0);
                continue;
            }
            assert_int_equal(rc, 0);
            if (rec.type == ELM_REC_DONE) {
                struct elm_rec_done d;
                assert_int_equal(elm_rec_done_decode(buf, rec.len, &d), 0);
                assert_int_equal(d.req_id, req);
                assert_int_equal(d.n_gen, got);
                assert_int_equal(got, m.hdr.prompt_len);
                break;
            }
            struct elm_token_msg t;
            assert_int_equal(rec.type, ELM_REC_TOKEN);
            assert_int_equal(elm_rec_token_decode(buf, rec.len, &t), 0);
            assert_int_equal(t.id, got);
            assert_int_equal(t.piece[0], text[got]);
            got++;
        }
    }
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    assert_true(WIFEXITED(st));
    assert_int_equal(WEXITSTATUS(st), 0);
    struct elm_ring_rec rec;
    assert_int_equal(elm_ring_pop(&r.evt, &rec, buf, sizeof buf), -EPIPE); /* daemon closed */
    elm_shm_close(&shm);
}

/* A conversation in a PROMPT (ELM_PROMPT_F_MESSAGES): round trip, and every malformed form. */
static void test_messages(void **state)
{
    (void)state;
    const struct elm_rec_message in[] = {
        {"system", "Be brief.", 6, 9}, {"user", "Hi", 4, 2}, {"assistant", "", 9, 0}};
    uint32_t size, n;
    assert_int_equal(elm_rec_messages_size(in, 3, &size), 0);
    assert_int_equal(size, 6 * 4 + 6 + 9 + 4 + 2 + 9);
    unsigned char buf[128];
    assert_int_equal(elm_rec_messages_encode(in, 3, buf, size - 1), -EMSGSIZE);
    assert_int_equal(elm_rec_messages_encode(in, 3, buf, size), 0);
    struct elm_rec_message out[3];
    assert_int_equal(elm_rec_messages_decode(buf, size, out, 3, &n), 0);
    assert_int_equal(n, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(out[i].role_len, in[i].role_len);
        assert_memory_equal(out[i].role, in[i].role, in[i].role_len);
        assert_int_equal(out[i].content_len, in[i].content_len);
        assert_memory_equal(out[i].content, in[i].content, in[i].content_len);
    }
    /* every truncation but the message boundaries is malformed; nothing at all is too */
    for (uint32_t k = 0; k < size; k++) {
        int rc = elm_rec_messages_decode(buf, k, NULL, 0, &n);
        bool boundary = k == 4 + 6 + 4 + 9 || k == 4 + 6 + 4 + 9 + 4 + 4 + 4 + 2;
        assert_int_equal(rc, boundary ? 0 : ELM_EPROTO);
    }
    const struct elm_rec_message bad_role[] = {{"", "x", 0, 1}};
    assert_int_equal(elm_rec_messages_size(bad_role, 1, &size), -EINVAL);
    assert_int_equal(elm_rec_messages_size(in, 0, &size), -EINVAL);
    uint32_t v = 65; /* a role longer than ELM_REC_MAX_ROLE_LEN */
    memcpy(buf, &v, 4);
    assert_int_equal(elm_rec_messages_decode(buf, 100, NULL, 0, &n), ELM_EPROTO);

    /* in a PROMPT record: valid with MESSAGES, refused with KEEP_CONTEXT as well */
    assert_int_equal(elm_rec_messages_encode(in, 3, buf, sizeof buf), 0);
    struct elm_prompt_msg m = sample_prompt(), d;
    m.hdr.flags = ELM_PROMPT_F_MESSAGES;
    m.text = (const char *)buf;
    assert_int_equal(elm_rec_messages_size(in, 3, &m.hdr.prompt_len), 0);
    unsigned char enc[1024];
    uint32_t len;
    assert_int_equal(elm_rec_prompt_encode(&m, enc, sizeof enc, &len), 0);
    assert_int_equal(elm_rec_prompt_decode(enc, len, &d), 0);
    m.hdr.flags |= ELM_PROMPT_F_KEEP_CONTEXT;
    assert_int_equal(elm_rec_prompt_encode(&m, enc, sizeof enc, &len), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layout),         cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_encode_rejects), cmocka_unit_test(test_decode_hostile),
        cmocka_unit_test(test_decode_fuzz),    cmocka_unit_test(test_conversation),
        cmocka_unit_test(test_messages),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
