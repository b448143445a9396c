/* regions.h — the daemon's end of the region socket (ipc/region.h): handing each session's
 * sealed memory to the process that opened it. Runs on the control thread, inside its poll.
 *
 * A connection is kept until its request arrives (a client connects, then writes), at most
 * ELMD_REGION_CONN_MS, and at most ELMD_REGION_CONNS at once (the oldest is dropped for a
 * new one), so a client that connects and sends nothing costs one slot for a second, and never
 * blocks the control thread.
 */
#ifndef ELMD_REGIONS_H
#define ELMD_REGIONS_H

#include <stdint.h>
#include <zmq.h>

#include "daemon/elmd.h"

/* Binds the socket at d->rd.region_path (its mode: elmd_rundir_secure_socket). Returns 0 or
 * -errno with a message in err. */
int elmd_regions_open(struct elmd *d, char *err, size_t errlen);
void elmd_regions_close(struct elmd *d);

/* Adds the listener and the waiting connections to it (at most cap items); returns how many. */
int elmd_regions_poll_items(struct elmd *d, zmq_pollitem_t *it, int cap);

/* Accepts, answers what has arrived, drops connections past their deadline; lowers *next_ns
 * to the next deadline. */
void elmd_regions_serve(struct elmd *d, uint64_t now_ns, uint64_t *next_ns);

/* Drops the descriptors of sessions whose client has not fetched them by handover_ms. */
void elmd_regions_expire(struct elmd *d, uint64_t now_ns, uint64_t *next_ns);

#endif
