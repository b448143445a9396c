/* loader.h — weight residency: a model's tensor data read once, with io_uring, into memory
 * backed by huge pages and pinned (common/residency.h), and a struct elm_model built on it.
 * Used by the daemon (every model it serves) and by `elm-bench load`.
 *
 * Why a copy instead of the file mapping: the page cache can evict a mapping's pages under
 * memory pressure (the next token then waits on the disk), and 4 KiB pages over gigabytes of
 * weights cost a TLB miss on almost every row a matmul touches. A pinned copy on 2 MiB pages
 * has neither problem; reading it with O_DIRECT also avoids a second copy in the page cache.
 *
 * The file is opened and its header parsed once. The model is built first, on the file's
 * mapping (which reads nothing but the header and the small norm vectors), so a bad file fails
 * in milliseconds instead of after reading gigabytes; then the data section is read and the
 * model's weights are pointed at the copy. Only a complete model is ever returned.
 */
#ifndef ELM_LOADER_H
#define ELM_LOADER_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/residency.h"
#include "engine/model.h"

/* How the weights ended up in memory; the daemon reports it in `status`. */
struct elm_residency {
    struct elm_region mem; /* the mapping (backing, locked) */
    void *data;            /* the used tensors' runs, adjacent (the model has their offsets) */
    uint64_t data_size;    /* bytes of the copy from data on */
    double cached;         /* share of the file's pages to read that were in the page cache */
    bool direct;           /* read with O_DIRECT (asked for, and the file was not cached) */
    bool uring;            /* read with io_uring; false: the pread fallback ran */
    int readers;           /* threads that read (the copy split between them) */
    uint64_t huge_bytes;   /* bytes of the mapping on huge pages (from /proc/self/smaps) */
    uint64_t locked_bytes; /* bytes of the mapping locked (smaps "Locked"; all for hugetlb) */
    uint64_t read_bytes;   /* bytes read from the file (the used tensors, aligned runs) */
    uint64_t read_ns;      /* time spent reading */
    uint64_t total_ns;     /* validation + allocation + read + model build */
    double gbps;           /* read_bytes / read_ns */
    char notes[256];       /* the fallbacks taken, human readable ("" when none) */
};

struct elm_load_params {
    int threads;        /* <= 0: every CPU */
    const char *kernel; /* NULL or "": the probe's choice */
    enum elm_huge hugepages;
    bool mlock;
    bool direct_io;
    bool no_uring;   /* read with pread even when io_uring works (tests of the fallback) */
    int io_depth;    /* reads in flight (<= 0: 32) */
    size_t io_chunk; /* bytes per read, a multiple of 4096 (0: 2 MiB) */
    int readers;     /* threads that read, each a contiguous part (<= 0: one per CPU, up to 4) */
};

/* Shared with the thread that reports progress; abort may be set to stop a load early. */
struct elm_load_progress {
    _Atomic uint64_t done;  /* bytes read so far */
    _Atomic uint64_t total; /* bytes to read (0 until known) */
    _Atomic bool abort;     /* set by another thread: the load returns -ECANCELED */
};

/* Loads path. On success *out is a model whose weights live in r's memory: free it with
 * elm_loader_unload. *out and *r are written only on success. pr may be NULL. Errors:
 * ELM_EFORMAT, ELM_EUNSUPPORTED, ELM_EMODEL, -ECANCELED, -ENOMEM, -errno; message in err. */
int elm_loader_load(const char *path, const struct elm_load_params *p, struct elm_load_progress *pr,
                    struct elm_model **out, struct elm_residency *r, char *err, size_t errlen);

/* Destroys the model, then unmaps its weights. NULL-safe; nulls *m and zeroes *r. */
void elm_loader_unload(struct elm_model **m, struct elm_residency *r);

#endif
