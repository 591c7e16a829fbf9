/*
 * sleep_plugin.c - a handler plugin for tests of the HTTP endpoints:
 * messages whose value is "sleep" take `handler.plugin.param.sleep_ms`
 * (default 3000) to handle - a handler stuck past `handler.timeout.ms` -
 * and every other message takes `handler.plugin.param.each_ms` (default 0),
 * so that a backlog keeps the pipeline busy for a while.
 */
#include <ballast/ballast.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct sleep_state {
    long sleep_ms, each_ms;
} sleep_state_t;

static long param_ms(const ballast_handler_params_t *params, const char *key, long def)
{
    const char *v = ballast_conf_get(params->conf, key);
    return v ? strtol(v, NULL, 10) : def;
}

static int sleep_init(void **statep, const ballast_handler_params_t *params,
                      char *errbuf, size_t errsize)
{
    sleep_state_t *st = malloc(sizeof(*st));

    (void)errbuf;
    (void)errsize;
    if (!st)
        return BALLAST_ERR_INTERNAL;
    st->sleep_ms = param_ms(params, "handler.plugin.param.sleep_ms", 3000);
    st->each_ms = param_ms(params, "handler.plugin.param.each_ms", 0);
    *statep = st;
    return 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts))
        ;
}

static ballast_outcome_t sleep_handle(void *state, const ballast_message_t *msg,
                                      ballast_result_t *res)
{
    const sleep_state_t *st = state;
    size_t len;
    const void *value = ballast_message_value(msg, &len);

    (void)res;
    if (value && len == 5 && !memcmp(value, "sleep", 5))
        sleep_ms(st->sleep_ms);
    else if (st->each_ms > 0)
        sleep_ms(st->each_ms);
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t handler = {BALLAST_HANDLER_ABI_VERSION, "test-sleep",
                                          sleep_init, sleep_handle, NULL, free};

__attribute__((visibility("default"))) const ballast_handler_t *
ballast_plugin_handler(void)
{
    return &handler;
}
