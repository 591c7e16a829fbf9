/* sqlite.c - the `sqlite` handler: runs `handler.sqlite.sql` per message, a batch in one transaction (exactly-once: in the consumer's). */
#include "sqltxn.h"

#include "../check.h"
#include "../sqltmpl.h"

#include <errno.h>
#include <libgen.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Several workers (and processes) may write the same file: WAL lets
 * readers and one writer overlap, and the busy timeout makes a writer wait
 * for the lock instead of failing at once. */
#define BUSY_TIMEOUT_MS 5000
#define ERRLEN 512

/* Control statements prepared once per connection, indexed by ctl_t. */
typedef enum ctl {
    CTL_BEGIN,
    CTL_COMMIT,
    CTL_ROLLBACK,
    CTL_SAVEPOINT,
    CTL_RELEASE,
    CTL_ROLLBACK_TO,
    CTL_COUNT
} ctl_t;

static const char *const ctl_sql[CTL_COUNT] = {
    /* IMMEDIATE takes the write lock up front: a deferred transaction
     * could fail with SQLITE_BUSY halfway through a batch when it tries
     * to upgrade its read lock, which the busy timeout cannot fix. */
    "BEGIN IMMEDIATE", "COMMIT", "ROLLBACK", "SAVEPOINT ballast_msg",
    "RELEASE ballast_msg", "ROLLBACK TO ballast_msg"};

#define KILLERS 16 /* messages remembered for rolling a transaction back */

/* Exactly-once: a message whose statement rolled back the whole
 * transaction, taking others' effects along (see txn_killed). */
typedef struct killer {
    char *topic; /* NULL: a free slot */
    int32_t partition;
    int64_t offset;
    char err[ERRLEN];
} killer_t;

/* One per worker; used by one thread at a time. */
typedef struct sqlite_state {
    sqlite3 *db;
    sqlite3_stmt *stmt; /* the user's statement */
    sqlite3_stmt *ctl[CTL_COUNT];
    bl_sqltmpl_t tmpl;
    /* exactly-once (see "the consumer's transaction" below) */
    bool eo;     /* semantics = exactly-once: the off_* statements exist */
    sqlite3_stmt *off_upsert, *off_select;
    bool in_txn; /* a transaction opened by begin is open */
    bool doomed; /* ... but can only be rolled back, because of doom_err */
    size_t txn_ok; /* messages that succeeded in it, in calls before */
    char doom_err[ERRLEN];
    killer_t killers[KILLERS];
    size_t next_killer;
} sqlite_state_t;

/* Errors that say nothing about the message itself (locks, disk, memory):
 * the same message may well succeed later. Everything else (constraint,
 * mismatch, too big, malformed JSON in a json() call...) is permanent. */
static bool sqlite_transient(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_NOMEM:
    case SQLITE_CANTOPEN:
    case SQLITE_PROTOCOL:
    case SQLITE_READONLY:
    case SQLITE_INTERRUPT:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_NOLFS:
        return true;
    default:
        return false;
    }
}

/* ---- running statements -------------------------------------------------- */

static int bind_one(sqlite_state_t *st, int idx, const bl_param_t *param,
                    const ballast_message_t *msg)
{
    bl_sqlval_t v;

    bl_sqltmpl_value(param, msg, &v);
    if (!v.data)
        return sqlite3_bind_null(st->stmt, idx);
    if (v.is_int)
        return sqlite3_bind_int64(st->stmt, idx, v.i);
    /* Bytes that are not UTF-8 would be stored as corrupt TEXT; as a BLOB
     * they survive intact (and typeof() tells them apart). */
    if (bl_utf8_valid(v.data, v.len))
        return sqlite3_bind_text64(st->stmt, idx, v.data, v.len, SQLITE_STATIC,
                                   SQLITE_UTF8);
    return sqlite3_bind_blob64(st->stmt, idx, v.data, v.len, SQLITE_STATIC);
}

/* Binds the message's parameters and steps the statement to completion.
 * @returns SQLITE_OK or the (extended) error code, with a line in @p err. */
static int run_message(sqlite_state_t *st, const ballast_message_t *msg,
                       char *err, size_t errsize)
{
    int rc = SQLITE_OK;

    for (size_t i = 0; i < st->tmpl.count && rc == SQLITE_OK; i++) {
        rc = bind_one(st, (int)i + 1, &st->tmpl.params[i], msg);
        if (rc != SQLITE_OK) {
            char name[128];
            bl_sqltmpl_param_name(&st->tmpl.params[i], name, sizeof(name));
            bl_fmt(err, errsize, "sqlite: cannot bind %s: %s", name,
                   sqlite3_errstr(rc));
        }
    }
    if (rc == SQLITE_OK) {
        while ((rc = sqlite3_step(st->stmt)) == SQLITE_ROW)
            ; /* a RETURNING clause or a SELECT: rows are not used */
        if (rc == SQLITE_DONE)
            rc = SQLITE_OK;
        else
            bl_fmt(err, errsize, "sqlite: %s", sqlite3_errmsg(st->db));
    }
    sqlite3_reset(st->stmt);
    /* Bindings point into the message, which is about to go away. */
    sqlite3_clear_bindings(st->stmt);
    return rc;
}

static int run_ctl(sqlite_state_t *st, ctl_t which, char *err, size_t errsize)
{
    sqlite3_stmt *s = st->ctl[which];
    int rc = sqlite3_step(s);

    if (rc == SQLITE_DONE || rc == SQLITE_ROW)
        rc = SQLITE_OK;
    else
        bl_fmt(err, errsize, "sqlite: %s: %s", ctl_sql[which],
               sqlite3_errmsg(st->db));
    sqlite3_reset(s);
    return rc;
}

/* A failed COMMIT may leave its transaction open; a new unit of work must
 * not run inside it. */
static void leave_transaction(sqlite_state_t *st)
{
    char ignored[ERRLEN];

    if (!sqlite3_get_autocommit(st->db))
        run_ctl(st, CTL_ROLLBACK, ignored, sizeof(ignored));
}

typedef enum step_result { STEP_OK, STEP_FAILED, STEP_ABORT, STEP_REDO } step_result_t;

/* Runs one message of a batch inside its own savepoint, so that a
 * permanent failure undoes exactly that message's effects (even a partial
 * one, as with ON CONFLICT FAIL) and the batch goes on. */
static step_result_t batch_step(sqlite_state_t *st, const ballast_message_t *msg,
                                char *err, size_t errsize)
{
    char ctlerr[ERRLEN];
    int rc;

    if (run_ctl(st, CTL_SAVEPOINT, err, errsize) != SQLITE_OK)
        return STEP_ABORT;
    rc = run_message(st, msg, err, errsize);
    if (rc == SQLITE_OK)
        return run_ctl(st, CTL_RELEASE, err, errsize) ? STEP_ABORT : STEP_OK;
    if (sqlite_transient(rc))
        return STEP_ABORT;
    if (sqlite3_get_autocommit(st->db))
        return STEP_REDO; /* ON CONFLICT ROLLBACK / RAISE(ROLLBACK) ended it */
    if (run_ctl(st, CTL_ROLLBACK_TO, ctlerr, sizeof(ctlerr)) ||
        run_ctl(st, CTL_RELEASE, ctlerr, sizeof(ctlerr))) {
        bl_fmt(err, errsize, "%s", ctlerr);
        return STEP_ABORT;
    }
    return STEP_FAILED;
}

/* batch_step() for message @p i of a batch, whose outcome becomes FAIL
 * (with its error) when it failed. */
static step_result_t batch_step_at(sqlite_state_t *st, const ballast_message_t *const *msgs,
                                   ballast_result_t *const *results,
                                   ballast_outcome_t *outcomes, size_t i, char *err,
                                   size_t errsize)
{
    step_result_t step = batch_step(st, msgs[i], err, errsize);

    if (step == STEP_FAILED) {
        outcomes[i] = BALLAST_OUTCOME_FAIL;
        ballast_result_set_error(results[i], err);
    }
    return step;
}

/* ---- exactly-once: the consumer's transaction ---------------------------- */

/*
 * With semantics = exactly-once the consumer opens the transaction (begin:
 * BEGIN IMMEDIATE); handle/handle_batch then run each message inside it in
 * a savepoint of its own (batch_step), so that a failed message's effects,
 * even partial ones, are undone while the others stay, and never BEGIN or
 * COMMIT; commit upserts ballast_offsets and COMMITs. (SQLite savepoints
 * are cheap, unlike PostgreSQL's subtransactions, so there is no separate
 * fast path without them.)
 *
 * A transient failure dooms the transaction: every message of the batch is
 * RETRY, later calls and commit refuse, and the consumer rolls back and
 * redoes the batch. A statement that rolls back the whole transaction
 * itself (ON CONFLICT ROLLBACK, RAISE(ROLLBACK) in a trigger) takes the
 * effects of the messages before it along: handle_batch then opens the
 * transaction again and reruns the batch's good messages. When effects of
 * earlier calls since begin are lost too (messages handled one at a time),
 * they cannot be redone here: the message is remembered as a "killer", the
 * transaction is doomed, and in the redo the killer is FAIL without being
 * run again.
 */

static const killer_t *killer_find(const sqlite_state_t *st,
                                   const ballast_message_t *msg)
{
    for (size_t i = 0; i < KILLERS; i++) {
        const killer_t *k = &st->killers[i];
        if (k->topic && k->partition == ballast_message_partition(msg) &&
            k->offset == ballast_message_offset(msg) &&
            !strcmp(k->topic, ballast_message_topic(msg)))
            return k;
    }
    return NULL;
}

static void killer_add(sqlite_state_t *st, const ballast_message_t *msg,
                       const char *err)
{
    killer_t *k = &st->killers[st->next_killer++ % KILLERS];

    free(k->topic);
    k->topic = bl_strdup(ballast_message_topic(msg));
    k->partition = ballast_message_partition(msg);
    k->offset = ballast_message_offset(msg);
    bl_fmt(k->err, sizeof(k->err), "%s", err);
}

static void killers_clear(sqlite_state_t *st)
{
    for (size_t i = 0; i < KILLERS; i++) {
        free(st->killers[i].topic);
        st->killers[i].topic = NULL;
    }
}

static void txn_doom(sqlite_state_t *st, const char *err)
{
    st->doomed = true;
    bl_fmt(st->doom_err, sizeof(st->doom_err), "%s", err);
}

/* @p msg's statement failed with @p err and rolled back the whole
 * transaction. With nothing else lost the transaction simply starts again
 * (@returns true); otherwise it is doomed and @p msg remembered. */
static bool txn_killed(sqlite_state_t *st, const ballast_message_t *msg,
                       const char *err)
{
    char why[ERRLEN];

    if (st->txn_ok == 0) {
        if (run_ctl(st, CTL_BEGIN, why, sizeof(why)) == SQLITE_OK)
            return true;
        txn_doom(st, why);
        return false;
    }
    killer_add(st, msg, err);
    bl_fmt(why, sizeof(why), "%s (this rolled back the whole transaction; the "
                             "batch is handled again without the message)",
           err);
    txn_doom(st, why);
    return false;
}

static ballast_outcome_t txn_handle(sqlite_state_t *st, const ballast_message_t *msg,
                                    ballast_result_t *res)
{
    const killer_t *k = killer_find(st, msg);
    char err[ERRLEN];

    if (k) {
        ballast_result_set_error(res, k->err);
        return BALLAST_OUTCOME_FAIL;
    }
    if (st->doomed) {
        ballast_result_set_error(res, st->doom_err);
        return BALLAST_OUTCOME_RETRY;
    }
    switch (batch_step(st, msg, err, sizeof(err))) {
    case STEP_OK:
        st->txn_ok++;
        return BALLAST_OUTCOME_OK;
    case STEP_FAILED:
        break;
    case STEP_ABORT:
        txn_doom(st, err);
        break;
    case STEP_REDO:
        txn_killed(st, msg, err);
        break;
    }
    ballast_result_set_error(res, st->doomed ? st->doom_err : err);
    return st->doomed ? BALLAST_OUTCOME_RETRY : BALLAST_OUTCOME_FAIL;
}

static void txn_batch(sqlite_state_t *st, const ballast_message_t *const *msgs,
                      ballast_result_t *const *results, size_t count,
                      ballast_outcome_t *outcomes)
{
    char err[ERRLEN];
    bool again = true;

    for (size_t i = 0; i < count; i++) {
        const killer_t *k = killer_find(st, msgs[i]);
        outcomes[i] = k ? BALLAST_OUTCOME_FAIL : BALLAST_OUTCOME_OK;
        if (k)
            ballast_result_set_error(results[i], k->err);
    }
    if (st->doomed) {
        bl_sqltxn_retry_all(results, count, outcomes, st->doom_err);
        return;
    }
    /* Each pass that starts again has one more FAIL: it ends. */
    while (again) {
        again = false;
        for (size_t i = 0; i < count && !again; i++) {
            if (outcomes[i] == BALLAST_OUTCOME_FAIL)
                continue;
            switch (batch_step_at(st, msgs, results, outcomes, i, err, sizeof(err))) {
            case STEP_OK:
            case STEP_FAILED:
                break;
            case STEP_ABORT:
                txn_doom(st, err);
                bl_sqltxn_retry_all(results, count, outcomes, err);
                return;
            case STEP_REDO:
                outcomes[i] = BALLAST_OUTCOME_FAIL;
                ballast_result_set_error(results[i], err);
                if (!txn_killed(st, msgs[i], err)) {
                    bl_sqltxn_retry_all(results, count, outcomes, st->doom_err);
                    return;
                }
                again = true; /* the good messages before it, once more */
                break;
            }
        }
    }
    for (size_t i = 0; i < count; i++)
        st->txn_ok += outcomes[i] == BALLAST_OUTCOME_OK;
}

static void sqlite_rollback(void *state)
{
    sqlite_state_t *st = state;

    st->in_txn = st->doomed = false;
    st->txn_ok = 0;
    leave_transaction(st);
}

static ballast_outcome_t sqlite_begin(void *state, char *errbuf, size_t errsize)
{
    sqlite_state_t *st = state;

    if (bl_sqltxn_usable(st->eo, "sqlite", "begin", errbuf, errsize)) {
        sqlite_rollback(st); /* one left open: it can only be given up */
        st->in_txn = run_ctl(st, CTL_BEGIN, errbuf, errsize) == SQLITE_OK;
    }
    return st->in_txn ? BALLAST_OUTCOME_OK : BALLAST_OUTCOME_RETRY;
}

/* Advances one partition's stored offset, fenced (see handlers.h): no row
 * changed means another member committed past the batch's first offset.
 * @returns _OK, _RETRY (an error) or _FAIL (stale), errbuf set unless _OK. */
static ballast_outcome_t upsert_offset(sqlite_state_t *st, const char *group,
                                       const bl_dbtxn_offset_t *off, char *errbuf,
                                       size_t errsize)
{
    sqlite3_stmt *s = st->off_upsert;
    int rc = sqlite3_bind_text(s, 1, group, -1, SQLITE_STATIC);
    ballast_outcome_t out = BALLAST_OUTCOME_OK;

    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, off->topic, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 3, off->partition);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 4, off->next_offset);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int64(s, 5, off->first_offset);
    if (rc == SQLITE_OK && (rc = sqlite3_step(s)) == SQLITE_DONE)
        rc = SQLITE_OK;
    if (rc != SQLITE_OK) {
        bl_fmt(errbuf, errsize, "sqlite: ballast_offsets: %s", sqlite3_errmsg(st->db));
        out = BALLAST_OUTCOME_RETRY;
    } else if (sqlite3_changes(st->db) == 0) {
        bl_dbtxn_stale_error(errbuf, errsize, off);
        out = BALLAST_OUTCOME_FAIL;
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return out;
}

static ballast_outcome_t sqlite_commit(void *state, const char *group,
                                       const bl_dbtxn_offset_t *offsets, size_t count,
                                       char *errbuf, size_t errsize)
{
    sqlite_state_t *st = state;

    if (!st->in_txn) {
        bl_fmt(errbuf, errsize, "sqlite: commit without an open transaction");
        return BALLAST_OUTCOME_RETRY;
    }
    if (st->doomed) {
        bl_fmt(errbuf, errsize, "%s", st->doom_err);
        sqlite_rollback(st);
        return BALLAST_OUTCOME_RETRY;
    }
    if (sqlite3_get_autocommit(st->db)) { /* e.g. rolled back on SQLITE_FULL */
        bl_fmt(errbuf, errsize, "sqlite: the transaction was rolled back");
        sqlite_rollback(st);
        return BALLAST_OUTCOME_RETRY;
    }
    for (size_t i = 0; i < count; i++) {
        ballast_outcome_t out = upsert_offset(st, group, &offsets[i], errbuf, errsize);
        if (out != BALLAST_OUTCOME_OK) {
            sqlite_rollback(st);
            return out;
        }
    }
    if (run_ctl(st, CTL_COMMIT, errbuf, errsize) != SQLITE_OK) {
        sqlite_rollback(st);
        return BALLAST_OUTCOME_RETRY;
    }
    st->in_txn = false;
    st->txn_ok = 0;
    killers_clear(st);
    return BALLAST_OUTCOME_OK;
}

static int sqlite_load_offset(void *state, const char *group, const char *topic,
                              int32_t partition, int64_t *next, char *errbuf,
                              size_t errsize)
{
    sqlite_state_t *st = state;
    sqlite3_stmt *s = st->off_select;
    int rc, found = -1;

    if (!bl_sqltxn_usable(st->eo, "sqlite", "load_offset", errbuf, errsize))
        return -1;
    rc = sqlite3_bind_text(s, 1, group, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_text(s, 2, topic, -1, SQLITE_STATIC);
    if (rc == SQLITE_OK)
        rc = sqlite3_bind_int(s, 3, partition);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        *next = sqlite3_column_int64(s, 0);
        found = 1;
    } else if (rc == SQLITE_DONE) {
        found = 0;
    } else {
        bl_fmt(errbuf, errsize, "sqlite: ballast_offsets: %s", sqlite3_errmsg(st->db));
    }
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return found;
}

/* The transaction operations of `sqlite`; see bl_dbtxn_ops_t. */
const bl_dbtxn_ops_t bl_sqlite_dbtxn_ops = {sqlite_begin, sqlite_commit, sqlite_rollback,
                                           sqlite_load_offset};

/* ---- handler callbacks --------------------------------------------------- */

static ballast_outcome_t sqlite_handle(void *state, const ballast_message_t *msg,
                                       ballast_result_t *res)
{
    sqlite_state_t *st = state;
    char err[ERRLEN];
    int rc;

    if (st->in_txn)
        return txn_handle(st, msg, res);
    leave_transaction(st);
    rc = run_message(st, msg, err, sizeof(err));
    if (rc == SQLITE_OK)
        return BALLAST_OUTCOME_OK;
    ballast_result_set_error(res, err);
    return sqlite_transient(rc) ? BALLAST_OUTCOME_RETRY : BALLAST_OUTCOME_FAIL;
}

/* The batch's transaction is gone and some message failed for good in a
 * way no savepoint could isolate: run each message in its own autocommit
 * transaction so that exactly the bad ones fail. */
static void run_singly(sqlite_state_t *st, const ballast_message_t *const *msgs,
                       ballast_result_t *const *results, size_t count,
                       ballast_outcome_t *outcomes)
{
    for (size_t i = 0; i < count; i++)
        outcomes[i] = sqlite_handle(st, msgs[i], results[i]);
}

static void sqlite_handle_batch(void *state, const ballast_message_t *const *msgs,
                                ballast_result_t *const *results, size_t count,
                                ballast_outcome_t *outcomes)
{
    sqlite_state_t *st = state;
    char err[ERRLEN];
    int rc;

    if (st->in_txn) {
        txn_batch(st, msgs, results, count, outcomes);
        return;
    }
    for (size_t i = 0; i < count; i++)
        outcomes[i] = BALLAST_OUTCOME_OK;
    leave_transaction(st);
    if (run_ctl(st, CTL_BEGIN, err, sizeof(err)) != SQLITE_OK) {
        bl_sqltxn_retry_rest(results, count, outcomes, err);
        return;
    }
    for (size_t i = 0; i < count; i++) {
        switch (batch_step_at(st, msgs, results, outcomes, i, err, sizeof(err))) {
        case STEP_OK:
        case STEP_FAILED:
            break;
        case STEP_ABORT:
            leave_transaction(st);
            bl_sqltxn_retry_rest(results, count, outcomes, err);
            return;
        case STEP_REDO:
            run_singly(st, msgs, results, count, outcomes);
            return;
        }
    }
    if ((rc = run_ctl(st, CTL_COMMIT, err, sizeof(err))) == SQLITE_OK)
        return;
    leave_transaction(st);
    if (sqlite_transient(rc))
        bl_sqltxn_retry_rest(results, count, outcomes, err);
    else /* e.g. a deferred foreign key: checked only at COMMIT */
        run_singly(st, msgs, results, count, outcomes);
}

/* ---- start-up ------------------------------------------------------------ */

/* What a file that cannot be opened means at start-up: a local file is
 * never "unreachable" but while another process holds its lock. */
static int open_error_code(int rc)
{
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return BALLAST_ERR_UNREACHABLE;
    case SQLITE_NOMEM:
        return BALLAST_ERR_INTERNAL;
    case SQLITE_IOERR:
    case SQLITE_FULL:
        return BALLAST_ERR_IO;
    default: /* CANTOPEN, PERM, READONLY, NOTADB, CORRUPT...: the path */
        return BALLAST_ERR_CONFIG;
    }
}

/* Opens the database. For `ballast check` (@p check) a missing file is not
 * created and an existing one is not changed; start-up creates it and
 * switches it to WAL. */
static int open_db(sqlite_state_t *st, const char *path, bool check, char *errbuf,
                   size_t errsize)
{
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX |
                (check ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &st->db, flags, NULL);
    char *msg = NULL;

    if (rc == SQLITE_OK) {
        sqlite3_extended_result_codes(st->db, 1);
        sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
        /* Opening is lazy: this first statement is what finds out that the
         * file is unreadable or not a database. */
        rc = sqlite3_exec(st->db, check ? "PRAGMA schema_version" : "PRAGMA journal_mode=WAL",
                          NULL, NULL, &msg);
    }
    /* A file we may not write is opened read-only without a word; every
     * write would then fail, and be retried, for ever. */
    if (rc == SQLITE_OK && sqlite3_db_readonly(st->db, "main") == 1) {
        bl_fmt(errbuf, errsize, "handler.sqlite.path: %s is read-only", path);
        return BALLAST_ERR_CONFIG;
    }
    if (rc == SQLITE_OK)
        return 0;
    bl_fmt(errbuf, errsize, "handler.sqlite.path: cannot open %s: %s", path,
           msg ? msg : st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return open_error_code(rc);
}

/* Exactly-once: creates ballast_offsets unless it exists, and prepares
 * the statements on it. */
static int setup_offsets(sqlite_state_t *st, char *errbuf, size_t errsize)
{
    static const char upsert[] =
        "INSERT INTO ballast_offsets (group_id, topic, partition, next_offset) "
        "VALUES (?1, ?2, ?3, ?4) ON CONFLICT (group_id, topic, partition) DO "
        "UPDATE SET next_offset = excluded.next_offset "
        "WHERE ballast_offsets.next_offset <= ?5"; /* fenced: see handlers.h */
    static const char select[] = "SELECT next_offset FROM ballast_offsets WHERE "
                                 "group_id = ?1 AND topic = ?2 AND partition = ?3";
    int rc = sqlite3_exec(st->db, BL_SQLTXN_OFFSETS_DDL, NULL, NULL, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(st->db, upsert, -1, SQLITE_PREPARE_PERSISTENT,
                                &st->off_upsert, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v3(st->db, select, -1, SQLITE_PREPARE_PERSISTENT,
                                &st->off_select, NULL);
    if (rc == SQLITE_OK)
        return 0;
    bl_fmt(errbuf, errsize, "semantics: exactly-once needs the table "
                            "ballast_offsets: %s", sqlite3_errmsg(st->db));
    return sqlite_transient(rc) ? BALLAST_ERR_UNREACHABLE : BALLAST_ERR_CONFIG;
}

static int prepare_all(sqlite_state_t *st, char *errbuf, size_t errsize)
{
    const char *tail = NULL;
    int rc = sqlite3_prepare_v3(st->db, st->tmpl.sql, -1, SQLITE_PREPARE_PERSISTENT,
                                &st->stmt, &tail);

    if (rc != SQLITE_OK) {
        bl_fmt(errbuf, errsize, "handler.sqlite.sql: %s", sqlite3_errmsg(st->db));
        return BALLAST_ERR_CONFIG;
    }
    if (!st->stmt) {
        bl_fmt(errbuf, errsize, "handler.sqlite.sql: empty statement");
        return BALLAST_ERR_CONFIG;
    }
    if (sqlite3_bind_parameter_count(st->stmt) != (int)st->tmpl.count) {
        bl_fmt(errbuf, errsize, "handler.sqlite.sql: the statement has parameters "
                                "that are not ballast placeholders");
        return BALLAST_ERR_CONFIG;
    }
    for (int i = 0; i < CTL_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, ctl_sql[i], -1, SQLITE_PREPARE_PERSISTENT,
                               &st->ctl[i], NULL) != SQLITE_OK) {
            bl_fmt(errbuf, errsize, "handler.sqlite: cannot prepare %s: %s",
                   ctl_sql[i], sqlite3_errmsg(st->db));
            return BALLAST_ERR_INTERNAL;
        }
    }
    return 0;
}

static void sqlite_destroy(void *state)
{
    sqlite_state_t *st = state;

    if (!st)
        return;
    sqlite3_finalize(st->stmt);
    for (int i = 0; i < CTL_COUNT; i++)
        sqlite3_finalize(st->ctl[i]);
    sqlite3_finalize(st->off_upsert);
    sqlite3_finalize(st->off_select);
    killers_clear(st);
    sqlite3_close(st->db);
    bl_sqltmpl_free(&st->tmpl);
    free(st);
}

/* `ballast check` with a file that does not exist yet: start-up creates it
 * in its directory. */
static int check_new_file(const char *path, char *errbuf, size_t errsize)
{
    char *copy = bl_strdup(path);
    int rc = 0;

    if (!copy) {
        bl_fmt(errbuf, errsize, "handler.sqlite: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    if (access(dirname(copy), W_OK | X_OK)) {
        bl_fmt(errbuf, errsize, "handler.sqlite.path: cannot create %s: %s: %s", path,
               copy, strerror(errno));
        rc = BALLAST_ERR_CONFIG;
    }
    free(copy);
    return rc;
}

/* `ballast check`: start-up's statements, inside a transaction that is
 * rolled back, so that a ballast_offsets made for their sake is gone again
 * (SQLite's DDL is transactional). */
static int check_statements(sqlite_state_t *st, char *errbuf, size_t errsize)
{
    int rc = sqlite3_exec(st->db, "BEGIN", NULL, NULL, NULL);

    if (rc != SQLITE_OK) {
        bl_fmt(errbuf, errsize, "handler.sqlite.path: %s", sqlite3_errmsg(st->db));
        return open_error_code(rc);
    }
    if (!(rc = st->eo ? setup_offsets(st, errbuf, errsize) : 0))
        rc = prepare_all(st, errbuf, errsize);
    sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

void bl_sqlite_check(const ballast_conf_t *conf, bl_check_t *ck)
{
    const char *path = bl_conf_str(conf, "handler.sqlite.path");
    char db_err[ERRLEN] = "", sql_err[ERRLEN] = "", err[ERRLEN], item[ERRLEN];
    sqlite_state_t *st = calloc(1, sizeof(*st));
    int db_rc = 0, sql_rc = 0;
    bool exists;

    if (!st) {
        bl_check_report(ck, "SQL statement", BALLAST_ERR_INTERNAL, "handler.sqlite: out of memory");
        return;
    }
    st->eo = bl_conf_exactly_once(conf);
    if (bl_sqltmpl_parse(bl_conf_str(conf, "handler.sqlite.sql"), BL_SQL_SQLITE, &st->tmpl,
                         err, sizeof(err))) {
        bl_fmt(sql_err, sizeof(sql_err), "handler.sqlite.sql: %s", err);
        sql_rc = BALLAST_ERR_CONFIG;
    }
    if (bl_check_connects(ck)) {
        /* A missing file is what start-up would create: an empty database,
         * which one in memory stands in for. */
        exists = !strcmp(path, ":memory:") || !access(path, F_OK) || errno != ENOENT;
        if (!exists)
            db_rc = check_new_file(path, db_err, sizeof(db_err));
        if (!db_rc)
            db_rc = open_db(st, exists ? path : ":memory:", true, db_err, sizeof(db_err));
        bl_fmt(item, sizeof(item), "database file %s%s", path,
               exists ? "" : " (not there yet: run creates it)");
        bl_check_report(ck, item, db_rc, "%s", db_err);
        if (!sql_rc && (sql_rc = db_rc) != 0)
            bl_fmt(sql_err, sizeof(sql_err), "handler.sqlite.sql: not prepared (the "
                                             "database cannot be opened)");
        else if (!sql_rc)
            sql_rc = check_statements(st, sql_err, sizeof(sql_err));
    }
    bl_check_report(ck, "SQL statement", sql_rc, "%s", sql_err);
    sqlite_destroy(st);
}

static int sqlite_init(void **statep, const ballast_handler_params_t *params,
                       char *errbuf, size_t errsize)
{
    const char *path = bl_conf_str(params->conf, "handler.sqlite.path");
    const char *sql = bl_conf_str(params->conf, "handler.sqlite.sql");
    char err[ERRLEN];
    sqlite_state_t *st;
    int rc;

    *statep = NULL;
    if (!*path || !*sql) {
        bl_fmt(errbuf, errsize, "%s: missing (required by handler = sqlite)",
               *path ? "handler.sqlite.sql" : "handler.sqlite.path");
        return BALLAST_ERR_CONFIG;
    }
    if (!(st = calloc(1, sizeof(*st)))) {
        bl_fmt(errbuf, errsize, "handler.sqlite: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    st->eo = bl_conf_exactly_once(params->conf);
    if (bl_sqltmpl_parse(sql, BL_SQL_SQLITE, &st->tmpl, err, sizeof(err))) {
        bl_fmt(errbuf, errsize, "handler.sqlite.sql: %s", err);
        rc = BALLAST_ERR_CONFIG;
    } else if (!(rc = open_db(st, path, false, errbuf, errsize)) &&
               !(rc = st->eo ? setup_offsets(st, errbuf, errsize) : 0)) {
        rc = prepare_all(st, errbuf, errsize); /* the table first: the
                                                  statement may use it */
    }
    if (rc) {
        sqlite_destroy(st);
        return rc;
    }
    *statep = st;
    return 0;
}

/* Built-in handler `sqlite`; see ballast_handler_t for the threading rules. */
const ballast_handler_t bl_handler_sqlite = {
    BALLAST_HANDLER_ABI_VERSION, "sqlite", sqlite_init, sqlite_handle,
    sqlite_handle_batch, sqlite_destroy};
