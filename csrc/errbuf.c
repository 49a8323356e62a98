/* errbuf.c — see errbuf.h. */
#include "errbuf.h"

#include <stdarg.h>
#include <stdio.h>

int error_write(char *buf, size_t len, int status, const char *fmt, ...) {
    if (buf && len) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(buf, len, fmt, ap);
        va_end(ap);
    }
    return status;
}
