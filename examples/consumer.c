/*
 * consumer.c - a complete program using libballast: counts orders per
 * customer, with blocking retries for transient failures and graceful
 * shutdown on SIGINT/SIGTERM.
 *
 * Build:  cc -o consumer consumer.c $(pkg-config --cflags --libs ballast)
 * Run:    ./consumer BOOTSTRAP GROUP TOPIC
 */
#include <ballast/ballast.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>

static ballast_consumer_t *volatile consumer;

static void on_signal(int sig)
{
    (void)sig;
    if (consumer)
        ballast_consumer_stop(consumer); /* async-signal-safe */
}

/* One state per worker: with concurrency = 1 there is one. */
typedef struct tally {
    unsigned long messages, bytes;
} tally_t;

static int tally_init(void **statep, const ballast_handler_params_t *params,
                      char *errbuf, size_t errsize)
{
    static tally_t tallies[64];

    if (params->worker >= 64) {
        snprintf(errbuf, errsize, "at most 64 workers in this example");
        return BALLAST_ERR_CONFIG;
    }
    *statep = &tallies[params->worker];
    return 0;
}

static ballast_outcome_t tally_handle(void *state, const ballast_message_t *msg,
                                      ballast_result_t *res)
{
    tally_t *t = state;
    size_t len;
    const void *value = ballast_message_value(msg, &len);

    if (!value) {
        /* A tombstone is not an order: a permanent failure. With dlq.topic
         * set it is dead-lettered; without, the consumer stops. */
        ballast_result_set_error(res, "tombstone where an order was expected");
        return BALLAST_OUTCOME_FAIL;
    }
    t->messages++;
    t->bytes += len;
    printf("%s [%d] @%lld: %.*s\n", ballast_message_topic(msg),
           (int)ballast_message_partition(msg),
           (long long)ballast_message_offset(msg), (int)(len > 60 ? 60 : len),
           (const char *)value);
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t tally_handler = {
    BALLAST_HANDLER_ABI_VERSION, "tally", tally_init, tally_handle, NULL, NULL};

static int fail(ballast_error_t *err)
{
    fprintf(stderr, "consumer: %s\n", ballast_error_message(err));
    ballast_error_destroy(err);
    return 1;
}

int main(int argc, char **argv)
{
    const char *keys[][2] = {{"kafka.bootstrap.servers", argc > 1 ? argv[1] : ""},
                             {"kafka.group.id", argc > 2 ? argv[2] : ""},
                             {"topics", argc > 3 ? argv[3] : ""},
                             {"retry.max.attempts", "5"}};
    ballast_conf_t *conf;
    ballast_consumer_t *cons;
    ballast_error_t *err;

    if (argc != 4) {
        fprintf(stderr, "usage: %s BOOTSTRAP GROUP TOPIC\n", argv[0]);
        return 64;
    }
    conf = ballast_conf_new();
    for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++)
        if ((err = ballast_conf_set(conf, keys[i][0], keys[i][1])))
            return fail(err);
    ballast_conf_set_handler(conf, &tally_handler, NULL);
    err = ballast_consumer_new(conf, &cons);
    ballast_conf_destroy(conf); /* the consumer keeps its own copy */
    if (err)
        return fail(err);
    consumer = cons;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    err = ballast_consumer_run(cons); /* returns after a stop, drained and committed */
    consumer = NULL;
    ballast_consumer_destroy(cons);
    return err ? fail(err) : 0;
}
