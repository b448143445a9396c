/* test_embed_rec.c — the EMBED and VECTOR records (ipc/embed_rec.h): both round-trip through a
 * real ring; the encoders refuse what a decoder would; the decoders reject every truncation of a
 * valid payload, hand-made hostile ones (a text length past the end, counts past their bounds,
 * trailing bytes, a NaN component, a width that disagrees with the length) and a seeded fuzz
 * loop of mutated payloads in exactly-sized heap buffers (ASan), with ELM_EPROTO.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "ipc/embed_rec.h"
#include "ipc/ring.h"
#include "ipc/session_shm.h"
#include "tests/common/elm_test.h"

struct pair {
    void *mem;
    struct elm_session_rings d, c; /* daemon's and client's views */
};

static void pair_new(struct pair *p, uint32_t cap)
{
    size_t size;
    assert_int_equal(elm_session_shm_size(cap, cap, &size), 0);
    p->mem = aligned_alloc(ELM_RING_CACHELINE,
                           (size + ELM_RING_CACHELINE - 1) & ~(size_t)(ELM_RING_CACHELINE - 1));
    assert_non_null(p->mem);
    assert_int_equal(elm_session_shm_init(p->mem, size, cap, cap), 0);
    assert_int_equal(elm_session_shm_attach(p->mem, size, cap, cap, ELM_SESSION_DAEMON, &p->d), 0);
    assert_int_equal(elm_session_shm_attach(p->mem, size, cap, cap, ELM_SESSION_CLIENT, &p->c), 0);
}

static const char *texts[] = {"hello world", "", "The cat sits on the mat."};

static struct elm_embed_msg sample(void)
{
    struct elm_embed_msg m = {
        .hdr = {.req_id = 9, .flags = ELM_EMBED_F_PARSE_SPECIAL, .n_text = 3}};
    for (int i = 0; i < 3; i++) {
        m.text[i] = texts[i];
        m.len[i] = (uint32_t)strlen(texts[i]);
    }
    return m;
}

/* Pops the one record of ring r into a malloc'ed buffer of exactly its size. */
static unsigned char *pop(struct elm_ring *r, struct elm_ring_rec *rec)
{
    assert_int_equal(elm_ring_peek(r, rec), 0);
    unsigned char *b = malloc(rec->len ? rec->len : 1);
    assert_int_equal(elm_ring_pop(r, rec, b, rec->len), 0);
    return b;
}

static void test_roundtrip(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p, 1 << 16);
    assert_true(elm_rec_is_request(ELM_REC_EMBED) && !elm_rec_is_event(ELM_REC_EMBED));
    assert_true(elm_rec_is_event(ELM_REC_VECTOR) && !elm_rec_is_request(ELM_REC_VECTOR));
    assert_string_equal(elm_rec_type_name(ELM_REC_EMBED), "embed");
    assert_string_equal(elm_rec_type_name(ELM_REC_VECTOR), "vector");

    struct elm_embed_msg m = sample(), got;
    uint32_t size;
    assert_int_equal(elm_rec_embed_size(&m, &size), 0);
    assert_int_equal(size, 16 + 3 * 4 + 11 + 0 + 24);
    assert_int_equal(elm_rec_embed_push(&p.c.req, &m), 0);
    struct elm_ring_rec rec;
    unsigned char *b = pop(&p.d.req, &rec);
    assert_int_equal(rec.type, ELM_REC_EMBED);
    assert_int_equal(rec.len, size);
    assert_int_equal(elm_rec_embed_decode(b, rec.len, &got), 0);
    assert_int_equal(got.hdr.req_id, 9);
    assert_int_equal(got.hdr.n_text, 3);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(got.len[i], m.len[i]);
        assert_memory_equal(got.text[i], texts[i], m.len[i]);
    }
    free(b);

    float v[5] = {0.5f, -0.25f, 0, 1e-30f, -1};
    struct elm_rec_vector h = {.req_id = 9, .index = 2, .n_embd = 5, .n_tokens = 7}, gh;
    assert_int_equal(elm_rec_vector_push(&p.d.evt, &h, v), 0);
    b = pop(&p.c.evt, &rec);
    assert_int_equal(rec.type, ELM_REC_VECTOR);
    assert_int_equal(rec.len, elm_rec_vector_size(5));
    const void *gv;
    assert_int_equal(elm_rec_vector_decode(b, rec.len, &gh, &gv), 0);
    assert_memory_equal(&gh, &h, sizeof h);
    assert_memory_equal(gv, v, sizeof v);
    free(b);
    free(p.mem);
}

static void test_encode_rejects(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p, 4096);
    struct elm_embed_msg m = sample();
    uint32_t size;
    m.hdr.n_text = 0;
    assert_int_equal(elm_rec_embed_size(&m, &size), -EINVAL);
    m.hdr.n_text = ELM_REC_MAX_TEXTS + 1;
    assert_int_equal(elm_rec_embed_size(&m, &size), -EINVAL);
    m = sample();
    m.hdr.flags = 0x80;
    assert_int_equal(elm_rec_embed_push(&p.c.req, &m), -EINVAL);
    m = sample();
    m.text[0] = NULL;
    assert_int_equal(elm_rec_embed_push(&p.c.req, &m), -EINVAL);
    m = sample();
    static char big[5000];
    m.text[0] = big;
    m.len[0] = sizeof big;
    assert_int_equal(elm_rec_embed_push(&p.c.req, &m), -EMSGSIZE); /* never fits 4096 */
    float v[2] = {1, NAN};
    struct elm_rec_vector h = {.n_embd = 2};
    assert_int_equal(elm_rec_vector_push(&p.d.evt, &h, v), -EINVAL);
    h.n_embd = 0;
    assert_int_equal(elm_rec_vector_push(&p.d.evt, &h, v), -EINVAL);
    h.n_embd = ELM_REC_MAX_EMBD + 1;
    assert_int_equal(elm_rec_vector_push(&p.d.evt, &h, v), -EINVAL);
    free(p.mem);
}

/* Decodes a copy of b[0..len) in a buffer of exactly that size (ASan sees any overread). */
static int dec_embed(const void *b, uint32_t len)
{
    unsigned char *c = malloc(len ? len : 1);
    memcpy(c, b, len);
    struct elm_embed_msg m;
    int rc = elm_rec_embed_decode(c, len, &m);
    if (rc == 0) { /* whatever decodes respects the bounds and lies inside the payload */
        assert_true(m.hdr.n_text >= 1 && m.hdr.n_text <= ELM_REC_MAX_TEXTS);
        for (uint32_t i = 0; i < m.hdr.n_text; i++)
            assert_true(m.text[i] >= (char *)c && m.text[i] + m.len[i] <= (char *)c + len);
    }
    free(c);
    return rc;
}

static int dec_vector(const void *b, uint32_t len)
{
    unsigned char *c = malloc(len ? len : 1);
    memcpy(c, b, len);
    struct elm_rec_vector h;
    const void *v;
    int rc = elm_rec_vector_decode(c, len, &h, &v);
    if (rc == 0)
        assert_int_equal(len, elm_rec_vector_size(h.n_embd));
    free(c);
    return rc;
}

static void test_decode_hostile(void **state)
{
    (void)state;
    struct pair p;
    pair_new(&p, 4096);
    struct elm_embed_msg m = sample();
    struct elm_ring_rec rec;
    assert_int_equal(elm_rec_embed_push(&p.c.req, &m), 0);
    unsigned char *e = pop(&p.d.req, &rec);
    const uint32_t elen = rec.len;
    for (uint32_t n = 0; n < elen; n++) /* every truncation */
        assert_int_equal(dec_embed(e, n), ELM_EPROTO);
    unsigned char *x = malloc(elen + 1);
    memcpy(x, e, elen);
    x[elen] = 0; /* a trailing byte */
    assert_int_equal(dec_embed(x, elen + 1), ELM_EPROTO);
    uint32_t u = 0xfffffff0u; /* the first text's length past the end (and overflowing) */
    memcpy(x, e, elen);
    memcpy(x + 16, &u, 4);
    assert_int_equal(dec_embed(x, elen), ELM_EPROTO);
    memcpy(x, e, elen);
    u = 0;
    memcpy(x + 8, &u, 4); /* n_text 0 */
    assert_int_equal(dec_embed(x, elen), ELM_EPROTO);
    u = ELM_REC_MAX_TEXTS + 1;
    memcpy(x + 8, &u, 4);
    assert_int_equal(dec_embed(x, elen), ELM_EPROTO);
    memcpy(x, e, elen);
    x[12] = 1; /* reserved */
    assert_int_equal(dec_embed(x, elen), ELM_EPROTO);

    float v[4] = {1, 2, 3, 4};
    struct elm_rec_vector h = {.req_id = 1, .n_embd = 4};
    assert_int_equal(elm_rec_vector_push(&p.d.evt, &h, v), 0);
    unsigned char *vb = pop(&p.c.evt, &rec);
    const uint32_t vlen = rec.len;
    for (uint32_t n = 0; n < vlen; n++)
        assert_int_equal(dec_vector(vb, n), ELM_EPROTO);
    unsigned char *y = malloc(vlen);
    memcpy(y, vb, vlen);
    float nan = NAN;
    memcpy(y + 16 + 8, &nan, 4);
    assert_int_equal(dec_vector(y, vlen), ELM_EPROTO);
    memcpy(y, vb, vlen);
    u = 3; /* n_embd disagrees with the length */
    memcpy(y + 8, &u, 4);
    assert_int_equal(dec_vector(y, vlen), ELM_EPROTO);

    uint64_t seed = 11; /* mutations: each decodes within bounds or is refused */
    for (int it = 0; it < 20000; it++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        memcpy(x, e, elen);
        x[(seed >> 33) % elen] ^= (unsigned char)(1u << ((seed >> 20) & 7));
        int rc = dec_embed(x, (uint32_t)((seed >> 40) % (elen + 1)));
        assert_true(rc == 0 || rc == ELM_EPROTO);
        memcpy(y, vb, vlen);
        y[(seed >> 33) % vlen] ^= (unsigned char)(1u << ((seed >> 24) & 7));
        rc = dec_vector(y, vlen);
        assert_true(rc == 0 || rc == ELM_EPROTO);
    }
    free(x);
    free(y);
    free(e);
    free(vb);
    free(p.mem);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_decode_hostile),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
