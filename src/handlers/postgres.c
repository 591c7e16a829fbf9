/* postgres.c - the `postgres` handler: runs `handler.postgres.sql` per message, a batch pipelined in one transaction. */
#include "handlers.h"

#include "../sqltmpl.h"

#include <errno.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef LIBPQ_HAS_PIPELINING
#error "the postgres handler needs libpq 14 or newer (pipeline mode)"
#endif

/*
 * Parameters are all sent in text format (paramFormats NULL): the server
 * parses each one with the input function of the type it inferred, so
 * `:value::jsonb`, integer and timestamp columns all just work. Text
 * parameters are NUL-terminated C strings in server encoding (UTF-8 here,
 * see connect_once), so key/value/header bytes that are not valid UTF-8 or
 * contain NUL cannot be sent as text: such a message fails permanently
 * with a clear error. The exception is a parameter the server typed as
 * bytea (a bytea column, or `:value::bytea`): it is sent in bytea's hex text
 * form, so binary data can be stored too.
 */

#define STMT_NAME "ballast_stmt"
#define RETRY_INTERVAL_MS 500  /* between connection attempts at start-up */
#define ATTEMPT_MAX_MS 5000    /* longest single connection attempt at run time */
#define BYTEA_OID 17
#define MAX_PIPELINE_ROUNDS 3  /* then a poisoned batch runs one by one */
#define ERRLEN 512

/* One per worker; used by one thread at a time. */
typedef struct pg_state {
    PGconn *conn; /* NULL: reconnect on the next call */
    char *dsn;
    bl_sqltmpl_t tmpl;
    int64_t attempt_ms; /* longest connection attempt at run time */
    Oid *types;         /* the server's type for each parameter */
    bl_sqlval_t *vals;  /* per-message scratch, tmpl.count + 1 each */
    const char **values;
    char **owned; /* copies in `values` to free after sending */
} pg_state_t;

typedef enum pg_class { PG_OK, PG_TRANSIENT, PG_PERMANENT } pg_class_t;

/* ---- errors -------------------------------------------------------------- */

static void first_line(const char *s, char *out, size_t size)
{
    size_t n = s ? strcspn(s, "\r\n") : 0;

    bl_fmt(out, size, "%.*s", (int)n, s ? s : "");
}

/* "postgres: <primary message> (SQLSTATE xxxxx)", one line. */
static void pg_error_text(PGconn *conn, const PGresult *res, char *err,
                          size_t errsize)
{
    const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    char line[ERRLEN];

    first_line(primary ? primary : res ? PQresultErrorMessage(res) : "", line,
               sizeof(line));
    if (!*line && conn)
        first_line(PQerrorMessage(conn), line, sizeof(line));
    if (!*line)
        bl_fmt(line, sizeof(line), "unknown error");
    if (state)
        bl_fmt(err, errsize, "postgres: %s (SQLSTATE %s)", line, state);
    else
        bl_fmt(err, errsize, "postgres: %s", line);
}

/* Transient: the connection, the server or a concurrent transaction is to
 * blame, so the same message may succeed later. Permanent: the message's
 * data (class 22, 23), the statement (42) or anything else unexpected. */
static pg_class_t pg_classify(PGconn *conn, const PGresult *res)
{
    static const char *const transient[] = {"08", "25", "40", "53", "55",
                                            "57", "58", "XX"};
    ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    const char *state;

    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return PG_OK;
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return PG_TRANSIENT;
    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strlen(state) != 5)
        return PG_TRANSIENT; /* a client-side failure: no SQLSTATE */
    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        if (!strncmp(state, transient[i], 2))
            return PG_TRANSIENT;
    return PG_PERMANENT;
}

/* After these the session is gone or going (57P01 admin shutdown, 57P02
 * crash shutdown...): reconnect on the next call. */
static bool pg_conn_lost(PGconn *conn, const PGresult *res)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;

    return !conn || PQstatus(conn) != CONNECTION_OK ||
           (state && (!strncmp(state, "08", 2) || !strncmp(state, "57P", 3)));
}

/* ---- connecting ---------------------------------------------------------- */

static void quiet_notices(void *arg, const char *message)
{
    (void)arg;
    (void)message; /* NOTICEs (e.g. from triggers) are not ballast's to log */
}

/* Waits for the socket as PQconnectPoll asked, until @p deadline. */
static int wait_socket(PGconn *conn, PostgresPollingStatusType want, int64_t deadline)
{
    struct pollfd pfd = {PQsocket(conn),
                         want == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    int64_t left = deadline - bl_now_ms();
    int n;

    if (left <= 0)
        return 0;
    n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
    return n < 0 && errno == EINTR ? 0 : n;
}

/*
 * One connection attempt that gives up at @p deadline (bl_now_ms clock).
 * The DSN is expanded by libpq (keyword/value or URI); our defaults come
 * first so that the DSN can override them. Errors are libpq's first line,
 * which never contains the password; the DSN itself is never echoed.
 * @returns the connection, or NULL with a line in @p err.
 */
static PGconn *connect_once(const char *dsn, int64_t deadline, char *err,
                            size_t errsize)
{
    const char *const keys[] = {"application_name", "client_encoding", "dbname", NULL};
    const char *const vals[] = {"ballast", "UTF8", dsn, NULL};
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    PGconn *conn = PQconnectStartParams(keys, vals, 1);

    if (!conn) {
        bl_fmt(err, errsize, "out of memory");
        return NULL;
    }
    while (PQstatus(conn) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
           ps != PGRES_POLLING_FAILED) {
        int n = wait_socket(conn, ps, deadline);
        if (n < 0)
            break;
        if (n > 0)
            ps = PQconnectPoll(conn);
        else if (bl_now_ms() >= deadline) {
            bl_fmt(err, errsize, "connection attempt timed out");
            PQfinish(conn);
            return NULL;
        }
    }
    if (ps != PGRES_POLLING_OK || PQstatus(conn) != CONNECTION_OK) {
        first_line(PQerrorMessage(conn), err, errsize);
        PQfinish(conn);
        return NULL;
    }
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return conn;
}

static void drop_conn(pg_state_t *st)
{
    PQfinish(st->conn);
    st->conn = NULL;
}

/* Prepares the statement on the current connection and learns the type
 * the server inferred for each parameter. @returns the class of failure. */
static pg_class_t prepare(pg_state_t *st, char *err, size_t errsize)
{
    PGresult *res = PQprepare(st->conn, STMT_NAME, st->tmpl.sql, 0, NULL);
    pg_class_t cls = pg_classify(st->conn, res);

    if (cls == PG_OK) {
        PQclear(res);
        res = PQdescribePrepared(st->conn, STMT_NAME);
        cls = pg_classify(st->conn, res);
    }
    if (cls != PG_OK) {
        pg_error_text(st->conn, res, err, errsize);
    } else if (PQnparams(res) != (int)st->tmpl.count) {
        bl_fmt(err, errsize, "postgres: the statement has %d parameters, "
                             "ballast binds %zu",
               PQnparams(res), st->tmpl.count);
        cls = PG_PERMANENT;
    } else {
        for (size_t i = 0; i < st->tmpl.count; i++)
            st->types[i] = PQparamtype(res, (int)i);
    }
    PQclear(res);
    return cls;
}

/* At run time: makes sure there is a usable connection with the statement
 * prepared, trying at most one connection attempt. */
static bool pg_ready(pg_state_t *st, char *err, size_t errsize)
{
    char why[ERRLEN];

    if (st->conn && PQstatus(st->conn) == CONNECTION_OK)
        return true;
    drop_conn(st);
    st->conn = connect_once(st->dsn, bl_now_ms() + st->attempt_ms, why, sizeof(why));
    if (!st->conn) {
        bl_fmt(err, errsize, "postgres: not connected: %s", why);
        return false;
    }
    if (prepare(st, why, sizeof(why)) != PG_OK) {
        bl_fmt(err, errsize, "%s (preparing handler.postgres.sql)", why);
        drop_conn(st);
        return false;
    }
    return true;
}

/* ---- parameters ---------------------------------------------------------- */

static void free_owned(pg_state_t *st)
{
    for (size_t i = 0; i < st->tmpl.count; i++) {
        free(st->owned[i]);
        st->owned[i] = NULL;
    }
}

/* bytea's text input form: "\x" and two hex digits a byte. */
static char *bytea_hex(const unsigned char *p, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *s = len < (SIZE_MAX - 3) / 2 ? malloc(2 * len + 3) : NULL;

    if (!s)
        return NULL;
    s[0] = '\\';
    s[1] = 'x';
    for (size_t i = 0; i < len; i++) {
        s[2 + 2 * i] = hex[p[i] >> 4];
        s[3 + 2 * i] = hex[p[i] & 15];
    }
    s[2 + 2 * len] = '\0';
    return s;
}

static char *text_copy(const void *p, size_t len)
{
    char *s = len < SIZE_MAX ? malloc(len + 1) : NULL;

    if (s) {
        memcpy(s, p, len);
        s[len] = '\0';
    }
    return s;
}

/* Sets st->values[i]. @returns 0, or -1 with @p err (permanent: the bytes
 * cannot be a text parameter) or -2 (out of memory: transient). */
static int render_one(pg_state_t *st, size_t i, const ballast_message_t *msg,
                      char *err, size_t errsize)
{
    const bl_param_t *param = &st->tmpl.params[i];
    bl_sqlval_t *v = &st->vals[i];
    char name[128];

    bl_sqltmpl_value(param, msg, v);
    st->values[i] = v->data; /* NULL, a number in v->num, or the topic */
    if (!v->data || v->is_int || param->kind == BL_PARAM_TOPIC)
        return 0;
    if (st->types[i] == BYTEA_OID) {
        st->values[i] = st->owned[i] = bytea_hex(v->data, v->len);
    } else if (!memchr(v->data, '\0', v->len) && bl_utf8_valid(v->data, v->len)) {
        st->values[i] = st->owned[i] = text_copy(v->data, v->len);
    } else {
        bl_sqltmpl_param_name(param, name, sizeof(name));
        bl_fmt(err, errsize, "postgres: %s is not valid UTF-8 text (a PostgreSQL "
                             "text parameter); use %s::bytea to store bytes",
               name, name);
        return -1;
    }
    if (!st->values[i]) {
        bl_fmt(err, errsize, "postgres: out of memory");
        return -2;
    }
    return 0;
}

static int render(pg_state_t *st, const ballast_message_t *msg, char *err,
                  size_t errsize)
{
    for (size_t i = 0; i < st->tmpl.count; i++) {
        int rc = render_one(st, i, msg, err, errsize);
        if (rc) {
            free_owned(st);
            return rc;
        }
    }
    return 0;
}

/* ---- one message ---------------------------------------------------------- */

static ballast_outcome_t pg_handle(void *state, const ballast_message_t *msg,
                                   ballast_result_t *result)
{
    pg_state_t *st = state;
    char err[ERRLEN];
    pg_class_t cls;
    PGresult *res;
    int rc;

    if (!pg_ready(st, err, sizeof(err))) {
        ballast_result_set_error(result, err);
        return BALLAST_OUTCOME_RETRY;
    }
    if ((rc = render(st, msg, err, sizeof(err))) != 0) {
        ballast_result_set_error(result, err);
        return rc == -1 ? BALLAST_OUTCOME_FAIL : BALLAST_OUTCOME_RETRY;
    }
    res = PQexecPrepared(st->conn, STMT_NAME, (int)st->tmpl.count, st->values,
                         NULL, NULL, 0);
    free_owned(st);
    if ((cls = pg_classify(st->conn, res)) != PG_OK) {
        pg_error_text(st->conn, res, err, sizeof(err));
        ballast_result_set_error(result, err);
        if (pg_conn_lost(st->conn, res))
            drop_conn(st);
    }
    PQclear(res);
    return cls == PG_OK ? BALLAST_OUTCOME_OK
           : cls == PG_TRANSIENT ? BALLAST_OUTCOME_RETRY
                                 : BALLAST_OUTCOME_FAIL;
}

/* ---- batches ------------------------------------------------------------- */

/* What one pipelined run of a batch found. */
typedef struct run {
    pg_class_t cls;
    bool lost; /* the session is gone: reconnect */
    size_t bad; /* with PG_PERMANENT: position in `active`, or SIZE_MAX when
                   BEGIN/COMMIT failed (e.g. a deferred constraint) */
    char err[ERRLEN];
} run_t;

static void run_fail(run_t *run, PGconn *conn, const PGresult *res, size_t bad)
{
    if (run->cls != PG_OK)
        return; /* the first error is the cause; the rest follow from it */
    run->cls = pg_classify(conn, res);
    run->lost = pg_conn_lost(conn, res);
    run->bad = bad;
    pg_error_text(conn, res, run->err, sizeof(run->err));
}

/* Reads every result up to the pipeline's sync point: one result (or
 * PIPELINE_ABORTED after an error) and one NULL per command, then SYNC. */
static void read_results(pg_state_t *st, size_t sent, run_t *run)
{
    size_t cmd = 0; /* 0 BEGIN, 1..sent-2 the messages, sent-1 COMMIT */

    for (;;) {
        PGresult *res = PQgetResult(st->conn);
        ExecStatusType status;

        if (!res) {
            /* Each command ends with a NULL; more than that means the
             * connection broke before the sync point arrived. */
            if (++cmd > sent || PQstatus(st->conn) != CONNECTION_OK) {
                run_fail(run, st->conn, NULL, SIZE_MAX);
                return;
            }
            continue;
        }
        status = PQresultStatus(res);
        if (status == PGRES_PIPELINE_SYNC) {
            PQclear(res);
            return;
        }
        if (status != PGRES_PIPELINE_ABORTED && pg_classify(st->conn, res) != PG_OK)
            run_fail(run, st->conn, res,
                     cmd >= 1 && cmd + 1 < sent ? cmd - 1 : SIZE_MAX);
        PQclear(res);
        if (PQstatus(st->conn) != CONNECTION_OK) {
            run_fail(run, st->conn, NULL, SIZE_MAX);
            return;
        }
    }
}

/* Queues BEGIN, the statement for each active message, COMMIT and a sync.
 * A message whose values cannot be sent fails here and leaves `active`.
 * @returns the number of commands queued, or 0 when sending failed.
 *
 * Blocking mode is safe here: when the socket is full libpq reads (and
 * buffers) the server's replies while it waits to write, so a large batch
 * cannot deadlock against a server blocked on its own output. */
static size_t send_batch(pg_state_t *st, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results,
                         ballast_outcome_t *outcomes, size_t *active, size_t *np,
                         run_t *run)
{
    size_t kept = 0, sent = 1;
    char err[ERRLEN];
    int rc;

    if (!PQsendQueryParams(st->conn, "BEGIN", 0, NULL, NULL, NULL, NULL, 0))
        return 0;
    for (size_t k = 0; k < *np; k++) {
        size_t i = active[k];
        if ((rc = render(st, msgs[i], err, sizeof(err))) == -1) {
            outcomes[i] = BALLAST_OUTCOME_FAIL;
            ballast_result_set_error(results[i], err);
            continue;
        }
        if (rc) {
            bl_fmt(run->err, sizeof(run->err), "%s", err);
            return 0;
        }
        active[kept++] = i;
        rc = PQsendQueryPrepared(st->conn, STMT_NAME, (int)st->tmpl.count,
                                 st->values, NULL, NULL, 0);
        free_owned(st);
        if (!rc)
            return 0;
        sent++;
    }
    *np = kept;
    if (!PQsendQueryParams(st->conn, "COMMIT", 0, NULL, NULL, NULL, NULL, 0) ||
        !PQpipelineSync(st->conn))
        return 0;
    return sent + 1;
}

/* Runs the active messages as one pipelined transaction. On return the
 * connection is out of pipeline mode and idle, or dropped. */
static void run_pipeline(pg_state_t *st, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results,
                         ballast_outcome_t *outcomes, size_t *active, size_t *np,
                         run_t *run)
{
    size_t sent;

    run->cls = PG_OK;
    run->lost = false;
    run->err[0] = '\0';
    if (!PQenterPipelineMode(st->conn)) {
        run_fail(run, st->conn, NULL, SIZE_MAX);
        return;
    }
    sent = send_batch(st, msgs, results, outcomes, active, np, run);
    if (!sent) {
        if (!run->err[0])
            pg_error_text(st->conn, NULL, run->err, sizeof(run->err));
        run->cls = PG_TRANSIENT;
        drop_conn(st); /* half a pipeline queued: start afresh */
        return;
    }
    read_results(st, sent, run);
    if (PQstatus(st->conn) != CONNECTION_OK || !PQexitPipelineMode(st->conn)) {
        drop_conn(st);
        return;
    }
    if (PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(st->conn, "ROLLBACK");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            drop_conn(st);
        PQclear(res);
    }
    if (st->conn && run->lost)
        drop_conn(st);
}

static void retry_rest(ballast_result_t *const *results, size_t count,
                       ballast_outcome_t *outcomes, const char *err)
{
    for (size_t i = 0; i < count; i++) {
        if (outcomes[i] == BALLAST_OUTCOME_FAIL)
            continue;
        outcomes[i] = BALLAST_OUTCOME_RETRY;
        ballast_result_set_error(results[i], err);
    }
}

/*
 * The batch runs as one pipelined transaction. When a message fails for
 * good, the whole transaction is void: that message is marked FAIL and the
 * rest run again, so the outcome is what running them one by one would
 * have given, but in a few round trips. After MAX_PIPELINE_ROUNDS (a batch
 * full of poison) or a failure at COMMIT that no message can be blamed for,
 * the remaining messages run one per transaction.
 */
static void pg_handle_batch(void *state, const ballast_message_t *const *msgs,
                            ballast_result_t *const *results, size_t count,
                            ballast_outcome_t *outcomes)
{
    pg_state_t *st = state;
    size_t *active = malloc((count ? count : 1) * sizeof(*active)), n = count;
    run_t run;

    for (size_t i = 0; i < count; i++) {
        outcomes[i] = BALLAST_OUTCOME_OK;
        if (active)
            active[i] = i;
    }
    if (!active || !pg_ready(st, run.err, sizeof(run.err))) {
        if (!active)
            bl_fmt(run.err, sizeof(run.err), "postgres: out of memory");
        retry_rest(results, count, outcomes, run.err);
        free(active);
        return;
    }
    for (int round = 0; n; round++) {
        if (round == MAX_PIPELINE_ROUNDS) {
            for (size_t k = 0; k < n; k++)
                outcomes[active[k]] = pg_handle(st, msgs[active[k]], results[active[k]]);
            break;
        }
        run_pipeline(st, msgs, results, outcomes, active, &n, &run);
        if (run.cls == PG_OK)
            break;
        if (run.cls == PG_TRANSIENT) {
            retry_rest(results, count, outcomes, run.err);
            break;
        }
        if (run.bad == SIZE_MAX) {
            round = MAX_PIPELINE_ROUNDS - 1; /* nobody to blame: one by one */
            continue;
        }
        outcomes[active[run.bad]] = BALLAST_OUTCOME_FAIL;
        ballast_result_set_error(results[active[run.bad]], run.err);
        memmove(active + run.bad, active + run.bad + 1,
                (n - run.bad - 1) * sizeof(*active));
        n--;
        if (!st->conn && !pg_ready(st, run.err, sizeof(run.err))) {
            retry_rest(results, count, outcomes, run.err);
            break;
        }
    }
    free(active);
}

/* ---- start-up ------------------------------------------------------------ */

static void pg_destroy(void *state)
{
    pg_state_t *st = state;

    if (!st)
        return;
    PQfinish(st->conn);
    free(st->dsn);
    bl_sqltmpl_free(&st->tmpl);
    free(st->types);
    free(st->vals);
    free(st->values);
    free(st->owned);
    free(st);
}

static void sleep_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* A malformed DSN is a configuration error, not an unreachable server.
 * libpq's parse errors can quote parts of the string (a password among
 * them), so only the safe "invalid connection option" one is passed on. */
static int check_dsn(const char *dsn, char *errbuf, size_t errsize)
{
    char *msg = NULL;
    PQconninfoOption *opts = PQconninfoParse(dsn, &msg);
    char line[ERRLEN];

    if (opts) {
        PQconninfoFree(opts);
        return 0;
    }
    first_line(msg, line, sizeof(line));
    PQfreemem(msg);
    if (!strncmp(line, "invalid connection option", 25))
        bl_fmt(errbuf, errsize, "handler.postgres.dsn: %s", line);
    else
        bl_fmt(errbuf, errsize, "handler.postgres.dsn: not a valid libpq "
                                "connection string (key=value pairs or a "
                                "postgresql:// URI)");
    return BALLAST_ERR_CONFIG;
}

/* Connects, retrying every RETRY_INTERVAL_MS until startup.timeout.ms. */
static int connect_startup(pg_state_t *st, int64_t timeout_ms, char *errbuf,
                           size_t errsize)
{
    int64_t deadline = bl_now_ms() + timeout_ms;
    char why[ERRLEN];

    for (;;) {
        int64_t left;
        if ((st->conn = connect_once(st->dsn, deadline, why, sizeof(why))))
            return 0;
        if ((left = deadline - bl_now_ms()) <= 0)
            break;
        sleep_ms(left < RETRY_INTERVAL_MS ? left : RETRY_INTERVAL_MS);
    }
    bl_fmt(errbuf, errsize, "handler.postgres.dsn: cannot connect within %lld "
                            "ms (startup.timeout.ms): %s",
           (long long)timeout_ms, why);
    return BALLAST_ERR_UNREACHABLE;
}

static int alloc_scratch(pg_state_t *st)
{
    size_t n = st->tmpl.count + 1;

    st->types = calloc(n, sizeof(*st->types));
    st->vals = calloc(n, sizeof(*st->vals));
    st->values = calloc(n, sizeof(*st->values));
    st->owned = calloc(n, sizeof(*st->owned));
    return st->types && st->vals && st->values && st->owned ? 0 : -1;
}

static int pg_setup(pg_state_t *st, const ballast_conf_t *conf, const char *sql,
                    char *errbuf, size_t errsize)
{
    int64_t timeout_ms = bl_conf_int(conf, "startup.timeout.ms");
    char err[ERRLEN];
    int rc;

    if (bl_sqltmpl_parse(sql, BL_SQL_POSTGRES, &st->tmpl, err, sizeof(err))) {
        bl_fmt(errbuf, errsize, "handler.postgres.sql: %s", err);
        return BALLAST_ERR_CONFIG;
    }
    if ((rc = check_dsn(st->dsn, errbuf, errsize)) != 0)
        return rc;
    if (alloc_scratch(st)) {
        bl_fmt(errbuf, errsize, "handler.postgres: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    st->attempt_ms = timeout_ms < ATTEMPT_MAX_MS ? timeout_ms : ATTEMPT_MAX_MS;
    if ((rc = connect_startup(st, timeout_ms, errbuf, errsize)) != 0)
        return rc;
    switch (prepare(st, err, sizeof(err))) {
    case PG_OK:
        return 0;
    case PG_TRANSIENT:
        bl_fmt(errbuf, errsize, "handler.postgres.dsn: %s", err);
        return BALLAST_ERR_UNREACHABLE;
    default:
        /* name the key rather than the handler */
        bl_fmt(errbuf, errsize, "handler.postgres.sql: %s",
               strncmp(err, "postgres: ", 10) ? err : err + 10);
        return BALLAST_ERR_CONFIG;
    }
}

static int pg_init(void **statep, const ballast_handler_params_t *params,
                   char *errbuf, size_t errsize)
{
    const char *dsn = bl_conf_str(params->conf, "handler.postgres.dsn");
    const char *sql = bl_conf_str(params->conf, "handler.postgres.sql");
    pg_state_t *st;
    int rc;

    *statep = NULL;
    if (!*dsn || !*sql) {
        bl_fmt(errbuf, errsize, "%s: missing (required by handler = postgres)",
               *dsn ? "handler.postgres.sql" : "handler.postgres.dsn");
        return BALLAST_ERR_CONFIG;
    }
    if (!(st = calloc(1, sizeof(*st))) || !(st->dsn = bl_strdup(dsn))) {
        free(st);
        bl_fmt(errbuf, errsize, "handler.postgres: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    if ((rc = pg_setup(st, params->conf, sql, errbuf, errsize)) != 0) {
        pg_destroy(st);
        return rc;
    }
    *statep = st;
    return 0;
}

/* Built-in handler `postgres`; see ballast_handler_t for the threading rules. */
const ballast_handler_t bl_handler_postgres = {
    BALLAST_HANDLER_ABI_VERSION, "postgres", pg_init, pg_handle,
    pg_handle_batch, pg_destroy};
