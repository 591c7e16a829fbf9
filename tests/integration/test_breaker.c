/*
 * test_breaker.c - a tripped DLQ breaker commits nothing at or after the
 * message that tripped it, in every delivery mode and both processing
 * modes. Messages at offsets 10-14 fail permanently; with
 * dlq.max.consecutive = 2, offsets 10 and 11 are dead-lettered and 12
 * trips the breaker. Then:
 *   - the committed offset (the group's, or ballast_offsets' under
 *     exactly-once into a database) is at most 12;
 *   - the DLQ holds nothing at or past offset 12;
 *   - after a restart with the breaker off, offset 12 and the rest come
 *     back: the DLQ then holds 12, 13 and 14, and under exactly-once into
 *     PostgreSQL every other offset is a row, exactly once.
 */
#include "support.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define COUNT 30
#define FIRST_BAD 10
#define LAST_BAD 14
#define TRIP 12

/* Fails offsets FIRST_BAD..LAST_BAD; emits nothing. */
static ballast_outcome_t failing_handle(void *state, const ballast_message_t *msg,
                                        ballast_result_t *res)
{
    int64_t off = ballast_message_offset(msg);

    (void)state;
    if (off >= FIRST_BAD && off <= LAST_BAD) {
        ballast_result_set_error(res, "bad value");
        return BALLAST_OUTCOME_FAIL;
    }
    return BALLAST_OUTCOME_OK;
}

static const ballast_handler_t failing = {BALLAST_HANDLER_ABI_VERSION, "failing", NULL,
                                          failing_handle, NULL, NULL};

typedef struct mode {
    const char *semantics, *processing;
    bool postgres;
} mode_t_;

typedef struct scenario {
    const char *bs, *topic, *dlq, *group;
    char table[96];
    mode_t_ mode;
} scenario_t;

static ballast_conf_t *make_conf(const scenario_t *s, const char *consecutive)
{
    ballast_conf_t *conf = bt_conf_recording(s->bs, s->group, s->topic, NULL);
    char sql[256];

    if (s->mode.postgres) {
        snprintf(sql, sizeof(sql),
                 "INSERT INTO %s(off, v) VALUES (:offset::bigint, CAST(CASE WHEN :offset::bigint BETWEEN %d "
                 "AND %d THEN 'bad' ELSE :value END AS integer))",
                 s->table, FIRST_BAD, LAST_BAD);
        ballast_conf_set_handler(conf, NULL, NULL);
        bt_set(conf, "handler", "postgres");
        bt_set(conf, "handler.postgres.dsn", bt_pg());
        bt_set(conf, "handler.postgres.sql", sql);
    } else {
        ballast_conf_set_handler(conf, &failing, NULL);
    }
    bt_set(conf, "semantics", s->mode.semantics);
    bt_set(conf, "processing", s->mode.processing);
    bt_set(conf, "batch.max.messages", "8");
    bt_set(conf, "batch.max.ms", "50");
    bt_set(conf, "dlq.topic", s->dlq);
    bt_set(conf, "dlq.max.consecutive", consecutive);
    return conf;
}

/* The committed next offset: ballast_offsets' under exactly-once into a
 * database (Kafka's is advisory there), else the group's. */
static int64_t committed(const scenario_t *s)
{
    int64_t off;
    char sql[512];

    if (s->mode.postgres && !strcmp(s->mode.semantics, "exactly-once")) {
        snprintf(sql, sizeof(sql),
                 "SELECT next_offset FROM ballast_offsets WHERE group_id = '%s' AND "
                 "topic = '%s' AND partition = 0",
                 s->group, s->topic);
        return bt_pg_long(sql);
    }
    bt_committed(s->bs, s->group, s->topic, 1, &off);
    return off;
}

static bool breaker_open(void *cons)
{
    char reason[512];
    return !ballast_consumer_healthy(cons, reason, sizeof(reason)) &&
           strstr(reason, "breaker");
}

static bool all_committed(void *arg)
{
    return committed(arg) == COUNT;
}

/* The x-original-offset of every record in the DLQ (read_committed), as
 * a count per offset. */
static void dlq_offsets(const scenario_t *s, int *count)
{
    rd_kafka_conf_t *kc = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;
    rd_kafka_topic_partition_list_t *tp = rd_kafka_topic_partition_list_new(1);
    int64_t deadline = bt_now_ms() + 30000;

    memset(count, 0, sizeof(int) * COUNT);
    rd_kafka_conf_set(kc, "bootstrap.servers", s->bs, NULL, 0);
    rd_kafka_conf_set(kc, "isolation.level", "read_committed", NULL, 0);
    rd_kafka_conf_set(kc, "enable.partition.eof", "true", NULL, 0);
    rd_kafka_conf_set(kc, "group.id", bt_unique("dlq-reader"), NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, kc, errstr, sizeof(errstr));
    assert_non_null(rk);
    rd_kafka_topic_partition_list_add(tp, s->dlq, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    assert_int_equal(rd_kafka_assign(rk, tp), 0);
    for (;;) {
        if (bt_now_ms() > deadline)
            fail_msg("the DLQ %s was not read to its end within 30 s", s->dlq);
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 200);
        rd_kafka_headers_t *h;
        const void *v;
        size_t len;
        char buf[32];
        if (!m)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            rd_kafka_message_destroy(m);
            break;
        }
        assert_int_equal(m->err, 0);
        assert_int_equal(rd_kafka_message_headers(m, &h), 0);
        assert_int_equal(rd_kafka_header_get_last(h, "x-original-offset", &v, &len), 0);
        snprintf(buf, sizeof(buf), "%.*s", (int)len, (const char *)v);
        assert_true(atoi(buf) >= 0 && atoi(buf) < COUNT);
        count[atoi(buf)]++;
        rd_kafka_message_destroy(m);
    }
    rd_kafka_topic_partition_list_destroy(tp);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
}

static void run_mode(const char *semantics, const char *processing, bool postgres)
{
    scenario_t s = {bt_bootstrap(), bt_unique("brk"), bt_unique("brk-dlq"),
                    bt_unique("brk-g"), "", {semantics, processing, postgres}};
    ballast_conf_t *conf;
    bt_runner_t *run;
    ballast_error_t *err;
    int dead[COUNT];
    int64_t off;
    char sql[256];

    BT_REQUIRE_ENV();
    snprintf(s.table, sizeof(s.table), "brk_%d_%lld", (int)getpid(),
             (long long)(bt_now_ms() % 100000000));
    if (postgres) {
        snprintf(sql, sizeof(sql), "CREATE TABLE %s (off bigint, v integer)", s.table);
        bt_pg_exec(sql);
    }
    bt_create_topic(s.bs, s.topic, 1);
    bt_create_topic(s.bs, s.dlq, 1);
    bt_produce_seq(s.bs, s.topic, 1, 0, COUNT, 0);

    /* First run: the breaker trips at offset 12. */
    conf = make_conf(&s, "2");
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    if (!bt_wait_for(breaker_open, bt_runner_consumer(run), 60000))
        fail_msg("%s/%s: the breaker did not trip", semantics, processing);
    err = bt_runner_stop(run);
    assert_non_null(err);
    assert_non_null(strstr(ballast_error_message(err), "breaker"));
    ballast_error_destroy(err);
    off = committed(&s);
    print_message("%s/%s%s: committed %lld after the breaker tripped\n", semantics,
                  processing, postgres ? " (postgres)" : "", (long long)off);
    if (off > TRIP)
        fail_msg("%s/%s: committed offset %lld is past offset %d, which tripped the "
                 "breaker and is in neither the sink nor the DLQ",
                 semantics, processing, (long long)off, TRIP);
    dlq_offsets(&s, dead);
    for (int i = TRIP; i < COUNT; i++)
        if (dead[i])
            fail_msg("offset %d is in the DLQ although the breaker tripped at %d", i, TRIP);

    /* Second run, breaker off: what the breaker held back comes back. */
    conf = make_conf(&s, "0");
    run = bt_runner_start(conf);
    ballast_conf_destroy(conf);
    if (!bt_wait_for(all_committed, &s, 60000))
        fail_msg("%s/%s: second run did not commit to the end (at %lld)", semantics,
                 processing, (long long)committed(&s));
    assert_null(bt_runner_stop(run));
    dlq_offsets(&s, dead);
    for (int i = FIRST_BAD; i <= LAST_BAD; i++)
        if (!dead[i])
            fail_msg("offset %d was never dead-lettered: lost", i);
    if (postgres && !strcmp(semantics, "exactly-once")) {
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM %s", s.table);
        assert_int_equal(bt_pg_long(sql), COUNT - (LAST_BAD - FIRST_BAD + 1));
        snprintf(sql, sizeof(sql), "SELECT count(DISTINCT off) FROM %s", s.table);
        assert_int_equal(bt_pg_long(sql), COUNT - (LAST_BAD - FIRST_BAD + 1));
    }
}

static void test_alo_message(void **state)
{
    (void)state;
    run_mode("at-least-once", "message", false);
}

static void test_alo_batch(void **state)
{
    (void)state;
    run_mode("at-least-once", "batch", false);
}

static void test_kafka_eos_message(void **state)
{
    (void)state;
    run_mode("exactly-once", "message", false);
}

static void test_kafka_eos_batch(void **state)
{
    (void)state;
    run_mode("exactly-once", "batch", false);
}

static void test_db_eos_message(void **state)
{
    (void)state;
    run_mode("exactly-once", "message", true);
}

static void test_db_eos_batch(void **state)
{
    (void)state;
    run_mode("exactly-once", "batch", true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_alo_message),       cmocka_unit_test(test_alo_batch),
        cmocka_unit_test(test_kafka_eos_message), cmocka_unit_test(test_kafka_eos_batch),
        cmocka_unit_test(test_db_eos_message),    cmocka_unit_test(test_db_eos_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
