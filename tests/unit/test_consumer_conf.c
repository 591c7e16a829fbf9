/* test_consumer_conf.c - the librdkafka configuration ballast builds for its
 * consumer (src/clients.c, bl_consumer_conf_new): the assignor it picks under
 * each group protocol, and that the user's kafka.* keys override it. No
 * network: no client made here is given a broker. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "clients.h"

#include <stdio.h>
#include <string.h>

/* The consumer configuration for the "key=value" settings of @p kv (NULL
 * ended), or a failed test. */
static rd_kafka_conf_t *consumer_conf(const char *const *kv)
{
    ballast_conf_t *conf = ballast_conf_new();
    rd_kafka_conf_t *rkconf = NULL;
    ballast_error_t *err;

    for (; *kv; kv++) {
        char key[128];
        const char *eq = strchr(*kv, '=');
        assert_non_null(eq);
        snprintf(key, sizeof(key), "%.*s", (int)(eq - *kv), *kv);
        if ((err = ballast_conf_set(conf, key, eq + 1)))
            fail_msg("%s: %s", *kv, ballast_error_message(err));
    }
    if ((err = bl_consumer_conf_new(conf, &rkconf)))
        fail_msg("bl_consumer_conf_new: %s", ballast_error_message(err));
    ballast_conf_destroy(conf);
    return rkconf;
}

static void assert_strategy(rd_kafka_conf_t *rkconf, const char *want)
{
    char got[128];
    size_t len = sizeof(got);

    assert_int_equal(rd_kafka_conf_get(rkconf, "partition.assignment.strategy", got, &len),
                     RD_KAFKA_CONF_OK);
    assert_string_equal(got, want);
}

static void test_classic_defaults_to_cooperative_sticky(void **state)
{
    const char *const unset[] = {"kafka.group.id=g", NULL};
    const char *const classic[] = {"kafka.group.id=g", "kafka.group.protocol=classic", NULL};
    rd_kafka_conf_t *rkconf;

    (void)state;
    assert_strategy(rkconf = consumer_conf(unset), "cooperative-sticky");
    rd_kafka_conf_destroy(rkconf);
    assert_strategy(rkconf = consumer_conf(classic), "cooperative-sticky");
    rd_kafka_conf_destroy(rkconf);
}

static void test_users_assignor_wins(void **state)
{
    const char *const eager[] = {"kafka.group.id=g",
                                 "kafka.partition.assignment.strategy=range,roundrobin", NULL};
    rd_kafka_conf_t *rkconf = consumer_conf(eager);

    (void)state;
    assert_strategy(rkconf, "range,roundrobin");
    rd_kafka_conf_destroy(rkconf);
}

static void quiet(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

/* librdkafka refuses partition.assignment.strategy once it is set at all
 * under the consumer protocol, so the consumer must still be made. */
static void test_consumer_protocol_sets_no_assignor(void **state)
{
    const char *const kv[] = {"kafka.group.id=g", "kafka.group.protocol=consumer", NULL};
    rd_kafka_conf_t *rkconf = consumer_conf(kv);
    char errstr[512];
    rd_kafka_t *rk;

    (void)state;
    assert_strategy(rkconf, "range,roundrobin"); /* librdkafka's own default */
    rd_kafka_conf_set_log_cb(rkconf, quiet); /* its cgrp debug lines */
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, rkconf, errstr, sizeof(errstr));
    if (!rk)
        fail_msg("the consumer-protocol consumer was refused: %s", errstr);
    rd_kafka_destroy(rk);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_classic_defaults_to_cooperative_sticky),
        cmocka_unit_test(test_users_assignor_wins),
        cmocka_unit_test(test_consumer_protocol_sets_no_assignor),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
