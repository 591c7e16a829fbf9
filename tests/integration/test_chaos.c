/*
 * test_chaos.c - the chaos driver and history checker.
 *
 * Three `ballast run` instances in one group copy a topic while a producer
 * keeps writing sequenced messages, in one of three modes: handler =
 * forward at-least-once, forward exactly-once (Kafka transactions), or
 * handler = postgres exactly-once (offsets in the database) into a table
 * with no unique constraint. At random the driver kill -9's an instance,
 * SIGTERMs one, SIGSTOPs one for longer than the session timeout, or
 * hard-restarts the broker; in the postgres mode also stops PostgreSQL in
 * immediate mode. A killed or stopped instance is started again. Then the
 * input stops, the group drains, and the checker reads the whole output
 * history (the topic read_committed, or the table in insertion order) and
 * reports:
 *   - loss: an input sequence number with no output record;
 *   - duplicates: more than one output record for an input (an error in
 *     exactly-once mode, counted in at-least-once mode);
 *   - order: per key, output sequence numbers must not go backwards except
 *     where a redelivery restarts (at-least-once) - never in exactly-once;
 *   - commits beyond what was processed: every input offset below the
 *     group's committed offset must have its output record (checked as
 *     no loss once the group has committed everything); in the postgres
 *     mode also ballast_offsets must sum to exactly what was produced.
 * Each output record carries its origin: forward copies the key and the
 * value, and the value is the input's sequence number; the postgres rows
 * keep the key and the value, in an identity column's order.
 *
 * The group uses the default (eager) assignor: librdkafka 2.0.2's
 * cooperative-sticky assignor can abort on an assertion when a member
 * closes during a rebalance (rdkafka_sticky_assignor.c:1896), which the
 * chaos here provokes; see docs/design.md.
 *
 * CHAOS_SECONDS sets how long faults are injected per mode (default 45: the
 * short form `make test` runs); `make chaos` runs the long form.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 4
#define KEYS 64
#define INSTANCES 3

typedef enum chaos_mode { AT_LEAST_ONCE, EXACTLY_ONCE, POSTGRES } chaos_mode_t;

static const char *const mode_names[] = {"at-least-once", "exactly-once", "postgres"};

typedef struct chaos {
    chaos_mode_t mode;
    const char *bs, *in, *out, *group; /* out: a topic, or (POSTGRES) table */
    char table[160];
    char conf[INSTANCES][300], err[INSTANCES][256];
    pid_t pid[INSTANCES];
    int produced;
    int faults[5]; /* kill9, term, stop, broker, postgres */
} chaos_t;

static void start(chaos_t *c, int i)
{
    const char *const argv[] = {"ballast", "run", c->conf[i], NULL};
    c->pid[i] = bt_spawn_ballast(argv, c->err[i]);
}

/* restart-kafka or restart-pg, --hard. */
static void testenv_restart(const char *what)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/testenv' restart-%s --hard >/dev/null",
             BALLAST_SRC_DIR, what);
    assert_int_equal(system(cmd), 0);
}

/* One random fault, then the victim comes back. */
static void inject(chaos_t *c)
{
    int i = rand() % INSTANCES, what = rand() % (c->mode == POSTGRES ? 11 : 10);

    if (what < 4) { /* kill -9 */
        kill(c->pid[i], SIGKILL);
        bt_wait(c->pid[i], 10000);
        start(c, i);
        c->faults[0]++;
    } else if (what < 7) { /* graceful stop and restart */
        bt_term(c->pid[i]);
        if (bt_wait(c->pid[i], 60000) != 0)
            fail_msg("instance %d did not stop cleanly: %s", i, bt_read_file(c->err[i]));
        start(c, i);
        c->faults[1]++;
    } else if (what < 9) { /* a pause longer than the session timeout */
        kill(c->pid[i], SIGSTOP);
        usleep((useconds_t)(2000 + rand() % 6000) * 1000);
        kill(c->pid[i], SIGCONT);
        c->faults[2]++;
    } else if (what < 10) {
        testenv_restart("kafka");
        c->faults[3]++;
    } else {
        testenv_restart("pg");
        c->faults[4]++;
    }
}

/* The output history, in the order it was written. */
static bt_record_t *read_history(const chaos_t *c, size_t *n)
{
    char sql[256];

    if (c->mode != POSTGRES)
        return bt_consume_to_end(c->bs, c->out, 300000, n);
    snprintf(sql, sizeof(sql), "SELECT k, v::text FROM %s ORDER BY id", c->out);
    return bt_pg_records(sql, n);
}

/* The history checker. @returns the number of duplicates. */
static long check_history(chaos_t *c)
{
    bool exactly_once = c->mode != AT_LEAST_ONCE;
    size_t n;
    bt_record_t *recs = read_history(c, &n);
    int *count = calloc((size_t)c->produced, sizeof(int));
    long *last = malloc(KEYS * sizeof(long));
    long dups = 0, lost = 0, reorders = 0;

    assert_non_null(count);
    assert_non_null(last);
    for (int k = 0; k < KEYS; k++)
        last[k] = -1;
    for (size_t i = 0; i < n; i++) {
        long v = strtol(recs[i].value, NULL, 10), k = strtol(recs[i].key + 1, NULL, 10);
        if (v < 0 || v >= c->produced || k < 0 || k >= KEYS)
            fail_msg("output record %zu has no valid origin: %s", i, recs[i].value);
        if (count[v]++)
            dups++;
        else if (v < last[k])
            reorders++; /* a first delivery older than one already seen */
        if (v > last[k])
            last[k] = v;
    }
    for (int v = 0; v < c->produced; v++)
        lost += count[v] == 0;
    print_message("chaos (%s): %d produced, %zu output records, %ld lost, %ld duplicates, "
                  "%ld out of order; faults: %d kill -9, %d SIGTERM, %d SIGSTOP, %d broker "
                  "restarts, %d PostgreSQL restarts\n",
                  mode_names[c->mode], c->produced, n, lost, dups, reorders, c->faults[0],
                  c->faults[1], c->faults[2], c->faults[3], c->faults[4]);
    assert_int_equal(lost, 0);
    assert_int_equal(reorders, 0);
    if (exactly_once)
        assert_int_equal(dups, 0);
    free(count);
    free(last);
    bt_records_free(recs, n);
    return dups;
}

/* CHAOS_MODES (a comma list of at-least-once, exactly-once, postgres;
 * default all) lets the long form run the modes as separate processes. */
static bool mode_wanted(chaos_mode_t mode)
{
    const char *modes = getenv("CHAOS_MODES"), *name = mode_names[mode];
    size_t n = strlen(name);

    for (const char *p = modes; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
            return true;
    return !modes || !*modes;
}

/* What each mode adds to the instances' common configuration. */
static void mode_conf(const chaos_t *c, int i, char *buf, size_t size)
{
    if (c->mode == POSTGRES)
        snprintf(buf, size,
                 "handler = postgres\n"
                 "handler.postgres.dsn = %s\n"
                 "handler.postgres.sql = INSERT INTO %s (k, v) VALUES (:key, :value::bigint)\n"
                 "semantics = exactly-once\n"
                 "processing = batch\n"
                 "batch.max.messages = 500\n"
                 "batch.max.ms = 50\n"
                 "ordering = partition\n"
                 "concurrency = 2\n"
                 "retry.backoff.max.ms = 500\n",
                 bt_pg(), c->out);
    else
        /* Instances on one host need transactional ids of their own. */
        snprintf(buf, size,
                 "handler = forward\n"
                 "output.topic = %s\n"
                 "ordering = key\n"
                 "concurrency = 4\n"
                 "%s%s-%d\n"
                 "semantics = %s\n",
                 c->out, c->mode == EXACTLY_ONCE ? "kafka.transactional.id = " : "# ",
                 c->group, i, c->mode == EXACTLY_ONCE ? "exactly-once" : "at-least-once");
}

/* The output: a topic, or a table with no unique constraint (an identity
 * column keeps the insertion order). */
static void make_output(chaos_t *c)
{
    char sql[256];

    if (c->mode != POSTGRES) {
        c->out = bt_unique("chaos-out");
        bt_create_topic(c->bs, c->out, PARTS);
        return;
    }
    snprintf(c->table, sizeof(c->table), "%s", bt_unique("chaos_rows"));
    for (char *p = c->table; *p; p++)
        if (*p == '-')
            *p = '_';
    c->out = c->table;
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY, k text, v bigint)",
             c->out);
    bt_pg_exec(sql);
}

/* In the postgres mode the database's offsets must cover exactly what was
 * produced: no batch committed twice, none skipped. */
static void check_db_offsets(const chaos_t *c)
{
    char sql[256];

    if (c->mode != POSTGRES)
        return;
    snprintf(sql, sizeof(sql),
             "SELECT sum(next_offset) FROM ballast_offsets WHERE group_id = '%s'", c->group);
    assert_int_equal(bt_pg_long(sql), c->produced);
}

static void run_chaos(chaos_mode_t mode)
{
    if (!mode_wanted(mode))
        skip();
    BT_REQUIRE_ENV();
    const char *env = getenv("CHAOS_SECONDS");
    int seconds = env ? (int)strtol(env, NULL, 10) : 45;
    chaos_t c = {.mode = mode};
    const char *dir = bt_tmpdir();
    char extra[600];
    int64_t end;

    if (mode == POSTGRES && !bt_pg())
        fail_msg("BALLAST_TEST_PG is unset: run via make test");
    c.bs = bt_bootstrap();
    c.in = bt_unique("chaos-in");
    c.group = bt_unique("chaos-g");
    srand((unsigned)getpid());
    bt_create_topic(c.bs, c.in, PARTS);
    make_output(&c);
    for (int i = 0; i < INSTANCES; i++) {
        snprintf(c.err[i], sizeof(c.err[i]), "%s/instance-%d.log", dir, i);
        snprintf(c.conf[i], sizeof(c.conf[i]), "%s/chaos-%d.conf", dir, i);
        mode_conf(&c, i, extra, sizeof(extra));
        bt_write_file(c.conf[i],
                      "kafka.bootstrap.servers = %s\n"
                      "kafka.group.id = %s\n"
                      "%s"
                      "kafka.auto.commit.interval.ms = 500\n"
                      "topics = %s\n"
                      "%s"
                      "shutdown.timeout.ms = 5000\n"
                      "log.level = warn\n",
                      c.bs, c.group, bt_group_lines(), c.in, extra);
        start(&c, i);
    }
    end = bt_now_ms() + (int64_t)seconds * 1000;
    while (bt_now_ms() < end) {
        bt_produce_seq(c.bs, c.in, 0, c.produced, 2000, KEYS);
        c.produced += 2000;
        inject(&c);
    }
    bt_produce_seq(c.bs, c.in, 0, c.produced, 2000, KEYS);
    c.produced += 2000;
    if (!bt_wait_committed_to_end(c.bs, c.group, c.in, PARTS, 300000))
        fail_msg("the group did not drain after the chaos");
    for (int i = 0; i < INSTANCES; i++) {
        bt_term(c.pid[i]);
        bt_wait(c.pid[i], 60000);
    }
    check_history(&c);
    check_db_offsets(&c);
}

static void test_chaos_at_least_once(void **state)
{
    (void)state;
    run_chaos(AT_LEAST_ONCE);
}

static void test_chaos_exactly_once(void **state)
{
    (void)state;
    run_chaos(EXACTLY_ONCE);
}

static void test_chaos_postgres(void **state)
{
    (void)state;
    run_chaos(POSTGRES);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_at_least_once),
        cmocka_unit_test(test_chaos_exactly_once),
        cmocka_unit_test(test_chaos_postgres),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
