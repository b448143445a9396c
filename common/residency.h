/* residency.h — anonymous memory that stays in RAM: explicit 2 MiB huge pages, transparent huge
 * pages or plain pages, optionally pinned. One policy for the big users, the model's weights
 * (engine/loader.c; a model's packed copy over a file mapping, engine/model.c) and the KV pool
 * (engine/kv.c), so they back themselves the same way.
 *
 * Why huge pages: 4 KiB pages over gigabytes of weights or cache cost a TLB miss on almost every
 * row a matmul or an attention pass touches. Why pinning: the kernel may otherwise page anonymous
 * memory out under pressure, and the next token then waits on the disk.
 */
#ifndef ELM_COMMON_RESIDENCY_H
#define ELM_COMMON_RESIDENCY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ELM_HUGE_PAGE ((size_t)2 << 20)

/* What to ask for (the daemon's `hugepages` setting). */
enum elm_huge {
    ELM_HUGE_AUTO,    /* hugetlb when enough pages are reserved, else THP, else plain */
    ELM_HUGE_HUGETLB, /* hugetlb or fail */
    ELM_HUGE_THP,     /* madvise(MADV_HUGEPAGE) only */
    ELM_HUGE_OFF,     /* plain anonymous memory */
};

/* What was had. */
enum elm_backing {
    ELM_BACK_HUGETLB, /* explicit 2 MiB pages from the reserved pool (vm.nr_hugepages) */
    ELM_BACK_THP,     /* anonymous memory with madvise(MADV_HUGEPAGE) */
    ELM_BACK_PLAIN,   /* anonymous 4 KiB pages */
};

struct elm_region {
    void *base; /* len bytes, zeroed; 2 MiB aligned unless the policy is OFF */
    size_t len;
    enum elm_backing backing;
    bool locked; /* elm_region_lock succeeded */
};

/* Maps at least bytes (rounded up to 2 MiB unless policy is OFF) into *r. Every fallback taken
 * is appended to notes ("; "-separated, human readable) when notes is not NULL; the caller logs
 * them. Returns 0; -ENOMEM when nothing can be mapped, or when policy is HUGETLB and the reserved
 * pool is short (the reason in notes). *r is written only on success. */
int elm_region_map(struct elm_region *r, size_t bytes, enum elm_huge policy, char *notes,
                   size_t notes_len);

/* Pins the region (mlock). Returns 0 or -errno (RLIMIT_MEMLOCK...); r->locked says which. Do it
 * after filling the memory: mlock faults every page in at once, in this thread. */
int elm_region_lock(struct elm_region *r);

/* NULL-safe; unmaps and zeroes *r. */
void elm_region_unmap(struct elm_region *r);

/* Bytes of the region on huge pages and locked, from /proc/self/smaps (0 when unreadable).
 * smaps counts hugetlb pages as neither; they are never swapped, so *locked is the whole region
 * for hugetlb. */
void elm_region_usage(const struct elm_region *r, uint64_t *huge, uint64_t *locked);

const char *elm_backing_name(enum elm_backing b); /* "hugetlb", "thp", "plain" */

/* Huge pages currently free in the 2 MiB pool (not reserved by a mapping). */
uint64_t elm_hugepages_free(void);

/* True when THP is switched off system-wide ("[never]") or its setting cannot be read; then
 * madvise(MADV_HUGEPAGE) would be accepted but give nothing. */
bool elm_thp_disabled(void);

#endif
