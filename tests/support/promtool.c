/*
 * promtool.c - Prometheus text as `promtool check metrics` judges it
 * (support.h, bt_promtool_check_metrics()).
 */
#include "support.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bt_require_promtool(void)
{
    char *out;

    if (bt_sh(&out, NULL, "command -v promtool") != 0)
        fail_msg("promtool is missing: run scripts/install-deps --test (package prometheus)");
    free(out);
}

/* Whether every line of @p out names one of the findings @p allowed. */
static bool only_allowed(const char *out, const char *const *allowed)
{
    for (const char *line = out; *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        bool ok = !len;
        for (size_t i = 0; allowed && allowed[i] && !ok; i++)
            ok = memmem(line, len, allowed[i], strlen(allowed[i])) != NULL;
        if (!ok)
            return false;
        line += len + (end != NULL);
    }
    return true;
}

void bt_promtool_check_metrics(const char *path, const char *const *allowed)
{
    char *out;
    int rc;

    bt_require_promtool();
    /* 0: nothing to say; 3: lint findings only; else the text does not parse. */
    rc = bt_sh(&out, NULL, "promtool check metrics < '%s'", path);
    if ((rc != 0 && rc != 3) || (*out && !only_allowed(out, allowed)))
        fail_msg("promtool check metrics on %s: exit %d:\n%s", path, rc, out);
    free(out);
}
