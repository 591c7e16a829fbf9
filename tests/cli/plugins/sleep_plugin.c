/*
 * sleep_plugin.c - a handler plugin for tests of the health endpoint:
 * messages whose value is "sleep" take `handler.plugin.param.sleep_ms`
 * (default 3000) to handle - a handler stuck past `handler.timeout.ms` -
 * and every other message succeeds at once.
 */
#include <ballast/ballast.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

static int sleep_init(void **statep, const ballast_handler_params_t *params,
                      char *errbuf, size_t errsize)
{
    const char *v = ballast_conf_get(params->conf, "handler.plugin.param.sleep_ms");
    long *ms = malloc(sizeof(*ms));

    (void)errbuf;
    (void)errsize;
    if (!ms)
        return BALLAST_ERR_INTERNAL;
    *ms = v ? strtol(v, NULL, 10) : 3000;
    *statep = ms;
    return 0;
}

static ballast_outcome_t sleep_handle(void *state, const ballast_message_t *msg,
                                      ballast_result_t *res)
{
    size_t len;
    const void *value = ballast_message_value(msg, &len);
    long ms = *(long *)state;

    (void)res;
    if (value && len == 5 && !memcmp(value, "sleep", 5)) {
        struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
        while (nanosleep(&ts, &ts))
            ;
    }
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t handler = {BALLAST_HANDLER_ABI_VERSION, "test-sleep",
                                          sleep_init, sleep_handle, NULL, free};

__attribute__((visibility("default"))) const ballast_handler_t *
ballast_plugin_handler(void)
{
    return &handler;
}
