/* config.h — elmd's settings: defaults, the optional config file (key = value lines) and the
 * command line, merged in that order (the command line wins).
 *
 * A configuration is a plain value: parsing builds a new one and never touches the running one,
 * so SIGHUP can parse the file again and keep the old settings when the new file is invalid.
 */
#ifndef ELMD_CONFIG_H
#define ELMD_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/pool.h"
#include "common/residency.h"
#include "kernels/kernels.h"

#define ELMD_MAX_SESSIONS_LIMIT 60 /* futex_waitv takes <= 128 words: 2 per session + 1 */

struct elmd_config {
    char model[PATH_MAX];       /* "" = start without a model */
    char runtime_dir[PATH_MAX]; /* "" = the default (see rundir.h) */
    char config_path[PATH_MAX]; /* the file these settings came from, "" = none */
    char endpoint[256];         /* "" = no TCP endpoint; else tcp://127.0.0.1:PORT */
    char group[64];             /* "" = owner only; else a group granted access */
    char kernel[16];            /* "" = the CPU probe's choice; else a built variant */
    int threads;                /* 0 = every online CPU */
    int log_level;              /* enum elm_log_level */
    bool use_syslog;
    bool foreground;
    bool test_only; /* -t: check and exit */
    int32_t ctx;    /* context tokens per session; 0 = the model's, at most 4096 */
    int max_sessions;
    enum elm_type kv_type;  /* F16 (default), F32 or Q8_0 */
    int64_t kv_pool_tokens; /* KV positions shared by all sessions; 0 = elmd_kv_pool_default */
    int max_queued;         /* requests that may wait for KV memory at once */
    int queue_timeout_ms;   /* how long one may wait; 0 = refuse at once */
    int prefill_chunk;      /* prompt tokens a session may evaluate per step */
    int step_ms;            /* prompt tokens per step are cut to fit this; 0 = no limit */
    enum elm_huge hugepages; /* for the weights and the KV pool (common/residency.h) */
    enum elm_wait wait;      /* how the compute threads wait (common/pool.h) */
    bool mlock;       /* pin the weights (failure is a warning) */
    bool direct_io;   /* try O_DIRECT when reading weights */
    int io_depth;     /* reads in flight */
    int io_chunk_kib; /* bytes per read, KiB */
    int drain_ms;     /* on SIGTERM, how long running requests may finish */
    /* control connections before new ones are refused (docs/daemon.md) */
    int max_connections;
    int handover_ms;  /* a session's region descriptor is dropped after this if not fetched */
    /* What a client's LOAD may ask for (issue 17 item 5); the owner's own settings above are
     * not bound by them, except the KV memory, which bounds every pool. */
    int max_threads;    /* n_threads at most this; 0 = the online CPUs */
    int32_t max_ctx;    /* n_ctx at most this; 0 = the model's trained context */
    int64_t max_kv_mib; /* a KV pool at most this, MiB; 0 = half the physical memory */
    /* several resident models (lifecycle.c) */
    int64_t keep_alive_ms;       /* an idle model is unloaded after this; -1 = never */
    uint64_t max_resident_bytes; /* weights + KV pools of all models; 0 = elmd_resident_default */
};

/* Parses a keep_alive duration as ollama takes it: "-1" (or any negative number) = forever,
 * "0" = unload as soon as the model is idle, a number of seconds ("300"), or numbers with units
 * ms, s, m, h ("5m", "1h30m", "1.5s"). Returns 0 with *ms set, or -EINVAL. */
int elmd_parse_keep_alive(const char *v, int64_t *ms);

/* The memory budget when max_resident_bytes is 0: three quarters of the machine's physical
 * memory, leaving the rest to the system, the page cache and the clients. */
uint64_t elmd_resident_default(void);

/* The KV pool's size when kv_pool_tokens is 0, for sessions of ctx tokens: a quarter of every
 * session at its full context, but at least 4 full contexts. Why: most requests are short chats
 * and take a few pages, so 16 sessions at a quarter of 4096 tokens each run together; a request
 * without a token limit reserves its whole context (engine/seq.h), and at least 4 of those must
 * run at once; and every session at full context at once would cost more memory than the
 * weights of most models (7B f16: 16 x 4096 positions = 32 GiB). */
int64_t elmd_kv_pool_default(int max_sessions, int32_t ctx);

/* "f16", "f32" or "q8_0": the kv_type value naming t. */
const char *elmd_kv_type_name(enum elm_type t);

/* Fills c with the built-in defaults. */
void elmd_config_defaults(struct elmd_config *c);

/* Applies PATH's key = value lines to c. Returns 0, -errno when the file cannot be read, or
 * ELM_EFORMAT with "PATH:LINE: problem" in err. c is partly updated on failure: parse into a
 * scratch copy. */
int elmd_config_load_file(struct elmd_config *c, const char *path, char *err, size_t errlen);

/* Parses the command line into c: first the defaults, then the config file (--config FILE, or
 * $XDG_CONFIG_HOME/elm/elmd.conf / ~/.config/elm/elmd.conf when present), then the options.
 * Returns 0; 1 when the caller should exit 0 (--help, --version, printed); ELM_EFORMAT or
 * -errno with a message in err. */
int elmd_config_from_args(struct elmd_config *c, int argc, char **argv, char *err, size_t errlen);

/* Applies one key = value setting (the names of the file). Returns 0 or ELM_EFORMAT with a
 * message in err. */
int elmd_config_set(struct elmd_config *c, const char *key, const char *value, char *err,
                    size_t errlen);

/* The configuration SIGHUP installs: argv (the daemon's own command line) parsed again, file
 * included, into *next. Settings that shape what already exists — runtime_dir, endpoint, group
 * (the directory and sockets) and where logs go (foreground, syslog) — keep cur's values until
 * the next start; *restart_only says whether the new settings asked to change one of the first
 * three. Returns what elmd_config_from_args returns (0; 1: nothing to apply; an error with a
 * message in err), and cur is never touched: an invalid file leaves the running settings. */
int elmd_config_reload(const struct elmd_config *cur, int argc, char **argv,
                       struct elmd_config *next, bool *restart_only, char *err, size_t errlen);

/* Prints the usage text. */
void elmd_config_usage(FILE *f);

#endif
