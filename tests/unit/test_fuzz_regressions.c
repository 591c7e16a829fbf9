/* test_fuzz_regressions.c - what the fuzzers of tests/fuzz found, kept as
 * unit tests. Each input is also a seed of its target
 * (tests/fuzz/corpus/<target>/regress-*), so `scripts/fuzz` fails on it too.
 *
 * test_dsn_redaction_reparses fails until put_dsn_value() in src/conf.c
 * quotes values with any blank libpq splits at (\r, \v, \f as well), and
 * test_sqlite_own_parameters_refused until step() in src/sqltmpl.c refuses
 * `@`/`#` after an identifier character and before `::` in SQLite. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"
#include "sqltmpl.h"

#include <libpq-fe.h>
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

/* The redacted DSN must still say what the DSN says: libpq reads the same
 * options from it, the passwords aside. Values with \r, \v or \f (written
 * quoted in the DSN, or %-encoded in a URI) came out unquoted, and libpq,
 * which splits at any isspace() character, could not read the dump back
 * ("missing "=" after "b""). Found by fuzz_conf. */
static const char *const reparse_dsns[] = {
    "host='a\vb' dbname=x",
    "host='a\rb' dbname=x",
    "host='a\fb' password=p",
    "postgresql://u:p@h/db?application_name=a%0Db",
};

static void test_dsn_redaction_reparses(void **state)
{
    int bad = 0;
    (void)state;

    for (size_t i = 0; i < sizeof(reparse_dsns) / sizeof(reparse_dsns[0]); i++) {
        ballast_conf_t *conf = ballast_conf_new();
        PQconninfoOption *orig, *red;
        char *errmsg = NULL;

        assert_non_null(conf);
        assert_null(ballast_conf_set(conf, "handler.postgres.dsn", reparse_dsns[i]));
        redacted_dsn[0] = '\0';
        ballast_conf_dump(conf, 1, keep_dsn, NULL);
        ballast_conf_destroy(conf);
        orig = PQconninfoParse(reparse_dsns[i], NULL);
        assert_non_null(orig);
        red = PQconninfoParse(redacted_dsn, &errmsg);
        if (!red) {
            print_error("DSN \"%s\" dumped as \"%s\", which libpq cannot read: %s",
                        reparse_dsns[i], redacted_dsn, errmsg);
            PQfreemem(errmsg);
            bad++;
        } else {
            for (size_t k = 0; orig[k].keyword; k++) {
                const char *a = orig[k].val, *b = red[k].val;
                if (!strcmp(orig[k].keyword, "password"))
                    continue;
                if ((a || b) && (!a || !b || strcmp(a, b))) {
                    print_error("DSN \"%s\": %s changed in the dump\n",
                                reparse_dsns[i], orig[k].keyword);
                    bad++;
                }
            }
            PQconninfoFree(red);
        }
        PQconninfoFree(orig);
    }
    assert_int_equal(bad, 0);
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
    /* Found after the first fix: SQLite's identifiers never contain `@` or
     * `#`, so one right after an identifier still starts a parameter; and
     * `@::x` / `#::x` are parameters as `$::x` is. */
    "SELECT@x", "SELECT#x", "SELECT 1 WHERE 1=1 AND@x", "SELECT @::x",
    "SELECT #::x",
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
        cmocka_unit_test(test_dsn_redaction_reparses),
        cmocka_unit_test(test_sqlite_own_parameters_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
