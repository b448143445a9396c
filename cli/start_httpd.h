/* start_httpd.h — `elmctl start --http ADDR:PORT` and `elmctl stop`'s side of elm-httpd, the HTTP
 * gateway (start_httpd.c): run it in the background beside elmd, and end it. */
#ifndef ELM_CLI_START_HTTPD_H
#define ELM_CLI_START_HTTPD_H

#include <stddef.h>
#include <sys/types.h>

/* Starts elm-httpd --listen listen --runtime-dir dir (NULL: the default runtime directory) in
 * a session of its own, its output in <dir>/elm-httpd.log and its pid in <dir>/elm-httpd.pid,
 * and waits until it listens; one already running for dir is kept. Writes its URL to url.
 * Returns its pid, or 0 after a cli_fail() message. */
pid_t cli_httpd_start(const char *dir, const char *listen, char *url, size_t cap);

/* Stops the elm-httpd of dir, if one runs (SIGTERM, then waits up to a few seconds). */
void cli_httpd_stop(const char *dir);

#endif
