/*
 * errbuf.h — writing an error message into a caller's buffer.
 */
#ifndef EDGEMOE_ERRBUF_H
#define EDGEMOE_ERRBUF_H

#include <stddef.h>

/* Format "<message>" into buf (len bytes, NUL-terminated; buf may be NULL or len 0).
 * Returns status, so callers can write `return error_write(err, len, CODE, "...")`. */
int error_write(char *buf, size_t len, int status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

#endif /* EDGEMOE_ERRBUF_H */
