/* scratch.c — per-thread scratch blocks (see scratch.h for why they are not static TLS).
 * Each thread's blocks form a list whose head is the thread's value of one pthread key; the
 * key's destructor frees the list when the thread exits. */
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>

#include "common/scratch.h"

#define ALIGN 64 /* a cache line, and what the tiles' vector loads want */

/* Sits at the start of each allocation, in front of the aligned block. */
struct head {
    struct head *next;
};

static pthread_key_t key;
static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static int key_rc = -1;

static void free_list(void *p)
{
    for (struct head *h = p, *next; h; h = next) {
        next = h->next;
        free(h);
    }
}

static void make_key(void)
{
    key_rc = pthread_key_create(&key, free_list);
}

void *elm_scratch_thread(size_t bytes)
{
    pthread_once(&key_once, make_key);
    if (key_rc != 0 || bytes > SIZE_MAX - 2 * ALIGN)
        return NULL;
    /* calloc, not aligned_alloc + memset: a large block comes zeroed from fresh pages, so a
     * page is faulted in only when the tile first uses it */
    struct head *h = calloc(1, bytes + 2 * ALIGN);
    if (!h)
        return NULL;
    h->next = pthread_getspecific(key);
    if (pthread_setspecific(key, h) != 0) {
        free(h);
        return NULL;
    }
    uintptr_t at = ((uintptr_t)(h + 1) + ALIGN - 1) & ~(uintptr_t)(ALIGN - 1);
    return (void *)at;
}
