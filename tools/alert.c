/*
 * alert.c - the alert rules of `ballast lag`: the --alert-* and --webhook*
 * options, and the config file's lag.* keys (see alert.h; the state of each
 * group and the notifications are in alert_notify.c).
 */
#include "alert.h"

#include "cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What the command line set (alert_conf_t.set_by_cli), so that the config
 * file does not override it. */
enum {
    SET_STATUS = 1 << 0,
    SET_LAG = 1 << 1,
    SET_LAG_SECONDS = 1 << 2,
    SET_FOR = 1 << 3,
    SET_RATE = 1 << 4,
    SET_FORMAT = 1 << 5,
    SET_TIMEOUT = 1 << 6,
    SET_RETRY = 1 << 7,
};

static void rule_init(alert_rule_t *r)
{
    memset(r, 0, sizeof(*r));
    r->status = -1;
    r->lag = -1;
    r->lag_seconds = -1;
    r->for_s = -1;
    r->rate_limit_s = -1;
}

void alert_conf_init(alert_conf_t *c)
{
    memset(c, 0, sizeof(*c));
    rule_init(&c->deflt);
    c->format = ALERT_JSON;
    c->webhook.timeout_s = 5;
    c->webhook.retry_for_s = 60;
    c->webhook.queue_max = 100;
}

static void rule_free(alert_rule_t *r)
{
    if (r->match_source)
        regfree(&r->match);
    free(r->match_source);
    if (r->cluster_source)
        regfree(&r->cluster);
    free(r->cluster_source);
    free(r->name);
}

void alert_conf_free(alert_conf_t *c)
{
    rule_free(&c->deflt);
    for (size_t i = 0; i < c->nrules; i++)
        rule_free(&c->rules[i]);
    free(c->rules);
    free(c->urls);
    free(c->config_urls);
    memset(c, 0, sizeof(*c));
}

/* ---- values ------------------------------------------------------------- */

/* Seconds: a number, or one with the unit ms, s, m or h ("90", "1.5s",
 * "5m"). */
static bool parse_seconds(const char *v, double *out)
{
    static const struct {
        const char *unit;
        double scale;
    } units[] = {{"", 1}, {"ms", 0.001}, {"s", 1}, {"m", 60}, {"h", 3600}};
    char *end;
    double d = strtod(v, &end);

    if (end == v || d < 0 || d != d)
        return false;
    for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++)
        if (!strcmp(end, units[i].unit)) {
            *out = d * units[i].scale;
            return true;
        }
    return false;
}

static bool parse_status(const char *v, int *out)
{
    for (int s = BL_LAG_WARN; s < BL_LAG_STATUS_COUNT; s++)
        if (!strcasecmp(v, bl_lag_status_name((bl_lag_status_t)s))) {
            *out = s;
            return true;
        }
    return false;
}

/* Sets a rule's @p key (status, lag, lag-seconds, for, rate-limit) to
 * @p v. @returns 0, 1 when @p key is not one, or -1 with why in @p why. */
static int rule_set(alert_rule_t *r, const char *key, const char *v, char *why, size_t size)
{
    if (!strcmp(key, "status")) {
        if (parse_status(v, &r->status))
            return 0;
        snprintf(why, size, "a status (WARN, REWIND, STALL, STOP or ERR), got \"%s\"", v);
        return -1;
    }
    if (!strcmp(key, "lag")) {
        if (bl_parse_int64(v, 0, INT64_MAX, &r->lag))
            return 0;
        snprintf(why, size, "a whole number of messages >= 0, got \"%s\"", v);
        return -1;
    }
    if (strcmp(key, "lag-seconds") && strcmp(key, "for") && strcmp(key, "rate-limit"))
        return 1;
    if (parse_seconds(v, !strcmp(key, "for")        ? &r->for_s
                         : !strcmp(key, "rate-limit") ? &r->rate_limit_s
                                                      : &r->lag_seconds))
        return 0;
    snprintf(why, size, "seconds >= 0 (90, 1.5s, 5m, 1h), got \"%s\"", v);
    return -1;
}

/* Adds @p url to the webhooks. @returns false when out of memory. */
static bool add_url(alert_conf_t *c, const char *url)
{
    const char **grown = realloc(c->urls, (c->nurls + 1) * sizeof(*grown));

    if (!grown)
        return false;
    c->urls = grown;
    c->urls[c->nurls++] = url;
    return true;
}

static int set_format(alert_conf_t *c, const char *v, const char *what)
{
    if (!strcmp(v, "json") || !strcmp(v, "slack")) {
        c->format = strcmp(v, "json") ? ALERT_SLACK : ALERT_JSON;
        return 0;
    }
    cli_error("%s needs json or slack, got \"%s\"", what, v);
    return EX_CONFIG;
}

static int set_webhook_seconds(double *out, const char *v, const char *what)
{
    if (parse_seconds(v, out) && *out >= 0.1 && *out <= 86400)
        return 0;
    cli_error("%s needs seconds from 0.1 to 86400 (90, 1.5s, 5m), got \"%s\"", what, v);
    return EX_CONFIG;
}

/* ---- the command line --------------------------------------------------- */

static const struct {
    const char *option, *key; /* --alert-KEY sets the default rule's KEY */
    unsigned bit;
} rule_options[] = {
    {"--alert-status", "status", SET_STATUS},   {"--alert-lag", "lag", SET_LAG},
    {"--alert-lag-seconds", "lag-seconds", SET_LAG_SECONDS},
    {"--alert-for", "for", SET_FOR},            {"--alert-rate-limit", "rate-limit", SET_RATE},
};

int alert_option(int argc, char **argv, int *i, bool *missing, alert_conf_t *c)
{
    const char *v;
    char why[200];

    if (*missing)
        return 0;
    for (size_t k = 0; k < sizeof(rule_options) / sizeof(rule_options[0]); k++) {
        if (!(v = cli_opt_value(argc, argv, i, rule_options[k].option, NULL, missing)))
            continue;
        c->any_option = true;
        c->set_by_cli |= rule_options[k].bit;
        if (rule_set(&c->deflt, rule_options[k].key, v, why, sizeof(why))) {
            cli_error("%s needs %s", rule_options[k].option, why);
            return EX_CONFIG;
        }
        return 1;
    }
    if (*missing)
        return 0;
    if ((v = cli_opt_value(argc, argv, i, "--webhook", NULL, missing))) {
        if (webhook_check_url(v, why, sizeof(why))) {
            cli_error("--webhook: %s", why);
            return EX_CONFIG;
        }
        return add_url(c, v) ? 1 : EX_SOFTWARE;
    }
    if (!*missing && (v = cli_opt_value(argc, argv, i, "--webhook-format", NULL, missing))) {
        c->set_by_cli |= SET_FORMAT;
        c->any_option = true;
        return set_format(c, v, "--webhook-format") ? EX_CONFIG : 1;
    }
    if (!*missing && (v = cli_opt_value(argc, argv, i, "--webhook-timeout", NULL, missing))) {
        c->set_by_cli |= SET_TIMEOUT;
        c->any_option = true;
        return set_webhook_seconds(&c->webhook.timeout_s, v, "--webhook-timeout") ? EX_CONFIG
                                                                                 : 1;
    }
    if (!*missing && (v = cli_opt_value(argc, argv, i, "--webhook-retry-for", NULL, missing))) {
        c->set_by_cli |= SET_RETRY;
        c->any_option = true;
        return set_webhook_seconds(&c->webhook.retry_for_s, v, "--webhook-retry-for")
                   ? EX_CONFIG
                   : 1;
    }
    return 0;
}

/* ---- the config file ------------------------------------------------------ */

typedef struct reading {
    alert_conf_t *c;
    int rc; /* the first error's exit code */
} reading_t;

/* The rule named @p name (created). NULL when out of memory. */
static alert_rule_t *named_rule(alert_conf_t *c, const char *name, size_t len)
{
    alert_rule_t *grown;

    for (size_t i = 0; i < c->nrules; i++)
        if (strlen(c->rules[i].name) == len && !strncmp(c->rules[i].name, name, len))
            return &c->rules[i];
    if (!(grown = realloc(c->rules, (c->nrules + 1) * sizeof(*grown))))
        return NULL;
    c->rules = grown;
    rule_init(&grown[c->nrules]);
    if (!(grown[c->nrules].name = strndup(name, len)))
        return NULL;
    return &grown[c->nrules++];
}

/* Sets a rule's @p re, whose text is *@p source (NULL: unset), to @p v. */
static int set_regex(regex_t *re, char **source, const char *key, const char *v)
{
    char why[256];
    int err;

    if (*source) {
        regfree(re);
        free(*source);
        *source = NULL;
    }
    if ((err = regcomp(re, v, REG_EXTENDED | REG_NOSUB))) {
        regerror(err, re, why, sizeof(why));
        cli_error("--config: %s: not a regular expression: \"%s\": %s", key, v, why);
        return EX_CONFIG;
    }
    if (!(*source = strdup(v))) {
        regfree(re);
        return EX_SOFTWARE;
    }
    return 0;
}

/* A lag.alert.* key: the default rule's (lag.alert.KEY) or a named rule's
 * (lag.alert.NAME.KEY). */
static int alert_key(alert_conf_t *c, const char *key, const char *v)
{
    const char *rest = key + strlen("lag.alert."), *dot = strrchr(rest, '.');
    alert_rule_t *r = &c->deflt;
    char why[200];
    int rc;

    if (dot) {
        if (dot == rest || !(r = named_rule(c, rest, (size_t)(dot - rest))))
            return dot == rest ? 1 : EX_SOFTWARE;
        rest = dot + 1;
        if (!strcmp(rest, "match"))
            return set_regex(&r->match, &r->match_source, key, v);
        if (!strcmp(rest, "cluster"))
            return set_regex(&r->cluster, &r->cluster_source, key, v);
    } else {
        for (size_t k = 0; k < sizeof(rule_options) / sizeof(rule_options[0]); k++)
            if (!strcmp(rest, rule_options[k].key) && (c->set_by_cli & rule_options[k].bit))
                return 0; /* the command line's wins */
    }
    if ((rc = rule_set(r, rest, v, why, sizeof(why))) < 0) {
        cli_error("--config: %s needs %s", key, why);
        return EX_CONFIG;
    }
    return rc;
}

/* A lag.webhook.* key. */
static int webhook_key(alert_conf_t *c, const char *key, const char *v)
{
    const char *rest = key + strlen("lag.webhook.");
    char why[200];

    if (!strcmp(rest, "url")) {
        char *save = NULL;
        free(c->config_urls);
        if (!(c->config_urls = strdup(v)))
            return EX_SOFTWARE;
        for (char *u = strtok_r(c->config_urls, " \t,", &save); u;
             u = strtok_r(NULL, " \t,", &save)) {
            if (webhook_check_url(u, why, sizeof(why))) {
                cli_error("--config: %s: %s", key, why);
                return EX_CONFIG;
            }
            if (!add_url(c, u))
                return EX_SOFTWARE;
        }
        return 0;
    }
    if (!strcmp(rest, "format"))
        return c->set_by_cli & SET_FORMAT ? 0 : set_format(c, v, key);
    if (!strcmp(rest, "timeout"))
        return c->set_by_cli & SET_TIMEOUT ? 0 : set_webhook_seconds(&c->webhook.timeout_s, v, key);
    if (!strcmp(rest, "retry-for"))
        return c->set_by_cli & SET_RETRY ? 0 : set_webhook_seconds(&c->webhook.retry_for_s, v, key);
    return 1;
}

static void take_key(const char *key, const char *value, void *opaque)
{
    reading_t *rd = opaque;
    int rc = 1;

    if (rd->rc || !strncmp(key, "lag.cluster.", 12)) /* lag_clusters.c's */
        return;
    if (!strncmp(key, "lag.alert.", 10))
        rc = alert_key(rd->c, key, value);
    else if (!strncmp(key, "lag.webhook.", 12))
        rc = webhook_key(rd->c, key, value);
    if (rc == 1)
        cli_error("--config: %s: unknown key (lag.webhook.url, .format, .timeout, "
                  ".retry-for; lag.alert.status, .lag, .lag-seconds, .for, .rate-limit; "
                  "lag.alert.NAME.match, lag.alert.NAME.cluster and the same keys)", key);
    if (rc == EX_SOFTWARE)
        cli_error("out of memory");
    rd->rc = rc == 1 ? EX_CONFIG : rc;
}

static int rule_cmp(const void *a, const void *b)
{
    return strcmp(((const alert_rule_t *)a)->name, ((const alert_rule_t *)b)->name);
}

/* Fills what @p r left unset from the default rule. */
static void rule_complete(alert_rule_t *r, const alert_rule_t *deflt)
{
    if (r->status < 0 && r->lag < 0 && r->lag_seconds < 0)
        r->status = BL_LAG_WARN;
    if (r->for_s < 0)
        r->for_s = deflt->for_s;
    if (r->rate_limit_s < 0)
        r->rate_limit_s = deflt->rate_limit_s;
}

int alert_conf_finish(alert_conf_t *c)
{
    reading_t rd = {c, 0};

    cli_config_each("lag.", take_key, &rd);
    if (rd.rc)
        return rd.rc;
    if (!(c->deflt.name = strdup("default")))
        return EX_SOFTWARE;
    if (c->deflt.for_s < 0)
        c->deflt.for_s = 60;
    if (c->deflt.rate_limit_s < 0)
        c->deflt.rate_limit_s = 300;
    rule_complete(&c->deflt, &c->deflt);
    for (size_t i = 0; i < c->nrules; i++) {
        if (!c->rules[i].match_source) {
            cli_error("--config: lag.alert.%s.match is missing: a rule needs the groups it is "
                      "for (a regular expression)", c->rules[i].name);
            return EX_CONFIG;
        }
        rule_complete(&c->rules[i], &c->deflt);
    }
    if (c->nrules)
        qsort(c->rules, c->nrules, sizeof(*c->rules), rule_cmp);
    if (!c->nurls && (c->any_option || c->nrules)) {
        cli_error("alert rules need somewhere to send to: --webhook URL (or lag.webhook.url)");
        return EX_CONFIG;
    }
    return 0;
}
