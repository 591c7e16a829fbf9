/*
 * test_install.c - `make install` gives a working install: the build tree is
 * installed into a temporary prefix; the installed `ballast` runs and names
 * the librdkafka this build uses; a C program built against the installed
 * library with `pkg-config --cflags --libs ballast` (examples/consumer.c)
 * links, loads exactly one librdkafka (with every symbol bound at start),
 * and runs against the real broker. When the build uses a librdkafka that scripts/install-deps built
 * (not the system's), the installed programs load the copy installed beside
 * libballast, so the install does not depend on the build cache.
 */
#include "support.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

static char g_dir[512], g_prefix[600];

/* Runs a shell command line built from @p fmt; its stdout and stderr are
 * kept in *output (caller frees). @returns its exit status. */
static int sh(char **output, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int sh(char **output, const char *fmt, ...)
{
    char cmd[4096], line[4200], out_path[600];
    va_list ap;
    int rc;

    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    snprintf(out_path, sizeof(out_path), "%s/sh.out", g_dir);
    snprintf(line, sizeof(line), "{ %s ; } </dev/null >'%s' 2>&1", cmd, out_path);
    rc = system(line);
    *output = bt_read_file(out_path);
    assert_non_null(*output);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 128;
}

static int group_setup(void **state)
{
    char *out;

    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", bt_tmpdir());
    snprintf(g_prefix, sizeof(g_prefix), "%s/prefix", g_dir);
    if (sh(&out, "'%s' --install '%s' --prefix '%s'", CMAKE_COMMAND, BALLAST_BUILD_DIR,
           g_prefix) != 0) {
        fprintf(stderr, "cmake --install failed: %s\n", out);
        free(out);
        return -1;
    }
    free(out);
    return 0;
}

/* The installed command runs, on the librdkafka of this build. */
static void test_installed_command_runs(void **state)
{
    char *out, want[64];

    (void)state;
    if (sh(&out, "'%s/bin/ballast' --version", g_prefix) != 0)
        fail_msg("the installed ballast does not run: %s", out);
    snprintf(want, sizeof(want), "\nlibrdkafka %s\n", rd_kafka_version_str());
    if (!strstr(out, want))
        fail_msg("the installed ballast does not run on librdkafka %s: %s",
                 rd_kafka_version_str(), out);
    free(out);
}

/* Occurrences of @p needle in @p text. */
static int count_of(const char *text, const char *needle)
{
    int n = 0;

    for (const char *p = text; (p = strstr(p, needle)); p += strlen(needle))
        n++;
    return n;
}

static void test_pkg_config_program_links_one_librdkafka(void **state)
{
    char *out;
    char prog[600];

    (void)state;
    snprintf(prog, sizeof(prog), "%s/consumer", g_prefix);
    /* -Wl,-rpath: a temporary prefix is not on the loader's path (the
     * program finds libballast there, and libballast its librdkafka). */
    if (sh(&out,
           "cc -o '%s' '%s/examples/consumer.c' "
           "$(PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs ballast) "
           "-Wl,-rpath,'%s/lib'",
           prog, BALLAST_SRC_DIR, g_prefix, g_prefix) != 0)
        fail_msg("building against the installed libballast failed: %s", out);
    free(out);

    if (sh(&out, "ldd '%s'", prog) != 0)
        fail_msg("ldd failed: %s", out);
    /* ldd prints one line per library, each starting with a tab. */
    if (count_of(out, "\tlibrdkafka") != 1)
        fail_msg("expected exactly one librdkafka: %s", out);
#if BALLAST_RDKAFKA_PRIVATE
    {
        char want[600];
        snprintf(want, sizeof(want), "=> %s/lib/ballast/librdkafka.so.1 ", g_prefix);
        if (!strstr(out, want))
            fail_msg("expected the installed copy of librdkafka: %s", out);
    }
#endif
    free(out);

    /* Every symbol bound at start; the library talks to the real broker
     * and reports a missing topic as one line. */
    const char *topic = bt_unique("install-test-missing");
    if (sh(&out, "LD_BIND_NOW=1 '%s' '%s' '%s' '%s'", prog, bt_bootstrap(), topic, topic) != 1)
        fail_msg("the program did not fail as expected on a missing topic: %s", out);
    if (count_of(out, "\n") != 1 || strncmp(out, "consumer: ", 10) != 0 || !strstr(out, topic))
        fail_msg("expected one error line naming %s: %s", topic, out);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed_command_runs),
        cmocka_unit_test(test_pkg_config_program_links_one_librdkafka),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
