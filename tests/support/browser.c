/*
 * browser.c - pages served by the command, as headless Chromium renders
 * them (support.h, bt_chromium_dom()).
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *find_chromium(void)
{
    static const char *const candidates[] = {"/usr/bin/chromium", "/usr/bin/chromium-browser",
                                             "/usr/bin/google-chrome", NULL};
    for (const char *const *c = candidates; *c; c++)
        if (!access(*c, X_OK))
            return *c;
    fail_msg("chromium is missing: run scripts/install-deps --test");
    return NULL;
}

/* Fails when the page wrote to the console or threw: Chromium logs that
 * as ":CONSOLE" and "Uncaught" lines. */
static void assert_quiet(const char *log)
{
    const char *line = log;

    while (line && *line) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (memmem(line, len, ":CONSOLE", 8) || memmem(line, len, "Uncaught", 8))
            fail_msg("the page logged to the console: %.*s", (int)len, line);
        line = end ? end + 1 : NULL;
    }
}

/* Runs headless Chromium on @p url with @p mode ("--dump-dom" or
 * "--screenshot=PATH") for @p budget_ms of the page's time; fails unless it
 * exits 0 with a quiet console. @returns its stdout. */
static char *run_chromium(const char *url, const char *mode, int budget_ms)
{
    char *out = NULL, *err = NULL;
    int rc;

    /* Virtual time runs the page's timers at once; 120 s of real time is
     * the bound on Chromium itself. */
    rc = bt_sh(&out, &err,
               "timeout 120 %s --headless --no-sandbox --disable-gpu "
               "--disable-background-networking --disable-component-update --disable-sync "
               "--no-first-run --hide-scrollbars --enable-logging=stderr --v=0 "
               "--user-data-dir=%s/profile --window-size=1200,1000 --virtual-time-budget=%d "
               "'%s' '%s'",
               find_chromium(), bt_tmpdir(), budget_ms, mode, url);
    if (rc)
        fail_msg("chromium exited %d: %s", rc, err ? err : "");
    assert_quiet(err);
    free(err);
    return out;
}

char *bt_chromium_dom(const char *url, int budget_ms)
{
    char *out = run_chromium(url, "--dump-dom", budget_ms);

    if (strstr(out, "data-error="))
        fail_msg("the page reported a script error; DOM:\n%s", out);
    return out;
}

void bt_chromium_screenshot(const char *url, const char *path, int budget_ms)
{
    char mode[1100];

    snprintf(mode, sizeof(mode), "--screenshot=%s", path);
    free(run_chromium(url, mode, budget_ms));
}
