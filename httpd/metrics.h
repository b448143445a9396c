/* metrics.h — elm-httpd's counters for GET /metrics (metrics.c), in Prometheus' text format:
 * requests by endpoint and status, prompt and generated tokens, time to first token and between
 * tokens as histograms (measured at the gateway, so they include the HTTP side), and, from
 * elmd's status at the time of the scrape, queue depth, KV pages in use and sessions.
 *
 * One set per process (elm-httpd serves one daemon): the functions are thread-safe. */
#ifndef ELM_HTTPD_METRICS_H
#define ELM_HTTPD_METRICS_H

#include <stdint.h>

#include "elm/client.h"

/* A request answered with status (endpoint: the route's path, or "other"). */
void metrics_request(const char *endpoint, unsigned status);
/* A generation's events: its first token ns after submission, a token ns after the previous,
 * and its end with the daemon's counts. */
void metrics_first_token(uint64_t ns);
void metrics_next_token(uint64_t ns);
void metrics_done(uint32_t n_prompt, uint32_t n_gen);

/* The whole exposition: the counters, the gateway's ready sessions (gw_pool_ready), then the
 * daemon's gauges from st (NULL: elmd is not answering; elm_up 0). malloc'ed, NUL-terminated;
 * caller frees. NULL on OOM. */
char *metrics_render(const struct elm_daemon_status *st, const char *model, int ready);

#endif
