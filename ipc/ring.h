/* ring.h — single-producer/single-consumer ring of variable-length records in shared memory.
 *
 * One process (the producer) appends records, another (the consumer) removes them, through a
 * region both have mapped, possibly at different addresses. The daemon and a client each own one
 * end of each ring of a session (ipc/session_shm.h); neither trusts the other. This header first
 * argues why the ring is correct, then why it is safe against a hostile peer, then gives the API.
 *
 * MEMORY ORDERING
 *   Two monotonically increasing u32 byte counters: head (bytes ever published, written only by
 *   the producer) and tail (bytes ever consumed, written only by the consumer). Both are masked
 *   by the capacity, a power of two <= 2^30, so "head - tail" in unsigned arithmetic is the
 *   number of bytes in use even after the counters wrap past 2^32.
 *   - Producer: writes the record (header + payload) into the free space, then
 *     store-release(head). The release orders every byte of the record before the new head.
 *   - Consumer: load-acquire(head); every byte below that head is now visible and complete.
 *     It copies the record out, then store-release(tail). The release orders its reads of the
 *     record before the new tail, so the producer cannot overwrite bytes still being read.
 *   - Producer, before reusing space: load-acquire(tail); pairs with the consumer's release, so
 *     the consumer's reads of that space happened before the producer's new writes.
 *   Each side keeps its own counter in private memory (struct elm_ring) and only ever stores it
 *   to the shared region; it never reads its own counter back, so the peer cannot move it.
 *
 * WHY SEPARATE CACHE LINES, AND WHY 128 BYTES
 *   head is written by the producer on every push and tail by the consumer on every pop. On one
 *   cache line, each write would invalidate the other core's copy of the line (false sharing),
 *   turning every push and pop into a cache-line ping-pong. head, tail, the rarely written wait
 *   flags and the constant fields therefore each get their own line, as does the data area.
 *   A "line" here is 128 bytes on every architecture: Apple's cores and some Neoverse parts have
 *   128-byte lines, and x86's adjacent-line prefetcher moves 64-byte lines in 128-byte pairs,
 *   so 64 would still false-share there. One size everywhere also keeps one layout
 *   (docs/protocol.md) instead of one per architecture; it costs 256 bytes per ring.
 *
 * WHY NOTHING IN SHARED MEMORY IS A POINTER
 *   The region is mapped at a different address in each process, so a pointer written by one
 *   is meaningless in the other; worse, a pointer written by a hostile peer would let it steer
 *   our reads and writes anywhere in our address space. The shared header holds only counters
 *   and flags; records hold only lengths. The base address and capacity come from the caller's
 *   own mapping and parameters (struct elm_ring), never from the region.
 *
 * RECORDS
 *   Each record is an 8-byte header {u32 len, u16 type, u16 flags} (little endian; read and
 *   written as one 64-bit word) followed by len payload bytes, padded so the next record starts
 *   8-byte aligned. A record occupies 8 + align8(len) bytes. Records are contiguous in the
 *   modular byte space: a payload that runs past the end of the data area continues at its
 *   start (split copy). The header itself never splits, because offsets are multiples of 8 and
 *   the capacity is too. Type 0 is reserved (never valid), so a zeroed area never looks like a
 *   record. The largest payload is capacity - 8.
 *
 * HOSTILE PEER
 *   The consumer reads head once per refill into a local, checks that it is 8-aligned, that it
 *   did not move backwards and that head - tail <= capacity; it reads each record header once
 *   (one 64-bit load) and checks type != 0, len <= capacity - 8 and that the record lies below
 *   head. The payload is copied into the caller's buffer: decoding (ipc/session_shm.h) works on
 *   that private copy, so the peer cannot change a length after it was checked. The producer
 *   checks every tail it reads the same way (8-aligned, within [old tail, head]). Any violation
 *   makes the view return ELM_ERING from then on (sticky): the session is broken and should be
 *   closed. A peer can still make us read garbage payloads or wait until a timeout; it cannot
 *   make us access memory outside the data area or loop without bound.
 *
 * WAITING (FUTEX) AND THE LOST-WAKEUP ARGUMENT
 *   Each direction has an event counter, a u32 futex word: data_seq (the consumer sleeps on it,
 *   waiting for data) and space_seq (the producer sleeps on it, waiting for space). A consumer
 *   with nothing to read spins briefly, then: (1) s = load-acquire(data_seq); (2) sets
 *   cons_waiting = 1; (3) full fence; (4) re-reads head and closed; if either changed it clears
 *   the flag and returns; (5) FUTEX_WAIT(&data_seq, s) — the kernel sleeps only while data_seq
 *   still equals s. The producer, after its store-release of head: (a) full fence; (b) reads
 *   cons_waiting; (c) if set, claims it with exchange(cons_waiting, 0), and if it got the 1,
 *   fetch_add-release(data_seq, 1) and FUTEX_WAKE(&data_seq).
 *   (2)-(4) against the store/(a)-(c) are the store-buffering pattern: with a full fence on both
 *   sides at least one side sees the other's store. Either the consumer sees the new head in (4)
 *   and does not sleep, or the producer sees the flag and bumps data_seq after the consumer read
 *   s in (1) — so FUTEX_WAIT either finds data_seq != s and returns at once, or is asleep and
 *   woken. (If (1) already saw the bump, acquire/release makes the new head visible in (4).)
 *   Claiming the flag with an exchange means one wake per sleep, not one per record published
 *   while the sleeper is being scheduled back in; a sleeper that must sleep again sets the flag
 *   again before re-checking, so the claim cannot lose a wakeup.
 *   A producer waiting for space does the mirror image with prod_waiting and space_seq, and
 *   first publishes space_need, the bytes it waits for: the consumer wakes it only once at
 *   least that much is free, so a producer of large records is not woken for every small pop.
 *   (The consumer's estimate of free space uses its cached head, which can only be behind the
 *   real one, so it over-estimates: an early wake, never a missed one.)
 *   Why not sleep on head/tail themselves: elm_ring_close() must wake a waiter without moving a
 *   counter it does not own (and may be called from another thread of the waiter's process);
 *   it sets closed, fences and bumps both event counters, which the same argument covers.
 *   A closed ring may still hold records pushed before the close: closed is a store-release
 *   read with acquire, and a consumer (popping or waiting) reads it before head, so it reports
 *   -EPIPE only when no record was pushed before the close it saw.
 *   The futexes are shared (no FUTEX_PRIVATE_FLAG): the kernel keys them by the shared page, not
 *   by the address in one process. Every wait takes a timeout: a peer that dies, or scribbles
 *   on the flags and event counters, can delay us until then but not block us forever.
 *
 * REQUIREMENTS: 32-bit atomics must be lock-free (hence address-free, so they work across
 * processes); checked below. Little-endian hosts only (also checked).
 */
#ifndef ELM_IPC_RING_H
#define ELM_IPC_RING_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

_Static_assert(ATOMIC_INT_LOCK_FREE == 2, "ring counters must be lock-free to be shared");
_Static_assert(sizeof(_Atomic uint32_t) == 4, "futex words are 32 bits");
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "shared layouts are little endian");

#define ELM_RING_MAGIC        0x524d4c45u /* "ELMR" */
#define ELM_RING_VERSION      2u  /* 2: 128-byte lines (1 had 64) */
#define ELM_RING_CACHELINE    128 /* the false-sharing unit; see WHY SEPARATE CACHE LINES */
#define ELM_RING_REC_HDR      8u /* bytes of a record header */
#define ELM_RING_MIN_CAPACITY 64u
#define ELM_RING_MAX_CAPACITY (1u << 30) /* keeps head - tail unambiguous in u32 arithmetic */
#define ELM_RING_MAX_IOV      64         /* segments accepted by elm_ring_pushv */

/* The shared part, at the start of a ring's slice of the region; the data area follows it.
 * Zero-filled memory plus elm_ring_init() is a valid empty ring. */
struct elm_ring_hdr {
    /* line 0 — written by the producer only */
    _Alignas(ELM_RING_CACHELINE) _Atomic uint32_t head;
    /* line 1 — written by the consumer only */
    _Alignas(ELM_RING_CACHELINE) _Atomic uint32_t tail;
    /* line 2 — written only around a sleep or at close, read by the other side every op */
    _Alignas(ELM_RING_CACHELINE) _Atomic uint32_t cons_waiting; /* consumer may be asleep */
    _Atomic uint32_t prod_waiting;                              /* producer may be asleep */
    _Atomic uint32_t data_seq;   /* futex word the consumer sleeps on; bumped to wake it */
    _Atomic uint32_t space_seq;  /* futex word the producer sleeps on; bumped to wake it */
    _Atomic uint32_t space_need; /* bytes a sleeping producer waits for */
    _Atomic uint32_t closed;     /* set by either side: no more data will come */
    /* line 3 — constant after elm_ring_init; compared once by elm_ring_attach */
    _Alignas(ELM_RING_CACHELINE) uint32_t magic;
    uint32_t version;
    uint32_t capacity;
    /* capacity bytes of records */
    _Alignas(ELM_RING_CACHELINE) unsigned char data[];
};
_Static_assert(sizeof(struct elm_ring_hdr) == 4 * ELM_RING_CACHELINE, "ring header layout");

enum elm_ring_role { ELM_RING_PRODUCER = 1, ELM_RING_CONSUMER = 2 };

/* A process-private view of one end of a ring. Everything the view needs to stay in bounds
 * (base, capacity, its own counter) lives here, not in the shared region. One view per end:
 * a view is not thread-safe, and two producer (or consumer) views on one ring break the ring. */
struct elm_ring {
    struct elm_ring_hdr *hdr; /* this process's address of the shared header */
    unsigned char *data;      /* hdr->data, capacity bytes */
    uint32_t cap;             /* bytes in the data area, from the creator's parameters */
    uint32_t mask;            /* cap - 1 */
    uint32_t pos;             /* own counter: head for a producer, tail for a consumer */
    uint32_t peer;            /* the peer's counter as last read and validated */
    int role;                 /* enum elm_ring_role */
    int err;                  /* 0, or ELM_ERING once the peer broke the protocol (sticky) */
    uint64_t n_sleeps;        /* statistics: futex waits this side entered */
    uint64_t n_wakes;         /* statistics: futex wakes this side issued */
};

/* One record's header, as returned by peek/pop. */
struct elm_ring_rec {
    uint32_t len;   /* payload bytes */
    uint16_t type;  /* never 0 */
    uint16_t flags; /* passed through untouched; meaning defined by the record's user */
};

/* True when capacity is a power of two in [ELM_RING_MIN_CAPACITY, ELM_RING_MAX_CAPACITY]. */
bool elm_ring_capacity_is_valid(uint32_t capacity);

/* Bytes a ring with this capacity occupies in a region (header + data), or 0 if the capacity
 * is invalid. Place ring headers at ELM_RING_CACHELINE-aligned offsets. */
size_t elm_ring_region_size(uint32_t capacity);

/* Creator side, before the region is shared: makes h an empty ring of capacity bytes (h must
 * have elm_ring_region_size(capacity) bytes). Returns 0 or -EINVAL. */
int elm_ring_init(struct elm_ring_hdr *h, uint32_t capacity);

/* Makes *r a view of one end of the ring at h. capacity is what the creator used (known from
 * the caller's own parameters, not read from h); the shared copy is only compared once.
 * Returns 0, -EINVAL (bad capacity/role) or ELM_ERING (h is not a ring of that capacity, or its
 * counters are inconsistent). *r is written only on success. */
int elm_ring_attach(struct elm_ring *r, struct elm_ring_hdr *h, uint32_t capacity,
                    enum elm_ring_role role);

/* Largest payload one record can carry: capacity - 8. */
uint32_t elm_ring_max_payload(const struct elm_ring *r);

/* Producer: appends one record of len bytes. Returns 0; -EAGAIN when the ring lacks space now
 * (wait with elm_ring_wait_space and retry); -EMSGSIZE when len > elm_ring_max_payload();
 * -EINVAL for type 0 or a consumer view; -EPIPE when the ring was closed; ELM_ERING when the
 * consumer corrupted the ring. Wakes the consumer if it may be asleep. */
int elm_ring_push(struct elm_ring *r, uint16_t type, const void *p, uint32_t len);

/* Producer: as elm_ring_push, the payload gathered from iovcnt (<= ELM_RING_MAX_IOV) segments,
 * so a fixed header and a body can be sent without first copying them together. */
int elm_ring_pushv(struct elm_ring *r, uint16_t type, uint16_t flags, const struct iovec *iov,
                   int iovcnt);

/* Consumer: the header of the next record, without consuming it (to size a buffer).
 * Returns 0; -EAGAIN when empty; -EPIPE when empty and closed; -EINVAL for a producer view;
 * ELM_ERING when the producer corrupted the ring. *rec is written only on success. */
int elm_ring_peek(struct elm_ring *r, struct elm_ring_rec *rec);

/* Consumer: copies the next record's payload into buf (cap bytes) and consumes it.
 * Returns as elm_ring_peek, plus -EMSGSIZE when the payload exceeds cap (nothing is consumed;
 * peek gives the size). buf then holds a private copy that the peer can no longer change: parse
 * that, never the ring. *rec and buf are written only on success. Wakes a sleeping producer. */
int elm_ring_pop(struct elm_ring *r, struct elm_ring_rec *rec, void *buf, uint32_t cap);

/* Consumer: waits until a record may be available. timeout_ms < 0 waits forever, 0 polls.
 * Spins briefly, then sleeps on the futex. Returns 0 (something arrived: call pop, which
 * validates it), -ETIMEDOUT, -EINTR (a signal arrived: check your flags), -EPIPE (closed and
 * empty), -EINVAL (producer view) or the view's sticky ELM_ERING. */
int elm_ring_wait_data(struct elm_ring *r, int timeout_ms);

/* Producer: waits until a record of len payload bytes fits. Returns as elm_ring_wait_data,
 * plus -EMSGSIZE when it never can. */
int elm_ring_wait_space(struct elm_ring *r, uint32_t len, int timeout_ms);

/* Waiting on many rings at once (e.g. one futex_waitv over every session), without touching
 * the shared header directly. For each ring: elm_ring_arm publishes that this side may sleep
 * (and, for a producer, that it needs room for len payload bytes), fences, and returns the
 * futex word and the value to sleep on. Then check every ring with elm_ring_is_ready; sleep
 * (futex_waitv, shared futexes: no FUTEX_PRIVATE_FLAG) only if none is ready; afterwards call
 * elm_ring_disarm on each, and push/pop. Arm again before every sleep. This is exactly what
 * elm_ring_wait_data/space do for one ring, so the lost-wakeup argument above covers it. */
struct elm_ring_futex {
    uint32_t *uaddr; /* in the shared region: the futex word */
    uint32_t val;    /* sleep only while *uaddr still holds this */
};

/* Returns 0 with *f set; -EMSGSIZE (producer, len too large); -EINVAL; sticky ELM_ERING. */
int elm_ring_arm(struct elm_ring *r, uint32_t len, struct elm_ring_futex *f);
/* True when a consumer may have data, a producer may have room for len payload bytes, the ring
 * is closed or broken (the next push/pop says which). Does not validate: push/pop do. */
bool elm_ring_is_ready(const struct elm_ring *r, uint32_t len);
/* Clears this side's "may be asleep" flag. NULL-safe. */
void elm_ring_disarm(struct elm_ring *r);

/* Either side, or another thread of either process: marks the ring closed and wakes both
 * sides. Later pushes return -EPIPE; the consumer still drains what was published, then gets
 * -EPIPE. Touches only the shared header, never the view's private state. Idempotent. */
void elm_ring_close(struct elm_ring *r);

/* True once either side closed the ring. */
bool elm_ring_is_closed(const struct elm_ring *r);

#endif
