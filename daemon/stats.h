/* stats.h — the daemon's counters and latency percentiles.
 *
 * Latencies (time to first token, inter-token) keep the most recent samples in a fixed ring,
 * so adding one is O(1) on the engine's hot path and never allocates; percentiles sort a copy
 * when someone asks (a few thousand values, microseconds).
 */
#ifndef ELMD_STATS_H
#define ELMD_STATS_H

#include <stdint.h>

#include "elm/client.h"

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

/* The counters are the public struct that STATS sends (include/elm/client.h), so each has one
 * definition: the engine and control add to c's members under the daemon's lock, and the STATS
 * handler fills the values computed on demand (uptime, rates, percentiles, memory) and sends it
 * with the field table (ipc/fields.c). */
struct elmd_stats {
    struct elm_daemon_stats c;
    struct elmd_lat ttft, itl; /* the whole daemon's latency samples */
};

int elmd_stats_init(struct elmd_stats *s);
void elmd_stats_fini(struct elmd_stats *s);

#endif
