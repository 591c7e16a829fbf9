/* test_sdnotify.c - unit tests of how `ballast run` reads systemd's
 * notification variables (tools/sdnotify.c): NOTIFY_SOCKET as a path or an
 * abstract name (exact address lengths: an abstract name has no trailing
 * NUL), WATCHDOG_USEC, WATCHDOG_PID naming this process or another, and a
 * one-line reason for each malformed value. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "sdnotify.h"

#include <stdio.h>
#include <string.h>

#define SELF 4242L

static sdnotify_target_t parse_ok(const char *sock, const char *usec, const char *pid)
{
    sdnotify_target_t t;
    char err[256] = "";

    if (!sdnotify_parse(sock, usec, pid, SELF, &t, err, sizeof(err)))
        fail_msg("refused %s: %s", sock ? sock : "(null)", err);
    return t;
}

static void test_unset_means_off(void **state)
{
    (void)state;
    assert_int_equal(parse_ok(NULL, "1000000", NULL).addr_len, 0);
    assert_int_equal(parse_ok("", NULL, NULL).addr_len, 0);
}

static void test_path_socket(void **state)
{
    (void)state;
    sdnotify_target_t t = parse_ok("/run/systemd/notify", NULL, NULL);

    assert_int_equal(t.addr.sun_family, AF_UNIX);
    assert_string_equal(t.addr.sun_path, "/run/systemd/notify");
    /* The path and its terminating NUL. */
    assert_int_equal(t.addr_len,
                     offsetof(struct sockaddr_un, sun_path) + strlen("/run/systemd/notify") + 1);
    assert_int_equal(t.watchdog_usec, 0);
}

static void test_abstract_socket(void **state)
{
    (void)state;
    sdnotify_target_t t = parse_ok("@ballast/notify", NULL, NULL);

    assert_int_equal(t.addr.sun_path[0], '\0');
    assert_memory_equal(t.addr.sun_path + 1, "ballast/notify", strlen("ballast/notify"));
    /* Exactly the name: a trailing NUL would name another socket. */
    assert_int_equal(t.addr_len,
                     offsetof(struct sockaddr_un, sun_path) + strlen("@ballast/notify"));
}

static void test_watchdog(void **state)
{
    (void)state;
    assert_int_equal(parse_ok("/n", "30000000", NULL).watchdog_usec, 30000000);
    assert_int_equal(parse_ok("/n", "30000000", "4242").watchdog_usec, 30000000);
    /* WATCHDOG_PID names another process: that one is watched, not us. */
    assert_int_equal(parse_ok("/n", "30000000", "1").watchdog_usec, 0);
}

static void test_malformed_values_are_refused(void **state)
{
    static const struct {
        const char *sock, *usec, *pid, *reason;
    } cases[] = {
        {"run/notify", NULL, NULL, "NOTIFY_SOCKET=run/notify: expected an absolute path"},
        {"vsock:2:1234", NULL, NULL, "NOTIFY_SOCKET=vsock:2:1234: expected"},
        {"/n", "soon", NULL, "WATCHDOG_USEC=soon: expected a positive number"},
        {"/n", "0", NULL, "WATCHDOG_USEC=0: expected a positive number"},
        {"/n", "-5", NULL, "WATCHDOG_USEC=-5"},
        {"/n", "100", "me", "WATCHDOG_PID=me: expected a process id"},
    };
    char long_name[200];

    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        sdnotify_target_t t;
        char err[256] = "";
        if (sdnotify_parse(cases[i].sock, cases[i].usec, cases[i].pid, SELF, &t, err,
                           sizeof(err)))
            fail_msg("case %zu accepted", i);
        if (strncmp(err, cases[i].reason, strlen(cases[i].reason)) || strchr(err, '\n'))
            fail_msg("case %zu: \"%s\", expected it to start \"%s\"", i, err, cases[i].reason);
    }
    memset(long_name, 'x', sizeof(long_name) - 1);
    long_name[0] = '/';
    long_name[sizeof(long_name) - 1] = '\0';
    {
        sdnotify_target_t t;
        char err[256] = "";
        assert_false(sdnotify_parse(long_name, NULL, NULL, SELF, &t, err, sizeof(err)));
        assert_non_null(strstr(err, "too long"));
    }
}

/* A target without a socket sends nothing and succeeds. */
static void test_send_without_socket(void **state)
{
    sdnotify_target_t t;

    (void)state;
    memset(&t, 0, sizeof(t));
    assert_int_equal(sdnotify_send(&t, "READY=1"), 0);
    assert_null(sdnotify_service_start(&t, NULL));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unset_means_off),
        cmocka_unit_test(test_path_socket),
        cmocka_unit_test(test_abstract_socket),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_malformed_values_are_refused),
        cmocka_unit_test(test_send_without_socket),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
