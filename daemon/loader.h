/* loader.h — weight residency: a model's tensor data read once, with io_uring, into memory
 * backed by huge pages and pinned, then a struct elm_model built on that copy.
 *
 * Why a copy instead of the file mapping: the page cache can evict a mapping's pages under
 * memory pressure (the next token then waits on the disk), and 4 KiB pages over gigabytes of
 * weights cost a TLB miss on almost every row a matmul touches. A pinned copy on 2 MiB pages
 * has neither problem; reading it with O_DIRECT also avoids a second copy in the page cache.
 *
 * Loading validates first (the header and every tensor, by building a model on the file
 * mapping, which reads nothing but the header and the small norm vectors), so a bad file fails
 * in milliseconds instead of after reading gigabytes. Only a complete model is ever returned.
 */
#ifndef ELMD_LOADER_H
#define ELMD_LOADER_H

#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "engine/kv.h"
#include "engine/model.h"

enum elmd_backing {
    ELMD_BACK_HUGETLB, /* explicit 2 MiB pages from the reserved pool (vm.nr_hugepages) */
    ELMD_BACK_THP,     /* anonymous memory with madvise(MADV_HUGEPAGE) */
    ELMD_BACK_PLAIN,   /* anonymous 4 KiB pages */
};
const char *elmd_backing_name(enum elmd_backing b); /* "hugetlb", "thp", "plain" */

/* How the weights ended up in memory; reported by `status`. */
struct elmd_residency {
    void *map; /* the mapping (2 MiB aligned), map_len bytes */
    size_t map_len;
    const void *data;   /* the data section inside the mapping */
    uint64_t data_size; /* bytes of the data section */
    enum elmd_backing backing;
    bool locked;           /* mlock succeeded: the weights cannot be paged out */
    bool direct;           /* read with O_DIRECT */
    bool uring;            /* read with io_uring (else a pread loop) */
    uint64_t huge_bytes;   /* bytes of the mapping on huge pages (from /proc/self/smaps) */
    uint64_t locked_bytes; /* bytes of the mapping locked (smaps "Locked") */
    uint64_t read_bytes;   /* bytes read from the file (aligned superset of the section) */
    uint64_t read_ns;      /* time spent reading */
    uint64_t total_ns;     /* validation + allocation + read + model build */
    double gbps;           /* read_bytes / read_ns */
    char notes[256];       /* the fallbacks taken, human readable ("" when none) */
};

struct elmd_model {
    struct elm_model *m;         /* built on res.data */
    struct elm_kv_pool *kv_pool; /* every session's KV pages; made by control (control.c) */
    struct elmd_residency res;
    char path[PATH_MAX];
};

struct elmd_load_params {
    int threads;        /* <= 0: every CPU */
    const char *kernel; /* NULL or "": the probe's choice */
    enum elmd_hugepages hugepages;
    bool mlock;
    bool direct_io;
    int io_depth;    /* reads in flight */
    size_t io_chunk; /* bytes per read, a multiple of 4096 */
};

/* Shared with the thread that reports progress; abort may be set to stop a load early. */
struct elmd_load_progress {
    _Atomic uint64_t done;  /* bytes read so far */
    _Atomic uint64_t total; /* bytes to read (0 until known) */
    _Atomic bool abort;     /* set by another thread: the load returns -ECANCELED */
};

/* Loads path. Caller owns *out (written only on success). Errors: ELM_EFORMAT,
 * ELM_EUNSUPPORTED, ELM_EMODEL, -ECANCELED, -ENOMEM, -errno; message in err. */
int elmd_model_load(const char *path, const struct elmd_load_params *p,
                    struct elmd_load_progress *pr, struct elmd_model **out, char *err,
                    size_t errlen);

/* NULL-safe; unmaps the weights; nulls *pm. */
void elmd_model_destroy(struct elmd_model **pm);

/* Huge pages currently free in the 2 MiB pool (not reserved by a mapping). */
uint64_t elmd_hugepages_free(void);

#endif
