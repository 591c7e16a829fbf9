/* postgres.c - the `postgres` handler: runs `handler.postgres.sql` per message, a batch pipelined in one transaction (exactly-once: in the consumer's). */
#include "sqltxn.h"

#include "../check.h"
#include "../sqltmpl.h"

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
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
#define MULTI_NAME "ballast_stmt_%zu" /* the statement over that many rows */
#define OFF_UPSERT "ballast_off_upsert" /* exactly-once: ballast_offsets */
#define OFF_SELECT "ballast_off_select"
#define OFF_LOCK_KEY "7305812294419734853" /* advisory lock: creating the table */
#define RETRY_INTERVAL_MS 500  /* between connection attempts at start-up */
#define STOP_POLL_MS 200       /* a wait to connect looks at the stop flag this often */
#define ATTEMPT_MAX_MS 5000    /* longest single connection attempt at run time */
#define BYTEA_OID 17
#define MAX_PIPELINE_ROUNDS 3  /* then a poisoned batch runs one by one */
#define COPY_PROBE "ballast_copy_probe" /* SELECT columns FROM table: their types */
#define COPY_MIN_ROWS 10       /* fewer go as statements: COPY takes a round trip more */
#define COPY_CHUNK (1 << 20)   /* bytes of COPY data a PQputCopyData */
#define ERRLEN 512

/*
 * Rows per multi-row statement, largest first (see bl_sqltmpl_multirow): a
 * batch runs as statements of 100 rows, then 10, then single rows. One
 * statement of many rows costs PostgreSQL about half the work of as many
 * single-row statements; past ~100 rows the gain is flat.
 */
static const size_t multi_sizes[] = {100, 10};
#define MULTI_MAX 100
#define NSIZES (sizeof(multi_sizes) / sizeof(multi_sizes[0]))

/* One per worker; used by one thread at a time. */
typedef struct pg_state {
    PGconn *conn; /* NULL: reconnect on the next call */
    char *dsn;
    bl_sqltmpl_t tmpl;
    int64_t attempt_ms; /* longest connection attempt at run time */
    Oid *types;         /* the server's type for each parameter */
    bl_sqlval_t *vals;  /* scratch: tmpl.count per row, MULTI_MAX rows */
    const char **values;
    char **owned;  /* copies in `values` to free after sending */
    size_t rows;   /* rows rendered into the scratch */
    char *multi[NSIZES]; /* the statement over multi_sizes[k] rows, or NULL */
    bool multi_ok;       /* ... prepared on this connection */
    bl_sqlkey_t key;     /* an upsert's conflict key: what its rows of one
                            statement must not share (bl_sqlkey_span) */
    /* batches as COPY (see "COPY" below) */
    bl_sqlcopy_t copy;   /* the statement as COPY, or all NULL */
    char *copy_txn;      /* ... in its transaction: BEGIN; COPY; COMMIT */
    char *copy_eo_first; /* ... in the consumer's: [BEGIN;] SAVEPOINT; COPY; ...; RELEASE */
    const char *copy_eo; /* ... the same without BEGIN (points into copy_eo_first) */
    bool copy_ok;        /* ... checked against the table on this connection */
    sbuf_t copy_data;    /* scratch: the rows in COPY's text format */
    char copy_why[ERRLEN]; /* why batches do not go as COPY */
    /* exactly-once (see "the consumer's transaction" below) */
    bool eo;      /* semantics = exactly-once: OFF_* prepared too */
    bool grouped; /* processing = message in groups: begin/commit/rollback too */
    bool in_txn;  /* a transaction opened by begin is open */
    bool begun;   /* ... and its BEGIN was sent (begin defers it: see pg_begin) */
    bool doomed;  /* ... but can only be rolled back, because of doom_err */
    char doom_err[ERRLEN];
    const volatile sig_atomic_t *stop; /* the stop flag: ends a wait to connect */
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
 * blame, so the same message may succeed later (or, at login, the server is
 * starting or full). Permanent: the message's data (class 22, 23), the
 * statement (42), the login (28, 3D) or anything else unexpected. */
static bool state_transient(const char *state)
{
    static const char *const transient[] = {"08", "25", "40", "53", "55",
                                            "57", "58", "XX"};

    for (size_t i = 0; i < sizeof(transient) / sizeof(transient[0]); i++)
        if (!strncmp(state, transient[i], 2))
            return true;
    return false;
}

static pg_class_t pg_classify(PGconn *conn, const PGresult *res)
{
    ExecStatusType status = res ? PQresultStatus(res) : PGRES_FATAL_ERROR;
    const char *state;

    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK)
        return PG_OK;
    if (!conn || PQstatus(conn) != CONNECTION_OK)
        return PG_TRANSIENT;
    state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    if (!state || strlen(state) != 5)
        return PG_TRANSIENT; /* a client-side failure: no SQLSTATE */
    return state_transient(state) ? PG_TRANSIENT : PG_PERMANENT;
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

/* True once a stop was asked for (ballast_conf_set_stop_flag). */
static bool stopping(const pg_state_t *st)
{
    return st->stop && *st->stop;
}

/* Waits for the socket as PQconnectPoll asked, until @p deadline or, in
 * rounds of STOP_POLL_MS, a stop. */
static int wait_socket(const pg_state_t *st, PGconn *conn, PostgresPollingStatusType want,
                       int64_t deadline)
{
    struct pollfd pfd = {PQsocket(conn),
                         want == PGRES_POLLING_READING ? POLLIN : POLLOUT, 0};
    int64_t left = deadline - bl_now_ms();
    int n;

    if (left <= 0 || stopping(st))
        return 0;
    n = poll(&pfd, 1, left > STOP_POLL_MS ? STOP_POLL_MS : (int)left);
    return n < 0 && errno == EINTR ? 0 : n;
}

/* Sleeps @p ms, in rounds of STOP_POLL_MS, unless a stop comes first. */
static void nap(const pg_state_t *st, int64_t ms)
{
    int64_t until = bl_now_ms() + ms, left;

    while (!stopping(st) && (left = until - bl_now_ms()) > 0)
        bl_sleep_ms(left < STOP_POLL_MS ? left : STOP_POLL_MS);
}

static bool is_sqlstate(const char *p)
{
    for (int i = 0; i < 5; i++)
        if (!isdigit((unsigned char)p[i]) && !isupper((unsigned char)p[i]))
            return false;
    return true;
}

/* The server's error in a failed connection's message: with
 * PQERRORS_VERBOSE (set while connecting) libpq writes it as "SEVERITY:
 * SQLSTATE: text". Copies the first such line, without the SQLSTATE, to
 * @p out and the SQLSTATE to @p state. @returns false when there is none
 * (the failure is the client's: refused, timed out, no password...). */
static bool server_error(const char *msg, char *out, size_t size, char state[6])
{
    for (const char *line = msg; *line;) {
        size_t n = strcspn(line, "\r\n");
        for (const char *p = line; p + 10 <= line + n; p++) {
            if (strncmp(p, ":  ", 3) || !is_sqlstate(p + 3) || strncmp(p + 8, ": ", 2))
                continue;
            bl_fmt(state, 6, "%.5s", p + 3);
            bl_fmt(out, size, "%.*s%.*s", (int)(p + 3 - line), line,
                   (int)(line + n - (p + 10)), p + 10);
            return true;
        }
        line += n;
        line += strspn(line, "\r\n");
    }
    return false;
}

/* The line of @p msg that contains @p needle, into @p out. */
static bool line_with(const char *msg, const char *needle, char *out, size_t size)
{
    const char *hit = strstr(msg, needle), *start = hit;

    if (!hit)
        return false;
    while (start > msg && start[-1] != '\n' && start[-1] != '\r')
        start--;
    first_line(start, out, size);
    return true;
}

/*
 * Why a connection failed, in @p err, and whether another attempt can
 * help. The server's refusal is final unless its SQLSTATE says it is
 * starting, stopping or full (see state_transient): a wrong password (class
 * 28) or an unknown database (3D000) will not get better by waiting. Without
 * one, the failure is libpq's: a few of its messages name a configuration
 * that no server can accept (libpq's messages are English unless it was
 * built with translations and a locale asks for them; a translated one
 * counts as transient, as before); anything else (refused, unreachable,
 * timed out, the name does not resolve) is retried until the deadline.
 */
static pg_class_t connect_failure(PGconn *conn, char *err, size_t errsize)
{
    static const char *const refusals[] = {
        "invalid ",             /* a connection option's value (port, sslmode...) */
        "no password supplied", /* the server asks for one; the DSN has none */
        "does not support SSL", /* sslmode=require against a server without */
        "certificate",          /* TLS verification */
        "channel binding",
    };
    const char *msg = PQerrorMessage(conn);
    char line[ERRLEN], state[6];

    if (server_error(msg, line, sizeof(line), state)) {
        bl_fmt(err, errsize, "%s (SQLSTATE %s)", line, state);
        return state_transient(state) ? PG_TRANSIENT : PG_PERMANENT;
    }
    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++)
        if (line_with(msg, refusals[i], err, errsize))
            return PG_PERMANENT;
    first_line(msg, err, errsize);
    return PG_TRANSIENT;
}

/*
 * One connection attempt that gives up at @p deadline (bl_now_ms clock).
 * The DSN is expanded by libpq (keyword/value or URI); our defaults come
 * first so that the DSN can override them. Errors are libpq's line (the
 * server's own message when it refused us), which never contains the
 * password; the DSN itself is never echoed.
 * @returns the connection, or NULL with a line in @p err and in @p clsp
 * whether trying again can help (PG_TRANSIENT) or not (PG_PERMANENT).
 */
static PGconn *connect_once(const pg_state_t *st, int64_t deadline, char *err,
                            size_t errsize, pg_class_t *clsp)
{
    const char *dsn = st->dsn;
    const char *const keys[] = {"application_name", "client_encoding", "dbname", NULL};
    const char *const vals[] = {"ballast", "UTF8", dsn, NULL};
    PostgresPollingStatusType ps = PGRES_POLLING_WRITING;
    PGconn *conn = PQconnectStartParams(keys, vals, 1);

    *clsp = PG_TRANSIENT;
    if (!conn) {
        bl_fmt(err, errsize, "out of memory");
        return NULL;
    }
    /* So that a refusal's message carries its SQLSTATE (server_error). */
    PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
    while (PQstatus(conn) != CONNECTION_BAD && ps != PGRES_POLLING_OK &&
           ps != PGRES_POLLING_FAILED) {
        int n = wait_socket(st, conn, ps, deadline);
        if (n < 0)
            break;
        if (n > 0)
            ps = PQconnectPoll(conn);
        else if (bl_now_ms() >= deadline || stopping(st)) {
            bl_fmt(err, errsize, "%s", stopping(st) ? "stopped while connecting"
                                                     : "connection attempt timed out");
            PQfinish(conn);
            return NULL;
        }
    }
    if (ps != PGRES_POLLING_OK || PQstatus(conn) != CONNECTION_OK) {
        *clsp = connect_failure(conn, err, errsize);
        PQfinish(conn);
        return NULL;
    }
    PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
    PQsetNoticeProcessor(conn, quiet_notices, NULL);
    return conn;
}

static void drop_conn(pg_state_t *st)
{
    PQfinish(st->conn);
    st->conn = NULL;
}

/* Exactly-once: the statements on ballast_offsets, prepared next to the
 * user's on every connection. */
static pg_class_t prepare_offsets(pg_state_t *st, char *err, size_t errsize)
{
    static const char *const sql[2][2] = {
        /* Fenced: a row past the batch's first offset is left alone, and
         * then 1 / count(*) divides by zero (SQLSTATE 22012), which aborts
         * the transaction: its COMMIT can go in the same round trip. */
        {OFF_UPSERT, "WITH up AS (INSERT INTO ballast_offsets (group_id, topic, "
                     "partition, next_offset) VALUES ($1, $2, $3, $4) ON CONFLICT "
                     "(group_id, topic, partition) DO UPDATE SET next_offset = "
                     "excluded.next_offset WHERE ballast_offsets.next_offset <= $5 "
                     "RETURNING 1) SELECT 1 / count(*) FROM up"},
        {OFF_SELECT, "SELECT next_offset FROM ballast_offsets WHERE group_id = $1 "
                     "AND topic = $2 AND partition = $3"}};
    pg_class_t cls = PG_OK;

    for (size_t i = 0; i < 2 && cls == PG_OK; i++) {
        PGresult *res = PQprepare(st->conn, sql[i][0], sql[i][1], 0, NULL);
        if ((cls = pg_classify(st->conn, res)) != PG_OK) {
            char why[ERRLEN];
            pg_error_text(st->conn, res, why, sizeof(why));
            bl_fmt(err, errsize, "%s (preparing the statements on ballast_offsets)",
                   why);
        }
        PQclear(res);
    }
    return cls;
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

/* True if the server typed row @p rows's parameters as the single row's. */
static bool same_types(const pg_state_t *st, const PGresult *res, size_t rows)
{
    if (PQnparams(res) != (int)(rows * st->tmpl.count))
        return false;
    for (int i = 0; i < PQnparams(res); i++)
        if (PQparamtype(res, i) != st->types[(size_t)i % st->tmpl.count])
            return false;
    return true;
}

/* Prepares the multi-row statements, when the user's has that form, and
 * checks the server typed them like the single-row one; otherwise batches
 * run single-row statements. Never an error: it only speeds up batches
 * (a lost connection shows on the next statement). */
static void prepare_multi(pg_state_t *st)
{
    char name[32];

    st->multi_ok = st->multi[0] != NULL;
    for (size_t k = 0; k < NSIZES && st->multi_ok; k++) {
        PGresult *res;
        bl_fmt(name, sizeof(name), MULTI_NAME, multi_sizes[k]);
        res = PQprepare(st->conn, name, st->multi[k], 0, NULL);
        if (PQresultStatus(res) == PGRES_COMMAND_OK) {
            PQclear(res);
            res = PQdescribePrepared(st->conn, name);
        }
        st->multi_ok = PQresultStatus(res) == PGRES_COMMAND_OK &&
                       same_types(st, res, multi_sizes[k]);
        PQclear(res);
    }
}

/* Whether the table takes the COPY as it takes the statement, into
 * st->copy_why when not: each column of the type its parameter was given (a
 * lone placeholder is typed as its column: this holds unless the server
 * says otherwise), a plain or partitioned table (COPY cannot write a view),
 * without rules (COPY ignores them) or row-level security (COPY FROM
 * refuses it). @returns the verdict, or false if the server could not say. */
static bool copy_fits_table(pg_state_t *st)
{
    char probe[2 * ERRLEN], oid[16];
    const char *vals[1] = {oid};
    PGresult *res;
    bool ok;

    bl_fmt(probe, sizeof(probe), "SELECT %s FROM %s", st->copy.columns, st->copy.table);
    res = PQprepare(st->conn, COPY_PROBE, probe, 0, NULL);
    if (PQresultStatus(res) == PGRES_COMMAND_OK) {
        PQclear(res);
        res = PQdescribePrepared(st->conn, COPY_PROBE);
    }
    ok = PQresultStatus(res) == PGRES_COMMAND_OK && PQnfields(res) == (int)st->copy.ncols &&
         PQftable(res, 0) != InvalidOid;
    for (size_t c = 0; ok && c < st->copy.ncols; c++)
        ok = PQftype(res, (int)c) == st->types[st->copy.param[c]];
    bl_fmt(oid, sizeof(oid), "%u", ok ? PQftable(res, 0) : InvalidOid);
    bl_fmt(st->copy_why, sizeof(st->copy_why), "%s",
           ok ? "" : "a column's type is not its placeholder's, or the table could not be "
                     "described");
    PQclear(res);
    if (!ok)
        return false;
    res = PQexecParams(st->conn, "SELECT relkind IN ('r', 'p') AND NOT relhasrules AND NOT "
                                 "relrowsecurity FROM pg_class WHERE oid = $1",
                       1, NULL, vals, NULL, NULL, 0);
    ok = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
         !strcmp(PQgetvalue(res, 0, 0), "t");
    bl_fmt(st->copy_why, sizeof(st->copy_why), "%s",
           ok ? "" : "the table is not a plain one without rules or row-level security");
    PQclear(res);
    return ok;
}

/* Checks the COPY form against the table on a new connection. Never an
 * error: it only speeds up batches. */
static void prepare_copy(pg_state_t *st)
{
    st->copy_ok = st->copy.sql && copy_fits_table(st);
}

/* At run time: makes sure there is a usable connection with the statement
 * prepared, trying at most one connection attempt. */
static bool pg_ready(pg_state_t *st, char *err, size_t errsize)
{
    char why[ERRLEN];
    pg_class_t cls;

    if (st->conn && PQstatus(st->conn) == CONNECTION_OK)
        return true;
    drop_conn(st);
    /* A refusal is retried too: a password can be fixed on the server while
     * we run, and the message is not to blame for it. */
    st->conn = connect_once(st, bl_now_ms() + st->attempt_ms, why, sizeof(why),
                            &cls);
    if (!st->conn) {
        bl_fmt(err, errsize, "postgres: not connected: %s", why);
        return false;
    }
    if (prepare(st, why, sizeof(why)) != PG_OK) {
        bl_fmt(err, errsize, "%s (preparing handler.postgres.sql)", why);
        drop_conn(st);
        return false;
    }
    prepare_multi(st);
    prepare_copy(st);
    if (st->eo && prepare_offsets(st, err, errsize) != PG_OK) {
        drop_conn(st);
        return false;
    }
    return true;
}

/* ---- parameters ---------------------------------------------------------- */

static void free_owned(pg_state_t *st)
{
    for (size_t i = 0; i < st->rows * st->tmpl.count; i++) {
        free(st->owned[i]);
        st->owned[i] = NULL;
    }
    st->rows = 0;
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

/* Sets parameter @p i of row @p row. @returns 0, or -1 with @p err
 * (permanent: the bytes cannot be a text parameter) or -2 (out of memory:
 * transient). */
static int render_one(pg_state_t *st, size_t row, size_t i,
                      const ballast_message_t *msg, char *err, size_t errsize)
{
    const bl_param_t *param = &st->tmpl.params[i];
    size_t at = row * st->tmpl.count + i;
    bl_sqlval_t *v = &st->vals[at];
    char name[128];

    bl_sqltmpl_value(param, msg, v);
    st->values[at] = v->data; /* NULL, a number in v->num, or the topic */
    if (!v->data || v->is_int || param->kind == BL_PARAM_TOPIC)
        return 0;
    if (st->types[i] == BYTEA_OID) {
        st->values[at] = st->owned[at] = bytea_hex(v->data, v->len);
    } else if (!memchr(v->data, '\0', v->len) && bl_utf8_valid(v->data, v->len)) {
        st->values[at] = st->owned[at] = text_copy(v->data, v->len);
    } else {
        bl_sqltmpl_param_name(param, name, sizeof(name));
        bl_fmt(err, errsize, "postgres: %s is not valid UTF-8 text (a PostgreSQL "
                             "text parameter); use %s::bytea to store bytes",
               name, name);
        return -1;
    }
    if (!st->values[at]) {
        bl_fmt(err, errsize, "postgres: out of memory");
        return -2;
    }
    return 0;
}

/* Renders @p msg as the next row of the scratch (the first after
 * free_owned). On failure the row is released and not counted. */
static int render(pg_state_t *st, const ballast_message_t *msg, char *err,
                  size_t errsize)
{
    size_t row = st->rows++;

    for (size_t i = 0; i < st->tmpl.count; i++) {
        int rc = render_one(st, row, i, msg, err, errsize);
        if (rc) {
            for (size_t j = 0; j <= i; j++) {
                free(st->owned[row * st->tmpl.count + j]);
                st->owned[row * st->tmpl.count + j] = NULL;
            }
            st->rows--;
            return rc;
        }
    }
    return 0;
}

/* ---- one message ---------------------------------------------------------- */

static void eo_batch(pg_state_t *st, const ballast_message_t *const *msgs,
                     ballast_result_t *const *results, size_t count,
                     ballast_outcome_t *outcomes);

static ballast_outcome_t pg_handle(void *state, const ballast_message_t *msg,
                                   ballast_result_t *result)
{
    pg_state_t *st = state;
    char err[ERRLEN];
    pg_class_t cls;
    PGresult *res;
    bool lost = false;
    int rc;

    if (st->in_txn) {
        ballast_outcome_t out;
        eo_batch(st, &msg, &result, 1, &out);
        return out;
    }
    if (!pg_ready(st, err, sizeof(err))) {
        ballast_result_set_error(result, err);
        return BALLAST_OUTCOME_UNAVAILABLE;
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
        if ((lost = pg_conn_lost(st->conn, res)))
            drop_conn(st);
    }
    PQclear(res);
    /* A server that went away gives no verdict on the message. */
    return cls == PG_OK ? BALLAST_OUTCOME_OK
           : lost ? BALLAST_OUTCOME_UNAVAILABLE
           : cls == PG_TRANSIENT ? BALLAST_OUTCOME_RETRY
                                 : BALLAST_OUTCOME_FAIL;
}

/* ---- batches ------------------------------------------------------------- */

/* What one pipelined run found. */
typedef struct run {
    pg_class_t cls;
    bool lost; /* the session is gone: reconnect */
    size_t bad; /* with PG_PERMANENT: the failing command's position, or
                   SIZE_MAX; run_pipeline maps it to a position in `active`,
                   or SIZE_MAX when BEGIN/COMMIT failed (e.g. a deferred
                   constraint) */
    char err[ERRLEN];
    char state[6]; /* the failure's SQLSTATE, or "" */
} run_t;

static void run_reset(run_t *run)
{
    run->cls = PG_OK;
    run->lost = false;
    run->bad = SIZE_MAX;
    run->err[0] = run->state[0] = '\0';
}

static void run_fail(run_t *run, PGconn *conn, const PGresult *res, size_t bad)
{
    if (run->cls != PG_OK)
        return; /* the first error is the cause; the rest follow from it */
    run->cls = pg_classify(conn, res);
    run->lost = pg_conn_lost(conn, res);
    run->bad = bad;
    pg_error_text(conn, res, run->err, sizeof(run->err));
    bl_fmt(run->state, sizeof(run->state), "%s",
           res && PQresultErrorField(res, PG_DIAG_SQLSTATE)
               ? PQresultErrorField(res, PG_DIAG_SQLSTATE)
               : "");
}

/* Reads every result up to the pipeline's sync point: one result (or
 * PIPELINE_ABORTED after an error) and one NULL per command, then SYNC.
 * The first failure goes into @p run, with its command's position among
 * the @p sent commands. */
static void read_results(pg_state_t *st, size_t sent, run_t *run)
{
    size_t cmd = 0;

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
            run_fail(run, st->conn, res, cmd < sent ? cmd : SIZE_MAX);
        PQclear(res);
        if (PQstatus(st->conn) != CONNECTION_OK) {
            run_fail(run, st->conn, NULL, SIZE_MAX);
            return;
        }
    }
}

#define NO_MSG SIZE_MAX    /* in seg_t.what: a control statement */
#define CHUNK (SIZE_MAX - 1) /* ... a statement over many messages */

/* One pipeline segment: what each queued command is. */
typedef struct seg {
    size_t *what; /* per command: the message's index, NO_MSG or CHUNK */
    size_t n;
    bool broken; /* a send failed: the segment cannot be completed */
    bool oom;    /* a message could not be rendered for want of memory */
} seg_t;

static bool seg_open(pg_state_t *st, seg_t *sg, run_t *run)
{
    sg->n = 0;
    sg->broken = sg->oom = false;
    run_reset(run);
    if (PQenterPipelineMode(st->conn))
        return true;
    run_fail(run, st->conn, NULL, SIZE_MAX);
    run->cls = PG_TRANSIENT;
    drop_conn(st); /* not idle: an unknown state */
    return false;
}

static void seg_ctl(pg_state_t *st, seg_t *sg, const char *sql)
{
    if (sg->broken)
        return;
    if (PQsendQueryParams(st->conn, sql, 0, NULL, NULL, NULL, NULL, 0))
        sg->what[sg->n++] = NO_MSG;
    else
        sg->broken = true;
}

/* Sends rows [from, from + n) of the scratch as one statement. */
static bool send_rows(pg_state_t *st, size_t from, size_t n)
{
    char name[32];
    const char *stmt = STMT_NAME;

    if (n > 1) {
        bl_fmt(name, sizeof(name), MULTI_NAME, n);
        stmt = name;
    }
    return PQsendQueryPrepared(st->conn, stmt, (int)(n * st->tmpl.count),
                               st->values + from * st->tmpl.count, NULL, NULL, 0);
}

/* Queues the rendered rows, whose messages are @p idx: in statements of
 * multi_sizes rows while @p multi, the rest one by one; frees the scratch. */
static void seg_flush(pg_state_t *st, seg_t *sg, const size_t *idx, bool multi)
{
    for (size_t from = 0; from < st->rows && !sg->broken;) {
        size_t n = 1;
        for (size_t k = 0; multi && k < NSIZES && n == 1; k++)
            if (multi_sizes[k] <= st->rows - from)
                n = multi_sizes[k];
        if (send_rows(st, from, n))
            sg->what[sg->n++] = n > 1 ? CHUNK : idx[from];
        else
            sg->broken = true;
        from += n;
    }
    free_owned(st);
}

/* Renders message @p i as the next row of the scratch, unless the segment
 * is broken already. @returns 0; 1 if it cannot be rendered (it is FAIL
 * then, and leaves `active`); -1 if it was not rendered (sg->oom says
 * why, run->err too). */
static int render_active(pg_state_t *st, seg_t *sg, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results, ballast_outcome_t *outcomes,
                         size_t i, run_t *run)
{
    char err[ERRLEN];
    int rc;

    if (sg->broken || sg->oom)
        return -1;
    if ((rc = render(st, msgs[i], err, sizeof(err))) == -1) {
        outcomes[i] = BALLAST_OUTCOME_FAIL;
        ballast_result_set_error(results[i], err);
        return 1;
    }
    if (rc) {
        sg->oom = true;
        bl_fmt(run->err, sizeof(run->err), "%s", err);
        return -1;
    }
    return 0;
}

/* Queues the statements of the active messages, in order, MULTI_MAX
 * rendered at a time. An upsert's statement also ends before a message
 * whose key it holds already (bl_sqlkey_span), which then goes in a later
 * statement and wins, as in offset order. A message that cannot be
 * rendered is FAIL and leaves `active`; after a send or allocation failure
 * the rest stay, unsent. */
static void seg_msgs(pg_state_t *st, seg_t *sg, const ballast_message_t *const *msgs,
                     ballast_result_t *const *results, ballast_outcome_t *outcomes,
                     size_t *active, size_t *np, run_t *run, bool multi)
{
    size_t kept = 0, idx[MULTI_MAX], top = multi && st->multi_ok ? MULTI_MAX : 1;
    size_t span_end = 0;
    bool cut = top > 1 && st->key.upsert && st->key.known;

    for (size_t k = 0; k < *np; k++) {
        size_t i = active[k];
        int rc;
        if (cut && k == span_end) {
            seg_flush(st, sg, idx, true);
            span_end = k + bl_sqlkey_span(&st->key, &st->tmpl, msgs, active + k,
                                          *np - k < top ? *np - k : top);
        }
        rc = render_active(st, sg, msgs, results, outcomes, i, run);
        if (rc == 1)
            continue;
        active[kept++] = i;
        if (rc == 0) {
            idx[st->rows - 1] = i;
            if (st->rows == top)
                seg_flush(st, sg, idx, top > 1);
        }
    }
    seg_flush(st, sg, idx, top > 1);
    *np = kept;
}

/* Adds the sync point, reads every result and leaves pipeline mode; a
 * connection that broke or is going away is dropped. */
static void seg_finish(pg_state_t *st, seg_t *sg, run_t *run)
{
    if (!sg->broken && PQpipelineSync(st->conn)) {
        read_results(st, sg->n, run);
    } else {
        run_fail(run, st->conn, NULL, SIZE_MAX);
        run->cls = PG_TRANSIENT;
        run->lost = true; /* half a segment queued: start afresh */
    }
    if (sg->oom && run->cls == PG_OK)
        run->cls = PG_TRANSIENT; /* run->err says "out of memory" */
    if (run->lost || PQstatus(st->conn) != CONNECTION_OK ||
        !PQexitPipelineMode(st->conn))
        drop_conn(st);
}

/* The message a permanent failure is blamed on, NO_MSG, or CHUNK. */
static size_t seg_blame(const seg_t *sg, const run_t *run)
{
    return run->bad < sg->n ? sg->what[run->bad] : NO_MSG;
}

/* ---- COPY ---------------------------------------------------------------- */

/*
 * A statement that bl_sqltmpl_copy() turns into a COPY, on a table that
 * takes it (copy_fits_table), writes a batch of at least COPY_MIN_ROWS as
 * one COPY ... FROM STDIN in COPY's text format, inside one simple query
 * with its control statements (copy_txn, copy_eo): two round trips, and the
 * server parses each field with the column's input function, as it parses
 * a text parameter. COPY cannot go in a pipeline (libpq refuses it).
 * A COPY that fails for good names no row, like a statement over many
 * messages: it counts as one (CHUNK), so the batch is undone and runs again
 * with a statement a message, which pins the failure on its message. The
 * outcome is the one statements give; a poisoned batch costs one round more.
 */

/* The messages of a COPY round, as run_pipeline and eo_fast hand them over. */
typedef struct copy_batch {
    const ballast_message_t *const *msgs;
    ballast_result_t *const *results;
    ballast_outcome_t *outcomes;
    size_t *active, *np;
    seg_t *sg;
    run_t *run;
} copy_batch_t;

/* Sends and empties st->copy_data. @returns false if the connection broke. */
static bool copy_flush(pg_state_t *st)
{
    bool ok = !st->copy_data.len ||
              PQputCopyData(st->conn, st->copy_data.p, (int)st->copy_data.len) == 1;

    st->copy_data.len = 0;
    return ok;
}

/* Appends the rendered row (the scratch's row 0) to st->copy_data. */
static void copy_row(pg_state_t *st)
{
    for (size_t c = 0; c < st->copy.ncols; c++) {
        const char *v = st->values[st->copy.param[c]];
        if (c)
            bl_sqlbuf_put(&st->copy_data, "\t", 1);
        bl_sqlcopy_field(&st->copy_data, v, v ? strlen(v) : 0);
    }
    bl_sqlbuf_put(&st->copy_data, "\n", 1);
}

/* The active messages' rows, in order, as COPY data in pieces of about
 * COPY_CHUNK bytes (so that a batch is never held twice), then its end; out
 * of memory (sg->oom) ends the COPY with an error instead. A message that
 * cannot be rendered is FAIL and leaves `active`. @returns false if the
 * connection broke. */
static bool copy_stream(pg_state_t *st, const copy_batch_t *b)
{
    size_t kept = 0;
    bool ok = true;

    st->copy_data.len = 0;
    for (size_t k = 0; k < *b->np; k++) {
        size_t i = b->active[k];
        int rc = render_active(st, b->sg, b->msgs, b->results, b->outcomes, i, b->run);
        if (rc == 1)
            continue;
        b->active[kept++] = i;
        if (rc)
            continue; /* out of memory: kept, not sent */
        copy_row(st);
        free_owned(st);
        if (st->copy_data.oom) {
            b->sg->oom = true;
            bl_fmt(b->run->err, sizeof(b->run->err), "postgres: out of memory");
        } else if (ok && st->copy_data.len >= COPY_CHUNK) {
            ok = copy_flush(st);
        }
    }
    *b->np = kept;
    if (!ok)
        return false;
    if (b->sg->oom)
        return PQputCopyEnd(st->conn, "out of memory") == 1;
    return copy_flush(st) && PQputCopyEnd(st->conn, NULL) == 1;
}

/* Reads the simple query's results, streaming the rows when the server
 * asks for them; the first failure goes into b->run, blamed on the COPY
 * (command 0). */
static void copy_results(pg_state_t *st, const copy_batch_t *b)
{
    PGresult *res;

    while ((res = PQgetResult(st->conn))) {
        bool copy_in = PQresultStatus(res) == PGRES_COPY_IN;
        bool sent = !copy_in || copy_stream(st, b);
        if (!copy_in && pg_classify(st->conn, res) != PG_OK)
            run_fail(b->run, st->conn, res, 0);
        PQclear(res);
        if (!sent || PQstatus(st->conn) != CONNECTION_OK) {
            run_fail(b->run, st->conn, NULL, SIZE_MAX);
            b->run->cls = PG_TRANSIENT;
            b->run->lost = true; /* libpq is stuck in COPY: start afresh */
            return;
        }
    }
}

/* Whether @p n active messages go as COPY. */
static bool copy_fits(const pg_state_t *st, bool multi, size_t n)
{
    return multi && st->copy_ok && n >= COPY_MIN_ROWS;
}

/* Writes the active messages with @p query (copy_txn or copy_eo), as
 * run_pipeline and eo_fast write them with statements: @p sg and @p run are
 * filled as a segment whose one command is the COPY. */
static void copy_round(pg_state_t *st, const char *query, const ballast_message_t *const *msgs,
                       ballast_result_t *const *results, ballast_outcome_t *outcomes,
                       size_t *active, size_t *np, seg_t *sg, run_t *run)
{
    copy_batch_t b = {msgs, results, outcomes, active, np, sg, run};

    run_reset(run);
    sg->n = 0;
    sg->broken = sg->oom = false;
    sg->what[sg->n++] = CHUNK;
    if (!PQsendQuery(st->conn, query)) {
        run_fail(run, st->conn, NULL, SIZE_MAX);
        run->cls = PG_TRANSIENT;
        run->lost = true;
    } else {
        copy_results(st, &b);
    }
    if (sg->oom) {
        run->cls = PG_TRANSIENT; /* the COPY was ended for want of memory */
        free(st->copy_data.p);
        st->copy_data = (sbuf_t){0};
    }
    if (run->lost)
        drop_conn(st);
}

/* Runs the active messages as one pipelined transaction: BEGIN, the
 * statements, COMMIT (or as a COPY in one, see above). On return the
 * connection is out of pipeline mode and idle, or dropped. */
static void run_pipeline(pg_state_t *st, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results,
                         ballast_outcome_t *outcomes, size_t *active, size_t *np,
                         seg_t *sg, run_t *run, bool multi)
{
    if (copy_fits(st, multi, *np)) {
        copy_round(st, st->copy_txn, msgs, results, outcomes, active, np, sg, run);
    } else {
        if (!seg_open(st, sg, run))
            return;
        seg_ctl(st, sg, "BEGIN");
        seg_msgs(st, sg, msgs, results, outcomes, active, np, run, multi);
        seg_ctl(st, sg, "COMMIT");
        seg_finish(st, sg, run);
    }
    if (st->conn && PQtransactionStatus(st->conn) != PQTRANS_IDLE) {
        PGresult *res = PQexec(st->conn, "ROLLBACK");
        if (PQresultStatus(res) != PGRES_COMMAND_OK)
            drop_conn(st);
        PQclear(res);
    }
}

/* Takes message @p i out of active[0 .. *np). */
static void drop_active(size_t *active, size_t *np, size_t i)
{
    for (size_t k = 0; k < *np; k++)
        if (active[k] == i) {
            memmove(active + k, active + k + 1, (*np - k - 1) * sizeof(*active));
            --*np;
            return;
        }
}

/*
 * The batch runs as one pipelined transaction. When a message fails for
 * good, the whole transaction is void: that message is marked FAIL and the
 * rest run again, so the outcome is what running them one by one would
 * have given, but in a few round trips. Statements over many messages (see
 * multi_sizes) cannot name the failing one, so when one fails the batch
 * runs again with a statement a message first. After MAX_PIPELINE_ROUNDS (a
 * batch full of poison) or a failure at COMMIT that no message can be
 * blamed for, the remaining messages run one per transaction.
 */
static void pg_handle_batch(void *state, const ballast_message_t *const *msgs,
                            ballast_result_t *const *results, size_t count,
                            ballast_outcome_t *outcomes)
{
    pg_state_t *st = state;
    size_t *active, n = count;
    seg_t sg = {NULL, 0, false, false};
    bool multi = true;
    run_t run;

    if (st->in_txn) {
        eo_batch(st, msgs, results, count, outcomes);
        return;
    }
    active = malloc((count ? count : 1) * sizeof(*active));
    sg.what = malloc((count + 2) * sizeof(*sg.what));
    for (size_t i = 0; i < count; i++) {
        outcomes[i] = BALLAST_OUTCOME_OK;
        if (active)
            active[i] = i;
    }
    if (!active || !sg.what) {
        bl_sqltxn_retry_rest(results, count, outcomes, "postgres: out of memory");
        goto out;
    }
    if (!pg_ready(st, run.err, sizeof(run.err))) {
        bl_sqltxn_unavailable_rest(results, count, outcomes, run.err);
        goto out;
    }
    for (int round = 0; n; round++) {
        size_t bad;
        if (round == MAX_PIPELINE_ROUNDS) {
            for (size_t k = 0; k < n; k++)
                outcomes[active[k]] = pg_handle(st, msgs[active[k]], results[active[k]]);
            break;
        }
        run_pipeline(st, msgs, results, outcomes, active, &n, &sg, &run, multi);
        if (run.cls == PG_OK)
            break;
        if (run.cls == PG_TRANSIENT) {
            /* A lost server gives no verdict on the messages. */
            if (!st->conn)
                bl_sqltxn_unavailable_rest(results, count, outcomes, run.err);
            else
                bl_sqltxn_retry_rest(results, count, outcomes, run.err);
            break;
        }
        if ((bad = seg_blame(&sg, &run)) == CHUNK && multi) {
            multi = false; /* again, one statement a message, to find it */
            round--;
        } else if (bad >= CHUNK) {
            round = MAX_PIPELINE_ROUNDS - 1; /* nobody to blame: one by one */
        } else {
            outcomes[bad] = BALLAST_OUTCOME_FAIL;
            ballast_result_set_error(results[bad], run.err);
            drop_active(active, &n, bad);
        }
        if (!st->conn && !pg_ready(st, run.err, sizeof(run.err))) {
            bl_sqltxn_unavailable_rest(results, count, outcomes, run.err);
            break;
        }
    }
out:
    free(active);
    free(sg.what);
}

/* ---- exactly-once: the consumer's transaction ---------------------------- */

/*
 * With semantics = exactly-once the consumer opens a transaction (begin),
 * hands us a batch (or single messages), and commits it together with the
 * partitions' next offsets (commit). While it is open, handle/handle_batch
 * run inside it, never BEGIN or COMMIT, and must leave it holding exactly
 * the effects of the messages they report OK. Strategy, tuned for the
 * common case (a batch with no poison in it):
 *
 *  1. Fast round, one pipeline segment:
 *       [BEGIN;] SAVEPOINT ballast_batch; stmt x n; SET CONSTRAINTS ALL
 *       IMMEDIATE; RELEASE ballast_batch; Sync
 *     (BEGIN when begin left it for the first round, see pg_begin) where
 *     the n messages go in statements of many rows, or one COPY, when the
 *     user's statement allows (multi_sizes, "COPY" above); if one of those
 *     fails, the round runs again with a statement a message, which names
 *     the failing one.
 *     No savepoint per message: that would triple the commands, and each
 *     savepoint that writes costs a subtransaction XID; past 64 of them in
 *     one transaction every snapshot in the database overflows its subxid
 *     cache and has to consult pg_subtrans, which slows every session.
 *     SET CONSTRAINTS ALL IMMEDIATE runs deferred checks here rather than at
 *     COMMIT, where a failure could not be pinned on a message and would
 *     fail every redo of the batch alike.
 *  2. A message fails for good: the server skips the rest of the segment
 *     and the transaction is aborted. ROLLBACK TO ballast_batch undoes the
 *     batch (what earlier calls since begin did stays), the message is
 *     FAIL, and the others run again as a fast round: MAX_PIPELINE_ROUNDS
 *     rounds in all, so one poison message costs one more round.
 *  3. Then (much poison, or a deferred check that no message can be blamed
 *     for) the careful rounds: SET CONSTRAINTS ALL IMMEDIATE, then
 *     SAVEPOINT ballast_msg; stmt; RELEASE ballast_msg per message in one
 *     segment. When message k fails the server skips the rest; ROLLBACK TO
 *     ballast_msg and RELEASE undo just k, and the segment is sent again
 *     from k+1: one round trip per poison message, no statement run twice.
 *
 * A transient failure (connection lost, serialization failure, deadlock,
 * statement timeout, out of memory...) dooms the transaction: every message
 * of the batch is RETRY, later calls and commit refuse, and the consumer
 * rolls back and redoes the batch. Nothing reconnects while a transaction
 * is open; begin and load_offset do.
 */

/* Runs control statements outside pipeline mode; on failure @p err says
 * why (a lost connection is dropped). */
static bool exec_ctl(pg_state_t *st, const char *sql, char *err, size_t errsize)
{
    PGresult *res = PQexec(st->conn, sql);
    bool ok = pg_classify(st->conn, res) == PG_OK;

    if (!ok) {
        pg_error_text(st->conn, res, err, errsize);
        if (pg_conn_lost(st->conn, res))
            drop_conn(st);
    }
    PQclear(res);
    return ok;
}

typedef enum eo_step { EO_DONE, EO_BLAME, EO_CHUNK, EO_NOBODY, EO_DOOM } eo_step_t;

/* A fast round (step 1 above) over active[0 .. *np). On EO_BLAME the
 * batch's effects are undone and *blamed is the message to fail; on
 * EO_CHUNK a statement over many messages failed: which one is unknown. */
static eo_step_t eo_fast(pg_state_t *st, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results,
                         ballast_outcome_t *outcomes, size_t *active, size_t *np,
                         seg_t *sg, run_t *run, bool multi, size_t *blamed)
{
    if (copy_fits(st, multi, *np)) {
        copy_round(st, st->begun ? st->copy_eo : st->copy_eo_first, msgs, results, outcomes,
                   active, np, sg, run);
    } else {
        if (!seg_open(st, sg, run))
            return EO_DOOM;
        if (!st->begun)
            seg_ctl(st, sg, "BEGIN");
        seg_ctl(st, sg, "SAVEPOINT ballast_batch");
        seg_msgs(st, sg, msgs, results, outcomes, active, np, run, multi);
        seg_ctl(st, sg, "SET CONSTRAINTS ALL IMMEDIATE");
        seg_ctl(st, sg, "RELEASE SAVEPOINT ballast_batch");
        seg_finish(st, sg, run);
    }
    st->begun = true;
    if (run->cls == PG_OK)
        return EO_DONE;
    if (run->cls == PG_TRANSIENT || !st->conn)
        return EO_DOOM;
    *blamed = seg_blame(sg, run);
    if (!exec_ctl(st, "ROLLBACK TO SAVEPOINT ballast_batch; "
                      "RELEASE SAVEPOINT ballast_batch",
                  run->err, sizeof(run->err)))
        return EO_DOOM;
    return *blamed == NO_MSG ? EO_NOBODY : *blamed == CHUNK ? EO_CHUNK : EO_BLAME;
}

/* The careful rounds (step 3 above) over active[0 .. n). */
static eo_step_t eo_careful(pg_state_t *st, const ballast_message_t *const *msgs,
                            ballast_result_t *const *results,
                            ballast_outcome_t *outcomes, const size_t *active,
                            size_t n, seg_t *sg, run_t *run)
{
    size_t pos = 0;

    while (pos < n) {
        size_t bad;
        if (!seg_open(st, sg, run))
            return EO_DOOM;
        seg_ctl(st, sg, "SET CONSTRAINTS ALL IMMEDIATE");
        for (size_t k = pos; k < n && !sg->broken && !sg->oom; k++) {
            size_t i = active[k], one = 1;
            seg_ctl(st, sg, "SAVEPOINT ballast_msg");
            seg_msgs(st, sg, msgs, results, outcomes, &i, &one, run, false);
            seg_ctl(st, sg, "RELEASE SAVEPOINT ballast_msg");
        }
        seg_finish(st, sg, run);
        if (run->cls == PG_OK)
            return EO_DONE;
        if (run->cls == PG_TRANSIENT || !st->conn)
            return EO_DOOM;
        if ((bad = seg_blame(sg, run)) == NO_MSG)
            return EO_DOOM; /* a savepoint command failed for good: unexpected */
        outcomes[bad] = BALLAST_OUTCOME_FAIL;
        ballast_result_set_error(results[bad], run->err);
        if (!exec_ctl(st, "ROLLBACK TO SAVEPOINT ballast_msg; "
                          "RELEASE SAVEPOINT ballast_msg",
                      run->err, sizeof(run->err)))
            return EO_DOOM;
        while (pos < n && active[pos] != bad)
            pos++;
        pos++;
    }
    return EO_DONE;
}

static void eo_doom(pg_state_t *st, const char *err)
{
    st->doomed = true;
    bl_fmt(st->doom_err, sizeof(st->doom_err), "%s", err);
}

/* handle/handle_batch while the consumer's transaction is open. */
static void eo_batch(pg_state_t *st, const ballast_message_t *const *msgs,
                     ballast_result_t *const *results, size_t count,
                     ballast_outcome_t *outcomes)
{
    size_t *active = malloc((count ? count : 1) * sizeof(*active)), n = count;
    seg_t sg = {malloc((3 * count + 4) * sizeof(size_t)), 0, false, false};
    eo_step_t step = EO_NOBODY;
    size_t blamed = NO_MSG;
    bool multi = true;
    run_t run;

    run_reset(&run);
    for (size_t i = 0; i < count; i++) {
        outcomes[i] = BALLAST_OUTCOME_OK;
        if (active)
            active[i] = i;
    }
    if (st->doomed) {
        bl_sqltxn_retry_all(results, count, outcomes, st->doom_err);
        goto out;
    }
    if (!active || !sg.what) {
        eo_doom(st, "postgres: out of memory");
        bl_sqltxn_retry_all(results, count, outcomes, st->doom_err);
        goto out;
    }
    if (!st->conn || PQstatus(st->conn) != CONNECTION_OK) {
        eo_doom(st, "postgres: connection lost: the transaction is gone");
        bl_sqltxn_retry_all(results, count, outcomes, st->doom_err);
        goto out;
    }
    for (int round = 0; n && round < MAX_PIPELINE_ROUNDS; round++) {
        step = eo_fast(st, msgs, results, outcomes, active, &n, &sg, &run, multi,
                       &blamed);
        if (step == EO_CHUNK && multi) {
            multi = false; /* again, one statement a message, to find it */
            round--;
            continue;
        }
        if (step != EO_BLAME)
            break;
        outcomes[blamed] = BALLAST_OUTCOME_FAIL;
        ballast_result_set_error(results[blamed], run.err);
        drop_active(active, &n, blamed);
    }
    if (n && (step == EO_BLAME || step == EO_CHUNK || step == EO_NOBODY))
        step = eo_careful(st, msgs, results, outcomes, active, n, &sg, &run);
    if (step == EO_DOOM) {
        eo_doom(st, run.err);
        bl_sqltxn_retry_all(results, count, outcomes, run.err);
    }
out:
    free(active);
    free(sg.what);
}

/* The open transaction is dropped; the connection stays if it can. */
static void pg_rollback(void *state)
{
    pg_state_t *st = state;
    char ignored[ERRLEN];

    st->in_txn = st->doomed = st->begun = false;
    if (!st->conn)
        return;
    if (PQstatus(st->conn) != CONNECTION_OK ||
        PQpipelineStatus(st->conn) != PQ_PIPELINE_OFF) {
        drop_conn(st);
        return;
    }
    switch (PQtransactionStatus(st->conn)) {
    case PQTRANS_IDLE:
        return;
    case PQTRANS_INTRANS:
    case PQTRANS_INERROR:
        if (!exec_ctl(st, "ROLLBACK", ignored, sizeof(ignored)))
            drop_conn(st);
        return;
    default:
        drop_conn(st);
    }
}

/* Whether an idle connection has heard nothing from the server, without a
 * round trip: a server that ends a session (shutdown, pg_terminate_backend)
 * sends an error and closes the socket, which makes it readable. */
static bool quiet_conn(const pg_state_t *st)
{
    struct pollfd pfd = {st->conn ? PQsocket(st->conn) : -1, POLLIN, 0};

    return st->conn && PQstatus(st->conn) == CONNECTION_OK &&
           PQtransactionStatus(st->conn) == PQTRANS_IDLE && poll(&pfd, 1, 0) == 0;
}

static ballast_outcome_t pg_begin(void *state, char *errbuf, size_t errsize)
{
    pg_state_t *st = state;
    bool quiet;

    if (!st->grouped && !bl_sqltxn_usable(st->eo, "postgres", "begin", errbuf, errsize))
        return BALLAST_OUTCOME_RETRY;
    pg_rollback(st); /* one left open: it can only be given up */
    /* On a connection that has heard nothing since its last command, BEGIN
     * goes with the batch's first commands (a round trip less). One the
     * server closed while idle still looks fine until used, but a server
     * that ends a session says so first (quiet_conn): then BEGIN runs here,
     * finds the connection gone, and one fresh attempt follows at once. */
    quiet = quiet_conn(st);
    for (int attempt = 0; attempt < 2; attempt++) {
        bool fresh = quiet && !attempt;
        if (!pg_ready(st, errbuf, errsize))
            return BALLAST_OUTCOME_RETRY;
        if (fresh || exec_ctl(st, "BEGIN", errbuf, errsize)) {
            st->in_txn = true;
            st->begun = !fresh;
            return BALLAST_OUTCOME_OK;
        }
        if (st->conn)
            break;
    }
    pg_rollback(st);
    return BALLAST_OUTCOME_RETRY;
}

static int cmp_offset(const void *a, const void *b)
{
    const bl_dbtxn_offset_t *x = *(const bl_dbtxn_offset_t *const *)a;
    const bl_dbtxn_offset_t *y = *(const bl_dbtxn_offset_t *const *)b;
    int c = strcmp(x->topic, y->topic);

    return c ? c : (x->partition > y->partition) - (x->partition < y->partition);
}

/* Advances the offsets, fenced (see handlers.h), and COMMITs, in one
 * pipeline segment. The rows are locked in (topic, partition) order, so
 * that two transactions that share partitions (after a rebalance) wait for
 * each other rather than deadlock. The one that waited then finds the row
 * as the other committed it: under READ COMMITTED, ON CONFLICT DO UPDATE
 * locks the newest version of the row and evaluates its WHERE on that.
 * @returns _OK; _FAIL: a row is past the batch (rolled back); _RETRY: it
 * failed, or the connection broke and nobody knows whether it committed. */
static ballast_outcome_t commit_offsets(pg_state_t *st, const char *group,
                                        const bl_dbtxn_offset_t *const *order, size_t count,
                                        char *errbuf, size_t errsize)
{
    seg_t sg = {malloc((count + 2) * sizeof(size_t)), 0, false, false};
    size_t first_off = st->begun ? 0 : 1; /* the command of the first offset */
    run_t run;

    if (!sg.what) {
        bl_fmt(errbuf, errsize, "postgres: out of memory");
        return BALLAST_OUTCOME_RETRY;
    }
    if (seg_open(st, &sg, &run)) {
        if (!st->begun)
            seg_ctl(st, &sg, "BEGIN");
        for (size_t i = 0; i < count && !sg.broken; i++) {
            char part[16], next[24], first[24];
            const char *vals[5] = {group, order[i]->topic, part, next, first};
            bl_fmt(part, sizeof(part), "%" PRId32, order[i]->partition);
            bl_fmt(next, sizeof(next), "%" PRId64, order[i]->next_offset);
            bl_fmt(first, sizeof(first), "%" PRId64, order[i]->first_offset);
            if (PQsendQueryPrepared(st->conn, OFF_UPSERT, 5, vals, NULL, NULL, 0))
                sg.what[sg.n++] = NO_MSG;
            else
                sg.broken = true;
        }
        seg_ctl(st, &sg, "COMMIT");
        seg_finish(st, &sg, &run);
    }
    free(sg.what);
    if (run.cls == PG_OK)
        return BALLAST_OUTCOME_OK;
    if (run.bad >= first_off && run.bad - first_off < count && !strcmp(run.state, "22012")) {
        bl_dbtxn_stale_error(errbuf, errsize, order[run.bad - first_off]);
        return BALLAST_OUTCOME_FAIL;
    }
    if (st->conn)
        bl_fmt(errbuf, errsize, "%s", run.err);
    else
        /* Perhaps committed, perhaps not: the consumer reads the offsets
         * back before it redoes the batch, which settles it. */
        bl_fmt(errbuf, errsize, "%s (connection lost at commit; the offsets "
                                "in ballast_offsets tell whether it happened)",
               run.err[0] ? run.err : "postgres: connection lost");
    return BALLAST_OUTCOME_RETRY;
}

/* Advances the offsets and COMMITs in one round trip. */
static ballast_outcome_t pg_commit(void *state, const char *group,
                                   const bl_dbtxn_offset_t *offsets, size_t count,
                                   char *errbuf, size_t errsize)
{
    pg_state_t *st = state;
    const bl_dbtxn_offset_t **order = malloc((count ? count : 1) * sizeof(*order));
    ballast_outcome_t out = BALLAST_OUTCOME_RETRY;

    if (!st->in_txn)
        bl_fmt(errbuf, errsize, "postgres: commit without an open transaction");
    else if (st->doomed)
        bl_fmt(errbuf, errsize, "%s", st->doom_err);
    else if (!st->conn || PQstatus(st->conn) != CONNECTION_OK)
        bl_fmt(errbuf, errsize, "postgres: connection lost: the transaction is gone");
    else if (st->begun && PQtransactionStatus(st->conn) != PQTRANS_INTRANS)
        bl_fmt(errbuf, errsize, "postgres: the transaction was aborted");
    else if (!order)
        bl_fmt(errbuf, errsize, "postgres: out of memory");
    else {
        for (size_t i = 0; i < count; i++)
            order[i] = &offsets[i];
        qsort(order, count, sizeof(*order), cmp_offset);
        out = commit_offsets(st, group, order, count, errbuf, errsize);
    }
    free(order);
    if (st->in_txn)
        pg_rollback(st); /* after a COMMIT it only resets the state */
    return out;
}

static int pg_load_offset(void *state, const char *group, const char *topic,
                          int32_t partition, int64_t *next, char *errbuf,
                          size_t errsize)
{
    pg_state_t *st = state;
    char part[16];
    const char *vals[3] = {group, topic, part};

    if (!bl_sqltxn_usable(st->eo, "postgres", "load_offset", errbuf, errsize))
        return -1;
    bl_fmt(part, sizeof(part), "%" PRId32, partition);
    for (int attempt = 0; attempt < 2; attempt++) {
        PGresult *res;
        int found = -1;
        if (!pg_ready(st, errbuf, errsize))
            return -1;
        res = PQexecPrepared(st->conn, OFF_SELECT, 3, vals, NULL, NULL, 0);
        if (pg_classify(st->conn, res) != PG_OK) {
            pg_error_text(st->conn, res, errbuf, errsize);
            if (pg_conn_lost(st->conn, res))
                drop_conn(st);
        } else if (PQntuples(res) == 0) {
            found = 0;
        } else {
            char *end;
            errno = 0;
            *next = strtoll(PQgetvalue(res, 0, 0), &end, 10);
            found = errno || *end ? -1 : 1;
            if (found < 0)
                bl_fmt(errbuf, errsize, "postgres: ballast_offsets.next_offset: "
                                        "not a number");
        }
        PQclear(res);
        if (found >= 0 || st->conn || st->in_txn)
            return found;
    }
    return -1;
}

/* The transaction operations of `postgres`; see bl_dbtxn_ops_t. */
const bl_dbtxn_ops_t bl_postgres_dbtxn_ops = {pg_begin, pg_commit, pg_rollback,
                                             pg_load_offset};

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
    for (size_t k = 0; k < NSIZES; k++)
        free(st->multi[k]);
    bl_sqlcopy_free(&st->copy);
    free(st->copy_txn);
    free(st->copy_eo_first);
    free(st->copy_data.p);
    free(st);
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

/* Connects, retrying every RETRY_INTERVAL_MS until startup.timeout.ms;
 * a refusal no retry can fix is a configuration error at once. */
static int connect_startup(pg_state_t *st, int64_t deadline, int64_t timeout_ms,
                           char *errbuf, size_t errsize)
{
    char why[ERRLEN] = "", last[ERRLEN];
    pg_class_t cls;

    for (;;) {
        int64_t left;
        if ((st->conn = connect_once(st, deadline, last, sizeof(last), &cls)))
            return 0;
        if (stopping(st)) {
            bl_fmt(errbuf, errsize, "stopped while connecting to the database");
            return BALLAST_ERR_STOPPED;
        }
        if (cls == PG_PERMANENT) {
            bl_fmt(errbuf, errsize, "handler.postgres.dsn: %s", last);
            return BALLAST_ERR_CONFIG;
        }
        /* An attempt the deadline cut short says less than the one before
         * ("connection refused"). */
        if (!*why || bl_now_ms() < deadline)
            bl_fmt(why, sizeof(why), "%s", last);
        if ((left = deadline - bl_now_ms()) <= 0)
            break;
        nap(st, left < RETRY_INTERVAL_MS ? left : RETRY_INTERVAL_MS);
    }
    bl_fmt(errbuf, errsize, "handler.postgres.dsn: cannot connect within %lld "
                            "ms (startup.timeout.ms): %s",
           (long long)timeout_ms, why);
    return BALLAST_ERR_UNREACHABLE;
}

/* The multi-row forms of the statement (all or none) and the scratch for
 * as many rows as the largest holds. */
static int alloc_scratch(pg_state_t *st)
{
    size_t n;

    if (bl_sqltmpl_key(&st->tmpl, &st->key))
        st->key = (bl_sqlkey_t){0}; /* no multi-row form: nothing to keep apart */
    for (size_t k = 0; k < NSIZES; k++) {
        if ((st->multi[k] = bl_sqltmpl_multirow(&st->tmpl, multi_sizes[k])))
            continue;
        for (size_t j = 0; j < k; j++) {
            free(st->multi[j]);
            st->multi[j] = NULL;
        }
        break;
    }
    n = st->tmpl.count * (st->multi[0] ? MULTI_MAX : 1) + 1;

    st->types = calloc(n, sizeof(*st->types));
    st->vals = calloc(n, sizeof(*st->vals));
    st->values = calloc(n, sizeof(*st->values));
    st->owned = calloc(n, sizeof(*st->owned));
    return st->types && st->vals && st->values && st->owned ? 0 : -1;
}

/* Exactly-once: creates ballast_offsets unless it exists. Workers start
 * together, and concurrent CREATE TABLE IF NOT EXISTS can still collide (a
 * unique violation in pg_type), so creation takes an advisory lock; the
 * check first spares a role without the CREATE privilege an error when the
 * table is there already. Inside a transaction (`ballast check`, which
 * rolls it back) the table is only created there. */
static pg_class_t create_offsets(pg_state_t *st, char *err, size_t errsize)
{
    PGresult *res = PQexec(st->conn, "SELECT to_regclass('ballast_offsets') IS NULL");
    pg_class_t cls = pg_classify(st->conn, res);
    bool in_txn = PQtransactionStatus(st->conn) == PQTRANS_INTRANS;

    if (cls == PG_OK && PQntuples(res) == 1 && !strcmp(PQgetvalue(res, 0, 0), "t")) {
        PQclear(res);
        res = PQexec(st->conn, in_txn ? BL_SQLTXN_OFFSETS_DDL
                                      : "BEGIN; SELECT pg_advisory_xact_lock(" OFF_LOCK_KEY
                                        "); " BL_SQLTXN_OFFSETS_DDL "; COMMIT");
        cls = pg_classify(st->conn, res);
    }
    if (cls != PG_OK)
        pg_error_text(st->conn, res, err, errsize);
    PQclear(res);
    if (cls != PG_OK && !in_txn && PQstatus(st->conn) == CONNECTION_OK &&
        PQtransactionStatus(st->conn) != PQTRANS_IDLE)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    return cls;
}

/* Exactly-once, at start-up: the table and the statements on it. */
static int setup_offsets(pg_state_t *st, char *errbuf, size_t errsize)
{
    char err[ERRLEN];
    pg_class_t cls = create_offsets(st, err, sizeof(err));

    if (cls == PG_OK)
        cls = prepare_offsets(st, err, sizeof(err));
    if (cls == PG_OK)
        return 0;
    bl_fmt(errbuf, errsize, "semantics: exactly-once needs the table "
                            "ballast_offsets: %s", err);
    return cls == PG_TRANSIENT ? BALLAST_ERR_UNREACHABLE : BALLAST_ERR_CONFIG;
}

/* One start-up session: the offsets table, then the user's statement. */
static int setup_session(pg_state_t *st, char *errbuf, size_t errsize)
{
    char err[ERRLEN];
    int rc;

    /* the table first: the user's statement may refer to it */
    if (st->eo && (rc = setup_offsets(st, errbuf, errsize)) != 0)
        return rc;
    switch (prepare(st, err, sizeof(err))) {
    case PG_OK:
        prepare_multi(st);
        prepare_copy(st);
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

/* The statement's placeholders. */
static int parse_sql(pg_state_t *st, const char *sql, char *errbuf, size_t errsize)
{
    char err[ERRLEN];

    if (!bl_sqltmpl_parse(sql, BL_SQL_POSTGRES, &st->tmpl, err, sizeof(err)))
        return 0;
    bl_fmt(errbuf, errsize, "handler.postgres.sql: %s", err);
    return BALLAST_ERR_CONFIG;
}

/* The statement's COPY form and the simple queries around it, unless it
 * has none (st->copy_why says why). @returns -1 when out of memory. */
static int make_copy(pg_state_t *st)
{
    static const char txn[] = "BEGIN; %s; COMMIT",
                      eo[] = "BEGIN; SAVEPOINT ballast_batch; %s; SET CONSTRAINTS ALL "
                             "IMMEDIATE; RELEASE SAVEPOINT ballast_batch";
    size_t len;
    int rc = bl_sqltmpl_copy(&st->tmpl, &st->copy, st->copy_why, sizeof(st->copy_why));

    if (rc)
        return rc == -2 ? -1 : 0; /* not COPY's shape: statements */
    len = strlen(st->copy.sql) + sizeof(eo);
    if (!(st->copy_txn = malloc(len)) || !(st->copy_eo_first = malloc(len)))
        return -1;
    bl_fmt(st->copy_txn, len, txn, st->copy.sql);
    bl_fmt(st->copy_eo_first, len, eo, st->copy.sql);
    st->copy_eo = st->copy_eo_first + strlen("BEGIN; ");
    return 0;
}

/* What the statements need before the first connection. */
static int prepare_state(pg_state_t *st, int64_t timeout_ms, char *errbuf,
                         size_t errsize)
{
    if (alloc_scratch(st) || make_copy(st)) {
        bl_fmt(errbuf, errsize, "handler.postgres: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    st->attempt_ms = timeout_ms < ATTEMPT_MAX_MS ? timeout_ms : ATTEMPT_MAX_MS;
    return 0;
}

static int pg_setup(pg_state_t *st, const ballast_conf_t *conf, const char *sql,
                    char *errbuf, size_t errsize)
{
    int64_t timeout_ms = bl_conf_int(conf, "startup.timeout.ms");
    int64_t deadline = bl_now_ms() + timeout_ms;
    int rc;

    if ((rc = parse_sql(st, sql, errbuf, errsize)) != 0 ||
        (rc = check_dsn(st->dsn, errbuf, errsize)) != 0 ||
        (rc = prepare_state(st, timeout_ms, errbuf, errsize)) != 0)
        return rc;
    /* A server that goes away during set-up (a restart) is unreachable
     * like one that refuses connections: tried again until the deadline. */
    for (;;) {
        int64_t left;
        if ((rc = connect_startup(st, deadline, timeout_ms, errbuf, errsize)) != 0 ||
            (rc = setup_session(st, errbuf, errsize)) != BALLAST_ERR_UNREACHABLE ||
            (left = deadline - bl_now_ms()) <= 0)
            return rc;
        drop_conn(st);
        nap(st, left < RETRY_INTERVAL_MS ? left : RETRY_INTERVAL_MS);
    }
}

/* Says once which way batches go, and why when not as COPY. */
static void log_path(const pg_state_t *st, const ballast_conf_t *conf)
{
    bl_logger_t lg = bl_conf_logger(conf);

    if (st->copy_ok)
        bl_log(&lg, BALLAST_LOG_INFO, "postgres: batches are written with COPY into %s",
               st->copy.table);
    else
        bl_log(&lg, BALLAST_LOG_INFO,
               "postgres: batches are written with pipelined statements%s: COPY does not "
               "fit: %s",
               st->multi_ok ? " of many rows" : "", st->copy_why);
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
    st->eo = bl_conf_exactly_once(params->conf);
    st->stop = bl_conf_stop_flag(params->conf);
    st->grouped = bl_conf_pg_group(params->conf) > 0;
    if ((rc = pg_setup(st, params->conf, sql, errbuf, errsize)) != 0) {
        pg_destroy(st);
        return rc;
    }
    if (params->worker == 0 && !strcmp(bl_conf_str(params->conf, "processing"), "batch"))
        log_path(st, params->conf);
    *statep = st;
    return 0;
}

/* `ballast check`: the start-up session inside a transaction that is
 * rolled back, so that a ballast_offsets made for the statements' sake is
 * gone again. */
static int check_session(pg_state_t *st, char *errbuf, size_t errsize)
{
    int rc;

    if (!exec_ctl(st, "BEGIN", errbuf, errsize))
        return BALLAST_ERR_UNREACHABLE;
    rc = setup_session(st, errbuf, errsize);
    if (st->conn)
        PQclear(PQexec(st->conn, "ROLLBACK"));
    return rc;
}

void bl_postgres_check(const ballast_conf_t *conf, bl_check_t *ck)
{
    int64_t timeout_ms = bl_conf_int(conf, "startup.timeout.ms");
    pg_state_t *st = calloc(1, sizeof(*st));
    char db_err[ERRLEN] = "", sql_err[ERRLEN] = "";
    int db_rc, sql_rc;

    if (!st || !(st->dsn = bl_strdup(bl_conf_str(conf, "handler.postgres.dsn")))) {
        free(st);
        bl_check_report(ck, "database", BALLAST_ERR_INTERNAL, "handler.postgres: out of memory");
        return;
    }
    st->eo = bl_conf_exactly_once(conf);
    sql_rc = parse_sql(st, bl_conf_str(conf, "handler.postgres.sql"), sql_err,
                       sizeof(sql_err));
    db_rc = check_dsn(st->dsn, db_err, sizeof(db_err));
    if (!db_rc && bl_check_connects(ck) &&
        !(db_rc = prepare_state(st, timeout_ms, db_err, sizeof(db_err))))
        db_rc = connect_startup(st, bl_now_ms() + timeout_ms, timeout_ms, db_err,
                                sizeof(db_err));
    bl_check_report(ck, bl_check_connects(ck) ? "database" : "connection string", db_rc,
                    "%s", db_err);
    if (!sql_rc && bl_check_connects(ck)) {
        if ((sql_rc = db_rc) != 0)
            bl_fmt(sql_err, sizeof(sql_err), "handler.postgres.sql: not prepared "
                                             "(no connection to the database)");
        else
            sql_rc = check_session(st, sql_err, sizeof(sql_err));
    }
    bl_check_report(ck, "SQL statement", sql_rc, "%s", sql_err);
    pg_destroy(st);
}

/* Built-in handler `postgres`; see ballast_handler_t for the threading rules. */
const ballast_handler_t bl_handler_postgres = {
    BALLAST_HANDLER_ABI_VERSION, "postgres", pg_init, pg_handle,
    pg_handle_batch, pg_destroy};
