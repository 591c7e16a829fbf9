/*
 * check.h - the reporter behind ballast_conf_check() (check.c; the check
 * itself is confcheck.c), which the checks of each part (handlers,
 * cluster) report their items to. Internal.
 */
#ifndef BALLAST_CHECK_H
#define BALLAST_CHECK_H

#include "internal.h"

/** What `ballast check` has found so far (made by ballast_conf_check()). */
typedef struct bl_check {
    unsigned flags;            /* BALLAST_CHECK_* */
    ballast_check_cb *cb;
    void *opaque;
    int items, failed;
    ballast_err_code_t code;   /* BALLAST_ERR_CONFIG if any, else the first */
} bl_check_t;

/** True when the check may use the network and open the database
 *  (BALLAST_CHECK_CONNECT). */
bool bl_check_connects(const bl_check_t *ck);

/** Reports one item: @p err NULL when it is fine, else why not (taken:
 *  destroyed here). */
void bl_check_error(bl_check_t *ck, const char *item, ballast_error_t *err);

/** Reports one item: @p code BALLAST_OK when it is fine (@p fmt is then
 *  ignored), else the error's code and its one-line text, which names the
 *  key at fault. */
void bl_check_report(bl_check_t *ck, const char *item, int code, const char *fmt,
                     ...) BL_PRINTF(4, 5);

/** NULL when every item was fine, else the error that sums them up. */
ballast_error_t *bl_check_result(const bl_check_t *ck);

/* Each built-in handler's part, reporting what its init would refuse; see
 * ballast_conf_check() for what each checks with and without connecting. */
void bl_postgres_check(const ballast_conf_t *conf, bl_check_t *ck); /* postgres.c */
void bl_sqlite_check(const ballast_conf_t *conf, bl_check_t *ck);   /* sqlite.c */
void bl_exec_check(const ballast_conf_t *conf, bl_check_t *ck);     /* cmdline.c */
void bl_plugin_check(const ballast_conf_t *conf, bl_check_t *ck);   /* plugin.c */

#endif
