/*
 * test_man.c - the manual pages that the build generates:
 *   - ballast(1) and ballast.conf(5) render with `man --warnings` without a
 *     single warning, and lexgrog reads their NAME lines (what apropos and
 *     mandb index);
 *   - ballast.conf(5), generated from the library's property table, names
 *     every key that `ballast config-reference` lists, each as an entry of
 *     its own;
 *   - ballast(1) names every command of `ballast --help`, and every option
 *     that each command's --help prints.
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})

static void require_tool(const char *tool)
{
    char *out, *err;

    if (bt_sh(&out, &err, "command -v %s", tool) != 0)
        fail_msg("%s is missing: run scripts/install-deps --test (it installs man-db)", tool);
    free(out);
    free(err);
}

/* The page rendered as a reader sees it (plain text, 200 columns, so that
 * lines are rarely broken); fails the test on any warning. Caller frees. */
static char *render(const char *page)
{
    char *out, *err;
    int rc;

    require_tool("man");
    rc = bt_sh(&out, &err, "MANWIDTH=200 MANPAGER=cat PAGER=cat man --warnings -E UTF-8 -l '%s/%s'",
            BALLAST_MAN_DIR, page);
    if (rc != 0 || *err)
        fail_msg("man --warnings -l %s: exit %d: %s", page, rc, err);
    if (strlen(out) < 500)
        fail_msg("%s renders to almost nothing: %s", page, out);
    free(err);
    return out;
}

/* The rendered page in a file of its own, for bt_assert_options_documented. */
static const char *render_to_file(const char *page)
{
    static char path[400];
    char *text = render(page);

    snprintf(path, sizeof(path), "%s/%s.txt", bt_tmpdir(), page);
    bt_write_file(path, "%s", text);
    free(text);
    return path;
}

static void test_pages_render_without_warnings_and_index(void **state)
{
    static const struct {
        const char *page, *name_line;
    } pages[] = {
        {"ballast.1", "\"ballast - "},
        {"ballast.conf.5", "\"ballast.conf - "},
    };

    (void)state;
    require_tool("lexgrog");
    for (size_t i = 0; i < sizeof(pages) / sizeof(pages[0]); i++) {
        char *out, *err;
        int rc;

        free(render(pages[i].page));
        rc = bt_sh(&out, &err, "lexgrog '%s/%s'", BALLAST_MAN_DIR, pages[i].page);
        if (rc != 0 || !strstr(out, pages[i].name_line))
            fail_msg("lexgrog %s: exit %d: %s%s", pages[i].page, rc, out, err);
        free(out);
        free(err);
    }
}

/* Whether some line of @p text is the tag of an entry for @p key: at the
 * tag's indentation (an entry's text, and examples, are indented deeper),
 * followed by a blank or the line's end. */
static bool has_entry(const char *text, const char *key)
{
    static const char indent[] = "\n       "; /* man's 7 columns */
    size_t len = strlen(key), ilen = strlen(indent);

    for (const char *p = strstr(text, indent); p; p = strstr(p + 1, indent)) {
        const char *tag = p + ilen;
        if (!strncmp(tag, key, len) && (tag[len] == ' ' || tag[len] == '\n'))
            return true;
    }
    return false;
}

static void test_conf_page_names_every_key(void **state)
{
    bt_captured_t ref = bt_run_captured(ARGV("config-reference"), 10000);
    char *page = render("ballast.conf.5"), missing[2048] = "";
    size_t keys = 0;

    (void)state;
    assert_int_equal(ref.rc, 0);
    /* The Markdown table's rows: | `key` | type | default | meaning | */
    for (const char *row = strstr(ref.out, "\n| `"); row; row = strstr(row + 1, "\n| `")) {
        const char *start = row + 4, *end = strchr(start, '`');
        char key[128];

        assert_non_null(end);
        snprintf(key, sizeof(key), "%.*s", (int)(end - start), start);
        keys++;
        if (!has_entry(page, key))
            snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s", key);
    }
    if (keys < 20)
        fail_msg("config-reference listed only %zu keys", keys);
    if (*missing)
        fail_msg("ballast.conf(5) has no entry for:%s", missing);
    free(page);
    bt_captured_free(&ref);
}

static void test_command_page_documents_every_command_and_option(void **state)
{
    static const char *const commands[] = {"run",         "check",      "demo",
                                           "lag",         "dlq inspect", "dlq replay",
                                           "config-reference"};
    bt_captured_t help = bt_run_captured(ARGV("--help"), 10000);
    const char *path = render_to_file("ballast.1");
    char *page = bt_read_file(path), heading[64];

    (void)state;
    assert_int_equal(help.rc, 0);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        char listed[64];
        /* --help lists it (so this list stays complete), and the page has
         * a section for it. */
        snprintf(listed, sizeof(listed), "\n  %s", commands[i]);
        if (!strstr(help.out, listed))
            fail_msg("`ballast --help` does not list \"%s\"", commands[i]);
        snprintf(heading, sizeof(heading), "\n   ballast %s", commands[i]);
        if (!strstr(page, heading))
            fail_msg("ballast(1) has no section for `ballast %s`", commands[i]);
    }
    /* run's only option, -X, is check's too (run --help names too few
     * options for bt_assert_options_documented's own check). */
    bt_assert_options_documented(ARGV("check", "--help"), path);
    bt_assert_options_documented(ARGV("demo", "--help"), path);
    bt_assert_options_documented(ARGV("lag", "--help"), path);
    bt_assert_options_documented(ARGV("dlq", "inspect", "--help"), path);
    bt_assert_options_documented(ARGV("dlq", "replay", "--help"), path);
    bt_assert_options_documented(ARGV("config-reference", "--help"), path);
    free(page);
    bt_captured_free(&help);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pages_render_without_warnings_and_index),
        cmocka_unit_test(test_conf_page_names_every_key),
        cmocka_unit_test(test_command_page_documents_every_command_and_option),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
