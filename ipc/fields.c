/* fields.c — the field tables of the control replies and requests, and the code that walks
 * them (fields.h).
 *
 * Each table is in the order elmctl prints it. A line names the member once (the macros take
 * offset, size and JSON key from it, and the wire name unless .name differs), the wire tag, the
 * C type, and then only what differs from the defaults: flags, bounds, section, the text row and
 * its fragment, the unit.
 */
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "elm/client.h"
#include "elm/status.h"
#include "ipc/fields.h"

#define RQ ELM_FIELD_REQUIRED
#define NZ ELM_FIELD_NONZERO
#define WH ELM_FIELD_WHOLE

/* A line for member m of struct T; the rest are designated initializers. */
#define LINE(T, tag_, ct, m, ...)                                                                  \
    {                                                                                              \
        .tag = (tag_), .ctype = ELM_CT_##ct, .offset = offsetof(struct T, m),                      \
        .size = sizeof(((struct T *)0)->m), .json = #m, __VA_ARGS__                                \
    }
/* Element i of the array member m (the lines of one array share its JSON key). */
#define ELEM(T, tag_, m, i, ...)                                                                   \
    {                                                                                              \
        .tag = (tag_), .ctype = ELM_CT_U64, .offset = offsetof(struct T, m[i]),                    \
        .size = sizeof(((struct T *)0)->m[i]), .json = #m, __VA_ARGS__                             \
    }
#define TABLE(what_, T, lines)                                                                     \
    {                                                                                              \
        .what = (what_), .f = (lines), .n = sizeof(lines) / sizeof((lines)[0]),                    \
        .size = sizeof(struct T)                                                                   \
    }

/* ---------------------------------------------------------------------------------------------
 * STATUS
 */

#define S(...) LINE(elm_daemon_status, __VA_ARGS__)
#define MODEL  .section = ELM_STATUS_MODEL
// clang-format off
static const struct elm_field status_lines[] = {
    S(ELM_TAG_DAEMON_VERSION, STR, daemon_version, .flags = NZ, .row = "elmd", .text = "%s"),
    S(ELM_TAG_PID, LONG, pid, .max = INT_MAX, .row = "elmd", .text = ", pid %s"),
    S(ELM_TAG_UPTIME_NS, U64, uptime_ns, .flags = RQ, .row = "elmd", .text = ", up %s",
      .unit = ELM_UNIT_DURATION),
    S(ELM_TAG_N_SESSIONS, U32, n_sessions, .flags = RQ, .row = "sessions", .text = "%s open"),
    S(ELM_TAG_MAX_SESSIONS, U32, max_sessions, .flags = NZ, .row = "sessions", .text = " of %s"),
    /* every resident model */
    S(ELM_TAG_N_MODELS, U32, n_models, .row = "models", .text = "%s resident"),
    S(ELM_TAG_MODELS, STR, models, .flags = NZ, .row = "models", .text = ": %s"),
    S(ELM_TAG_RESIDENT_BYTES, U64, resident_bytes, .row = "memory", .text = "%s",
      .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_MAX_RESIDENT_BYTES, U64, max_resident_bytes, .flags = NZ, .row = "memory",
      .text = " of %s (max_resident_bytes) hold models", .unit = ELM_UNIT_BYTES),
    /* the model */
    S(ELM_TAG_MODEL_NAME, STR, model_name, MODEL, .flags = NZ, .row = "model", .text = "%s  "),
    S(ELM_TAG_PATH, STR, model_path, MODEL, .name = "path", .row = "model", .text = "%s"),
    S(ELM_TAG_ARCH, STR, arch, MODEL, .row = "architecture", .text = "%s"),
    S(ELM_TAG_N_PARAMS, U64, n_params, MODEL, .row = "architecture",
      .text = ", %s parameters", .unit = ELM_UNIT_COUNT),
    S(ELM_TAG_N_LAYER, U32, n_layer, MODEL, .row = "architecture", .text = ", %s layers"),
    S(ELM_TAG_N_EMBD, U32, n_embd, MODEL, .row = "architecture", .text = ", %s wide"),
    S(ELM_TAG_N_CTX_TRAIN, U32, n_ctx_train, MODEL,
      .row = "architecture", .text = ", trained on %s tokens of context"),
    S(ELM_TAG_KERNEL, STR, kernel, MODEL, .row = "compute", .text = "%s kernels"),
    S(ELM_TAG_MATRIX_UNIT, STR, matrix_unit, MODEL, .flags = NZ, .row = "compute",
      .text = ", Q4_0 prefill on %s"),
    S(ELM_TAG_N_THREADS, U32, n_threads, MODEL, .row = "compute", .text = ", %s threads"),
    S(ELM_TAG_N_CTX, U32, n_ctx, MODEL, .row = "context", .text = "%s tokens per session"),
    S(ELM_TAG_KV_TYPE, STR, kv_type, MODEL, .flags = NZ, .row = "context",
      .text = " (KV cache %s)"),
    S(ELM_TAG_N_VOCAB, U32, n_vocab, MODEL, .row = "context", .text = ", vocabulary %s"),
    S(ELM_TAG_WEIGHT_BYTES, U64, weight_bytes, MODEL, .row = "weights",
      .text = "%s", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_BACKING, STR, backing, MODEL, .row = "weights", .text = ", %s"),
    S(ELM_TAG_HUGE_BYTES, U64, huge_bytes, MODEL, .row = "weights",
      .text = ", %s on huge pages", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_HUGE_SHARE, F64, huge_share, MODEL, .row = "weights",
      .text = " (%s)", .unit = ELM_UNIT_SHARE),
    S(ELM_TAG_PINNED_BYTES, U64, pinned_bytes, MODEL, .row = "weights",
      .text = ", %s pinned", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_LOAD_NS, U64, load_ns, MODEL, .row = "load", .text = "took %s",
      .unit = ELM_UNIT_SECONDS),
    S(ELM_TAG_LOAD_GBPS, F64, load_gbps, MODEL, .row = "load", .text = ", %s GB/s"),
    S(ELM_TAG_O_DIRECT, BOOL, o_direct, MODEL, .row = "load",
      .text = ", O_DIRECT %s", .unit = ELM_UNIT_YESNO),
    S(ELM_TAG_IO_URING, BOOL, io_uring, MODEL, .row = "load",
      .text = ", io_uring %s", .unit = ELM_UNIT_YESNO),
    S(ELM_TAG_LOAD_NOTES, STR, load_notes, MODEL, .flags = NZ, .row = "load notes", .text = "%s"),
    /* the KV pool */
    S(ELM_TAG_KV_BYTES, U64, kv_bytes, MODEL, .row = "kv pool",
      .text = "%s", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_KV_PAGES_FREE, U64, kv_pages_free, MODEL, .row = "kv pool", .text = ": %s"),
    S(ELM_TAG_KV_PAGES, U64, kv_pages, MODEL, .row = "kv pool", .text = " of %s pages free"),
    S(ELM_TAG_KV_PAGE_TOKENS, U32, kv_page_tokens, MODEL,
      .row = "kv pool", .text = " (%s positions"),
    S(ELM_TAG_KV_PAGE_BYTES, U64, kv_page_bytes, MODEL,
      .row = "kv pool", .text = ", %s each)", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_KV_BACKING, STR, kv_backing, MODEL, .row = "kv pool", .text = ", %s"),
    S(ELM_TAG_KV_LOCKED, BOOL, kv_locked, MODEL, .row = "kv pool",
      .text = ", pinned %s", .unit = ELM_UNIT_YESNO),
    S(ELM_TAG_KV_TOKENS, U64, kv_tokens, MODEL, .row = "kv use", .text = "%s"),
    S(ELM_TAG_KV_CAPACITY, U64, kv_capacity, MODEL, .row = "kv use",
      .text = " of %s positions hold sessions' tokens"),
    S(ELM_TAG_N_QUEUED, U32, n_queued, MODEL, .row = "kv use", .text = ", %s requests waiting"),
    /* a load in progress, or the last one that failed */
    S(ELM_TAG_LOADING_PATH, STR, loading_path, .section = ELM_STATUS_LOADING,
      .row = "loading", .text = "%s"),
    S(ELM_TAG_LOAD_DONE, U64, load_done, .section = ELM_STATUS_LOADING,
      .row = "loading", .text = " (%s", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_LOAD_TOTAL, U64, load_total, .section = ELM_STATUS_LOADING,
      .row = "loading", .text = " of %s)", .unit = ELM_UNIT_BYTES),
    S(ELM_TAG_LOAD_WAIT, STR, load_wait, .section = ELM_STATUS_LOADING, .flags = NZ,
      .row = "loading", .text = ": %s"),
    S(ELM_TAG_LOAD_ERROR, STR, load_error, .flags = NZ, .row = "last load failed", .text = "%s"),
};
// clang-format on
#undef MODEL
#undef S

/* ---------------------------------------------------------------------------------------------
 * STATS
 */

#define T(...)  LINE(elm_daemon_stats, __VA_ARGS__)
#define TE(...) ELEM(elm_daemon_stats, __VA_ARGS__)
#define MS      .unit = ELM_UNIT_MS
// clang-format off
static const struct elm_field stats_lines[] = {
    T(ELM_TAG_UPTIME_NS, U64, uptime_ns, .flags = RQ, .row = "uptime", .text = "%s",
      .unit = ELM_UNIT_DURATION),
    T(ELM_TAG_N_REQUESTS, U64, n_requests, .flags = RQ, .row = "requests", .text = "%s"),
    T(ELM_TAG_N_ERRORS, U64, n_errors, .row = "requests", .text = " (%s failed)"),
    T(ELM_TAG_N_PROMPT_TOKENS, U64, n_prompt_tokens, .flags = RQ, .row = "prompt tokens",
      .text = "%s evaluated"),
    T(ELM_TAG_PROMPT_NS, U64, prompt_ns, .row = "prompt tokens", .text = " in %s",
      .unit = ELM_UNIT_SECONDS),
    T(ELM_TAG_N_PROMPT_REUSED, U64, n_prompt_reused,
      .row = "prompt tokens", .text = ", %s reused from history"),
    T(ELM_TAG_N_GEN_TOKENS, U64, n_gen_tokens, .flags = RQ, .row = "generated tokens",
      .text = "%s"),
    T(ELM_TAG_GEN_NS, U64, gen_ns, .row = "generated tokens", .text = " in %s",
      .unit = ELM_UNIT_SECONDS),
    T(ELM_TAG_GEN_TOKENS_PER_S, F64, gen_tokens_per_s, .row = "generated tokens",
      .text = " (%s tokens/s)"),
    TE(ELM_TAG_TTFT_P50_NS, ttft_ns, 0, .name = "ttft_p50_ns", .row = "first token",
       .text = "%s", MS),
    TE(ELM_TAG_TTFT_P90_NS, ttft_ns, 1, .name = "ttft_p90_ns", .row = "first token",
       .text = " / %s", MS),
    TE(ELM_TAG_TTFT_P99_NS, ttft_ns, 2, .name = "ttft_p99_ns", .row = "first token",
       .text = " / %s ms (median / p90 / p99)", MS),
    TE(ELM_TAG_ITL_P50_NS, itl_ns, 0, .name = "itl_p50_ns", .row = "between tokens",
       .text = "%s", MS),
    TE(ELM_TAG_ITL_P90_NS, itl_ns, 1, .name = "itl_p90_ns", .row = "between tokens",
       .text = " / %s", MS),
    TE(ELM_TAG_ITL_P99_NS, itl_ns, 2, .name = "itl_p99_ns", .row = "between tokens",
       .text = " / %s ms", MS),
    T(ELM_TAG_N_STEPS, U64, n_steps, .row = "forward passes", .text = "%s"),
    T(ELM_TAG_RSS_BYTES, U64, rss_bytes, .row = "resident memory", .text = "%s",
      .unit = ELM_UNIT_BYTES),
    T(ELM_TAG_N_SESSIONS, U32, n_sessions, .row = "open sessions", .text = "%s"),
    T(ELM_TAG_N_CLIENT_DEATHS, U64, n_client_deaths,
      .row = "open sessions", .text = " (%s freed after their client died"),
    T(ELM_TAG_N_RING_ERRORS, U64, n_ring_errors,
      .row = "open sessions", .text = ", %s closed for a bad record)"),
    T(ELM_TAG_N_BUSY, U64, n_busy, .row = "kv memory", .text = "%s requests refused busy"),
    T(ELM_TAG_N_KV_RECLAIMED, U64, n_kv_reclaimed, .row = "kv memory",
      .text = ", %s idle sessions reclaimed"),
    T(ELM_TAG_N_PREEMPTIONS, U64, n_preemptions, .row = "kv memory", .text = ", %s preemptions"),
    T(ELM_TAG_N_RECOMPUTED, U64, n_recomputed, .row = "kv memory",
      .text = " (%s tokens recomputed)"),
    T(ELM_TAG_N_CONTROL, U64, n_control, .row = "control messages", .text = "%s"),
    T(ELM_TAG_N_MALFORMED, U64, n_malformed, .row = "control messages", .text = " (%s malformed"),
    T(ELM_TAG_N_DROPPED, U64, n_dropped, .row = "control messages",
      .text = ", %s replies dropped)"),
    T(ELM_TAG_N_SESSIONS_OPENED, U64, n_sessions_opened, .row = "sessions opened", .text = "%s"),
    T(ELM_TAG_N_MODELS, U32, n_models, .row = "models", .text = "%s resident"),
    T(ELM_TAG_N_UNLOADS, U64, n_unloads, .row = "models", .text = ", %s unloaded"),
    T(ELM_TAG_MODELS, STR, models, .flags = NZ, .row = "per model", .text = "%s"),
    T(ELM_TAG_N_POOL_SLEEPS, U64, n_pool_sleeps, .row = "compute threads",
      .text = "%s sleeps"),
    T(ELM_TAG_N_POOL_SPIN_SLEEPS, U64, n_pool_spin_sleeps, .row = "compute threads",
      .text = " (%s after a spin)"),
    T(ELM_TAG_N_POOL_BUSY, U64, n_pool_busy, .row = "compute threads",
      .text = ", machine busy in %s"),
    T(ELM_TAG_N_POOL_SAMPLES, U64, n_pool_samples, .row = "compute threads",
      .text = " of %s samples"),
    T(ELM_TAG_N_POOL_PROBES, U64, n_pool_probes, .row = "compute threads",
      .text = ", %s probes"),
    T(ELM_TAG_N_POOL_PROBES_FREE, U64, n_pool_probes_free, .row = "compute threads",
      .text = " (%s found free cores)"),
    TE(ELM_TAG_POOL_DELAY_1, pool_delay, 0, .name = "pool_delay_1", .row = "core waits",
       .text = "%s"),
    TE(ELM_TAG_POOL_DELAY_10, pool_delay, 1, .name = "pool_delay_10", .row = "core waits",
       .text = " / %s"),
    TE(ELM_TAG_POOL_DELAY_50, pool_delay, 2, .name = "pool_delay_50", .row = "core waits",
       .text = " / %s"),
    TE(ELM_TAG_POOL_DELAY_MORE, pool_delay, 3, .name = "pool_delay_more",
       .row = "core waits", .text = " / %s samples waited < 1 / 10 / 50 percent, more"),
    TE(ELM_TAG_POOL_GAP_01, pool_gaps, 0, .name = "pool_gap_01", .row = "call gaps",
       .text = "%s"),
    TE(ELM_TAG_POOL_GAP_1, pool_gaps, 1, .name = "pool_gap_1", .row = "call gaps",
       .text = " / %s"),
    TE(ELM_TAG_POOL_GAP_10, pool_gaps, 2, .name = "pool_gap_10", .row = "call gaps",
       .text = " / %s"),
    TE(ELM_TAG_POOL_GAP_MORE, pool_gaps, 3, .name = "pool_gap_more", .row = "call gaps",
       .text = " / %s under 0.1 / 1 / 10 ms, more"),
};
// clang-format on
#undef MS
#undef TE
#undef T

/* ---------------------------------------------------------------------------------------------
 * SESSIONS: one group per session, shown by elmctl as a table (row = column header)
 */

/* enum elm_session_state (= enum elm_proto_session_state) */
static const char *const state_names[] = {NULL, "idle", "running", "closing"};

#define G(...)  LINE(elm_session_info, __VA_ARGS__)
#define GE(...) ELEM(elm_session_info, __VA_ARGS__)
// clang-format off
static const struct elm_field session_lines[] = {
    G(ELM_TAG_SESSION_ID, U64, id, .name = "session_id", .flags = RQ, .row = "ID", .width = 8),
    G(ELM_TAG_STATE, INT, state, .flags = RQ, .min = ELM_SESSION_STATE_IDLE,
      .max = ELM_SESSION_STATE_CLOSING, .row = "STATE", .width = -8, .unit = ELM_UNIT_NAMES,
      .names = state_names),
    G(ELM_TAG_PID, LONG, pid, .flags = NZ, .max = INT_MAX, .row = "PID", .width = 8),
    G(ELM_TAG_CLIENT_NAME, STR, client_name, .flags = NZ, .row = "CLIENT", .width = -16),
    G(ELM_TAG_MODEL_NAME, STR, model, .name = "model_name", .flags = NZ, .row = "MODEL",
      .width = -16),
    G(ELM_TAG_N_CTX, U32, n_ctx, .row = "CTX", .width = 6),
    G(ELM_TAG_N_PROMPT_TOKENS, U64, n_prompt_tokens, .row = "PROMPT", .width = 8),
    G(ELM_TAG_N_GEN_TOKENS, U64, n_gen_tokens, .row = "GEN", .width = 8),
    G(ELM_TAG_N_REQUESTS_SESSION, U64, n_requests, .name = "n_requests_session", .row = "REQS",
      .width = 6),
    G(ELM_TAG_AGE_NS, U64, age_ns, .row = "AGE", .unit = ELM_UNIT_DURATION),
    GE(ELM_TAG_TTFT_P50_NS, ttft_ns, 0, .name = "ttft_p50_ns"),
    GE(ELM_TAG_TTFT_P90_NS, ttft_ns, 1, .name = "ttft_p90_ns"),
    GE(ELM_TAG_TTFT_P99_NS, ttft_ns, 2, .name = "ttft_p99_ns"),
    GE(ELM_TAG_ITL_P50_NS, itl_ns, 0, .name = "itl_p50_ns"),
    GE(ELM_TAG_ITL_P90_NS, itl_ns, 1, .name = "itl_p90_ns"),
    GE(ELM_TAG_ITL_P99_NS, itl_ns, 2, .name = "itl_p99_ns"),
};
// clang-format on
#undef GE
#undef G

/* ---------------------------------------------------------------------------------------------
 * LOAD: the reply once the model is in (elmctl prints it on one line after "loaded PATH")
 */

#define L(...) LINE(elm_load_result, __VA_ARGS__)
// clang-format off
static const struct elm_field load_lines[] = {
    L(ELM_TAG_MODEL_NAME, STR, model_name, .flags = NZ, .row = "loaded", .text = " (%s)"),
    L(ELM_TAG_N_CTX, U32, n_ctx, .row = "loaded", .text = ": context %s tokens"),
    L(ELM_TAG_N_VOCAB, U32, n_vocab, .row = "loaded", .text = ", vocabulary %s"),
    L(ELM_TAG_LOAD_NS, U64, load_ns, .row = "loaded", .text = ", in %s", .unit = ELM_UNIT_SECONDS),
};
// clang-format on
#undef L

/* ---------------------------------------------------------------------------------------------
 * Requests: what a client sends. Bounds here are the one definition of each limit: elmd refuses
 * a value outside them (-EINVAL naming the field), elmctl refuses such an option before sending.
 * Order is the order libelmclient writes them in.
 */

#define H(...) LINE(elm_hello_req, __VA_ARGS__)
#define D(...) LINE(elm_load_req, __VA_ARGS__)
#define O(...) LINE(elm_open_req, __VA_ARGS__)
// clang-format off
static const struct elm_field hello_req_lines[] = {
    H(ELM_TAG_VERSION_MIN, U64, version_min, .flags = RQ),
    H(ELM_TAG_VERSION_MAX, U64, version_max, .flags = RQ),
    H(ELM_TAG_CLIENT_NAME, STR, client_name),
    H(ELM_TAG_PID, U64, pid), /* informative: any value, as before any bound existed */
};
static const struct elm_field load_req_lines[] = {
    D(ELM_TAG_PATH, STR, path, .flags = RQ | WH),
    D(ELM_TAG_N_CTX, U32, n_ctx, .flags = NZ, .max = ELM_REQ_MAX_CTX),
    D(ELM_TAG_N_THREADS, U32, n_threads, .flags = NZ, .max = ELM_REQ_MAX_THREADS),
    D(ELM_TAG_MODEL_NAME, STR, name, .name = "model_name", .flags = NZ | WH),
    D(ELM_TAG_KEEP_ALIVE, STR, keep_alive, .flags = NZ | WH),
};
static const struct elm_field open_req_lines[] = {
    O(ELM_TAG_N_CTX, U64, n_ctx, .flags = NZ),
    O(ELM_TAG_REQ_RING_SIZE, U32, req_ring_size, .flags = NZ, .max = ELM_REQ_MAX_RING),
    O(ELM_TAG_EVT_RING_SIZE, U32, evt_ring_size, .flags = NZ, .max = ELM_REQ_MAX_RING),
    O(ELM_TAG_CLIENT_NAME, STR, client_name),
    O(ELM_TAG_PID, LONG, pid, .max = INT32_MAX),
    O(ELM_TAG_MODEL_NAME, STR, model, .name = "model_name", .flags = NZ | WH),
    O(ELM_TAG_KEEP_ALIVE, STR, keep_alive, .flags = NZ | WH),
};
static const struct elm_field unload_req_lines[] = {
    LINE(elm_unload_req, ELM_TAG_MODEL_NAME, STR, name, .name = "model_name", .flags = NZ | WH),
};
static const struct elm_field session_req_lines[] = {
    LINE(elm_session_req, ELM_TAG_SESSION_ID, U64, session_id, .flags = RQ),
};
// clang-format on
#undef O
#undef D
#undef H

const struct elm_fields elm_fields_hello_req = TABLE("hello", elm_hello_req, hello_req_lines);
const struct elm_fields elm_fields_load_req = TABLE("load", elm_load_req, load_req_lines);
const struct elm_fields elm_fields_open_req = TABLE("open_session", elm_open_req, open_req_lines);
const struct elm_fields elm_fields_session_req =
    TABLE("session", elm_session_req, session_req_lines);
const struct elm_fields elm_fields_unload_req = TABLE("unload", elm_unload_req, unload_req_lines);

const struct elm_fields *const elm_fields_requests[] = {
    &elm_fields_hello_req,
    &elm_fields_load_req,
    &elm_fields_open_req,
    &elm_fields_session_req,
    &elm_fields_unload_req,
    NULL,
};

const struct elm_fields elm_fields_status = TABLE("status", elm_daemon_status, status_lines);
const struct elm_fields elm_fields_stats = TABLE("stats", elm_daemon_stats, stats_lines);
const struct elm_fields elm_fields_session = TABLE("session", elm_session_info, session_lines);
const struct elm_fields elm_fields_load = TABLE("load", elm_load_result, load_lines);

const struct elm_fields *const elm_fields_all[] = {
    &elm_fields_status, &elm_fields_stats, &elm_fields_session, &elm_fields_load, NULL,
};

/* ---------------------------------------------------------------------------------------------
 * Member access
 */

static const void *at(const struct elm_field *f, const void *obj)
{
    return (const unsigned char *)obj + f->offset;
}

static void *at_mut(const struct elm_field *f, void *obj)
{
    return (unsigned char *)obj + f->offset;
}

int elm_field_type(const struct elm_field *f)
{
    switch (f->ctype) {
    case ELM_CT_F64:
        return ELM_PT_F64;
    case ELM_CT_STR:
        return ELM_PT_STR;
    default:
        return ELM_PT_U64;
    }
}

bool elm_field_is_signed(const struct elm_field *f)
{
    return f->ctype == ELM_CT_INT || f->ctype == ELM_CT_LONG;
}

uint64_t elm_field_u64(const struct elm_field *f, const void *obj)
{
    const void *p = at(f, obj);
    switch (f->ctype) {
    case ELM_CT_U64:
        return *(const uint64_t *)p;
    case ELM_CT_U32:
        return *(const uint32_t *)p;
    case ELM_CT_INT:
        return (uint64_t)(int64_t) * (const int *)p;
    case ELM_CT_LONG:
        return (uint64_t)(int64_t) * (const long *)p;
    case ELM_CT_BOOL:
        return *(const bool *)p;
    default:
        return 0;
    }
}

double elm_field_f64(const struct elm_field *f, const void *obj)
{
    return f->ctype == ELM_CT_F64 ? *(const double *)at(f, obj) : 0.0;
}

const char *elm_field_str(const struct elm_field *f, const void *obj)
{
    return f->ctype == ELM_CT_STR ? (const char *)at(f, obj) : "";
}

bool elm_field_is_default(const struct elm_field *f, const void *obj)
{
    switch (f->ctype) {
    case ELM_CT_F64:
        return elm_field_f64(f, obj) == 0.0;
    case ELM_CT_STR:
        return elm_field_str(f, obj)[0] == 0;
    default:
        return elm_field_u64(f, obj) == 0;
    }
}

/* The largest value a member of f's C type (and f's own bound) takes. */
static uint64_t max_of(const struct elm_field *f)
{
    uint64_t m;
    switch (f->ctype) {
    case ELM_CT_U32:
        m = UINT32_MAX;
        break;
    case ELM_CT_INT:
        m = INT_MAX;
        break;
    case ELM_CT_LONG:
        m = LONG_MAX;
        break;
    case ELM_CT_BOOL:
        m = 1;
        break;
    default:
        m = UINT64_MAX;
        break;
    }
    return f->max && f->max < m ? f->max : m;
}

static void set_u64(const struct elm_field *f, void *obj, uint64_t v)
{
    void *p = at_mut(f, obj);
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
        *(bool *)p = v != 0;
        break;
    }
}

/* ---------------------------------------------------------------------------------------------
 * Encoding and decoding
 */

static int put_one(struct elm_proto_buf *b, const struct elm_field *f, const void *obj)
{
    switch (elm_field_type(f)) {
    case ELM_PT_F64:
        return elm_proto_put_f64(b, f->tag, elm_field_f64(f, obj));
    case ELM_PT_STR: {
        const char *s = elm_field_str(f, obj);
        size_t n = strnlen(s, f->size);
        if ((f->flags & ELM_FIELD_WHOLE) && (n == f->size || n > ELM_PROTO_MAX_STR))
            return elm_proto_put_strn(b, f->tag, s, ELM_PROTO_MAX_STR + 1); /* sticky -EINVAL */
        return elm_proto_put_strn(b, f->tag, s, n < ELM_PROTO_MAX_STR ? n : ELM_PROTO_MAX_STR);
    }
    default:
        return elm_proto_put_u64(b, f->tag, elm_field_u64(f, obj));
    }
}

int elm_fields_put(struct elm_proto_buf *b, const struct elm_fields *t, const void *obj,
                   unsigned sections)
{
    int rc = 0;
    for (unsigned i = 0; i < t->n && rc == 0; i++) {
        const struct elm_field *f = &t->f[i];
        if (f->section && !(f->section & sections))
            continue;
        if ((f->flags & ELM_FIELD_NONZERO) && elm_field_is_default(f, obj))
            continue;
        rc = put_one(b, f, obj);
    }
    return rc;
}

/* Reads line f into obj. Returns 0, -ENOENT (absent), ELM_EPROTO (wrong type), -ERANGE (an
 * integer outside the line's bounds) or -ENAMETOOLONG (a WHOLE string longer than its buffer). */
static int get_one(const struct elm_proto_view *v, const struct elm_field *f, void *obj)
{
    switch (elm_field_type(f)) {
    case ELM_PT_F64:
        return elm_proto_get_f64(v, f->tag, (double *)at_mut(f, obj));
    case ELM_PT_STR: {
        const char *s;
        uint32_t n;
        int rc = elm_proto_get_str(v, f->tag, &s, &n);
        if (rc == 0 && n >= f->size && (f->flags & ELM_FIELD_WHOLE))
            return -ENAMETOOLONG;
        if (rc == 0) { /* a daemon's string longer than our buffer is cut, not an error */
            size_t k = n < f->size - 1 ? n : f->size - 1;
            memcpy(at_mut(f, obj), s, k);
            ((char *)at_mut(f, obj))[k] = 0;
        }
        return rc;
    }
    default: {
        uint64_t x;
        int rc = elm_proto_get_u64(v, f->tag, &x);
        if (rc == 0 && (x < f->min || x > max_of(f)))
            return -ERANGE;
        if (rc == 0)
            set_u64(f, obj, x);
        return rc;
    }
    }
}

/* Reads every line of t; on failure *bad is the line that failed. */
static int get_all(const struct elm_proto_view *v, const struct elm_fields *t, void *obj,
                   const struct elm_field **bad)
{
    for (unsigned i = 0; i < t->n; i++) {
        const struct elm_field *f = &t->f[i];
        int rc = get_one(v, f, obj);
        if (rc == -ENOENT && !(f->flags & ELM_FIELD_REQUIRED))
            continue;
        if (rc < 0) {
            *bad = f;
            return rc == -ENOENT ? ELM_EPROTO : rc;
        }
    }
    return 0;
}

int elm_fields_get(const struct elm_proto_view *v, const struct elm_fields *t, void *obj)
{
    const struct elm_field *bad;
    return get_all(v, t, obj, &bad) < 0 ? ELM_EPROTO : 0;
}

int elm_fields_get_request(const struct elm_proto_view *v, const struct elm_fields *t, void *obj,
                           char *msg, size_t cap)
{
    const struct elm_field *f = NULL;
    int rc = get_all(v, t, obj, &f);
    if (rc == 0)
        return 0;
    const char *name = f->name ? f->name : f->json; /* the tag's name (schema.c) */
    uint64_t x = 0;
    if (rc == ELM_EPROTO) {
        snprintf(msg, cap, "%s is missing or has the wrong type", name);
        return ELM_EPROTO;
    }
    if (rc == -ENAMETOOLONG)
        snprintf(msg, cap, "%s is longer than %" PRIu32 " bytes", name, f->size - 1);
    else if (elm_proto_get_u64(v, f->tag, &x) == 0)
        snprintf(msg, cap, "%s %" PRIu64 " is out of range [%" PRIu64 ", %" PRIu64 "]", name, x,
                 f->min, max_of(f));
    return -EINVAL;
}

const struct elm_field *elm_fields_line(const struct elm_fields *t, uint16_t tag)
{
    for (unsigned i = 0; i < t->n; i++)
        if (t->f[i].tag == tag)
            return &t->f[i];
    return NULL;
}

int elm_field_bounds(const struct elm_fields *t, uint16_t tag, uint64_t *min, uint64_t *max)
{
    const struct elm_field *f = elm_fields_line(t, tag);
    if (!f)
        return -ENOENT;
    *min = f->min;
    *max = max_of(f);
    return 0;
}

const struct elm_field *elm_fields_find(uint16_t tag)
{
    for (const struct elm_fields *const *t = elm_fields_all; *t; t++)
        for (unsigned i = 0; i < (*t)->n; i++)
            if ((*t)->f[i].tag == tag)
                return &(*t)->f[i];
    return NULL;
}
