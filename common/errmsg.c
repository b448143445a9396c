/* errmsg.c — see errmsg.h. */
#include <stdarg.h>
#include <stdio.h>

#include "common/errmsg.h"

int elm_errf(char *err, size_t errlen, int code, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return code;
}
