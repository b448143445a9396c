/* ring.c — the shared-memory SPSC record ring; the ordering and safety argument is in ring.h.
 *
 * Every value read from the shared header or the data area is read once into a local, checked,
 * and only the local is used afterwards. Indices into the data area are always masked local
 * counters, and every copy is bounded by a length that was checked against the capacity, so a
 * peer writing garbage anywhere in the region cannot make this file touch memory outside it.
 */
#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "elm/status.h"
#include "ipc/ring.h"

_Static_assert(offsetof(struct elm_ring_hdr, tail) == 128, "tail on its own line");
_Static_assert(offsetof(struct elm_ring_hdr, cons_waiting) == 256, "flags on their own line");
_Static_assert(offsetof(struct elm_ring_hdr, prod_waiting) == 260 &&
                   offsetof(struct elm_ring_hdr, data_seq) == 264 &&
                   offsetof(struct elm_ring_hdr, space_seq) == 268 &&
                   offsetof(struct elm_ring_hdr, space_need) == 272 &&
                   offsetof(struct elm_ring_hdr, closed) == 276,
               "wait fields as documented in docs/protocol.md");
_Static_assert(offsetof(struct elm_ring_hdr, magic) == 384, "constants on their own line");
_Static_assert(offsetof(struct elm_ring_hdr, data) == 512, "data on its own line");

/* Spins before sleeping: long enough to catch a peer that is about to publish (a few
 * microseconds), short enough not to burn a core that the peer may need to make progress. */
#define SPIN_ITERATIONS 128

/* ---------------------------------------------------------------------------------------------
 * Helpers
 */

static inline uint32_t rec_size(uint32_t len)
{
    /* len <= cap - 8 <= 2^30, so this cannot overflow */
    return ELM_RING_REC_HDR + ((len + 7u) & ~7u);
}

/* A spin-wait hint: lets the sibling hyper-thread run and saves power while we poll. */
#if defined(__x86_64__) || defined(__i386__)
static inline void cpu_relax(void)
{
    __builtin_ia32_pause();
}
#elif defined(__aarch64__)
static inline void cpu_relax(void)
{
    __asm__ __volatile__("yield" ::: "memory");
}
#else
static inline void cpu_relax(void)
{
    atomic_signal_fence(memory_order_seq_cst); /* at least keep the compiler re-loading */
}
#endif

/* The header is one 64-bit word so that a single load gives a consistent snapshot (a peer
 * rewriting it concurrently cannot make us see a length from one write and a type from
 * another) and the compiler cannot re-read it after we validated it. */
static inline uint64_t load_rec_hdr(const struct elm_ring *r, uint32_t pos)
{
    return __atomic_load_n((const uint64_t *)(r->data + (pos & r->mask)), __ATOMIC_RELAXED);
}

static inline void store_rec_hdr(struct elm_ring *r, uint32_t pos, uint64_t w)
{
    __atomic_store_n((uint64_t *)(r->data + (pos & r->mask)), w, __ATOMIC_RELAXED);
}

/* Copies n <= cap bytes to the data area starting at counter pos, wrapping at the end. */
static void copy_in(struct elm_ring *r, uint32_t pos, const void *src, uint32_t n)
{
    if (n == 0)
        return; /* src may be NULL for an empty segment */
    uint32_t off = pos & r->mask;
    uint32_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(r->data + off, src, first);
    memcpy(r->data, (const unsigned char *)src + first, n - first);
}

static void copy_out(const struct elm_ring *r, uint32_t pos, void *dst, uint32_t n)
{
    if (n == 0)
        return;
    uint32_t off = pos & r->mask;
    uint32_t first = r->cap - off < n ? r->cap - off : n;
    memcpy(dst, r->data + off, first);
    memcpy((unsigned char *)dst + first, r->data, n - first);
}

/* Acquire: pairs with elm_ring_close's release, so a consumer that sees the close also sees
 * every record pushed before it. */
static bool is_closed(const struct elm_ring *r)
{
    return atomic_load_explicit(&r->hdr->closed, memory_order_acquire) != 0;
}

static int broken(struct elm_ring *r)
{
    r->err = ELM_ERING;
    return ELM_ERING;
}

static long futex_wait(uint32_t *seq, uint32_t expect, const struct timespec *rel)
{
    /* FUTEX_WAIT, not FUTEX_WAIT_PRIVATE: the word lives in a MAP_SHARED mapping and the waker
     * is another process with the page mapped at another address. */
    return syscall(SYS_futex, seq, FUTEX_WAIT, expect, rel, NULL, 0);
}

/* Bumps an event counter and wakes whoever sleeps on it. The release pairs with the waiter's
 * load-acquire of the counter (see ring.h). Callers have fenced after their last store. */
static void bump_and_wake(_Atomic uint32_t *seq)
{
    atomic_fetch_add_explicit(seq, 1, memory_order_release);
    syscall(SYS_futex, (uint32_t *)seq, FUTEX_WAKE, INT_MAX, NULL, NULL, 0);
}

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Producer: reloads tail and checks it. A legal tail only moves forward, is 8-aligned and never
 * passes head: it lies in [old tail, head]. */
static int refresh_tail(struct elm_ring *r)
{
    uint32_t t = atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    if ((t & 7u) || t - r->peer > r->pos - r->peer)
        return broken(r);
    r->peer = t;
    return 0;
}

/* Consumer: reloads head and checks it. A legal head only moves forward, is 8-aligned and is
 * never more than a capacity ahead of our tail. */
static int refresh_head(struct elm_ring *r)
{
    uint32_t h = atomic_load_explicit(&r->hdr->head, memory_order_acquire);
    if ((h & 7u) || h - r->pos > r->cap || h - r->pos < r->peer - r->pos)
        return broken(r);
    r->peer = h;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Set-up
 */

bool elm_ring_capacity_is_valid(uint32_t capacity)
{
    return capacity >= ELM_RING_MIN_CAPACITY && capacity <= ELM_RING_MAX_CAPACITY &&
           (capacity & (capacity - 1)) == 0;
}

size_t elm_ring_region_size(uint32_t capacity)
{
    if (!elm_ring_capacity_is_valid(capacity))
        return 0;
    return sizeof(struct elm_ring_hdr) + (size_t)capacity;
}

int elm_ring_init(struct elm_ring_hdr *h, uint32_t capacity)
{
    if (!h || !elm_ring_capacity_is_valid(capacity))
        return -EINVAL;
    memset(h, 0, sizeof *h);
    atomic_init(&h->head, 0);
    atomic_init(&h->tail, 0);
    atomic_init(&h->cons_waiting, 0);
    atomic_init(&h->prod_waiting, 0);
    atomic_init(&h->data_seq, 0);
    atomic_init(&h->space_seq, 0);
    atomic_init(&h->space_need, 0);
    atomic_init(&h->closed, 0);
    h->magic = ELM_RING_MAGIC;
    h->version = ELM_RING_VERSION;
    h->capacity = capacity;
    /* The region is shared afterwards by sending its name over a socket, a syscall that orders
     * these plain stores before the peer can map the region. */
    return 0;
}

int elm_ring_attach(struct elm_ring *r, struct elm_ring_hdr *h, uint32_t capacity,
                    enum elm_ring_role role)
{
    if (!r || !h || !elm_ring_capacity_is_valid(capacity))
        return -EINVAL;
    if (role != ELM_RING_PRODUCER && role != ELM_RING_CONSUMER)
        return -EINVAL;
    /* Constants: compared once, never used afterwards (the caller's capacity is). */
    if (h->magic != ELM_RING_MAGIC || h->version != ELM_RING_VERSION || h->capacity != capacity)
        return ELM_ERING;
    uint32_t head = atomic_load_explicit(&h->head, memory_order_acquire);
    uint32_t tail = atomic_load_explicit(&h->tail, memory_order_acquire);
    if ((head & 7u) || (tail & 7u) || head - tail > capacity)
        return ELM_ERING;

    struct elm_ring v = {
        .hdr = h,
        .data = h->data,
        .cap = capacity,
        .mask = capacity - 1,
        .pos = role == ELM_RING_PRODUCER ? head : tail,
        .peer = tail, /* producer: space in use is known; consumer: no record known yet */
        .role = role,
    };
    *r = v;
    return 0;
}

uint32_t elm_ring_max_payload(const struct elm_ring *r)
{
    return r->cap - ELM_RING_REC_HDR;
}

/* ---------------------------------------------------------------------------------------------
 * Producer
 */

int elm_ring_pushv(struct elm_ring *r, uint16_t type, uint16_t flags, const struct iovec *iov,
                   int iovcnt)
{
    if (r->err)
        return r->err;
    if (r->role != ELM_RING_PRODUCER || type == 0 || iovcnt < 0 || iovcnt > ELM_RING_MAX_IOV ||
        (iovcnt > 0 && !iov))
        return -EINVAL;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > elm_ring_max_payload(r) || (iov[i].iov_len && !iov[i].iov_base))
            return iov[i].iov_len ? -EMSGSIZE : -EINVAL;
        total += iov[i].iov_len; /* each <= 2^30 and at most 64 of them: no overflow */
    }
    if (total > elm_ring_max_payload(r))
        return -EMSGSIZE;
    if (is_closed(r))
        return -EPIPE;

    uint32_t len = (uint32_t)total;
    uint32_t need = rec_size(len);
    /* Free space from the cached tail first; reload (one cache miss) only when short. */
    if (r->cap - (r->pos - r->peer) < need) {
        int rc = refresh_tail(r);
        if (rc < 0)
            return rc;
        if (r->cap - (r->pos - r->peer) < need)
            return -EAGAIN;
    }

    store_rec_hdr(r, r->pos, (uint64_t)len | (uint64_t)type << 32 | (uint64_t)flags << 48);
    uint32_t at = r->pos + ELM_RING_REC_HDR;
    for (int i = 0; i < iovcnt; i++) {
        copy_in(r, at, iov[i].iov_base, (uint32_t)iov[i].iov_len);
        at += (uint32_t)iov[i].iov_len;
    }
    r->pos += need;
    /* Publish: orders the header and payload before the new head (pairs with the consumer's
     * load-acquire of head). */
    atomic_store_explicit(&r->hdr->head, r->pos, memory_order_release);
    /* Store-buffering fence against the consumer's "set flag, fence, re-read head". The plain
     * load first keeps the common no-sleeper case free of atomic read-modify-writes. */
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->hdr->cons_waiting, memory_order_relaxed) &&
        atomic_exchange_explicit(&r->hdr->cons_waiting, 0, memory_order_relaxed)) {
        bump_and_wake(&r->hdr->data_seq);
        r->n_wakes++;
    }
    return 0;
}

int elm_ring_push(struct elm_ring *r, uint16_t type, const void *p, uint32_t len)
{
    struct iovec iov = {.iov_base = (void *)p, .iov_len = len};
    return elm_ring_pushv(r, type, 0, &iov, len ? 1 : 0);
}

/* ---------------------------------------------------------------------------------------------
 * Consumer
 */

/* Reads and checks the next record's header; fills *rec. Shared by peek and pop. */
static int next_rec(struct elm_ring *r, struct elm_ring_rec *rec)
{
    if (r->err)
        return r->err;
    if (r->role != ELM_RING_CONSUMER)
        return -EINVAL;
    if (r->peer == r->pos) {
        /* closed before head: what was pushed before the close is then in the head we read */
        const bool closed = is_closed(r);
        int rc = refresh_head(r);
        if (rc < 0)
            return rc;
        if (r->peer == r->pos)
            return closed ? -EPIPE : -EAGAIN;
    }
    uint32_t avail = r->peer - r->pos; /* validated: 8 <= avail <= cap, multiple of 8 */
    uint64_t w = load_rec_hdr(r, r->pos);
    uint32_t len = (uint32_t)w;
    uint16_t type = (uint16_t)(w >> 32);
    uint16_t flags = (uint16_t)(w >> 48);
    if (type == 0 || len > elm_ring_max_payload(r) || rec_size(len) > avail)
        return broken(r);
    rec->len = len;
    rec->type = type;
    rec->flags = flags;
    return 0;
}

int elm_ring_peek(struct elm_ring *r, struct elm_ring_rec *rec)
{
    struct elm_ring_rec h;
    int rc = next_rec(r, &h);
    if (rc < 0)
        return rc;
    *rec = h;
    return 0;
}

int elm_ring_pop(struct elm_ring *r, struct elm_ring_rec *rec, void *buf, uint32_t cap)
{
    struct elm_ring_rec h;
    int rc = next_rec(r, &h);
    if (rc < 0)
        return rc;
    if (h.len > cap)
        return -EMSGSIZE;
    if (h.len && !buf)
        return -EINVAL;
    copy_out(r, r->pos + ELM_RING_REC_HDR, buf, h.len);
    r->pos += rec_size(h.len);
    /* Orders our reads of the record before the producer may reuse its space. */
    atomic_store_explicit(&r->hdr->tail, r->pos, memory_order_release);
    atomic_thread_fence(memory_order_seq_cst);
    if (atomic_load_explicit(&r->hdr->prod_waiting, memory_order_acquire)) {
        /* Wake only once the space the producer waits for is free (need was published before
         * the flag; the acquire above makes it visible). The free space is estimated from our
         * cached head, which is never ahead of the real one: an over-estimate at worst. */
        uint32_t need = atomic_load_explicit(&r->hdr->space_need, memory_order_relaxed);
        if (r->cap - (r->peer - r->pos) >= need &&
            atomic_exchange_explicit(&r->hdr->prod_waiting, 0, memory_order_relaxed)) {
            bump_and_wake(&r->hdr->space_seq);
            r->n_wakes++;
        }
    }
    *rec = h;
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * Waiting
 */

/* True when data (consumer) or need bytes of space (producer) may be there. The peer's
 * counter is not validated here: a garbage value counts as "ready", so the caller goes on to
 * push/pop, which rejects it with ELM_ERING instead of us sleeping on it. */
static bool ready_for(const struct elm_ring *r, uint32_t need)
{
    if (r->role == ELM_RING_CONSUMER)
        return r->peer != r->pos ||
               atomic_load_explicit(&r->hdr->head, memory_order_acquire) != r->pos;
    uint32_t used = r->pos - atomic_load_explicit(&r->hdr->tail, memory_order_acquire);
    return used > r->cap || r->cap - used >= need;
}

static _Atomic uint32_t *wait_flag(const struct elm_ring *r)
{
    return r->role == ELM_RING_CONSUMER ? &r->hdr->cons_waiting : &r->hdr->prod_waiting;
}

/* Steps (1)-(3) of the argument in ring.h: read our event counter, publish what we wait for
 * and that we may sleep, fence. The caller re-checks readiness, then sleeps on *f. */
static void arm(struct elm_ring *r, uint32_t need, struct elm_ring_futex *f)
{
    _Atomic uint32_t *seq = r->role == ELM_RING_CONSUMER ? &r->hdr->data_seq : &r->hdr->space_seq;
    f->uaddr = (uint32_t *)seq;
    f->val = atomic_load_explicit(seq, memory_order_acquire);
    if (r->role == ELM_RING_PRODUCER)
        atomic_store_explicit(&r->hdr->space_need, need, memory_order_relaxed);
    /* Release: a waker that sees the flag also sees the need stored before it. */
    atomic_store_explicit(wait_flag(r), 1, memory_order_release);
    /* Store-buffering fence against the peer's "publish, fence, read flag". */
    atomic_thread_fence(memory_order_seq_cst);
}

/* Checks a wait request; *need gets the bytes a producer waits for. */
static int wait_check(const struct elm_ring *r, uint32_t len, uint32_t *need)
{
    if (r->err)
        return r->err;
    if (r->role != ELM_RING_CONSUMER && r->role != ELM_RING_PRODUCER)
        return -EINVAL;
    if (r->role == ELM_RING_PRODUCER && len > elm_ring_max_payload(r))
        return -EMSGSIZE;
    *need = r->role == ELM_RING_PRODUCER ? rec_size(len) : 0;
    return 0;
}

int elm_ring_arm(struct elm_ring *r, uint32_t len, struct elm_ring_futex *f)
{
    uint32_t need = 0;
    int rc = wait_check(r, len, &need);
    if (rc < 0)
        return rc;
    struct elm_ring_futex tmp;
    arm(r, need, &tmp);
    *f = tmp;
    return 0;
}

bool elm_ring_is_ready(const struct elm_ring *r, uint32_t len)
{
    uint32_t need = 0;
    if (wait_check(r, len, &need) < 0 || is_closed(r))
        return true; /* the next push/pop reports why */
    return ready_for(r, need);
}

void elm_ring_disarm(struct elm_ring *r)
{
    /* Cleared so the peer stops paying for wake syscalls while we are awake; arm sets it again
     * before every sleep, so clearing it can never lose a wakeup. */
    if (r && r->hdr && (r->role == ELM_RING_CONSUMER || r->role == ELM_RING_PRODUCER))
        atomic_store_explicit(wait_flag(r), 0, memory_order_relaxed);
}

/* Spins, then sleeps on the event counter until ready, closed, a signal or the deadline. */
static int wait_for(struct elm_ring *r, uint32_t need, int timeout_ms)
{
    /* closed is read before readiness (as in next_rec): records pushed before a close it sees
     * are then ready */
    for (int i = 0; i < SPIN_ITERATIONS; i++) {
        const bool closed = is_closed(r);
        if (ready_for(r, need))
            return 0;
        if (closed)
            return -EPIPE;
        if (timeout_ms == 0)
            return -ETIMEDOUT;
        cpu_relax();
    }
    int64_t deadline = timeout_ms < 0 ? INT64_MAX : now_ns() + (int64_t)timeout_ms * 1000000;
    int rc;
    for (;;) {
        struct elm_ring_futex f;
        arm(r, need, &f);
        const bool closed = is_closed(r);
        if (ready_for(r, need)) {
            rc = 0;
            break;
        }
        if (closed) {
            rc = -EPIPE;
            break;
        }
        struct timespec rel, *relp = NULL;
        if (deadline != INT64_MAX) {
            int64_t left = deadline - now_ns();
            if (left <= 0) {
                rc = -ETIMEDOUT;
                break;
            }
            rel.tv_sec = left / 1000000000;
            rel.tv_nsec = left % 1000000000;
            relp = &rel;
        }
        r->n_sleeps++;
        if (futex_wait(f.uaddr, f.val, relp) < 0 && errno == EINTR) {
            rc = -EINTR;
            break;
        }
        /* Woken (the waker cleared our flag), counter already moved (EAGAIN) or timed out:
         * loop, arm again and re-check. A hostile peer bumping the counter without cause only
         * costs us loop turns until the deadline. */
    }
    elm_ring_disarm(r);
    return rc;
}

int elm_ring_wait_data(struct elm_ring *r, int timeout_ms)
{
    if (r->role != ELM_RING_CONSUMER)
        return r->err ? r->err : -EINVAL;
    uint32_t need = 0;
    int rc = wait_check(r, 0, &need);
    if (rc < 0)
        return rc;
    if (r->peer != r->pos)
        return 0; /* already know of unread records */
    return wait_for(r, need, timeout_ms);
}

int elm_ring_wait_space(struct elm_ring *r, uint32_t len, int timeout_ms)
{
    if (r->role != ELM_RING_PRODUCER)
        return r->err ? r->err : -EINVAL;
    uint32_t need = 0;
    int rc = wait_check(r, len, &need);
    if (rc < 0)
        return rc;
    if (is_closed(r))
        return -EPIPE;
    return wait_for(r, need, timeout_ms);
}

/* ---------------------------------------------------------------------------------------------
 * Closing
 */

void elm_ring_close(struct elm_ring *r)
{
    if (!r || !r->hdr)
        return;
    atomic_store_explicit(&r->hdr->closed, 1, memory_order_release);
    /* A waiter reads its seq, sets its flag, fences, then checks closed: either it sees closed,
     * or our bump (after this fence) changes the seq it is about to sleep on. Wake both sides
     * unconditionally: closing is rare and must not depend on the flags. */
    atomic_thread_fence(memory_order_seq_cst);
    bump_and_wake(&r->hdr->data_seq);
    bump_and_wake(&r->hdr->space_seq);
}

bool elm_ring_is_closed(const struct elm_ring *r)
{
    return is_closed(r);
}
