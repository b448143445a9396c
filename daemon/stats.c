/* stats.c — latency sample rings and percentiles (see stats.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/stats.h"

int elmd_lat_init(struct elmd_lat *l, uint32_t cap)
{
    memset(l, 0, sizeof *l);
    l->v = calloc(cap, sizeof *l->v);
    if (!l->v)
        return -ENOMEM;
    l->cap = cap;
    return 0;
}

void elmd_lat_fini(struct elmd_lat *l)
{
    if (!l)
        return;
    free(l->v);
    memset(l, 0, sizeof *l);
}

void elmd_lat_add(struct elmd_lat *l, uint64_t ns)
{
    if (!l->cap)
        return;
    l->v[l->next] = ns;
    l->next = l->next + 1 == l->cap ? 0 : l->next + 1;
    if (l->n < l->cap)
        l->n++;
    l->total++;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int elmd_lat_pct(const struct elmd_lat *l, uint64_t out[3])
{
    static const unsigned pct[3] = {50, 90, 99};
    memset(out, 0, 3 * sizeof *out);
    if (!l->n)
        return 0;
    uint64_t *c = malloc(l->n * sizeof *c);
    if (!c)
        return -ENOMEM;
    memcpy(c, l->v, l->n * sizeof *c); /* the first n slots are the ones in use */
    qsort(c, l->n, sizeof *c, cmp_u64);
    for (int i = 0; i < 3; i++) {
        /* nearest rank: the smallest value with at least pct% of the samples at or below it */
        uint32_t rank = (uint32_t)(((uint64_t)pct[i] * l->n + 99) / 100);
        out[i] = c[rank ? rank - 1 : 0];
    }
    free(c);
    return 0;
}

int elmd_stats_init(struct elmd_stats *s)
{
    memset(s, 0, sizeof *s);
    if (elmd_lat_init(&s->ttft, 4096) || elmd_lat_init(&s->itl, 16384)) {
        elmd_stats_fini(s);
        return -ENOMEM;
    }
    return 0;
}

void elmd_stats_fini(struct elmd_stats *s)
{
    if (!s)
        return;
    elmd_lat_fini(&s->ttft);
    elmd_lat_fini(&s->itl);
}
