/*
 * log.c - the library's logger: one logfmt line per event on stderr, or
 * handed to the application's callback.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static const char *level_names[] = {"error", "warn", "info", "debug"};

void bl_log(const bl_logger_t *lg, ballast_log_level_t level, const char *fmt, ...)
{
    char msg[1024], line[1200], ts[40];
    va_list ap;

    if (level > lg->level)
        return;
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '"')
            *p = *p == '"' ? '\'' : ' ';
    if (lg->cb) {
        lg->cb(level, msg, lg->opaque);
        return;
    }
    bl_iso8601(bl_wall_ms(), ts, sizeof(ts));
    bl_fmt(line, sizeof(line), "ts=%s level=%s msg=\"%s\"\n", ts,
           level_names[level], msg);
    /* One write per line so that lines from threads do not interleave. */
    fputs(line, stderr);
}
