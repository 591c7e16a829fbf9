/*
 * log.c - the library's logger: one logfmt line per event on stderr, or
 * handed to the application's callback.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static const char *level_names[] = {"error", "warn", "info", "debug"};

/* Escapes @p in as the inside of a JSON string. */
static void json_escape(const char *in, char *out, size_t size)
{
    size_t n = 0;

    for (; *in && n + 7 < size; in++) {
        unsigned char c = (unsigned char)*in;
        if (c == '"' || c == '\\') {
            out[n++] = '\\';
            out[n++] = (char)c;
        } else if (c < 0x20) {
            n += (size_t)snprintf(out + n, size - n, "\\u%04x", c);
        } else {
            out[n++] = (char)c;
        }
    }
    out[n] = '\0';
}

void bl_log(const bl_logger_t *lg, ballast_log_level_t level, const char *fmt, ...)
{
    char msg[1024], esc[2048], line[2200], ts[40];
    va_list ap;

    if (level > lg->level)
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    if (lg->cb) {
        lg->cb(level, msg, lg->opaque);
        return;
    }
    bl_iso8601(bl_wall_ms(), ts, sizeof(ts));
    if (lg->json) {
        json_escape(msg, esc, sizeof(esc));
        bl_fmt(line, sizeof(line), "{\"ts\":\"%s\",\"level\":\"%s\",\"msg\":\"%s\"}\n",
               ts, level_names[level], esc);
    } else {
        for (char *p = msg; *p; p++)
            if (*p == '"')
                *p = '\'';
        bl_fmt(line, sizeof(line), "ts=%s level=%s msg=\"%s\"\n", ts,
               level_names[level], msg);
    }
    /* One write per line so that lines from threads do not interleave. */
    fputs(line, stderr);
}
