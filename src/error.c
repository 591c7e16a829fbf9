/*
 * error.c - error objects: a code, a one-line message, and whether the
 * failure is retriable or fatal.
 */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct ballast_error_s {
    ballast_err_code_t code;
    bool retriable;
    bool fatal;
    char message[512];
};

/* Returned when even the error cannot be allocated; never freed. */
static struct ballast_error_s out_of_memory = {
    BALLAST_ERR_INTERNAL, false, true, "out of memory"};

ballast_error_t *bl_error_new(ballast_err_code_t code, bool retriable,
                              bool fatal, const char *fmt, ...)
{
    struct ballast_error_s *err = calloc(1, sizeof(*err));
    va_list ap;

    if (!err)
        return &out_of_memory;
    err->code = code;
    err->retriable = retriable;
    err->fatal = fatal;
    va_start(ap, fmt);
    if (vsnprintf(err->message, sizeof(err->message), fmt, ap) < 0)
        err->message[0] = '\0';
    va_end(ap);
    /* Errors are one line: fold any newline a cause brought in. */
    for (char *p = err->message; *p; p++)
        if (*p == '\n' || *p == '\r')
            *p = ' ';
    return err;
}

ballast_err_code_t ballast_error_code(const ballast_error_t *err)
{
    return err ? err->code : BALLAST_OK;
}

const char *ballast_error_message(const ballast_error_t *err)
{
    return err ? err->message : "success";
}

int ballast_error_is_retriable(const ballast_error_t *err)
{
    return err && err->retriable;
}

int ballast_error_is_fatal(const ballast_error_t *err)
{
    return err && err->fatal;
}

void ballast_error_destroy(ballast_error_t *err)
{
    if (err && err != &out_of_memory)
        free(err);
}

const char *ballast_version(void)
{
    return BALLAST_VERSION_STR;
}
