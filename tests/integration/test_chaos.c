/*
 * test_chaos.c - the chaos driver and history checker.
 *
 * Three `ballast run` instances in one group copy a topic (handler =
 * forward) while a producer keeps writing sequenced messages. At random the
 * driver kill -9's an instance, SIGTERMs one, SIGSTOPs one for a few
 * seconds, or hard-restarts the broker; a killed or stopped instance is
 * started again. Then the input stops, the group drains, and the checker
 * reads the whole output history (read_committed) and reports:
 *   - loss: an input sequence number with no output record;
 *   - duplicates: more than one output record for an input (an error in
 *     exactly-once mode, counted in at-least-once mode);
 *   - order: per key, output sequence numbers must not go backwards except
 *     where a redelivery restarts (at-least-once) - never in exactly-once;
 *   - commits beyond what was processed: every input offset below the
 *     group's committed offset must have its output record.
 * Each output record carries its origin: forward copies the key and the
 * value, and the value is the input's sequence number.
 *
 * The group uses the default (eager) assignor: librdkafka 2.0.2's
 * cooperative-sticky assignor can abort on an assertion when a member
 * closes during a rebalance (rdkafka_sticky_assignor.c:1896), which the
 * chaos here provokes; see docs/design.md.
 *
 * CHAOS_SECONDS sets how long faults are injected (default 45: the short
 * form `make test` runs); `make chaos` runs the long form.
 */
#include "support.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 4
#define KEYS 64
#define INSTANCES 3

typedef struct chaos {
    const char *bs, *in, *out, *group;
    char conf[INSTANCES][300], err[INSTANCES][256];
    pid_t pid[INSTANCES];
    bool stopped[INSTANCES];
    int produced;
    int faults[5]; /* kill9, term, stop, broker, (unused) */
} chaos_t;

static void start(chaos_t *c, int i)
{
    const char *const argv[] = {"ballast", "run", c->conf[i], NULL};
    c->pid[i] = bt_spawn_ballast(argv, c->err[i]);
    c->stopped[i] = false;
}

static void restart_broker(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/testenv' restart-kafka --hard >/dev/null",
             BALLAST_SRC_DIR);
    assert_int_equal(system(cmd), 0);
}

/* One random fault, then the victim comes back. */
static void inject(chaos_t *c)
{
    int i = rand() % INSTANCES, what = rand() % 10;

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
    } else {
        restart_broker();
        c->faults[3]++;
    }
}

/* The history checker. @returns the number of duplicates. */
static long check_history(chaos_t *c, bool exactly_once)
{
    size_t n;
    bt_record_t *recs = bt_consume_to_end(c->bs, c->out, 300000, &n);
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
                  "restarts\n",
                  exactly_once ? "exactly-once" : "at-least-once", c->produced, n, lost,
                  dups, reorders, c->faults[0], c->faults[1], c->faults[2], c->faults[3]);
    assert_int_equal(lost, 0);
    assert_int_equal(reorders, 0);
    if (exactly_once)
        assert_int_equal(dups, 0);
    free(count);
    free(last);
    bt_records_free(recs, n);
    return dups;
}

/* CHAOS_MODES (a comma list of at-least-once, exactly-once; default both)
 * lets the long form run the modes as separate processes. */
static bool mode_wanted(const char *mode)
{
    const char *modes = getenv("CHAOS_MODES");
    size_t n = strlen(mode);

    for (const char *p = modes; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, mode, n) && (p[n] == ',' || !p[n]))
            return true;
    return !modes || !*modes;
}

static void run_chaos(bool exactly_once)
{
    BT_REQUIRE_ENV();
    const char *env = getenv("CHAOS_SECONDS");
    int seconds = env ? (int)strtol(env, NULL, 10) : 45;
    chaos_t c = {0};
    const char *dir = bt_tmpdir();
    int64_t end;

    if (!mode_wanted(exactly_once ? "exactly-once" : "at-least-once"))
        skip();
    c.bs = bt_bootstrap();
    c.in = bt_unique("chaos-in");
    c.out = bt_unique("chaos-out");
    c.group = bt_unique("chaos-g");
    srand((unsigned)getpid());
    bt_create_topic(c.bs, c.in, PARTS);
    bt_create_topic(c.bs, c.out, PARTS);
    for (int i = 0; i < INSTANCES; i++) {
        snprintf(c.err[i], sizeof(c.err[i]), "%s/instance-%d.log", dir, i);
        snprintf(c.conf[i], sizeof(c.conf[i]), "%s/chaos-%d.conf", dir, i);
        /* Instances on one host need transactional ids of their own. */
        bt_write_file(c.conf[i],
                      "kafka.bootstrap.servers = %s\n"
                      "kafka.group.id = %s\n"
                      "kafka.session.timeout.ms = 6000\n"
                      "kafka.transaction.timeout.ms = 15000\n"
                      "kafka.auto.commit.interval.ms = 500\n"
                      "%s%s%s\n"
                      "topics = %s\n"
                      "handler = forward\n"
                      "output.topic = %s\n"
                      "semantics = %s\n"
                      "ordering = key\n"
                      "concurrency = 4\n"
                      "shutdown.timeout.ms = 5000\n"
                      "log.level = warn\n",
                      c.bs, c.group, exactly_once ? "kafka.transactional.id = " : "# ",
                      c.group, exactly_once ? (i == 0 ? "-0" : i == 1 ? "-1" : "-2") : "",
                      c.in, c.out,
                      exactly_once ? "exactly-once" : "at-least-once");
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
    check_history(&c, exactly_once);
}

static void test_chaos_exactly_once(void **state)
{
    (void)state;
    run_chaos(true);
}

static void test_chaos_at_least_once(void **state)
{
    (void)state;
    run_chaos(false);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chaos_at_least_once),
        cmocka_unit_test(test_chaos_exactly_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
