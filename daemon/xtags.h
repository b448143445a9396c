/* xtags.h — reply fields elmd sends that ipc/proto.h does not define (yet).
 *
 * They carry ELM_TAG_OPTIONAL, so every receiver that does not know them skips them (proto.h's
 * extension rule) and they cannot break a client; they sit in a range (0x8100-) far from the
 * tags proto.h may add. They belong in proto.h and docs/protocol.md, and should move there; the
 * integration tests and `elmctl` may read them with elm_proto_get_* meanwhile.
 */
#ifndef ELMD_XTAGS_H
#define ELMD_XTAGS_H

#include "ipc/proto.h"

enum elmd_xtag {
    /* STATUS: the model */
    ELMD_TAG_ARCH = ELM_TAG_OPTIONAL | 0x100, /* str: "llama", "qwen2" */
    ELMD_TAG_KERNEL,                          /* str: kernel variant, "avx2"... */
    ELMD_TAG_N_PARAMS,                        /* u64: parameters (tensor elements) */
    ELMD_TAG_N_LAYER,                         /* u64 */
    ELMD_TAG_N_EMBD,                          /* u64 */
    ELMD_TAG_N_CTX_TRAIN,                     /* u64 */
    ELMD_TAG_KV_TYPE,                         /* str: "f16" or "f32" */
    /* STATUS: residency of the weights (daemon/loader.h) */
    ELMD_TAG_WEIGHT_BYTES, /* u64: bytes of the data section */
    ELMD_TAG_PINNED_BYTES, /* u64: bytes locked in memory (0: not pinned) */
    ELMD_TAG_HUGE_BYTES,   /* u64: bytes on huge pages */
    ELMD_TAG_HUGE_SHARE,   /* f64: huge_bytes / mapping size, 0..1 */
    ELMD_TAG_BACKING,      /* str: "hugetlb", "thp" or "plain" */
    ELMD_TAG_O_DIRECT,     /* u64: 1 when read with O_DIRECT */
    ELMD_TAG_IO_URING,     /* u64: 1 when read with io_uring */
    ELMD_TAG_LOAD_GBPS,    /* f64: read throughput, GB/s (1e9 bytes) */
    ELMD_TAG_LOAD_NOTES,   /* str: fallbacks taken while loading */
    /* STATUS: a load in progress, or the last one that failed */
    ELMD_TAG_LOADING_PATH, /* str */
    ELMD_TAG_LOAD_DONE,    /* u64: bytes read so far */
    ELMD_TAG_LOAD_TOTAL,   /* u64: bytes to read */
    ELMD_TAG_LOAD_ERROR,   /* str */
    /* STATUS: KV caches of the open sessions */
    ELMD_TAG_KV_BYTES,    /* u64: allocated */
    ELMD_TAG_KV_TOKENS,   /* u64: positions in use */
    ELMD_TAG_KV_CAPACITY, /* u64: positions allocated */
    /* STATS (and SESSIONS groups, per session) */
    ELMD_TAG_N_MALFORMED,     /* u64: control frames that failed to decode */
    ELMD_TAG_N_CONTROL,       /* u64: control frames received */
    ELMD_TAG_N_DROPPED,       /* u64: replies that could not be sent */
    ELMD_TAG_N_STEPS,         /* u64: forward passes */
    ELMD_TAG_N_CLIENT_DEATHS, /* u64: sessions freed because the client died */
    ELMD_TAG_N_RING_ERRORS,   /* u64: sessions closed for a bad record */
    ELMD_TAG_TTFT_P50_NS,     /* u64: time to first token percentiles */
    ELMD_TAG_TTFT_P90_NS,
    ELMD_TAG_TTFT_P99_NS,
    ELMD_TAG_ITL_P50_NS, /* u64: inter-token latency percentiles */
    ELMD_TAG_ITL_P90_NS,
    ELMD_TAG_ITL_P99_NS,
    ELMD_TAG_N_REQUESTS_SESSION, /* u64 (SESSIONS groups): requests finished */
};

#endif
