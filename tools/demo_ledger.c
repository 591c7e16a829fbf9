/*
 * demo_ledger.c - a ledger posted exactly once, with balance updates, across
 * a kill -9.
 *
 * Each transaction {"txId","from","to","amount"} is inserted into
 * `postings`, and a trigger moves the amount between two rows of
 * `accounts`: one statement per message, and the trigger runs inside the
 * same database transaction. `postings` has deliberately no unique key on
 * txn_id, so nothing in the database absorbs a second delivery: only the
 * delivery guarantee stands between a redelivery and a balance posted twice.
 *
 * With `semantics = exactly-once` and `processing = batch`, ballast commits
 * each batch's postings and the next offsets of its partitions (table
 * ballast_offsets) in one SQLite transaction, and on assignment starts each
 * partition where the database says. Kafka's own committed offsets are only
 * advisory (for lag tools) and may lag behind.
 *
 * The scenario runs the real daemon, `ballast run`, as a child process on a
 * config file like examples/ledger.conf, and kills it with SIGKILL once a
 * third of the ledger is posted: no drain, no commit, a batch possibly half
 * written. Kafka's advisory commits are set to every 60 s, so at the kill
 * Kafka's offsets lag far behind the database's: the window in which the
 * article's ExactlyOnceConsumer posts twice. A second consumer of the same
 * group then finishes the ledger. Checked: the postings and the stored
 * offsets agree at the kill; the restart resumes at the stored offsets;
 * every transaction posted once; every balance equal to the input's sum;
 * money conserved; the stored offsets equal the high watermarks.
 */
#include "cli.h"
#include "demo.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define TRANSACTIONS 12000
#define ACCOUNTS 40
#define PARTITIONS 3
#define GROUP "demo-ledger"
#define TOPIC "transactions"
#define STR_(x) #x
#define STR(x) STR_(x)

static const char schema[] =
    "CREATE TABLE accounts (\n"
    "  id      TEXT PRIMARY KEY,\n"
    "  balance INTEGER NOT NULL DEFAULT 0  -- cents\n"
    ");\n"
    "-- No UNIQUE(txn_id) on purpose: the database does not deduplicate.\n"
    "CREATE TABLE postings (\n"
    "  txn_id          TEXT NOT NULL,\n"
    "  debit_account   TEXT NOT NULL,\n"
    "  credit_account  TEXT NOT NULL,\n"
    "  amount          INTEGER NOT NULL CHECK (amount > 0),\n"
    "  kafka_partition INTEGER NOT NULL,\n"
    "  kafka_offset    INTEGER NOT NULL\n"
    ");\n"
    "CREATE TRIGGER postings_update_balances AFTER INSERT ON postings\n"
    "BEGIN\n"
    "  UPDATE accounts SET balance = balance - NEW.amount\n"
    "   WHERE id = NEW.debit_account;\n"
    "  UPDATE accounts SET balance = balance + NEW.amount\n"
    "   WHERE id = NEW.credit_account;\n"
    "END;\n"
    "WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n\n"
    "                        WHERE i < " STR(ACCOUNTS) " - 1)\n"
    "INSERT INTO accounts(id) SELECT printf('acct-%02d', i) FROM n;";

static const char sql[] =
    "INSERT INTO postings (txn_id, debit_account, credit_account, amount, "
    "kafka_partition, kafka_offset) "
    "VALUES (json_extract(:value, '$.txId'), json_extract(:value, '$.from'), "
    "json_extract(:value, '$.to'), json_extract(:value, '$.amount'), "
    ":partition, :offset)";

/* Writes the pipeline for `ballast run`: examples/ledger.conf with the
 * embedded broker, the demo's database, and settings that suit the mock
 * cluster. */
static int write_config(const demo_t *d, const char *path, const char *db)
{
    FILE *f = fopen(path, "w");

    if (!f) {
        cli_error("demo: cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    fprintf(f,
            "# examples/ledger.conf, pointed at the demo's broker and files\n"
            "kafka.bootstrap.servers = %s\n"
            "kafka.group.id = " GROUP "\n"
            "kafka.session.timeout.ms = 4000\n"
            "kafka.heartbeat.interval.ms = 1000\n"
            "# Kafka's commits are advisory under exactly-once; make them rare\n"
            "# so that they lag well behind the database's when the kill comes.\n"
            "kafka.auto.commit.interval.ms = 60000\n"
            "topics = " TOPIC "\n"
            "semantics = exactly-once\n"
            "processing = batch\n"
            "batch.max.messages = 200\n"
            "handler = sqlite\n"
            "handler.sqlite.path = %s\n"
            "handler.sqlite.sql = %s\n"
            "startup.timeout.ms = 10000\n"
            "log.level = warn\n",
            d->bootstrap, db, sql);
    if (fclose(f)) {
        cli_error("demo: cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* Runs `ballast run` until the database holds @p kill_at postings, then
 * kills it with SIGKILL. @returns 0, or -1 when it ended by itself or did
 * not get there in time (its output printed). */
static int run_and_kill(demo_t *d, sqlite3 *db, int64_t kill_at)
{
    char config[4096], log[4096], dbpath[4096];
    double t0 = cli_now_s();
    int status = 0;
    pid_t pid;
    int64_t posted = 0;

    demo_path(d, "ledger.conf", config, sizeof(config));
    demo_path(d, "ledger-run.log", log, sizeof(log));
    demo_path(d, "ledger.db", dbpath, sizeof(dbpath));
    if (write_config(d, config, dbpath) ||
        (pid = demo_spawn_self((char *const[]){"ballast", "run", config, NULL},
                               log)) < 0)
        return -1;
    while (posted < kill_at && cli_now_s() - t0 < 20) {
        if (waitpid(pid, &status, WNOHANG) == pid) {
            cli_error("demo: `ballast run` ended by itself (status %d) after "
                      "%lld postings",
                      status, (long long)posted);
            demo_show_file("output of `ballast run`", log);
            return -1;
        }
        posted = demo_db_int(db, "SELECT count(*) FROM postings");
        usleep(2 * 1000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    if (posted < kill_at) {
        cli_error("demo: `ballast run` posted only %lld transactions in 20 s",
                  (long long)posted);
        demo_show_file("output of `ballast run`", log);
        return -1;
    }
    demo_say("crash     `ballast run` (pid %d) on %s: killed with SIGKILL "
             "%.1f s after its start, once %lld transactions were posted",
             (int)pid, config, cli_now_s() - t0, (long long)posted);
    return 0;
}

/* The next offset ballast_offsets holds for a partition (0: none). */
static int64_t stored_offset(sqlite3 *db, int partition)
{
    char q[256];

    snprintf(q, sizeof(q),
             "SELECT next_offset FROM ballast_offsets WHERE group_id = "
             "'" GROUP "' AND topic = '" TOPIC "' AND partition = %d",
             partition);
    return demo_db_int(db, q);
}

int demo_ledger(demo_t *d)
{
    int64_t expect_balance[ACCOUNTS] = {0};
    int64_t committed[PARTITIONS], high[PARTITIONS];
    uint32_t seed = 424242;
    char path[4096];
    sqlite3 *db;
    ballast_conf_t *conf = NULL;
    ballast_stats_t st;
    int64_t at_crash, offsets_at_crash, kafka_at_crash = 0;
    int64_t stored_at_crash[PARTITIONS];
    char detail[256] = "";
    int rc = -1;

    demo_say("invariant: each transaction is posted once and moves its amount "
             "between two balances, even across kill -9");
    if (demo_create_topic(d, TOPIC, PARTITIONS))
        return -1;
    for (int i = 0; i < TRANSACTIONS; i++) {
        int from = (int)(demo_rand(&seed) % ACCOUNTS);
        int to = (from + 1 + (int)(demo_rand(&seed) % (ACCOUNTS - 1))) %
                 ACCOUNTS;
        int amount = 1 + (int)(demo_rand(&seed) % 50000);
        char key[16];

        expect_balance[from] -= amount;
        expect_balance[to] += amount;
        snprintf(key, sizeof(key), "acct-%02d", from);
        if (demo_produce(d, TOPIC, key, NULL,
                         "{\"txId\":\"tx-%06d\",\"from\":\"acct-%02d\","
                         "\"to\":\"acct-%02d\",\"amount\":%d}",
                         i, from, to, amount))
            return -1;
    }
    if (demo_flush(d))
        return -1;
    demo_say("produced  %d transfers between %d accounts to " TOPIC
             " (%d partitions, keyed by debit account)",
             TRANSACTIONS, ACCOUNTS, PARTITIONS);
    demo_say("schema    postings has no unique key: a second delivery "
             "would be posted again, and its trigger would move the money "
             "again");

    if (!(db = demo_db_open(d, "ledger.db", schema)))
        return -1;
    sqlite3_busy_timeout(db, 5000);

    /* 1. The daemon, killed a third of the way through. */
    if (run_and_kill(d, db, TRANSACTIONS / 3))
        goto out;
    at_crash = demo_db_int(db, "SELECT count(*) FROM postings");
    offsets_at_crash = demo_db_int(
        db, "SELECT coalesce(sum(next_offset), 0) FROM ballast_offsets "
            "WHERE group_id = '" GROUP "' AND topic = '" TOPIC "'");
    if (demo_offsets(d, GROUP, TOPIC, PARTITIONS, committed, NULL, NULL))
        goto out;
    for (int p = 0; p < PARTITIONS; p++) {
        stored_at_crash[p] = stored_offset(db, p);
        kafka_at_crash += committed[p] < 0 ? 0 : committed[p];
        snprintf(detail + strlen(detail), sizeof(detail) - strlen(detail),
                 "%sp%d %lld/%lld", p ? ", " : "", p,
                 (long long)stored_at_crash[p],
                 (long long)(committed[p] < 0 ? 0 : committed[p]));
    }
    /* Offsets start at 0 and every message is a posting, so the stored
     * next offsets add up to the postings they cover. */
    demo_check(d, at_crash == offsets_at_crash,
               "after the kill: postings in the database (%lld) == offsets "
               "stored beside them in ballast_offsets (%lld): written in one "
               "transaction",
               (long long)at_crash, (long long)offsets_at_crash);
    demo_say("          next offsets in the database / committed in Kafka: %s",
             detail);
    demo_say("          Kafka's (advisory) offsets cover %lld of the %lld "
             "postings: a consumer resuming from them, as the article's does, "
             "would post %lld transactions twice",
             (long long)kafka_at_crash, (long long)at_crash,
             (long long)(at_crash - kafka_at_crash));

    /* 2. A consumer of the same group finishes the ledger. */
    demo_path(d, "ledger.db", path, sizeof(path));
    conf = demo_conf(d, GROUP, TOPIC,
                     (const char *const[]){"semantics", "exactly-once",
                                           "processing", "batch",
                                           "batch.max.messages", "200",
                                           "handler", "sqlite",
                                           "handler.sqlite.path", path,
                                           "handler.sqlite.sql", sql,
                                           /* the group's session timeout
                                            * is the last joiner's: it is
                                            * what evicts the dead member */
                                           "kafka.session.timeout.ms", "4000",
                                           NULL});
    demo_say("restart   a consumer of the same group (the dead member is "
             "evicted when its session times out)");
    if (conf &&
        demo_consume(d, conf, (uint64_t)(TRANSACTIONS - at_crash), &st) == 0) {
        int64_t rows = demo_db_int(db, "SELECT count(*) FROM postings");
        int64_t distinct =
            demo_db_int(db, "SELECT count(DISTINCT txn_id) FROM postings");
        int64_t total =
            demo_db_int(db, "SELECT coalesce(sum(balance), 0) FROM accounts");
        int wrong = 0, first_wrong = -1, offsets_ok = 0;
        sqlite3_stmt *stmt;

        if (sqlite3_prepare_v2(db, "SELECT id, balance FROM accounts", -1,
                               &stmt, NULL) == SQLITE_OK) {
            int seen = 0;
            while (sqlite3_step(stmt) == SQLITE_ROW) {
                int a = -1;
                const char *id = (const char *)sqlite3_column_text(stmt, 0);
                seen++;
                if (!id || sscanf(id, "acct-%d", &a) != 1 || a < 0 ||
                    a >= ACCOUNTS ||
                    sqlite3_column_int64(stmt, 1) != expect_balance[a]) {
                    if (!wrong++)
                        first_wrong = a;
                }
            }
            sqlite3_finalize(stmt);
            if (seen != ACCOUNTS)
                wrong += ACCOUNTS;
        } else {
            wrong = ACCOUNTS;
        }
        if (demo_offsets(d, GROUP, TOPIC, PARTITIONS, committed, NULL, high))
            goto out;
        for (int p = 0; p < PARTITIONS; p++)
            offsets_ok += stored_offset(db, p) == high[p];

        demo_check(d, st.consumed == (uint64_t)(TRANSACTIONS - at_crash),
                   "the restart consumed %llu == %d - %lld: it resumed at the "
                   "database's offsets, not Kafka's",
                   (unsigned long long)st.consumed, TRANSACTIONS,
                   (long long)at_crash);
        demo_check(d, rows == TRANSACTIONS && distinct == TRANSACTIONS,
                   "postings (%lld) == distinct txn_id (%lld) == transactions "
                   "(%d): each posted exactly once",
                   (long long)rows, (long long)distinct, TRANSACTIONS);
        if (wrong)
            demo_check(d, false,
                       "%d of %d balances differ from the input's sums "
                       "(first: acct-%02d)",
                       wrong, ACCOUNTS, first_wrong);
        else
            demo_check(d, true,
                       "all %d balances == their credits - debits in the "
                       "input (the trigger ran once per transaction)",
                       ACCOUNTS);
        demo_check(d, total == 0,
                   "sum of balances == %lld (money is only moved, never "
                   "created)",
                   (long long)total);
        demo_check(d, offsets_ok == PARTITIONS,
                   "ballast_offsets == high watermarks on %d of %d partitions",
                   offsets_ok, PARTITIONS);
        rc = 0;
    }
out:
    ballast_conf_destroy(conf);
    sqlite3_close(db);
    return rc;
}
