/*
 * chaos.c - seeded fault schedules, a producer that keeps messages in
 * flight, the group's progress, the fault log and the history checker,
 * shared by the fault tests (see chaos.h).
 */
#include "chaos.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- a seeded random number generator ---------------------------------- */

uint64_t bt_chaos_seed(const char *what)
{
    const char *env = getenv("CHAOS_SEED");
    uint64_t seed;
    struct timespec ts;

    if (env && *env) {
        seed = strtoull(env, NULL, 10);
    } else {
        clock_gettime(CLOCK_REALTIME, &ts);
        seed = ((uint64_t)ts.tv_sec * 1000003u ^ (uint64_t)ts.tv_nsec ^
                (uint64_t)getpid() << 32) % 1000000000u;
    }
    printf("%s: seed %" PRIu64 " (replay: CHAOS_SEED=%" PRIu64 ", with the same "
           "CHAOS_SECONDS)\n",
           what, seed, seed);
    fflush(stdout);
    return seed;
}

bt_rng_t bt_rng(uint64_t seed, uint64_t stream)
{
    bt_rng_t r = {seed ^ (stream * 0x9e3779b97f4a7c15u)};
    return r;
}

static uint64_t bt_rng_next(bt_rng_t *r)
{
    uint64_t z = (r->state += 0x9e3779b97f4a7c15u);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9u;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebu;
    return z ^ (z >> 31);
}

/* A number in [lo, hi]. */
static int bt_rng_range(bt_rng_t *r, int lo, int hi)
{
    return lo + (int)(bt_rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* Shuffles @p n ints in place. */
static void bt_rng_shuffle(bt_rng_t *r, int *v, int n)
{
    for (int i = n - 1; i > 0; i--) {
        int j = bt_rng_range(r, 0, i), t = v[i];
        v[i] = v[j];
        v[j] = t;
    }
}

/* ---- the schedule -------------------------------------------------------- */

bt_fault_t *bt_schedule(bt_rng_t *r, int kinds, int count, int victims, int param_lo,
                        int param_hi, long after_lo, long after_hi)
{
    bt_fault_t *f;
    int order[64];

    assert_true(kinds > 0 && kinds <= 64);
    if (count < kinds)
        count = kinds;
    f = calloc((size_t)count, sizeof(*f));
    assert_non_null(f);
    for (int k = 0; k < kinds; k++)
        order[k] = k;
    bt_rng_shuffle(r, order, kinds);
    for (int i = 0; i < count; i++) {
        f[i].kind = i < kinds ? order[i] : bt_rng_range(r, 0, kinds - 1);
        f[i].victim = bt_rng_range(r, 0, victims - 1);
        f[i].param_ms = bt_rng_range(r, param_lo, param_hi);
        f[i].after = after_lo + (long)(bt_rng_next(r) % (uint64_t)(after_hi - after_lo + 1));
    }
    return f;
}

int bt_schedule_count(const char *seconds_env, int default_seconds, int per_fault, int kinds)
{
    const char *env = getenv(seconds_env);
    int seconds = env && *env ? (int)strtol(env, NULL, 10) : default_seconds;
    int n = seconds / per_fault;

    return n < kinds ? kinds : n;
}

void bt_schedule_print(const bt_fault_t *f, int n, const char *const *names)
{
    printf("schedule of %d faults:", n);
    for (int i = 0; i < n; i++)
        printf("%s %s(#%d, %d ms) after +%ld", i ? "," : "", names[f[i].kind], f[i].victim,
               f[i].param_ms, f[i].after);
    printf("\n");
    fflush(stdout);
}

/* ---- a producer that keeps messages in flight --------------------------- */

struct bt_feeder {
    rd_kafka_t *rk;
    char *topic;
    int partitions, keys, per_second;
    pthread_t thread;
    atomic_bool stop;
    atomic_long produced, acked, failed;
    char first_error[256];
};

static void feeder_delivered(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    bt_feeder_t *f = opaque;
    (void)rk;

    if (!m->err) {
        atomic_fetch_add(&f->acked, 1);
    } else if (atomic_fetch_add(&f->failed, 1) == 0) {
        snprintf(f->first_error, sizeof(f->first_error), "%s", rd_kafka_err2str(m->err));
    }
}

/* Produces message @p i, waiting while the local queue is full. */
static void feeder_produce(bt_feeder_t *f, long i)
{
    char key[32], value[32];
    rd_kafka_resp_err_t err;

    snprintf(key, sizeof(key), "k%ld", i % f->keys);
    snprintf(value, sizeof(value), "%ld", i);
    while ((err = rd_kafka_producev(f->rk, RD_KAFKA_V_TOPIC(f->topic),
                                    RD_KAFKA_V_PARTITION((int32_t)(i % f->partitions)),
                                    RD_KAFKA_V_KEY(key, strlen(key)),
                                    RD_KAFKA_V_VALUE(value, strlen(value)),
                                    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                    RD_KAFKA_V_END)) == RD_KAFKA_RESP_ERR__QUEUE_FULL)
        rd_kafka_poll(f->rk, 50);
    if (err && atomic_fetch_add(&f->failed, 1) == 0)
        snprintf(f->first_error, sizeof(f->first_error), "%s", rd_kafka_err2str(err));
}

/* Ten slices a second, each producing its share of per_second. */
static void *feeder_main(void *arg)
{
    bt_feeder_t *f = arg;
    int slice = f->per_second / 10 > 0 ? f->per_second / 10 : 1;

    while (!atomic_load(&f->stop)) {
        int64_t next = bt_now_ms() + 100;
        for (int k = 0; k < slice; k++)
            feeder_produce(f, atomic_fetch_add(&f->produced, 1));
        while (bt_now_ms() < next)
            rd_kafka_poll(f->rk, (int)(next - bt_now_ms()));
    }
    return NULL;
}

bt_feeder_t *bt_feeder_start(const char *bootstrap, const char *topic, int partitions,
                             int keys, int per_second)
{
    bt_feeder_t *f = calloc(1, sizeof(*f));
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];

    assert_non_null(f);
    f->topic = strdup(topic);
    f->partitions = partitions;
    f->keys = keys;
    f->per_second = per_second;
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap, NULL, 0);
    /* Quiet: it keeps producing through every broker restart on purpose. */
    rd_kafka_conf_set(conf, "log_level", "0", NULL, 0);
    rd_kafka_conf_set(conf, "linger.ms", "5", NULL, 0);
    /* Order and no duplicates in the input whatever the broker goes through;
     * a message stays in flight across a broker restart or a leader move. */
    rd_kafka_conf_set(conf, "enable.idempotence", "true", NULL, 0);
    rd_kafka_conf_set(conf, "message.timeout.ms", "600000", NULL, 0);
    rd_kafka_conf_set_dr_msg_cb(conf, feeder_delivered);
    rd_kafka_conf_set_opaque(conf, f);
    if (!(f->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr))))
        fail_msg("feeder: %s", errstr);
    assert_int_equal(pthread_create(&f->thread, NULL, feeder_main, f), 0);
    return f;
}

/* Messages acknowledged by the broker so far. */
static long bt_feeder_acked(bt_feeder_t *f)
{
    return atomic_load(&f->acked);
}

long bt_feeder_stop(bt_feeder_t *f)
{
    long produced;

    atomic_store(&f->stop, true);
    pthread_join(f->thread, NULL);
    if (rd_kafka_flush(f->rk, 600000))
        fail_msg("feeder: messages still undelivered after 10 minutes");
    produced = atomic_load(&f->produced);
    if (atomic_load(&f->failed))
        fail_msg("feeder: %ld of %ld messages not delivered (%s): the input itself has gaps",
                 atomic_load(&f->failed), produced, f->first_error);
    assert_int_equal(atomic_load(&f->acked), produced);
    rd_kafka_destroy(f->rk);
    free(f->topic);
    free(f);
    return produced;
}

/* ---- progress and the fault log ----------------------------------------- */

long bt_group_progress(const char *bootstrap, const char *group, const char *topic, int n)
{
    int64_t committed[64];
    long sum = 0;

    assert_true(n <= 64);
    bt_committed(bootstrap, group, topic, n, committed);
    for (int i = 0; i < n; i++)
        sum += committed[i] > 0 ? (long)committed[i] : 0;
    return sum;
}

void bt_fault_note(bt_fault_log_t *log, const char *what, long processed, long produced)
{
    int i = log->count < 256 ? log->count++ : 255;

    snprintf(log->entry[i].what, sizeof(log->entry[i].what), "%s", what);
    log->entry[i].processed = processed;
    log->entry[i].produced = produced;
    printf("fault %d: %s (processed %ld of %ld produced)\n", i + 1, what, processed, produced);
    fflush(stdout);
}

void bt_fault_log_check(const bt_fault_log_t *log)
{
    for (int i = 0; i < log->count; i++) {
        if (log->entry[i].processed <= 0)
            fail_msg("fault %d (%s) hit before consumption started", i + 1,
                     log->entry[i].what);
        if (log->entry[i].processed >= log->entry[i].produced)
            fail_msg("fault %d (%s) hit with no message in flight (%ld processed of %ld)",
                     i + 1, log->entry[i].what, log->entry[i].processed,
                     log->entry[i].produced);
    }
}

void bt_in_flight_moment(const char *bootstrap, const char *group, const char *topic, int n,
                         bt_feeder_t *feeder, long *processed, long *produced)
{
    int64_t deadline = bt_now_ms() + 10000;

    for (;;) {
        *processed = bt_group_progress(bootstrap, group, topic, n);
        *produced = bt_feeder_acked(feeder);
        if (*processed < *produced || bt_now_ms() >= deadline)
            return;
        usleep(20 * 1000);
    }
}

long bt_wait_progress(const char *bootstrap, const char *group, const char *topic, int n,
                      long target, int timeout_ms, const char *what)
{
    int64_t deadline = bt_now_ms() + timeout_ms;
    long now;

    while ((now = bt_group_progress(bootstrap, group, topic, n)) < target) {
        if (bt_now_ms() > deadline)
            fail_msg("%s: the group processed %ld, not %ld, within %d ms", what, now, target,
                     timeout_ms);
        usleep(200 * 1000);
    }
    return now;
}

/* ---- the history checker --------------------------------------------------- */

bt_verdict_t bt_check_history(const bt_record_t *recs, size_t n, long produced, int keys)
{
    bt_verdict_t v = {.records = n};
    int *count = calloc((size_t)(produced ? produced : 1), sizeof(int));
    long *last = malloc((size_t)keys * sizeof(long));

    assert_non_null(count);
    assert_non_null(last);
    for (int k = 0; k < keys; k++)
        last[k] = -1;
    for (size_t i = 0; i < n; i++) {
        long s = recs[i].value ? strtol(recs[i].value, NULL, 10) : -1;
        long k = recs[i].key && recs[i].key[0] == 'k' ? strtol(recs[i].key + 1, NULL, 10) : -1;
        if (s < 0 || s >= produced || k < 0 || k >= keys || s % keys != k)
            fail_msg("output record %zu has no valid origin: key %s, value %s", i,
                     recs[i].key ? recs[i].key : "(null)",
                     recs[i].value ? recs[i].value : "(null)");
        if (count[s]++)
            v.duplicates++;
        else if (s < last[k])
            v.reorders++; /* a first delivery older than one already seen */
        if (s > last[k])
            last[k] = s;
    }
    for (long s = 0; s < produced; s++)
        if (count[s] == 0 && v.lost++ < 20) {
            /* Which ones, for the replay of a failing seed: record s has key
             * k<s % keys> and was produced s-th. */
            v.first_lost[v.lost - 1] = s;
            printf("lost: record %ld (key k%ld)\n", s, s % keys);
        }
    free(count);
    free(last);
    return v;
}

void bt_assert_verdict(const bt_verdict_t *v, bool exactly_once, const char *label)
{
    printf("%s: %zu output records, %ld lost, %ld duplicates, %ld out of order\n", label,
           v->records, v->lost, v->duplicates, v->reorders);
    fflush(stdout);
    assert_int_equal(v->lost, 0);
    assert_int_equal(v->reorders, 0);
    if (exactly_once)
        assert_int_equal(v->duplicates, 0);
}

/* The record of @p recs whose value is sequence number @p s, or NULL. */
static const bt_record_t *find_seq(const bt_record_t *recs, size_t n, long s)
{
    for (size_t i = 0; i < n; i++)
        if (recs[i].value && strtol(recs[i].value, NULL, 10) == s)
            return &recs[i];
    return NULL;
}

void bt_explain_lost(const char *bootstrap, const char *in, const char *out,
                     const bt_verdict_t *v)
{
    size_t nin, nout;
    bt_record_t *input = bt_consume_uncommitted(bootstrap, in, 120000, &nin);
    bt_record_t *output = bt_consume_uncommitted(bootstrap, out, 120000, &nout);
    long shown = v->lost < 20 ? v->lost : 20;

    for (long i = 0; i < shown; i++) {
        const bt_record_t *from = find_seq(input, nin, v->first_lost[i]);
        const bt_record_t *to = find_seq(output, nout, v->first_lost[i]);
        printf("lost record %ld: input [%d] offset %lld; %s", v->first_lost[i],
               from ? (int)from->partition : -1, from ? (long long)from->offset : -1LL,
               to ? "written outside the committed history at " : "never written\n");
        if (to)
            printf("[%d] offset %lld\n", (int)to->partition, (long long)to->offset);
    }
    fflush(stdout);
    bt_records_free(input, nin);
    bt_records_free(output, nout);
}

/* ---- the delivery modes the fault tests run ------------------------------- */

static const char *const chaos_mode_names[] = {"at-least-once", "exactly-once", "postgres"};

const char *bt_chaos_mode_name(bt_chaos_mode_t mode)
{
    return chaos_mode_names[mode];
}

bool bt_chaos_mode_wanted(bt_chaos_mode_t mode)
{
    const char *modes = getenv("CHAOS_MODES"), *name = chaos_mode_names[mode];
    size_t n = strlen(name);

    for (const char *p = modes; p && *p; p += strcspn(p, ","), p += *p == ',')
        if (!strncmp(p, name, n) && (p[n] == ',' || !p[n]))
            return true;
    return !modes || !*modes;
}

const char *bt_chaos_output(bt_chaos_mode_t mode, const char *bootstrap, const char *prefix,
                            int partitions, char *table, size_t size)
{
    char sql[256];
    const char *name = bt_unique(prefix);

    if (mode != BT_POSTGRES) {
        bt_create_topic(bootstrap, name, partitions);
        return name;
    }
    snprintf(table, size, "%s", name);
    for (char *p = table; *p; p++)
        if (*p == '-')
            *p = '_';
    snprintf(sql, sizeof(sql),
             "CREATE TABLE %s (id bigint GENERATED ALWAYS AS IDENTITY, k text, v bigint)",
             table);
    bt_pg_exec(sql);
    return table;
}

void bt_chaos_member_conf(char *buf, size_t size, bt_chaos_mode_t mode, const char *out,
                          const char *group, int member, const char *value)
{
    if (mode == BT_POSTGRES)
        snprintf(buf, size,
                 "handler = postgres\n"
                 "handler.postgres.dsn = %s\n"
                 "handler.postgres.sql = INSERT INTO %s (k, v) VALUES (:key, %s)\n"
                 "semantics = exactly-once\n"
                 "processing = batch\n"
                 "batch.max.messages = 500\n"
                 "batch.max.ms = 50\n"
                 "ordering = partition\n"
                 "concurrency = 2\n"
                 "retry.backoff.max.ms = 500\n",
                 bt_pg(), out, value);
    else
        /* Members on one host need transactional ids of their own. */
        snprintf(buf, size,
                 "handler = forward\n"
                 "output.topic = %s\n"
                 "ordering = key\n"
                 "concurrency = 4\n"
                 "%s%s-%d\n"
                 "semantics = %s\n",
                 out, mode == BT_EXACTLY_ONCE ? "kafka.transactional.id = " : "# ", group,
                 member, mode == BT_EXACTLY_ONCE ? "exactly-once" : "at-least-once");
}
