/*
 * test_install.c - `make install` gives a working install: the build tree is
 * installed into a temporary prefix; the installed `ballast` runs and names
 * the librdkafka this build uses; a C program built against the installed
 * library with `pkg-config --cflags --libs ballast` (examples/consumer.c)
 * links, loads exactly one librdkafka (with every symbol bound at start),
 * and runs against the real broker. When the build uses a librdkafka that scripts/install-deps built
 * (not the system's), the installed programs load the copy installed beside
 * libballast, so the install does not depend on the build cache. The
 * manual pages, the systemd unit, an example config and contrib/'s files
 * are installed too.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char g_dir[512], g_prefix[600];

static int group_setup(void **state)
{
    char *out;

    (void)state;
    snprintf(g_dir, sizeof(g_dir), "%s", bt_tmpdir());
    snprintf(g_prefix, sizeof(g_prefix), "%s/prefix", g_dir);
    if (bt_sh(&out, NULL, "'%s' --install '%s' --prefix '%s'", CMAKE_COMMAND, BALLAST_BUILD_DIR,
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
    if (bt_sh(&out, NULL, "'%s/bin/ballast' --version", g_prefix) != 0)
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
    if (bt_sh(&out, NULL,
           "'%s' %s -o '%s' '%s/examples/consumer.c' "
           "$(PKG_CONFIG_PATH='%s/lib/pkgconfig' pkg-config --cflags --libs ballast) "
           "-Wl,-rpath,'%s/lib'",
           BALLAST_TEST_CC, BALLAST_TEST_CFLAGS, prog, BALLAST_SRC_DIR, g_prefix, g_prefix) != 0)
        fail_msg("building against the installed libballast failed: %s", out);
    free(out);

    if (bt_sh(&out, NULL, "ldd '%s'", prog) != 0)
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
    if (bt_sh(&out, NULL, "LD_BIND_NOW=1 '%s' '%s' '%s' '%s'", prog, bt_bootstrap(), topic, topic) != 1)
        fail_msg("the program did not fail as expected on a missing topic: %s", out);
    if (count_of(out, "\n") != 1 || strncmp(out, "consumer: ", 10) != 0 || !strstr(out, topic))
        fail_msg("expected one error line naming %s: %s", topic, out);
    free(out);
}

/* What an operator needs comes with the install: the manual pages (man
 * finds them under the prefix), the systemd unit naming the installed
 * command (and valid for systemd-analyze, where there is one), an example
 * config that `ballast check` accepts, and the dashboard, alert rules and
 * Kubernetes manifests of contrib/. */
static void test_operator_files_installed(void **state)
{
    static const char *const files[] = {
        "share/man/man1/ballast.1",
        "share/man/man5/ballast.conf.5",
        "lib/systemd/system/ballast@.service",
        "etc/ballast/example.conf",
        "share/ballast/grafana/ballast.json",
        "share/ballast/prometheus/ballast-alerts.yml",
        "share/ballast/kubernetes/deployment.yaml",
        "share/ballast/kubernetes/scaledobject-kafka.yaml",
        "share/ballast/kubernetes/scaledobject-prometheus.yaml",
    };
    char path[800], *out, *unit;

    (void)state;
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", g_prefix, files[i]);
        if (access(path, R_OK))
            fail_msg("make install did not install %s", files[i]);
    }
    if (bt_sh(&out, NULL, "MANPATH='%s/share/man' man -w ballast.conf", g_prefix) != 0)
        fail_msg("man does not find ballast.conf(5) under the prefix: %s", out);
    free(out);
    if (bt_sh(&out, NULL, "'%s/bin/ballast' check '%s/etc/ballast/example.conf'", g_prefix,
              g_prefix) != 0)
        fail_msg("ballast check refuses the installed example config: %s", out);
    free(out);

    snprintf(path, sizeof(path), "%s/lib/systemd/system/ballast@.service", g_prefix);
    unit = bt_read_file(path);
    snprintf(path, sizeof(path), "\nExecStart=%s/bin/ballast run /etc/ballast/%%i.conf\n",
             g_prefix);
    if (!strstr(unit, path))
        fail_msg("the unit does not run the installed command:\n%s", unit);
    free(unit);
    if (bt_sh(&out, NULL, "command -v systemd-analyze") != 0) {
        print_message("skipped: systemd-analyze verify (systemd-analyze is not installed)\n");
    } else {
        /* A template is verified through an instance of it. */
        free(out);
        if (bt_sh(&out, NULL,
                  "d=$(mktemp -d) && cp '%s/lib/systemd/system/ballast@.service' "
                  "\"$d/ballast@example.service\" && "
                  "systemd-analyze verify --man=no \"$d/ballast@example.service\"; "
                  "rc=$?; rm -rf \"$d\"; exit $rc",
                  g_prefix) != 0 ||
            *out)
            fail_msg("systemd-analyze verify ballast@.service: %s", out);
    }
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_installed_command_runs),
        cmocka_unit_test(test_pkg_config_program_links_one_librdkafka),
        cmocka_unit_test(test_operator_files_installed),
    };
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
