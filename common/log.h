/* log.h — leveled logging to stderr (default) or syslog, shared by the daemon and tools. */
#ifndef ELM_LOG_H
#define ELM_LOG_H

#include <stdbool.h>

enum elm_log_level { ELM_LOG_ERROR, ELM_LOG_WARN, ELM_LOG_INFO, ELM_LOG_DEBUG };

/* Not thread-safe: call once at start-up (and on config reload) before other threads log. */
void elm_log_setup(enum elm_log_level max, bool use_syslog, const char *ident);
/* Parses "error", "warn", "info" or "debug"; returns -1 when unknown. */
int elm_log_level_parse(const char *s);

void elm_log(enum elm_log_level lvl, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define elm_err(...)   elm_log(ELM_LOG_ERROR, __VA_ARGS__)
#define elm_warn(...)  elm_log(ELM_LOG_WARN, __VA_ARGS__)
#define elm_info(...)  elm_log(ELM_LOG_INFO, __VA_ARGS__)
#define elm_debug(...) elm_log(ELM_LOG_DEBUG, __VA_ARGS__)

#endif
