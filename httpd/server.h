/* server.h — elm-httpd's HTTP server on libmicrohttpd (server.c): the route table and the
 * checks every request goes through before its handler (api.h) runs. */
#ifndef ELM_HTTPD_SERVER_H
#define ELM_HTTPD_SERVER_H

#include "httpd/httpd.h"

/* Starts listening (a thread per connection). Returns 0, or -errno with a message on stderr. */
int httpd_start(struct httpd *h);
void httpd_stop(struct httpd *h);

#endif
