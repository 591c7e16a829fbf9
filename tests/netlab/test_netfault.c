/*
 * test_netfault.c - network faults between ballast and its dependencies.
 *
 * Runs in scripts/netlab's test network: the broker and PostgreSQL sit in
 * host "srv" (this test drives from there too: its producer and its readers
 * see no fault), and two `ballast run` members of one group run in hosts
 * "app1" and "app2", each joined to srv by a link of its own. A producer
 * keeps sequenced messages in flight while a seeded schedule
 * (tests/support/chaos.h; CHAOS_SEED replays it) injects, once each and in
 * an order the seed picks, once the group has processed a seeded number of
 * messages more:
 *   - a full partition of one member from the broker for 30 s, longer than
 *     the 6 s session timeout: the other member takes its partitions over,
 *     the cut-off one is a zombie. Meanwhile its /readyz must fail, and its
 *     /healthz must keep answering; the group's committed offsets (and in
 *     the postgres mode the database's) are sampled and must never go
 *     backwards: a zombie's late commit after its partitions moved would
 *     move them back (at-least-once) or write twice (exactly-once). After
 *     the heal the group must process within 30 s, and the member must be
 *     ready and processing again within 60 s (see MEMBER_RESUME_MS);
 *   - in the postgres mode, a partition of one member from PostgreSQL for
 *     20 s: it must come back as above (its /readyz should fail meanwhile
 *     and does not: test_readyz_fails_while_postgres_is_cut_off, a known
 *     bug);
 *   - 200 ms +- 50 ms of latency, 5% packet loss and a 1 Mbit/s bandwidth
 *     cap, each on both links for FAULT_MS: the group must have processed
 *     more within 30 s of the heal.
 * Every fault is bounded by scripts/netlab's own timer and healed by the
 * test, and `scripts/netlab heal` runs again when the suite exits (a failed
 * test leaves through a longjmp).
 * Then the input stops, the group drains, and the history checker of the
 * chaos test judges the output, in three modes as there: forward
 * at-least-once (no loss, order per key), forward exactly-once and postgres
 * exactly-once (no loss, no duplicate, order per key; in the postgres mode
 * ballast_offsets sums to exactly what was produced: nothing committed
 * beyond what was processed). Each fault must have hit while messages were
 * in flight.
 *
 * Needs the exports of `scripts/netlab up` (BALLAST_NETLAB_*); fails without
 * them. CHAOS_MODES picks modes as in test_chaos.c.
 */
#include "chaos.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PARTS 4
#define KEYS 64
#define MEMBERS 2
#define FEED_RATE 1000
#define SESSION_TIMEOUT_MS 6000
#define PARTITION_MS 30000 /* the broker partition, past the session timeout */
#define PG_PARTITION_MS 20000
#define FAULT_MS 10000     /* latency, loss, bandwidth */
#define RESUME_MS 30000    /* the group processes again within this of a heal */
/* The member that was cut off is ready and processing again within this of
 * the heal. Longer than RESUME_MS: librdkafka gives up a connection attempt
 * that a partition swallowed only after socket.connection.setup.timeout.ms
 * (30 s), and an exactly-once member's transaction call started before the
 * partition only after its 30 s timeout; 25-30 s were measured here. */
#define MEMBER_RESUME_MS 60000


enum { PARTITION_KAFKA, DELAY, LOSS, RATE, PARTITION_PG, FAULT_KINDS };
static const char *const fault_names[] = {"partition-kafka", "delay", "loss", "rate",
                                          "partition-pg"};

typedef struct lab {
    const char *app_ns[MEMBERS], *app_addr[MEMBERS];
} lab_t;

static lab_t lab;

typedef struct run {
    bt_chaos_mode_t mode;
    const char *bs, *in, *out, *group;
    char table[160];
    char conf[MEMBERS][300], err[MEMBERS][256], metrics[MEMBERS][64];
    pid_t pid[MEMBERS];
    bt_feeder_t *feeder;
    long produced;
    bt_fault_log_t log;
    /* The highest committed offset seen per partition (Kafka, database). */
    int64_t kafka_high[PARTS], db_high[PARTS];
} run_t;

/* ---- the lab ------------------------------------------------------------- */

/* `scripts/netlab ARGS`; fails the test unless it succeeds. */
static void netlab(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void netlab(const char *fmt, ...)
{
    char args[256], cmd[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(args, sizeof(args), fmt, ap);
    va_end(ap);
    snprintf(cmd, sizeof(cmd), "'%s/scripts/netlab' %s", BALLAST_SRC_DIR, args);
    if (system(cmd) != 0)
        fail_msg("scripts/netlab %s failed", args);
}

/* Whatever a failed test left injected goes when the suite exits. */
static void heal_all(void)
{
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "'%s/scripts/netlab' heal >/dev/null 2>&1", BALLAST_SRC_DIR);
    if (system(cmd) != 0)
        fprintf(stderr, "netfault: scripts/netlab heal failed at exit\n");
}

/* Reads the lab's exports; the test's own helpers (bt_bootstrap, bt_pg) then
 * talk to the lab's services. @returns false when the lab is not up. */
static bool lab_from_env(void)
{
    const char *bs = getenv("BALLAST_NETLAB_BOOTSTRAP"), *pg = getenv("BALLAST_NETLAB_PG");

    lab.app_ns[0] = getenv("BALLAST_NETLAB_APP1_NS");
    lab.app_ns[1] = getenv("BALLAST_NETLAB_APP2_NS");
    lab.app_addr[0] = getenv("BALLAST_NETLAB_APP1_ADDR");
    lab.app_addr[1] = getenv("BALLAST_NETLAB_APP2_ADDR");
    if (!bs || !pg || !getenv("BALLAST_NETLAB_SRV_NS") || !lab.app_ns[0] || !lab.app_ns[1] ||
        !lab.app_addr[0] || !lab.app_addr[1])
        return false;
    setenv("BALLAST_TEST_BOOTSTRAP", bs, 1);
    setenv("BALLAST_TEST_PG", pg, 1);
    return true;
}

/* ---- the members ------------------------------------------------------------ */

static void start_member(run_t *r, int i)
{
    const char *const argv[] = {"ballast", "run", r->conf[i], NULL};

    bt_spawn_netns(lab.app_ns[i]);
    r->pid[i] = bt_spawn_ballast(argv, r->err[i]);
    bt_spawn_netns(NULL);
    bt_wait_listening(r->err[i], r->pid[i], r->metrics[i], sizeof(r->metrics[i]));
}

/* The status of GET @p path on member @p i (0: no answer). */
static int member_status(const run_t *r, int i, const char *path)
{
    bt_http_reply_t rep = bt_http_get(r->metrics[i], path);
    int status = rep.status;

    bt_http_reply_free(&rep);
    return status;
}

static double member_processed(const run_t *r, int i)
{
    return bt_metric(r->metrics[i], "ballast_messages_processed_total{outcome=\"ok\"}");
}

/* ---- the zombie check: committed offsets never go backwards ------------------ */

/* Samples the group's committed offsets (and the database's) once; fails the
 * test when one went back below what was seen before. */
static void sample_commits(run_t *r, const char *during)
{
    int64_t committed[PARTS];

    bt_committed(r->bs, r->group, r->in, PARTS, committed);
    for (int p = 0; p < PARTS; p++) {
        if (committed[p] >= 0 && committed[p] < r->kafka_high[p])
            fail_msg("%s: the committed offset of %s [%d] went back from %lld to %lld (a "
                     "zombie's late commit?)",
                     during, r->in, p, (long long)r->kafka_high[p], (long long)committed[p]);
        if (committed[p] > r->kafka_high[p])
            r->kafka_high[p] = committed[p];
    }
    if (r->mode != BT_POSTGRES)
        return;
    for (int p = 0; p < PARTS; p++) {
        char sql[300];
        long next;
        snprintf(sql, sizeof(sql),
                 "SELECT next_offset FROM ballast_offsets WHERE group_id = '%s' AND "
                 "topic = '%s' AND partition = %d",
                 r->group, r->in, p);
        if ((next = bt_pg_long(sql)) < 0)
            continue;
        if (next < r->db_high[p])
            fail_msg("%s: ballast_offsets of %s [%d] went back from %lld to %ld", during,
                     r->in, p, (long long)r->db_high[p], next);
        if (next > r->db_high[p])
            r->db_high[p] = next;
    }
}

/* ---- the faults ------------------------------------------------------------ */

/* Waits up to @p timeout_ms for member @p i's @p path to answer @p want
 * (0: anything but 200), sampling the commits meanwhile. */
static bool wait_member_status(run_t *r, int i, const char *path, int want, int timeout_ms,
                               const char *during)
{
    int64_t deadline = bt_now_ms() + timeout_ms;

    for (;;) {
        int status = member_status(r, i, path);
        if (want ? status == want : status != 200)
            return true;
        if (bt_now_ms() > deadline)
            return false;
        sample_commits(r, during);
        usleep(250 * 1000);
    }
}

/* The group processes again within RESUME_MS of a heal. */
static void expect_group_resumed(run_t *r, const char *fault)
{
    int64_t healed = bt_now_ms();
    long at_heal = bt_group_progress(r->bs, r->group, r->in, PARTS);

    bt_wait_progress(r->bs, r->group, r->in, PARTS, at_heal + 1, RESUME_MS, fault);
    printf("%s: the group processing %lld ms after the heal\n", fault,
           (long long)(bt_now_ms() - healed));
}

/* Member @p i is back: ready, and processing, within MEMBER_RESUME_MS of the
 * heal. */
static void expect_member_resumed(run_t *r, int i, const char *fault)
{
    int64_t healed = bt_now_ms(), deadline = healed + MEMBER_RESUME_MS;
    double before = member_processed(r, i);
    char during[128];

    snprintf(during, sizeof(during), "after the heal of %s", fault);
    if (!wait_member_status(r, i, "/readyz", 200, MEMBER_RESUME_MS, during))
        fail_msg("%s: member %d not ready within %d ms of the heal", fault, i,
                 MEMBER_RESUME_MS);
    while (member_processed(r, i) <= before) {
        if (bt_now_ms() > deadline)
            fail_msg("%s: member %d processed nothing within %d ms of the heal", fault, i,
                     MEMBER_RESUME_MS);
        sample_commits(r, during);
        usleep(250 * 1000);
    }
    printf("%s: member %d ready and processing %lld ms after the heal\n", fault, i,
           (long long)(bt_now_ms() - healed));
}

/* A partition of member @p victim from the broker (or PostgreSQL): /readyz
 * fails (when @p expect_unready), /healthz keeps answering, commits never
 * go back; then the heal. @returns whether /readyz failed meanwhile. */
static bool partition(run_t *r, int victim, const char *kind, int ms, bool expect_unready)
{
    int64_t end = bt_now_ms() + ms;
    bool unready = false;
    char during[128];

    snprintf(during, sizeof(during), "during %s of member %d", kind, victim);
    netlab("fault %s %d app%d", kind, ms / 1000 + 5, victim + 1);
    while (bt_now_ms() < end) {
        int health = member_status(r, victim, "/healthz");
        if (health != 200 && health != 503)
            fail_msg("%s: /healthz did not answer (status %d)", during, health);
        unready = unready || member_status(r, victim, "/readyz") != 200;
        sample_commits(r, during);
        usleep(500 * 1000);
    }
    netlab("heal %s app%d", kind, victim + 1);
    if (!unready && expect_unready)
        fail_msg("%s: /readyz said ready for the whole %d ms", during, ms);
    if (!unready)
        printf("%s: /readyz said ready throughout (a known bug, see "
               "test_readyz_fails_while_postgres_is_cut_off)\n",
               during);
    expect_group_resumed(r, during);
    expect_member_resumed(r, victim, during);
    return unready;
}

/* Latency, loss or a bandwidth cap on both links; the group must have
 * processed more within RESUME_MS of the heal. */
static void degrade(run_t *r, const char *kind, int ms)
{
    int64_t end = bt_now_ms() + ms;
    char during[128];

    snprintf(during, sizeof(during), "during %s", kind);
    netlab("fault %s %d all", kind, ms / 1000 + 5);
    while (bt_now_ms() < end) {
        sample_commits(r, during);
        usleep(500 * 1000);
    }
    netlab("heal %s all", kind);
    expect_group_resumed(r, during);
}

static void inject(run_t *r, const bt_fault_t *f)
{
    switch (f->kind) {
    case PARTITION_KAFKA:
        partition(r, f->victim, "partition-kafka", PARTITION_MS, true);
        break;
    case PARTITION_PG:
        /* (/readyz stays ready: test_readyz_fails_while_postgres_is_cut_off) */
        partition(r, f->victim, "partition-pg", PG_PARTITION_MS, false);
        break;
    default:
        degrade(r, fault_names[f->kind], FAULT_MS);
        break;
    }
}

/* ---- the run ------------------------------------------------------------------- */

static void run_schedule(run_t *r, uint64_t seed)
{
    int kinds = r->mode == BT_POSTGRES ? FAULT_KINDS : PARTITION_PG;
    bt_rng_t rng = bt_rng(seed, (uint64_t)r->mode);
    int count = bt_schedule_count("CHAOS_SECONDS", 0, 60, kinds);
    bt_fault_t *plan = bt_schedule(&rng, kinds, count, MEMBERS, 0, 0, 500, 2500);
    long progress = 0, processed, produced;

    bt_schedule_print(plan, count, fault_names);
    for (int i = 0; i < count; i++) {
        char what[96];
        progress = bt_wait_progress(r->bs, r->group, r->in, PARTS, progress + plan[i].after,
                                    180000, "before the next fault");
        sample_commits(r, "before the next fault");
        snprintf(what, sizeof(what), "%s%s%d", fault_names[plan[i].kind],
                 plan[i].kind == PARTITION_KAFKA || plan[i].kind == PARTITION_PG
                     ? " of member "
                     : " (all links) #",
                 plan[i].victim);
        bt_in_flight_moment(r->bs, r->group, r->in, PARTS, r->feeder, &processed, &produced);
        bt_fault_note(&r->log, what, processed, produced);
        inject(r, &plan[i]);
        progress = bt_group_progress(r->bs, r->group, r->in, PARTS);
    }
    free(plan);
}

static void check_outputs(run_t *r)
{
    size_t n;
    bt_record_t *recs;
    bt_verdict_t v;
    char sql[256], label[160];

    if (r->mode != BT_POSTGRES) {
        recs = bt_consume_to_end(r->bs, r->out, 300000, &n);
    } else {
        snprintf(sql, sizeof(sql), "SELECT k, v::text FROM %s ORDER BY id", r->out);
        recs = bt_pg_records(sql, &n);
    }
    v = bt_check_history(recs, n, r->produced, KEYS);
    snprintf(label, sizeof(label), "netfault (%s): %ld produced, %d faults",
             bt_chaos_mode_name(r->mode), r->produced, r->log.count);
    if (v.lost && r->mode != BT_POSTGRES)
        bt_explain_lost(r->bs, r->in, r->out, &v);
    bt_assert_verdict(&v, r->mode != BT_AT_LEAST_ONCE, label);
    bt_records_free(recs, n);
    if (r->mode == BT_POSTGRES) {
        snprintf(sql, sizeof(sql),
                 "SELECT sum(next_offset) FROM ballast_offsets WHERE group_id = '%s'",
                 r->group);
        assert_int_equal(bt_pg_long(sql), r->produced);
    }
}

/* Topics (and table), @p members members started, the producer running. */
static void start_run(run_t *r, bt_chaos_mode_t mode, int members)
{
    const char *dir = bt_tmpdir();
    char extra[700];

    if (!lab.app_ns[0])
        fail_msg("BALLAST_NETLAB_* are unset: run `eval \"$(scripts/netlab up)\"` first "
                 "(scripts/run-tests does)");
    r->mode = mode;
    r->bs = bt_bootstrap();
    r->in = bt_unique("nf-in");
    r->group = bt_unique("nf-g");
    bt_create_topic(r->bs, r->in, PARTS);
    r->out = bt_chaos_output(mode, r->bs, mode == BT_POSTGRES ? "nf_rows" : "nf-out", PARTS,
                             r->table, sizeof(r->table));
    for (int i = 0; i < members; i++) {
        snprintf(r->err[i], sizeof(r->err[i]), "%s/member-%d.log", dir, i);
        snprintf(r->conf[i], sizeof(r->conf[i]), "%s/member-%d.conf", dir, i);
        bt_chaos_member_conf(extra, sizeof(extra), mode, r->out, r->group, i,
                             ":value::bigint");
        bt_write_file(r->conf[i],
                      "kafka.bootstrap.servers = %s\nkafka.group.id = %s\n"
                      "kafka.session.timeout.ms = %d\nkafka.heartbeat.interval.ms = 1000\n"
                      "kafka.auto.commit.interval.ms = 500\ntopics = %s\n%s"
                      "shutdown.timeout.ms = 5000\nmetrics.listen = %s:0\nlog.level = info\n",
                      r->bs, r->group, SESSION_TIMEOUT_MS, r->in, extra, lab.app_addr[i]);
        start_member(r, i);
    }
    r->feeder = bt_feeder_start(r->bs, r->in, PARTS, KEYS, FEED_RATE);
}

/* The producer stops, the group drains, the members stop, the checker. */
static void finish_run(run_t *r, int members)
{
    r->produced = bt_feeder_stop(r->feeder);
    if (!bt_wait_committed_to_end(r->bs, r->group, r->in, PARTS, 300000))
        fail_msg("the group did not drain after the faults");
    sample_commits(r, "after the drain");
    for (int i = 0; i < members; i++) {
        bt_term(r->pid[i]);
        bt_wait(r->pid[i], 60000);
    }
    check_outputs(r);
    bt_fault_log_check(&r->log);
}

static void run_netfault(bt_chaos_mode_t mode)
{
    if (!bt_chaos_mode_wanted(mode))
        skip();
    run_t r;
    char what[64];
    uint64_t seed;

    memset(&r, 0, sizeof(r));
    snprintf(what, sizeof(what), "netfault (%s)", bt_chaos_mode_name(mode));
    seed = bt_chaos_seed(what);
    start_run(&r, mode, MEMBERS);
    run_schedule(&r, seed);
    finish_run(&r, MEMBERS);
}

static void test_netfault_at_least_once(void **state)
{
    (void)state;
    run_netfault(BT_AT_LEAST_ONCE);
}

static void test_netfault_exactly_once(void **state)
{
    (void)state;
    run_netfault(BT_EXACTLY_ONCE);
}

static void test_netfault_postgres(void **state)
{
    (void)state;
    run_netfault(BT_POSTGRES);
}

/* A member whose PostgreSQL is cut off (packets dropped, no reset) must
 * say so on /readyz. Today its handler call just waits on the dead
 * connection (libpq has no timeout set; the kernel retransmits for many
 * minutes), no failure is recorded, and /readyz says ready until
 * handler.timeout.ms turns /healthz red. */
static void test_readyz_fails_while_postgres_is_cut_off(void **state)
{
    (void)state;
    run_t r;
    long processed, produced;

    memset(&r, 0, sizeof(r));
    start_run(&r, BT_POSTGRES, 1);
    bt_wait_progress(r.bs, r.group, r.in, PARTS, 1000, 120000, "before the partition");
    bt_in_flight_moment(r.bs, r.group, r.in, PARTS, r.feeder, &processed, &produced);
    bt_fault_note(&r.log, "partition-pg of the only member", processed, produced);
    if (!partition(&r, 0, "partition-pg", PG_PARTITION_MS, false))
        fail_msg("/readyz said ready while PostgreSQL was cut off for %d ms", PG_PARTITION_MS);
    finish_run(&r, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_netfault_at_least_once),
        cmocka_unit_test(test_netfault_exactly_once),
        cmocka_unit_test(test_netfault_postgres),
        bt_known_bug(test_readyz_fails_while_postgres_is_cut_off),
    };

    /* The driver lives on srv, beside the services: its producer and readers
     * see no fault. (Before any thread: they all inherit the namespace.) */
    if (lab_from_env()) {
        bt_netns_enter(getenv("BALLAST_NETLAB_SRV_NS"));
        atexit(heal_all);
    }
    return bt_run_group_tests(tests, NULL, NULL);
}
