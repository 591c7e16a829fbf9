/* test_fuzz_regressions.c - what the fuzzers of tests/fuzz found, kept as
 * unit tests. Each input is also a seed of its target
 * (tests/fuzz/corpus/<target>/regress-*), so `scripts/fuzz` fails on it too.
 *
 * Both tests below fail until src/conf.c and src/sqltmpl.c are fixed. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "sqltmpl.h"

#include <stdio.h>
#include <string.h>

/* ---- DSN redaction (fuzz_conf) ------------------------------------------ */

static char redacted_dsn[2048];

static void keep_dsn(const char *key, const char *value, void *opaque)
{
    (void)opaque;
    if (!strcmp(key, "handler.postgres.dsn"))
        snprintf(redacted_dsn, sizeof(redacted_dsn), "%s", value);
}

/* DSNs whose password libpq reads as "secret" (checked with
 * PQconninfoParse) but that `ballast check` printed in clear: libpq's URI
 * user info runs to the first '@' before any '/', '?' and '#' included;
 * an unquoted keyword value takes backslash escapes ("sec\ ret" is one
 * value); URI query keys are percent-decoded (pass%77ord is password).
 * Found by fuzz_conf's differential check against libpq. */
static const struct {
    const char *dsn, *secret;
} leaky[] = {
    {"postgresql://u:sec#ret@db/app", "sec#ret"},
    {"postgresql://u:sec?ret@db/app", "sec?ret"},
    {"host=db password=sec\\ ret user=u", "ret"},
    {"postgresql://db/app?pass%77ord=secret", "secret"},
};

static void test_dsn_redaction_follows_libpq(void **state)
{
    int leaks = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(leaky) / sizeof(leaky[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        ballast_error_t *err;

        assert_non_null(conf);
        err = ballast_conf_set(conf, "handler.postgres.dsn", leaky[i].dsn);
        assert_null(err);
        redacted_dsn[0] = '\0';
        ballast_conf_dump(conf, 1, keep_dsn, NULL);
        if (strstr(redacted_dsn, leaky[i].secret)) {
            print_error("DSN \"%s\" dumped as \"%s\"\n", leaky[i].dsn, redacted_dsn);
            leaks++;
        }
        ballast_conf_destroy(conf);
    }
    assert_int_equal(leaks, 0);
}

/* ---- SQLite's own parameters (fuzz_sqltmpl) ------------------------------ */

/* SQLite binds `$`, `@`, `#` and `:` followed by any identifier character
 * (digits and `$` included) or `::`; ballast never binds them, so they would
 * be NULL on every message. bl_sqltmpl_parse() must refuse them in the
 * SQLite dialect as it refuses `?`, `$x` and `@x`. Found by fuzz_sqltmpl's
 * differential check against sqlite3_bind_parameter_count(). */
static const char *const sqlite_params[] = {
    "SELECT $$", "SELECT $::x", "SELECT #x", "SELECT :1",
    "SELECT :$", "SELECT @1",   "SELECT @$",
};

static void test_sqlite_own_parameters_refused(void **state)
{
    int passed = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(sqlite_params) / sizeof(sqlite_params[0]); i++) {
        bl_sqltmpl_t t;
        char err[256];

        if (bl_sqltmpl_parse(sqlite_params[i], BL_SQL_SQLITE, &t, err, sizeof(err)) == 0) {
            print_error("\"%s\" accepted as \"%s\"\n", sqlite_params[i], t.sql);
            passed++;
        }
        bl_sqltmpl_free(&t);
    }
    assert_int_equal(passed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dsn_redaction_follows_libpq),
        cmocka_unit_test(test_sqlite_own_parameters_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
