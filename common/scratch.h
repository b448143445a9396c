/* scratch.h — per-thread scratch memory for the kernels, allocated on a thread's first use.
 *
 * Why not `static _Thread_local` buffers: a program's static TLS block is allocated and zeroed
 * (memset, so every page is faulted in) for every thread when it starts, the main thread
 * included, whether the thread ever runs a kernel or not. The kernels' panels are 1.5 MB, so
 * every process that links the engine paid ~380 page faults before main() (2-3 ms on our test
 * VM: most of a new `elmctl generate` client's start-up), and every thread it created paid
 * them again. Here only a thread that runs a tile pays, once.
 */
#ifndef ELM_COMMON_SCRATCH_H
#define ELM_COMMON_SCRATCH_H

#include <stddef.h>

/* A new zeroed block of `bytes`, 64-byte aligned, owned by the calling thread: freed when the
 * thread exits (a pthread key's destructor; the main thread's at process exit). NULL when
 * memory is short: callers keep a path that needs no scratch. The caller keeps the pointer (in
 * a _Thread_local pointer) and asks once per thread. */
void *elm_scratch_thread(size_t bytes);

#endif
