/*
 * test_mock_startup.c - start-up's topic check on librdkafka's mock cluster,
 * which creates a topic that a metadata request names when the request
 * allows it (the test broker never creates one, so only here can the check
 * be caught creating what it should find missing). Every topic the
 * configuration needs that the cluster lacks refuses start-up with a
 * configuration error naming its key, also when the consumer is allowed to
 * create topics; a configuration of patterns only starts.
 */
#include "support.h"

#include <stdio.h>
#include <string.h>

#define IN "mock-start-in"

typedef struct refusal {
    const char *key, *value; /* set on top of topics = IN */
    const char *missing;     /* the topic the error must name */
} refusal_t;

static const refusal_t refusals[] = {
    {"topics", "mock-start-gone", "mock-start-gone"},
    {"topics", IN ",mock-start-gone2", "mock-start-gone2"},
    {"output.topic", "mock-start-out", "mock-start-out"},
    {"dlq.topic", "mock-start-dlq", "mock-start-dlq"},
    {"retry.topics", "mock-start-retry:1000", "mock-start-retry"},
};

/* Starts a consumer of IN with @p r's key set (and @p create as
 * kafka.allow.auto.create.topics), which must be refused for r->missing. */
static void expect_refused(bt_mock_t *m, const refusal_t *r, const char *create)
{
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf = bt_conf_recording(m->bootstrap, bt_unique("mock-start-g"), IN, rec);
    ballast_consumer_t *cons = NULL;
    ballast_error_t *err;
    char want[256];

    bt_set(conf, r->key, r->value);
    bt_set(conf, "startup.timeout.ms", "10000");
    if (create)
        bt_set(conf, "kafka.allow.auto.create.topics", create);
    err = ballast_consumer_new(conf, &cons);
    if (!err) {
        ballast_consumer_destroy(cons);
        fail_msg("%s = %s (allow.auto.create.topics %s): started although the cluster "
                 "has no topic %s", r->key, r->value, create ? create : "unset",
                 r->missing);
    }
    snprintf(want, sizeof(want), "%s: topic \"%s\" does not exist on the cluster", r->key,
             r->missing);
    if (ballast_error_code(err) != BALLAST_ERR_CONFIG || !strstr(ballast_error_message(err), want))
        fail_msg("%s = %s: [%d] %s; expected [%d] ...%s", r->key, r->value,
                 (int)ballast_error_code(err), ballast_error_message(err),
                 (int)BALLAST_ERR_CONFIG, want);
    assert_null(cons);
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
}

static void test_missing_topics_refuse_startup(void **state)
{
    (void)state;
    bt_mock_t m;

    bt_mock_start(&m, IN, 1);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        expect_refused(&m, &refusals[i], NULL);
    bt_mock_stop(&m);
}

/* A request naming a missing topic would create it here: the check must
 * not ask so, and the topic stays missing (a second start is refused as
 * well). */
static void test_allowed_auto_create_still_refuses(void **state)
{
    (void)state;
    bt_mock_t m;

    bt_mock_start(&m, IN, 1);
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        expect_refused(&m, &refusals[i], "true");
        expect_refused(&m, &refusals[i], "true");
    }
    bt_mock_stop(&m);
}

/* Patterns only: no topic to ask about, but the cluster must answer. */
static void test_patterns_only_start(void **state)
{
    (void)state;
    bt_mock_t m;
    bt_recorder_t *rec = bt_recorder_new();
    ballast_conf_t *conf;
    ballast_consumer_t *cons = NULL;
    ballast_error_t *err;

    bt_mock_start(&m, IN, 1);
    conf = bt_conf_recording(m.bootstrap, bt_unique("mock-start-g"), "^mock-start-.*", rec);
    bt_set(conf, "startup.timeout.ms", "10000");
    err = ballast_consumer_new(conf, &cons);
    if (err)
        fail_msg("patterns only: [%d] %s", (int)ballast_error_code(err),
                 ballast_error_message(err));
    ballast_consumer_destroy(cons);
    ballast_conf_destroy(conf);
    bt_recorder_free(rec);
    bt_mock_stop(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_missing_topics_refuse_startup),
        cmocka_unit_test(test_allowed_auto_create_still_refuses),
        cmocka_unit_test(test_patterns_only_start),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
