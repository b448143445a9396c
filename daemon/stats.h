/* stats.h — the daemon's counters and latency percentiles.
 *
 * Latencies (time to first token, inter-token) keep the most recent samples in a fixed ring,
 * so adding one is O(1) on the engine's hot path and never allocates; percentiles sort a copy
 * when someone asks (a few thousand values, microseconds).
 */
#ifndef ELMD_STATS_H
#define ELMD_STATS_H

#include <stdint.h>

struct elmd_lat {
    uint64_t *v; /* [cap] nanoseconds */
    uint32_t cap;
    uint32_t n;     /* samples held, <= cap */
    uint32_t next;  /* where the next sample goes */
    uint64_t total; /* samples ever added */
};

int elmd_lat_init(struct elmd_lat *l, uint32_t cap);
void elmd_lat_fini(struct elmd_lat *l);
void elmd_lat_add(struct elmd_lat *l, uint64_t ns);
/* p50, p90, p99 of the samples held (nearest rank); zeros when empty. Returns 0 or -ENOMEM. */
int elmd_lat_pct(const struct elmd_lat *l, uint64_t out[3]);

struct elmd_stats {
    uint64_t n_requests; /* finished (DONE or ERROR) */
    uint64_t n_errors;   /* requests that ended with ERROR */
    uint64_t n_prompt_tokens; /* evaluated */
    uint64_t n_prompt_reused; /* prompt tokens whose KV was kept from the session's history */
    uint64_t n_busy;          /* requests refused with ELM_EBUSY: no KV memory in time */
    uint64_t n_kv_reclaimed;  /* idle sessions whose KV pages were taken for another request */
    uint64_t n_gen_tokens;
    uint64_t prompt_ns;       /* arrival to first token, summed */
    uint64_t gen_ns;          /* first token to end, summed */
    uint64_t n_steps;         /* forward passes */
    uint64_t n_control;       /* control messages received */
    uint64_t n_malformed;     /* of which could not be decoded */
    uint64_t n_dropped;       /* replies that could not be sent (peer gone, queue full) */
    uint64_t n_sessions;      /* opened since start */
    uint64_t n_client_deaths; /* sessions freed because their client exited */
    uint64_t n_ring_errors;   /* sessions closed for an invalid request record */
    struct elmd_lat ttft, itl;
};

int elmd_stats_init(struct elmd_stats *s);
void elmd_stats_fini(struct elmd_stats *s);

#endif
