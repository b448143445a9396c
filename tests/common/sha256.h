/* sha256.h — SHA-256 of a byte string, for tests that compare a file elm writes with the
 * sha256 recorded for llama.cpp's (shared/models/evalref). */
#ifndef ELM_TEST_SHA256_H
#define ELM_TEST_SHA256_H

#include <stddef.h>
#include <stdint.h>

/* hex gets 64 lowercase hex digits and a NUL. */
void sha256_hex(const void *data, size_t len, char hex[65]);

#endif
