/*
 * check.c - the reporter of `ballast check` (check.h): each part's checks
 * (conf.c's validation in confcheck.c, each built-in handler's, the
 * cluster's) report their items to it, and it counts what failed.
 */
#include "check.h"

#include <stdio.h>

bool bl_check_connects(const bl_check_t *ck)
{
    return ck->flags & BALLAST_CHECK_CONNECT;
}

void bl_check_error(bl_check_t *ck, const char *item, ballast_error_t *err)
{
    ballast_err_code_t code = ballast_error_code(err);

    ck->items++;
    if (err) {
        ck->failed++;
        if (ck->code == BALLAST_OK || code == BALLAST_ERR_CONFIG)
            ck->code = code;
    }
    if (ck->cb)
        ck->cb(item, err, ck->opaque);
    ballast_error_destroy(err);
}

void bl_check_report(bl_check_t *ck, const char *item, int code, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    if (code == BALLAST_OK) {
        bl_check_error(ck, item, NULL);
        return;
    }
    va_start(ap, fmt);
    if (vsnprintf(msg, sizeof(msg), fmt, ap) < 0)
        msg[0] = '\0';
    va_end(ap);
    /* A handler's init may return codes outside the enum (see
     * ballast_handler_t.init): they count as handler errors there too. */
    if (code < BALLAST_ERR_CONFIG || code > BALLAST_ERR_INTERNAL)
        code = BALLAST_ERR_HANDLER;
    bl_check_error(ck, item, bl_error_new((ballast_err_code_t)code,
                                          code == BALLAST_ERR_UNREACHABLE, false, "%s",
                                          *msg ? msg : "failed"));
}

ballast_error_t *bl_check_result(const bl_check_t *ck)
{
    if (!ck->failed)
        return NULL;
    return bl_error_new(ck->code, ck->code == BALLAST_ERR_UNREACHABLE, false,
                        "%d of %d checks failed", ck->failed, ck->items);
}
