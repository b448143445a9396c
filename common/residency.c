/* residency.c — resident anonymous memory (see residency.h).
 *
 * Order of attempts for AUTO: hugetlb when the 2 MiB pool has enough free pages (hugetlb reserves
 * its pages at mmap time, so a short pool fails here, never later at a page fault), else an
 * ordinary mapping aligned to 2 MiB and offered to THP, else plain pages.
 */
#include "common/residency.h"

#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#ifndef MAP_HUGE_2MB
#define MAP_HUGE_2MB (21 << 26)
#endif

static size_t round_up(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

static void note(char *notes, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void note(char *notes, size_t cap, const char *fmt, ...)
{
    if (!notes || !cap)
        return;
    size_t n = strnlen(notes, cap);
    if (n + 3 >= cap)
        return;
    if (n) {
        memcpy(notes + n, "; ", 3);
        n += 2;
    }
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(notes + n, cap - n, fmt, ap);
    va_end(ap);
}

const char *elm_backing_name(enum elm_backing b)
{
    return b == ELM_BACK_HUGETLB ? "hugetlb" : b == ELM_BACK_THP ? "thp" : "plain";
}

static uint64_t read_sys_u64(const char *path)
{
    FILE *f = fopen(path, "re");
    unsigned long long v = 0;
    if (f) {
        if (fscanf(f, "%llu", &v) != 1)
            v = 0;
        fclose(f);
    }
    return v;
}

uint64_t elm_hugepages_free(void)
{
    /* The 2 MiB pool itself rather than /proc/meminfo's HugePages_Free, which describes the
     * default size (1 GiB on some machines); pages reserved by other mappings are not free. */
    const char *d = "/sys/kernel/mm/hugepages/hugepages-2048kB";
    char p[128];
    snprintf(p, sizeof p, "%s/free_hugepages", d);
    uint64_t free_pages = read_sys_u64(p);
    snprintf(p, sizeof p, "%s/resv_hugepages", d);
    uint64_t resv = read_sys_u64(p);
    return free_pages > resv ? free_pages - resv : 0;
}

bool elm_thp_disabled(void)
{
    char buf[128] = {0};
    FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");
    if (!f)
        return true;
    bool never = fgets(buf, sizeof buf, f) && strstr(buf, "[never]");
    fclose(f);
    return never;
}

/* Explicit huge pages when the pool has them; NULL otherwise (the reason in notes). */
static void *map_hugetlb(size_t len, char *notes, size_t cap)
{
    uint64_t free_pages = elm_hugepages_free(), want = len / ELM_HUGE_PAGE;
    if (free_pages < want) {
        note(notes, cap,
             "%" PRIu64 " huge pages needed, %" PRIu64 " free (vm.nr_hugepages): not using hugetlb",
             want, free_pages);
        return NULL;
    }
    void *m = mmap(NULL, len, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_HUGE_2MB, -1, 0);
    if (m != MAP_FAILED)
        return m;
    note(notes, cap, "hugetlb mmap of %zu MiB failed (%s)", len >> 20, strerror(errno));
    return NULL;
}

/* Over-maps by 2 MiB and trims, so the mapping starts on a huge-page boundary and THP can back
 * all of it. */
static void *map_aligned(size_t len)
{
    unsigned char *raw =
        mmap(NULL, len + ELM_HUGE_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED)
        return NULL;
    unsigned char *m = (unsigned char *)round_up((uintptr_t)raw, ELM_HUGE_PAGE);
    if (m > raw)
        munmap(raw, (size_t)(m - raw));
    if (m + len < raw + len + ELM_HUGE_PAGE)
        munmap(m + len, (size_t)(raw + len + ELM_HUGE_PAGE - (m + len)));
    return m;
}

int elm_region_map(struct elm_region *r, size_t bytes, enum elm_huge policy, char *notes,
                   size_t notes_len)
{
    if (bytes == 0 || bytes > SIZE_MAX - 2 * ELM_HUGE_PAGE)
        return -ENOMEM;
    struct elm_region n = {.backing = ELM_BACK_PLAIN};
    if (policy == ELM_HUGE_OFF) {
        n.len = bytes;
        n.base = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (n.base == MAP_FAILED)
            return -ENOMEM;
        *r = n;
        return 0;
    }
    n.len = round_up(bytes, ELM_HUGE_PAGE);
    if (policy == ELM_HUGE_AUTO || policy == ELM_HUGE_HUGETLB) {
        n.base = map_hugetlb(n.len, notes, notes_len);
        if (n.base) {
            n.backing = ELM_BACK_HUGETLB;
            *r = n;
            return 0;
        }
        if (policy == ELM_HUGE_HUGETLB)
            return -ENOMEM;
    }
    n.base = map_aligned(n.len);
    if (!n.base) {
        note(notes, notes_len, "cannot map %zu MiB: %s", n.len >> 20, strerror(errno));
        return -ENOMEM;
    }
    if (elm_thp_disabled())
        note(notes, notes_len, "transparent huge pages are disabled: using 4 KiB pages");
    else if (madvise(n.base, n.len, MADV_HUGEPAGE) == 0)
        n.backing = ELM_BACK_THP;
    else
        note(notes, notes_len, "madvise(MADV_HUGEPAGE) failed (%s)", strerror(errno));
    *r = n;
    return 0;
}

int elm_region_lock(struct elm_region *r)
{
    if (mlock(r->base, r->len) != 0)
        return -errno;
    r->locked = true;
    return 0;
}

void elm_region_unmap(struct elm_region *r)
{
    if (!r)
        return;
    if (r->base)
        munmap(r->base, r->len);
    *r = (struct elm_region){0};
}

void elm_region_usage(const struct elm_region *r, uint64_t *huge, uint64_t *locked)
{
    *huge = *locked = 0;
    FILE *f = fopen("/proc/self/smaps", "re");
    if (f) {
        uintptr_t lo = (uintptr_t)r->base, hi = lo + r->len;
        char line[512];
        bool ours = false;
        while (fgets(line, sizeof line, f)) {
            unsigned long a, b;
            unsigned long long kb;
            if (sscanf(line, "%lx-%lx ", &a, &b) == 2) {
                ours = a < hi && b > lo; /* every mapping that overlaps ours */
                continue;
            }
            if (!ours)
                continue;
            if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1 ||
                sscanf(line, "Private_Hugetlb: %llu kB", &kb) == 1 ||
                sscanf(line, "Shared_Hugetlb: %llu kB", &kb) == 1)
                *huge += kb * 1024;
            else if (sscanf(line, "Locked: %llu kB", &kb) == 1)
                *locked += kb * 1024;
        }
        fclose(f);
    }
    if (r->backing == ELM_BACK_HUGETLB)
        *locked = r->len;
}
