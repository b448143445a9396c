/* elm/client.h — the client library (libelmclient): talk to the elm daemon (elmd).
 *
 * A program connects to the daemon of its user (elm_client_connect), may ask it about its state
 * or tell it to load a model, and opens sessions (elm_session_open). A session is one
 * conversation with the loaded model: it runs one request at a time and keeps the context of
 * its previous requests. Generated tokens stream back through shared memory as they are made;
 * read them one by one (elm_session_next) or have a callback called for each
 * (elm_session_generate). docs/client.md has an example program.
 *
 * ERRORS. Every function that can fail returns 0 or a negative code: -errno (-EINVAL for bad
 * arguments, -ENOMEM, -ETIMEDOUT, -EACCES...) or an ELM_E* code from elm/status.h;
 * elm_strerror() names them all. The ones to expect here:
 *   ELM_EDAEMON   the daemon is not running (no socket, or nothing answers it) or it died
 *   ELM_EPROTO    the daemon speaks an incompatible protocol version, or sent a malformed reply
 *   ELM_ERING     the daemon wrote an invalid record into the session's shared memory; the
 *                 session is unusable from then on (close it)
 *   ELM_ENOMODEL  no model is loaded;  ELM_EBUSY  no room for another session now, or the
 *                 model is being loaded or replaced: try again shortly
 *   ELM_ECONTEXT  the request does not fit the session's context
 *   ELM_ESESSION  the daemon closed the session;  ELM_ESHUTDOWN  the daemon is stopping
 *   -EACCES       the daemon belongs to another user (its socket is not ours to use)
 * Out-parameters are written only on success. Strings returned through structs are
 * NUL-terminated.
 *
 * THREADS. All functions may be called from any thread. A client's control calls are
 * serialised by a lock inside the client, so one thread's elm_client_load() delays another's
 * elm_session_open(). A session is used by one thread at a time, except elm_session_cancel(),
 * which any thread may call while another waits in elm_session_next() or
 * elm_session_generate(). Different sessions are independent: give each thread its own.
 * Handles must not be used in a child process after fork(); connect again there.
 */
#ifndef ELM_CLIENT_H
#define ELM_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "elm/status.h"
#include "elm/version.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct elm_client elm_client;   /* a connection to the daemon */
typedef struct elm_session elm_session; /* a conversation: a context and a request at a time */

/* ---------------------------------------------------------------------------------------------
 * Connecting
 */

/* The runtime directory used when elm_client_connect() gets NULL, written to buf (cap bytes,
 * NUL-terminated): $ELM_RUNTIME_DIR if set, else $XDG_RUNTIME_DIR/elm, else /run/user/<uid>/elm
 * when /run/user/<uid> exists, else /tmp/elm-<uid> (the daemon's own default order). Returns 0
 * or -ENAMETOOLONG. */
int elm_client_default_runtime_dir(char *buf, size_t cap);

/* Connects to the daemon listening in runtime_dir (NULL: the default above; borrowed for the
 * call) and negotiates the protocol version. Fails fast, without waiting for a daemon to appear:
 * ELM_EDAEMON when no daemon is there or it does not answer within a few seconds, -EACCES when
 * the socket belongs to another user, ELM_EPROTO when no common protocol version exists,
 * ELM_EBUSY when the daemon has as many connections open as it accepts (its max_connections:
 * it accepts new ones again once some close).
 * Caller owns *out and releases it with elm_client_close(). */
int elm_client_connect(const char *runtime_dir, elm_client **out);

/* Releases the caller's reference to *c and sets *c to NULL. NULL-safe. Sessions still open
 * keep the connection alive; it closes with the last of them. */
void elm_client_close(elm_client **c);

/* The daemon's message explaining the last failed call on c (e.g. why a model did not load), or
 * "" when it gave none. Borrowed until the next call on c; meaningful when c is used by one
 * thread. */
const char *elm_client_last_message(const elm_client *c);

/* The protocol version agreed with the daemon, and the daemon's process id. */
unsigned elm_client_protocol_version(const elm_client *c);
long elm_client_daemon_pid(const elm_client *c);

/* How long a session may wait without the daemon's heartbeat (which it bumps several times a
 * second in every session's shared memory while it runs) before elm_session_next(),
 * elm_session_generate() and the other calls that wait on a session give up with ELM_EDAEMON:
 * the daemon is alive but stopped (SIGSTOP) or stalled. timeout_ms 0: wait forever. The default
 * is $ELM_STALL_TIMEOUT_MS when set at connect, else 30000. Below about a second a busy machine
 * can raise false alarms. Returns 0 or -EINVAL. */
int elm_client_set_stall_timeout(elm_client *c, int timeout_ms);

/* ---------------------------------------------------------------------------------------------
 * Asking and telling the daemon (control calls)
 */

struct elm_daemon_status {
    char daemon_version[32]; /* "" if the daemon did not say */
    long pid;                /* daemon process id */
    uint64_t uptime_ns;
    uint32_t n_sessions;   /* open sessions */
    uint32_t max_sessions; /* 0: not reported */
    bool model_loaded;
    /* The default model (the first loaded) is described below; every resident model is in
     * `models`, "NAME (N sessions|idle, BYTES), ..." */
    uint32_t n_models;           /* models resident */
    char models[1024];           /* "" when none */
    uint64_t resident_bytes;     /* their weights and KV pools */
    uint64_t max_resident_bytes; /* the budget (max_resident_bytes) */
    char model_path[4096]; /* "" when no model is loaded */
    char model_name[256];
    uint32_t n_ctx; /* default context per session; 0 when no model */
    uint32_t n_vocab;
    /* The model and where its weights live (0 or "" when not reported). */
    char arch[16];         /* "llama", "qwen2" */
    char kernel[16];       /* the kernel variant computing: "avx2"... */
    char matrix_unit[8];   /* "AMX" where its Q4_0 prefill runs there, else "" */
    char kv_type[8];       /* KV cache precision: "f16", "f32", "q8_0" */
    uint64_t n_params;     /* parameters (tensor elements) */
    uint32_t n_layer;      /* transformer blocks */
    uint32_t n_embd;       /* embedding width */
    uint32_t n_ctx_train;  /* context the model was trained with */
    uint32_t n_threads;    /* compute threads */
    uint64_t load_ns;      /* time the load took */
    uint64_t weight_bytes; /* bytes of weights */
    uint64_t pinned_bytes; /* of those, locked in memory (0: not pinned) */
    uint64_t huge_bytes;   /* of those, on huge pages */
    double huge_share;     /* huge_bytes / the mapping's size, 0..1 */
    char backing[16];      /* "hugetlb", "thp" or "plain" */
    bool o_direct;         /* the weights were read with O_DIRECT */
    bool io_uring;         /* ... with io_uring */
    double load_gbps;      /* read throughput, GB/s (1e9 bytes) */
    char load_notes[256];  /* fallbacks taken while loading; "" if none */
    /* The KV pool: one per model, its pages shared by every session. */
    uint64_t kv_bytes;       /* bytes of the pool */
    uint64_t kv_tokens;      /* positions holding sessions' tokens */
    uint64_t kv_capacity;    /* positions the pool holds (kv_pages x kv_page_tokens) */
    uint64_t kv_pages;       /* pages in the pool */
    uint64_t kv_pages_free;  /* pages no session holds */
    uint64_t kv_page_bytes;  /* bytes of one page */
    uint32_t kv_page_tokens; /* positions of one page */
    char kv_backing[16];     /* "hugetlb", "thp" or "plain" */
    bool kv_locked;          /* the pool is locked in memory */
    uint32_t n_queued;       /* requests waiting for KV memory to free up */
    /* A load in progress (started by any client), or the last one that failed. */
    bool loading;
    char loading_path[4096];
    uint64_t load_done;   /* bytes of weights read so far */
    uint64_t load_total;  /* bytes to read; 0 until known */
    char load_error[512]; /* why the last load failed; "" if it did not */
    char load_wait[256];  /* what a load waits for (room in the budget); "" when it runs */
};

/* The daemon's state. *out is the caller's struct, written on success. */
int elm_client_status(elm_client *c, struct elm_daemon_status *out);

struct elm_load_result {
    char model_name[256];
    uint32_t n_ctx;
    uint32_t n_vocab;
    uint64_t load_ns; /* time the daemon took to load */
};

/* Loads the GGUF model at path (borrowed; a relative path is resolved against the caller's
 * working directory) in the daemon. The old model serves until the new one is ready; then the
 * sessions open on it are closed (a running request ends with an ERROR ELM_ENOMODEL, later
 * calls on them return ELM_ESESSION): open new ones. n_ctx (context tokens per session) and
 * n_threads: 0 = the daemon's default. Blocks until the model is loaded, however long it takes,
 * or the daemon dies (ELM_EDAEMON). out (the caller's struct, may be NULL) is written on
 * success. Errors from the daemon (the file is not a model...) come with
 * elm_client_last_message(). */
int elm_client_load(elm_client *c, const char *path, uint32_t n_ctx, uint32_t n_threads,
                    struct elm_load_result *out);

/* Drops every resident model. Open sessions are closed as for a load (see above). */
int elm_client_unload(elm_client *c);

/* Several models: loads path beside the resident ones, called name (NULL or "": the file name
 * without ".gguf"); a resident model of that name is replaced as above. keep_alive (NULL: the
 * daemon's) is how long the model stays once idle: "5m", "30s", "0" (unload when its last
 * session closes), "-1" (forever). When the daemon's memory budget (max_resident_bytes) is
 * full, idle models are unloaded, least recently used first; if models with open sessions fill
 * it, the call waits until they close. Otherwise as elm_client_load. */
int elm_client_load_as(elm_client *c, const char *path, const char *name, const char *keep_alive,
                       uint32_t n_ctx, uint32_t n_threads, struct elm_load_result *out);

/* Drops the resident model called name: ELM_ENOMODEL (with a message) when there is none. */
int elm_client_unload_model(elm_client *c, const char *name);

enum elm_session_state {
    ELM_SESSION_IDLE = 1,    /* no request running */
    ELM_SESSION_RUNNING = 2, /* a request is being evaluated or generated */
    ELM_SESSION_CLOSING = 3, /* being closed */
};

struct elm_session_info {
    uint64_t id;
    int state;            /* enum elm_session_state */
    long pid;             /* the client process, 0 if unknown */
    char client_name[64]; /* "" if unknown */
    char model[64];       /* the name of the model it runs on */
    uint32_t n_ctx;
    uint64_t n_prompt_tokens;
    uint64_t n_gen_tokens;
    uint64_t age_ns;     /* since the session was opened */
    uint64_t n_requests; /* requests finished */
    uint64_t ttft_ns[3]; /* time to first token: median, 90th, 99th percentile (0: none yet) */
    uint64_t itl_ns[3];  /* time between tokens: median, 90th, 99th percentile */
};

/* The daemon's open sessions (of every client). *out is malloc'ed: caller owns it and frees it
 * with free(); it is NULL when *n is 0. */
int elm_client_sessions(elm_client *c, struct elm_session_info **out, size_t *n);

struct elm_daemon_stats {
    uint64_t uptime_ns;
    uint64_t n_requests;
    uint64_t n_prompt_tokens; /* prompt tokens evaluated */
    uint64_t n_gen_tokens;
    uint64_t prompt_ns; /* time spent evaluating prompts */
    uint64_t gen_ns;    /* time spent generating */
    uint64_t n_errors;
    double gen_tokens_per_s; /* 0 when unknown */
    uint64_t rss_bytes;      /* daemon's resident memory */
    uint32_t n_sessions;
    /* 0 when not reported: */
    uint64_t n_steps;         /* forward passes */
    uint64_t n_client_deaths; /* sessions freed because their client died */
    uint64_t n_ring_errors;   /* sessions closed for an invalid record */
    uint64_t ttft_ns[3];      /* time to first token: median, 90th, 99th percentile */
    uint64_t itl_ns[3];       /* time between tokens: median, 90th, 99th percentile */
    uint64_t n_prompt_reused; /* prompt tokens whose KV was kept from the session's history */
    uint64_t n_busy;          /* requests refused with ELM_EBUSY: no KV memory free in time */
    uint64_t n_kv_reclaimed;  /* idle sessions whose KV memory was taken for another request */
    uint64_t n_control;       /* control messages received */
    uint64_t n_malformed;     /* of which could not be decoded */
    uint64_t n_dropped;       /* replies that could not be sent (peer gone, queue full) */
    uint64_t n_sessions_opened; /* sessions opened since the daemon started */
    uint64_t n_preemptions;     /* running requests whose KV memory was taken for an older one */
    uint64_t n_recomputed;      /* tokens those requests had evaluated and evaluated again */
    uint32_t n_models;          /* models resident now */
    uint64_t n_unloads;         /* models unloaded: asked, keep_alive passed, or for room */
    /* how the compute threads waited between parallel calls (wait policy auto: it samples the
     * machine and calls it busy when the threads wait for a core over 1/10 of the time) */
    uint64_t n_pool_busy;        /* samples that found the machine busy */
    uint64_t n_pool_samples;     /* samples taken */
    uint64_t n_pool_sleeps;      /* times a thread slept (a futex wait) */
    uint64_t n_pool_spin_sleeps; /* of which after spinning for its whole budget */
    uint64_t n_pool_probes;      /* while busy: probes (a few parallel calls spun to see
                                    whether cores are free again) */
    uint64_t n_pool_probes_free; /* of which found a free core for each thread */
    uint64_t pool_delay[4];      /* samples by the share of time the threads waited for a core:
                                    < 1 %, < 10 %, < 50 %, more */
    uint64_t pool_gaps[4];       /* gaps between parallel calls: < 0.1 ms, < 1 ms, < 10 ms, more */
    /* each resident model since its load, in load order: "NAME: R requests, P prompt + G
     * generated tokens (T tokens/s), K preempted; ..."; "" when none */
    char models[1024];
};

/* The daemon's counters. *out is the caller's struct, written on success. */
int elm_client_stats(elm_client *c, struct elm_daemon_stats *out);

/* Asks the daemon to stop, then waits up to timeout_ms (< 0: forever) for its process to exit.
 * Returns 0 once it is gone, -ETIMEDOUT if it is still running. c stays valid (but every later
 * call returns ELM_EDAEMON): close it. */
int elm_client_shutdown(elm_client *c, int timeout_ms);

/* ---------------------------------------------------------------------------------------------
 * Sessions
 */

struct elm_session_params {
    uint32_t n_ctx;            /* context tokens; 0 = the model's default */
    uint32_t max_prompt_bytes; /* largest prompt accepted; 0 = 1 MiB. elmd takes up to about
                                  32 MiB (its rings are at most 64 MiB) */
    const char *model;         /* the resident model's name; NULL or "" = the default (first
                                  loaded). ELM_ENOMODEL when none has that name */
    const char *keep_alive;    /* how long the model stays once idle after this session (as
                                  elm_client_load_as); NULL = unchanged */
};

/* Opens a session with default parameters. The session holds a reference to c, so c may be
 * closed first. Errors: ELM_ENOMODEL, ELM_EBUSY (no room, or a model being loaded: retry),
 * ELM_EDAEMON, ELM_EPROTO, ELM_ERING (the shared region is not what the daemon announced),
 * -EACCES. Caller owns *out and releases it with elm_session_close(). */
int elm_session_open(elm_client *c, elm_session **out);
/* The same with parameters (p borrowed for the call; NULL = defaults). */
int elm_session_open_params(elm_client *c, const struct elm_session_params *p, elm_session **out);

/* Ends the session (cancelling a running request) and sets *s to NULL. NULL-safe. */
void elm_session_close(elm_session **s);

/* The daemon's id of the session (as listed by elm_client_sessions). */
uint64_t elm_session_id(const elm_session *s);
/* The session's context size in tokens, as granted by the daemon (0 if it did not say). */
uint32_t elm_session_n_ctx(const elm_session *s);

#define ELM_REQUEST_MAX_STOP     8          /* stop strings per request */
#define ELM_REQUEST_MAX_STOP_LEN 128        /* bytes of one stop string */
#define ELM_REQUEST_SEED_RANDOM  UINT64_MAX /* the daemon seeds from its clock */

enum elm_request_flags {
    ELM_REQUEST_NO_BOS = 0x1,       /* do not start the prompt with the model's BOS token */
    ELM_REQUEST_SPECIAL = 0x2,      /* control-token text in the prompt (e.g. "<s>") becomes
                                       control tokens: only for trusted prompts */
    ELM_REQUEST_KEEP_CONTEXT = 0x4, /* continue after the previous request's tokens */
};

/* A generation request. Fill it with elm_request_init() and change what you need. */
struct elm_request {
    const char *prompt;    /* UTF-8, NUL-terminated; "" starts from BOS alone */
    int32_t n_predict;     /* most tokens to generate; < 0: until EOS, a stop string or the
                              context is full */
    float temp;            /* 0 = greedy (default 0.8) */
    int32_t top_k;         /* 0 = off (default 40) */
    float top_p;           /* 1 = off (default 0.95) */
    float min_p;           /* 0 = off (default 0.05) */
    float repeat_penalty;  /* 1 = off (default) */
    int32_t repeat_last_n; /* tokens the penalty looks back at (default 64) */
    uint64_t seed;         /* same seed, same output; default ELM_REQUEST_SEED_RANDOM */
    int n_stop;            /* stop strings: generation ends before one would be output */
    const char *stop[ELM_REQUEST_MAX_STOP]; /* NUL-terminated, 1..128 bytes */
    uint32_t flags;                         /* enum elm_request_flags */
};

/* Sets llama.cpp's defaults: no token limit, temp 0.8, top-k 40, top-p 0.95, min-p 0.05, no
 * repetition penalty (over 64 tokens), random seed, no stop strings, no flags, prompt "". */
void elm_request_init(struct elm_request *r);

enum elm_event_type {
    ELM_EVENT_TOKEN = 1, /* a generated token and its text */
    ELM_EVENT_DONE = 2,  /* the request finished: reason and counters */
    ELM_EVENT_ERROR = 3, /* the request failed: code and message */
};

enum elm_finish_reason {
    ELM_FINISH_EOS = 1,    /* the model ended the text */
    ELM_FINISH_LENGTH = 2, /* n_predict tokens were generated, or the context is full */
    ELM_FINISH_STOP = 3,   /* a stop string matched (it is not part of the output) */
    ELM_FINISH_CANCEL = 4, /* elm_session_cancel(), or the daemon cancelled */
};
/* "eos", "length", "stop", "cancel"; "unknown" otherwise. Static. */
const char *elm_finish_reason_name(int reason);

/* One event of a request's stream. Strings are borrowed from the session until the next call
 * on it (copy them to keep them). */
struct elm_event {
    int type; /* enum elm_event_type */
    /* ELM_EVENT_TOKEN */
    int32_t token;    /* token id in the model's vocabulary */
    const char *text; /* the token's text (NUL-terminated; may be empty, and a multi-byte
                         character may be split across tokens: concatenate) */
    size_t text_len;
    /* ELM_EVENT_DONE */
    int reason;          /* enum elm_finish_reason */
    uint32_t n_prompt;   /* prompt tokens evaluated */
    uint32_t n_gen;      /* tokens generated */
    uint64_t t_first_ns; /* from the request's arrival to its first token (0 if none) */
    uint64_t t_total_ns; /* from the request's arrival to its end */
    /* ELM_EVENT_ERROR */
    int error;           /* negative code (-errno or ELM_E*) */
    const char *message; /* the daemon's explanation, NUL-terminated (may be "") */
};

/* Sends a request; r and its strings are borrowed for the call (copied into shared memory).
 * Then read its events with elm_session_next() until DONE or ERROR. Errors: -EINVAL (bad
 * parameters), -EINPROGRESS (the previous request has not finished: read its events, or cancel
 * it and read them), -EMSGSIZE (the prompt exceeds max_prompt_bytes), ELM_EDAEMON, ELM_ERING. */
int elm_session_submit(elm_session *s, const struct elm_request *r);

/* One message of a conversation. */
struct elm_chat_message {
    const char *role;    /* "system", "user" or "assistant"; NUL-terminated, 1..64 bytes */
    const char *content; /* UTF-8, NUL-terminated */
};

/* Sends a chat request: the daemon renders the n messages (1..4096) with the loaded model's
 * chat template, as llama.cpp's built-in formats do, followed by the assistant's turn opening,
 * tokenizes that (BOS per the model, the template's control tokens parsed) and generates the
 * reply with r's sampling parameters and stop strings (r->prompt is ignored and may be NULL;
 * r->flags must be 0). Every client thus gets the same rendering. To continue a conversation,
 * send it whole again with the reply appended: the session keeps the KV of the part it has
 * already seen, so only the new turn is evaluated (DONE's n_prompt counts it). Events and
 * errors as elm_session_submit(); a model whose template elm does not recognise ends the
 * request with an ERROR event ELM_EUNSUPPORTED whose message names the template. */
int elm_session_submit_chat(elm_session *s, const struct elm_request *r,
                            const struct elm_chat_message *msgs, int n);

/* Waits up to timeout_ms (< 0: forever, 0: poll) for the next event of the running request and
 * writes it to *ev. After DONE or ERROR the request is over. Returns 0, -ETIMEDOUT, -EINTR (a
 * signal arrived: check your flags and call again), -ENOMSG (no request is running),
 * ELM_EDAEMON (the daemon died), ELM_ESESSION (the daemon closed the session), ELM_ERING or
 * ELM_EPROTO (the daemon broke the protocol: the session is unusable). */
int elm_session_next(elm_session *s, struct elm_event *ev, int timeout_ms);

/* Asks the daemon to end the running request early; its stream then ends with DONE/CANCEL
 * (tokens already on their way still arrive first). Without a running request it does nothing.
 * Any thread may call it. Returns 0, ELM_EDAEMON or ELM_ERING. */
int elm_session_cancel(elm_session *s);

/* Called for each event of elm_session_generate(); ev is borrowed for the call. Returning
 * non-zero cancels the request (the callback still gets the final DONE). */
typedef int (*elm_event_fn)(void *user, const struct elm_event *ev);

/* Submits r and calls fn for each event until the request ends. Returns 0 when it ended with
 * DONE (whatever the reason, cancel included), the error code of an ERROR event, or an error
 * of elm_session_submit() / elm_session_next(). Waits as long as the daemon is alive. */
int elm_session_generate(elm_session *s, const struct elm_request *r, elm_event_fn fn, void *user);

/* elm_session_generate() for a chat request (elm_session_submit_chat()). */
int elm_session_chat(elm_session *s, const struct elm_request *r,
                     const struct elm_chat_message *msgs, int n, elm_event_fn fn, void *user);
/* ---------------------------------------------------------------------------------------------
 * Embeddings (the daemon serving an embedding model, e.g. a bert file)
 */

#define ELM_EMBED_MAX_TEXTS 256 /* texts of one elm_session_embed() call */

/* Embeds n texts (1..ELM_EMBED_MAX_TEXTS; UTF-8, NUL-terminated, borrowed for the call) in one
 * pass of the loaded embedding model. Each text is tokenized with the model's [CLS]/[SEP], its
 * token states pooled as the model file says (mean or [CLS]) and divided by their L2 norm, as
 * llama.cpp's server does. *vecs (malloc'ed: the caller frees it with free()) gets n * *n_embd
 * floats, text i's vector at (*vecs)[i * *n_embd]; n_tokens, when not NULL, gets each text's
 * token count (n entries). flags: 0 or ELM_REQUEST_SPECIAL. Blocks until the vectors came.
 * Errors: -EINVAL, -EINPROGRESS (a request is running), -EMSGSIZE (the texts exceed the
 * session's max_prompt_bytes), ELM_EUNSUPPORTED (the loaded model generates text),
 * ELM_ECONTEXT (a text longer than the model's context, or more than 8192 tokens in all: send
 * fewer texts per call), ELM_ECANCELED (elm_session_cancel() from another thread), and the
 * session errors of elm_session_next(). The daemon's reason: elm_session_last_message(). */
int elm_session_embed(elm_session *s, const char *const *texts, size_t n, uint32_t flags,
                      float **vecs, uint32_t *n_embd, uint32_t *n_tokens);

/* The daemon's message of the last failed request on s ("" if it gave none). Borrowed until
 * the next call on s. */
const char *elm_session_last_message(const elm_session *s);

#ifdef __cplusplus
}
#endif
#endif
