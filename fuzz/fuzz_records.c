/* fuzz_records.c — the session records (ipc/session_shm.c) and the ring that carries them
 * (ipc/ring.c), as a hostile peer presents them. Input: one mode byte, then
 *   modes 0-4: a PROMPT, CANCEL, TOKEN, DONE or ERROR payload for its decoder;
 *   mode 5:    a request ring written by the peer: four head values it publishes one after the
 *              other, then the data area; we consume every record and decode it;
 *   mode 6:    an event ring whose consumer publishes the tail values given, while we produce;
 *   mode 7:    a whole session region (header included) for elm_session_shm_attach.
 * The ring's promise (ipc/ring.h, HOSTILE PEER) is the oracle: never a read or write outside
 * the region, never an unbounded loop; the decoders' is that every accepted field is in range.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "elm/status.h"
#include "ipc/ring.h"
#include "ipc/session_shm.h"

#define CAP 512u /* a small ring: wrap-around is reached by short inputs */

static void decode(uint16_t type, const void *p, uint32_t len)
{
    struct elm_prompt_msg pm;
    struct elm_token_msg tm;
    struct elm_rec_done dm;
    struct elm_error_msg em;
    uint32_t id;

    switch (type) {
    case ELM_REC_PROMPT:
        if (elm_rec_prompt_decode(p, len, &pm) == 0) {
            if (pm.hdr.n_stop > ELM_REC_MAX_STOP)
                abort();
            /* an accepted prompt re-encodes to exactly the bytes it came from */
            uint32_t n = 0;
            void *again = malloc(len ? len : 1);
            if (!again || elm_rec_prompt_encode(&pm, again, len, &n) < 0 || n != len ||
                memcmp(again, p, len) != 0)
                abort();
            free(again);
        }
        break;
    case ELM_REC_CANCEL:
        elm_rec_cancel_decode(p, len, &id);
        break;
    case ELM_REC_TOKEN:
        if (elm_rec_token_decode(p, len, &tm) == 0 && tm.piece_len > ELM_REC_MAX_PIECE)
            abort();
        break;
    case ELM_REC_DONE:
        elm_rec_done_decode(p, len, &dm);
        break;
    case ELM_REC_ERROR:
        if (elm_rec_error_decode(p, len, &em) == 0 && em.msg_len > ELM_REC_MAX_ERROR_MSG)
            abort();
        break;
    }
}

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* A fresh ring of CAP bytes in an exactly sized heap block (ASan sees any step outside). */
static struct elm_ring_hdr *new_ring(void)
{
    struct elm_ring_hdr *h = aligned_alloc(ELM_RING_CACHELINE, elm_ring_region_size(CAP));
    if (h && elm_ring_init(h, CAP) < 0) {
        free(h);
        return NULL;
    }
    return h;
}

static void consume(const uint8_t *d, size_t n)
{
    static const uint16_t types[] = {ELM_REC_PROMPT, ELM_REC_CANCEL, ELM_REC_TOKEN, ELM_REC_DONE,
                                     ELM_REC_ERROR};
    struct elm_ring_hdr *h;
    struct elm_ring r;
    if (n < 16 || !(h = new_ring()))
        return;
    if (elm_ring_attach(&r, h, CAP, ELM_RING_CONSUMER) == 0) {
        memcpy(h->data, d + 16, n - 16 < CAP ? n - 16 : CAP);
        unsigned char buf[CAP];
        struct elm_ring_rec rec;
        int next = 1;
        atomic_store(&h->head, le32(d));
        for (int i = 0; i < 64; i++) {
            elm_ring_wait_data(&r, 0);
            int rc = elm_ring_pop(&r, &rec, buf, sizeof buf);
            if (rc == -EAGAIN && next < 4) {
                atomic_store(&h->head, le32(d + 4 * next++)); /* the peer publishes more */
                continue;
            }
            if (rc < 0)
                break;
            /* a record type the daemon does not expect is a protocol error; decode it anyway */
            decode(elm_rec_is_request(rec.type) ? rec.type : types[rec.type % 5], buf, rec.len);
        }
    }
    free(h);
}

static void produce(const uint8_t *d, size_t n)
{
    struct elm_ring_hdr *h;
    struct elm_ring r;
    if (n < 1 || !(h = new_ring()))
        return;
    if (elm_ring_attach(&r, h, CAP, ELM_RING_PRODUCER) == 0) {
        for (size_t i = 0; i + 5 <= n; i += 5) {
            uint32_t len = d[i] * 3u; /* up to 765: beyond the largest payload too */
            static const char piece[CAP * 2];
            int rc = elm_rec_token_push(&r, (int32_t)len, piece, len);
            if (rc == ELM_ERING || rc == -EINVAL)
                break;
            atomic_store(&h->tail, le32(d + i + 1));
        }
    }
    free(h);
}

static void attach_region(const uint8_t *d, size_t n)
{
    size_t size;
    if (elm_session_shm_size(CAP, CAP, &size) < 0)
        return;
    unsigned char *base = aligned_alloc(ELM_RING_CACHELINE, size); /* the layout's alignment */
    if (!base)
        return;
    memset(base, 0, size);
    memcpy(base, d, n < size ? n : size);
    struct elm_session_rings rings;
    if (elm_session_shm_attach(base, size, CAP, CAP, ELM_SESSION_DAEMON, &rings) == 0) {
        struct elm_ring_rec rec;
        unsigned char buf[CAP];
        for (int i = 0; i < 64 && elm_ring_pop(&rings.req, &rec, buf, sizeof buf) == 0; i++)
            decode(rec.type, buf, rec.len);
    }
    free(base);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint16_t types[] = {ELM_REC_PROMPT, ELM_REC_CANCEL, ELM_REC_TOKEN, ELM_REC_DONE,
                                     ELM_REC_ERROR};
    if (size < 1)
        return 0;
    const uint8_t *d = data + 1;
    size_t n = size - 1;
    switch (data[0] % 8) {
    case 5:
        consume(d, n);
        break;
    case 6:
        produce(d, n);
        break;
    case 7:
        attach_region(d, n);
        break;
    default:
        if (n <= UINT32_MAX)
            decode(types[data[0] % 8], d, (uint32_t)n);
    }
    return 0;
}
