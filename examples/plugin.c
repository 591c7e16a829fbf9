/*
 * plugin.c - an example handler plugin (`handler = plugin`): counts
 * messages and fails permanently on values equal to "poison".
 *
 * Build: cc -shared -fPIC -o example_plugin.so plugin.c $(pkg-config --cflags ballast)
 */
#include <ballast/ballast.h>

#include <stdlib.h>
#include <string.h>

typedef struct counter {
    unsigned long seen;
} counter_t;

static int counter_init(void **statep, const ballast_handler_params_t *params,
                        char *errbuf, size_t errsize)
{
    (void)params;
    (void)errbuf;
    (void)errsize;
    *statep = calloc(1, sizeof(counter_t));
    return *statep ? 0 : BALLAST_ERR_INTERNAL;
}

static ballast_outcome_t counter_handle(void *state, const ballast_message_t *msg,
                                        ballast_result_t *res)
{
    counter_t *c = state;
    size_t len;
    const void *value = ballast_message_value(msg, &len);

    c->seen++;
    if (value && len == 6 && !memcmp(value, "poison", 6)) {
        ballast_result_set_error(res, "poison value");
        return BALLAST_OUTCOME_FAIL;
    }
    return BALLAST_OUTCOME_OK;
}

static void counter_destroy(void *state)
{
    free(state);
}

static const ballast_handler_t handler = {
    BALLAST_HANDLER_ABI_VERSION, "example-counter", counter_init,
    counter_handle, NULL, counter_destroy};

__attribute__((visibility("default"))) const ballast_handler_t *
ballast_plugin_handler(void)
{
    return &handler;
}
