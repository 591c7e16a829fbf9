/*
 * test_sql_batch_equiv.c - processing = batch writes what processing =
 * message writes: the sqlite and postgres handlers driven both ways over the
 * same hand-built messages, for a statement whose tuple reads the table it
 * writes.
 *
 * The modes, as the worker drives a handler:
 *  - message:  handle() once per message (PostgreSQL: one transaction each);
 *  - batch:    handle_batch() over all of them (one transaction);
 *  - eo-batch: begin, handle_batch(), commit (exactly-once into the database).
 * Each mode writes a table of its own, and the test asserts that the tables
 * hold the same rows and that every message had the same outcome.
 *
 * The differential part generates statements from a small grammar: tuple
 * elements that the postgres handler may run as one statement over many
 * messages (parameters, literals, casts) and ones it must not (subqueries,
 * function calls, operators), the tails ON CONFLICT DO NOTHING / DO UPDATE /
 * RETURNING, and the forms VALUES, INSERT ... SELECT and WITH, over batches
 * with repeated keys, repeated (key, offset) pairs, poison values and NULL
 * keys; a quarter of them are plain inserts of lone placeholders, which the
 * postgres handler writes with COPY (values with tabs, newlines,
 * backslashes, `\N`, non-ASCII text and the empty string among them).
 * SQL_EQUIV_CASES statements (default 40, a few seconds), from seed
 * SQL_EQUIV_SEED (default 1); case i uses seed + i, which a failure names,
 * so `SQL_EQUIV_SEED=<it> SQL_EQUIV_CASES=1` runs that case alone.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "handlers/handlers.h"
#include "message.h"
#include "sql_fixture.h"
#include "sqltmpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum run_mode { BY_MESSAGE, BY_BATCH, BY_EO_BATCH, MODES } run_mode_t;

static const char *const mode_names[MODES] = {"message", "batch", "eo-batch"};
static const char *const mode_suffix[MODES] = {"m", "b", "e"};

/* @p tmpl with each "{t}" replaced by @p table. */
static void subst(const char *tmpl, const char *table, char *out, size_t size)
{
    size_t len = 0, tlen = strlen(table);

    for (const char *s = tmpl; *s; s++) {
        if (!strncmp(s, "{t}", 3)) {
            assert_true(len + tlen < size);
            memcpy(out + len, table, tlen);
            len += tlen;
            s += 2;
        } else {
            assert_true(len + 1 < size);
            out[len++] = *s;
        }
    }
    out[len] = '\0';
}

/* ======================================================================= */
/* PostgreSQL                                                              */
/* ======================================================================= */

/* Runs @p sql over @p b in @p mode; the outcomes land in b->out.
 * Exactly-once commits under @p group, which must be new. */
static void pg_run(run_mode_t mode, const char *sql, const char *group, bt_batch_t *b)
{
    const char *kv[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql", sql,
                        "startup.timeout.ms", "5000", "semantics",
                        mode == BY_EO_BATCH ? "exactly-once" : "at-least-once", NULL};
    const bl_dbtxn_ops_t *ops = bl_handler_dbtxn_ops(&bl_handler_postgres);
    char err[512] = "";
    void *st = NULL;

    if (bt_handler_init(&bl_handler_postgres, kv, 0, &st, err, sizeof(err)))
        fail_msg("postgres init (%s): %s: %s", mode_names[mode], err, sql);
    switch (mode) {
    case BY_MESSAGE:
        for (size_t i = 0; i < b->n; i++)
            b->out[i] = bl_handler_postgres.handle(st, b->mp[i], b->rp[i]);
        break;
    case BY_BATCH:
        bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
        break;
    default: {
        bl_dbtxn_offset_t off = {"orders", 2, 0, (int64_t)b->n};
        if (ops->begin(st, err, sizeof(err)) != BALLAST_OUTCOME_OK)
            fail_msg("begin: %s", err);
        bl_handler_postgres.handle_batch(st, b->mp, b->rp, b->n, b->out);
        if (ops->commit(st, group, &off, 1, err, sizeof(err)) != BALLAST_OUTCOME_OK)
            fail_msg("commit: %s: %s", err, sql);
        break;
    }
    }
    bl_handler_postgres.destroy(st);
}

/* Every row of @p table as text, sorted, so that two tables compare as
 * multisets of rows (caller frees). */
static char *pg_rows(const char *table)
{
    char sql[256], *rows;

    snprintf(sql, sizeof(sql),
             "SELECT coalesce(string_agg(r::text, ' ' ORDER BY r::text), '') FROM %s r",
             table);
    rows = bt_pg_admin_text(sql);
    assert_non_null(rows);
    return rows;
}

/* The outcomes of @p b as a string, one letter a message: O, F, R. */
static void outcome_text(const bt_batch_t *b, char *out)
{
    for (size_t i = 0; i < b->n; i++)
        out[i] = b->out[i] == BALLAST_OUTCOME_OK     ? 'O'
                 : b->out[i] == BALLAST_OUTCOME_FAIL ? 'F'
                                                     : 'R';
    out[b->n] = '\0';
}

/*
 * Runs @p stmt ({t}: the table) in every mode over copies of the messages
 * @p fill makes, each mode into table <base>_<mode> made by @p ddl ({t}),
 * and asserts the same rows and outcomes as message mode. @p ctx names the
 * case in a failure. Returns message mode's rows (caller frees).
 */
typedef void (*fill_fn)(bt_batch_t *b, void *arg);

static char *pg_equiv(const char *base, const char *ddl, const char *stmt, fill_fn fill,
                      void *arg, const char *ctx)
{
    char table[MODES][64], sql[4096], outs[MODES][BT_BATCH_MAX + 1], *rows[MODES];
    bt_batch_t *b = malloc(sizeof(*b));

    assert_non_null(b);
    for (int m = 0; m < MODES; m++) {
        snprintf(table[m], sizeof(table[m]), "%s_%s", base, mode_suffix[m]);
        subst(ddl, table[m], sql, sizeof(sql));
        bt_pg_admin_exec(sql);
        fill(b, arg);
        subst(stmt, table[m], sql, sizeof(sql));
        pg_run((run_mode_t)m, sql, table[m], b);
        outcome_text(b, outs[m]);
        rows[m] = pg_rows(table[m]);
        bt_batch_free(b);
    }
    /* A transient failure would make the comparison say nothing. */
    if (strchr(outs[BY_MESSAGE], 'R'))
        fail_msg("%s: RETRY by message (%s): %s", ctx, outs[BY_MESSAGE], stmt);
    for (int m = 1; m < MODES; m++) {
        if (strcmp(outs[m], outs[BY_MESSAGE]))
            fail_msg("%s: outcomes by %s %s, by message %s\n  %s", ctx, mode_names[m],
                     outs[m], outs[BY_MESSAGE], stmt);
        if (strcmp(rows[m], rows[BY_MESSAGE]))
            fail_msg("%s: rows by %s differ from by message\n  %s\n  %s: %s\n  message: %s",
                     ctx, mode_names[m], stmt, mode_names[m], rows[m], rows[BY_MESSAGE]);
    }
    free(rows[BY_BATCH]);
    free(rows[BY_EO_BATCH]);
    free(b);
    return rows[BY_MESSAGE];
}

/* Ten messages of one key, offsets 100..109. */
static void fill_one_key(bt_batch_t *b, void *arg)
{
    (void)arg;
    bt_batch_fill(b, 10, "orders", 100);
    for (size_t i = 0; i < b->n; i++) {
        b->m[i].key = "acct-1";
        b->m[i].key_len = strlen("acct-1");
    }
}

#define RUNNING_COUNT                                                                  \
    "INSERT INTO {t}(k, n, off) VALUES (:key, (SELECT count(*) + 1 FROM {t} WHERE k = " \
    ":key), :offset)"

/* A running count written by a subquery in the tuple: every mode numbers
 * the key's rows 1..10 in offset order. */
static void test_pg_subquery_in_tuple(void **unused)
{
    char *rows;

    (void)unused;
    BT_NEED_PG();
    rows = pg_equiv("eq_running", "CREATE TABLE {t} (k text, n bigint, off bigint)",
                    RUNNING_COUNT, fill_one_key, NULL, "running count");
    assert_string_equal(rows, "(acct-1,1,100) (acct-1,10,109) (acct-1,2,101) "
                              "(acct-1,3,102) (acct-1,4,103) (acct-1,5,104) "
                              "(acct-1,6,105) (acct-1,7,106) (acct-1,8,107) "
                              "(acct-1,9,108)");
    free(rows);
}

/* Twelve messages whose bytes COPY's text format must carry exactly: a
 * binary value (NUL, 0xff, tab, newline, backslash) into bytea, the empty
 * value and key against NULL ones, and one with no key, which k's NOT NULL
 * refuses. */
static void fill_bytes(bt_batch_t *b, void *arg)
{
    static const char bin[] = {'\0', '\xff', '\t', '\n', '\\', 'N', '\r', '.', 'x'};

    (void)arg;
    bt_batch_fill(b, 12, "orders", 100);
    b->m[1].value = bin;
    b->m[1].value_len = sizeof(bin);
    b->m[2].value = "";
    b->m[2].value_len = 0;
    bt_batch_set_value(b, 3, NULL);
    b->m[4].key = "";
    b->m[4].key_len = 0;
    b->m[5].key = NULL;
    b->m[5].key_len = 0;
    bt_batch_set_value(b, 6, "\\x00");
}

/* The COPY path stores the same bytes as one statement a message, and a
 * bad row fails alone. A statement trigger counts the COPYs that started
 * on a sequence (not rolled back with the COPY the bad row fails). */
static void test_pg_copy_bytes(void **unused)
{
    char *rows, *copies;

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("CREATE FUNCTION eq_copy_note() RETURNS trigger LANGUAGE plpgsql AS "
                     "$$BEGIN IF current_query() LIKE '%COPY%' THEN "
                     "PERFORM nextval(TG_TABLE_NAME || '_copies'); END IF; "
                     "RETURN NULL; END$$");
    rows = pg_equiv("eq_bytes",
                    "CREATE TABLE {t} (k text NOT NULL, off bigint, b bytea, h text); "
                    "CREATE SEQUENCE {t}_copies; CREATE TRIGGER {t}_note BEFORE INSERT ON "
                    "{t} FOR EACH STATEMENT EXECUTE FUNCTION eq_copy_note()",
                    "INSERT INTO {t} (k, off, b, h) VALUES (:key, :offset, :value, "
                    ":header.x-trace-id)",
                    fill_bytes, NULL, "bytes");
    assert_non_null(strstr(rows, "(k1,101,\"\\\\x00ff090a5c4e0d2e78\",t1)"));
    assert_non_null(strstr(rows, "(k2,102,\"\\\\x\",t2)"));
    assert_non_null(strstr(rows, "(k3,103,,t3)"));
    assert_non_null(strstr(rows, "(\"\",104,"));
    assert_null(strstr(rows, ",105,"));
    assert_non_null(strstr(rows, "(k6,106,\"\\\\x5c783030\",t6)")); /* the text, as bytes */
    free(rows);
    copies = bt_pg_admin_text("SELECT (SELECT is_called FROM eq_bytes_m_copies)::text || ' ' "
                              "|| (SELECT is_called FROM eq_bytes_b_copies) || ' ' || "
                              "(SELECT is_called FROM eq_bytes_e_copies)");
    assert_non_null(copies);
    assert_string_equal(copies, "false true true"); /* message, batch, eo-batch */
    free(copies);
}

/* ---- upserts (ON CONFLICT DO UPDATE) -------------------------------------- */

/* A statement trigger that counts the statements started on {t} in the
 * sequence {t}_stmts (not rolled back with a statement that fails). */
#define STMT_COUNTER                                                                   \
    "; CREATE SEQUENCE {t}_stmts; CREATE TRIGGER {t}_count BEFORE INSERT ON {t} FOR " \
    "EACH STATEMENT EXECUTE FUNCTION eq_count_stmt()"

static void make_stmt_counter(void)
{
    bt_pg_admin_exec("CREATE OR REPLACE FUNCTION eq_count_stmt() RETURNS trigger LANGUAGE "
                     "plpgsql AS $$BEGIN PERFORM nextval(TG_TABLE_NAME || '_stmts'); "
                     "RETURN NULL; END$$");
}

/* The statements the counter of @p base's table of mode @p m saw. */
static long stmts_run(const char *base, int m)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM "
                               "%s_%s_stmts", base, mode_suffix[m]);
    return bt_pg_admin_long(sql);
}

#define UPSERT_DDL "CREATE TABLE {t} (k text PRIMARY KEY, v jsonb NOT NULL, off bigint)"
#define UPSERT                                                                      \
    "INSERT INTO {t} (k, v, off) VALUES (:key, :value::jsonb, :offset) ON CONFLICT " \
    "(k) DO UPDATE SET v = EXCLUDED.v, off = EXCLUDED.off"

/* 150 messages (offsets 100..249) over 30 keys u0..u29, message i's key
 * u<i % 30>; @p arg, if set, the index of a message whose value is not JSON. */
static void fill_repeats(bt_batch_t *b, void *arg)
{
    bt_batch_fill(b, 150, "orders", 100);
    for (size_t i = 0; i < b->n; i++) {
        snprintf(b->keys[i], sizeof(b->keys[i]), "u%zu", i % 30);
        b->m[i].key_len = strlen(b->keys[i]);
    }
    if (arg)
        bt_batch_set_value(b, *(const size_t *)arg, "{bad");
}

/* Many rows with repeated keys in one batch end with each key's last value
 * in offset order, in every mode, and the batch modes run it folded: 15
 * statements of 10 rows (every 30 rows a key repeats), not a failed one of
 * 100 rows and then a statement a message. */
static void test_pg_upsert_repeated_keys(void **unused)
{
    (void)unused;
    BT_NEED_PG();
    make_stmt_counter();
    free(pg_equiv("eq_upsert", UPSERT_DDL STMT_COUNTER, UPSERT, fill_repeats, NULL,
                  "repeated keys"));
    for (int m = 0; m < MODES; m++) {
        char sql[512];
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM eq_upsert_%s WHERE off - 100 = substr(k, 2)::int + "
                 "120 AND v = jsonb_build_object('n', off - 100)",
                 mode_suffix[m]);
        assert_int_equal(bt_pg_admin_long(sql), 30);
    }
    assert_int_equal(stmts_run("eq_upsert", BY_MESSAGE), 150);
    for (int m = BY_BATCH; m < MODES; m++)
        if (stmts_run("eq_upsert", m) > 15)
            fail_msg("%s ran %ld statements for 150 rows: not folded", mode_names[m],
                     stmts_run("eq_upsert", m));
}

/* A row that fails in a folded upsert batch fails alone; the others are
 * written, each key with its last good value. */
static void test_pg_upsert_bad_row(void **unused)
{
    size_t bad = 125; /* key u5's last message, amid a statement: its row is message 95's */
    char *rows;

    (void)unused;
    BT_NEED_PG();
    rows = pg_equiv("eq_upbad", UPSERT_DDL, UPSERT, fill_repeats, &bad, "bad row");
    free(rows);
    for (int m = 0; m < MODES; m++) {
        char sql[256];
        snprintf(sql, sizeof(sql), "SELECT count(*) FROM eq_upbad_%s", mode_suffix[m]);
        assert_int_equal(bt_pg_admin_long(sql), 30);
        snprintf(sql, sizeof(sql), "SELECT off FROM eq_upbad_%s WHERE k = 'u5'",
                 mode_suffix[m]);
        assert_int_equal(bt_pg_admin_long(sql), 195);
    }
}

/* Nine new keys n0..n8, then k0, which is in the table already. */
static void fill_then_old(bt_batch_t *b, void *arg)
{
    (void)arg;
    bt_batch_fill(b, 10, "orders", 100);
    for (size_t i = 0; i < 10; i++) {
        snprintf(b->keys[i], sizeof(b->keys[i]), "%c%zu", i < 9 ? 'n' : 'k', i % 9);
        b->m[i].key_len = strlen(b->keys[i]);
    }
}

/* A WHERE on DO UPDATE keeps its meaning: here it reads the table, and k0
 * is updated only while it holds fewer than three rows, which is never
 * once the nine rows before k0's message are in. One statement over the
 * ten rows would read the table as it was before them, and update k0. */
static void test_pg_upsert_where(void **unused)
{
    char *rows;

    (void)unused;
    BT_NEED_PG();
    rows = pg_equiv("eq_upwhere",
                    "CREATE TABLE {t} (k text PRIMARY KEY, v text, off bigint); "
                    "INSERT INTO {t} VALUES ('k0', 'pre', 0)",
                    "INSERT INTO {t} (k, v, off) VALUES (:key, :value, :offset) ON CONFLICT "
                    "(k) DO UPDATE SET v = EXCLUDED.v WHERE (SELECT count(*) FROM {t}) < 3",
                    fill_then_old, NULL, "where");
    assert_non_null(strstr(rows, "(k0,pre,0)"));
    free(rows);
}

/* The log lines of handler inits, joined. */
static void keep_line(ballast_log_level_t level, const char *line, void *opaque)
{
    char *buf = opaque;

    (void)level;
    if (strlen(buf) + strlen(line) + 2 < 2048) {
        strcat(buf, line);
        strcat(buf, "\n");
    }
}

/* What the first worker of a batch pipeline says about @p sql at start. */
static void path_log(const char *sql, const char *worker0_processing, char *log)
{
    const char *kv[] = {"handler.postgres.dsn", bt_pg_dsn, "handler.postgres.sql", sql,
                        "startup.timeout.ms", "5000", "processing", worker0_processing,
                        "log.level", "info", NULL};
    ballast_conf_t *conf = bt_conf_from(kv);
    ballast_handler_params_t p = {conf, 0, 1, NULL};
    char err[512] = "";
    void *st = NULL;

    log[0] = '\0';
    ballast_conf_set_log_cb(conf, keep_line, log);
    if (bl_handler_postgres.init(&st, &p, err, sizeof(err)))
        fail_msg("postgres init: %s: %s", err, sql);
    bl_handler_postgres.destroy(st);
    ballast_conf_destroy(conf);
}

/* The log names the way batches go, and why not COPY: the statement's
 * shape, or what the server says about the table (a rule). */
static void test_pg_batch_path_logged(void **unused)
{
    char log[2048];

    (void)unused;
    BT_NEED_PG();
    bt_pg_admin_exec("CREATE TABLE eq_path (k text, off bigint); "
                     "CREATE TABLE eq_path_ruled (k text, off bigint); "
                     "CREATE RULE eq_path_r AS ON INSERT TO eq_path_ruled DO ALSO NOTHING");
    path_log("INSERT INTO eq_path (k, off) VALUES (:key, :offset)", "batch", log);
    assert_non_null(strstr(log, "postgres: batches are written with COPY into eq_path\n"));
    path_log("INSERT INTO eq_path (k, off) VALUES (:key, :offset)", "message", log);
    assert_null(strstr(log, "batches are written"));
    path_log("INSERT INTO eq_path (k, off) VALUES (:key, :offset::bigint)", "batch", log);
    assert_non_null(strstr(log, "with pipelined statements of many rows: COPY does not fit: "
                                "a tuple element is not a lone placeholder"));
    path_log("INSERT INTO eq_path (k, off) VALUES (upper(:key), :offset)", "batch", log);
    assert_non_null(strstr(log, "with pipelined statements: COPY does not fit: not INSERT"));
    path_log("INSERT INTO eq_path_ruled (k, off) VALUES (:key, :offset)", "batch", log);
    assert_non_null(strstr(log, "COPY does not fit: the table is not a plain one without "
                                "rules or row-level security"));
    bt_pg_admin_exec("DROP TABLE eq_path, eq_path_ruled");
}

/* ---- the differential ----------------------------------------------------- */

/* splitmix64: the same sequence from a seed on every platform. */
static uint64_t rnd_next(uint64_t *state)
{
    uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);

    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static size_t rnd_below(uint64_t *state, size_t n)
{
    return (size_t)(rnd_next(state) % n);
}

/* One slot of a statement: inside the folding grammar, or outside it. A
 * placeholder keeps one type across the slots (a parameter cast to two
 * types is refused by the server). */
typedef struct slot {
    const char *const *in, *const *out;
    size_t nin, nout;
} slot_t;

#define SLOT(in, out) {in, out, sizeof(in) / sizeof(in[0]), sizeof(out) / sizeof(out[0])}

static const char *const k_in[] = {":key", ":key::text", "CAST(:key AS text)", "'lit'",
                                   "(:key)", "E'k\\'1'"};
static const char *const k_out[] = {"upper(:key)", "(SELECT max(k) FROM {t})",
                                    ":key || ''"};
static const char *const off_in[] = {":offset", ":offset::bigint", "CAST(:offset AS bigint)",
                                     "(:offset)::int8", ":partition", "-3"};
static const char *const off_out[] = {":offset::bigint + 0", ":offset::bigint % 4",
                                      "(SELECT count(*) FROM {t})", "length(:key)"};
static const char *const n_in[] = {"1", "NULL", "-7", "2.5", ":partition::bigint",
                                   "CAST(NULL AS bigint)", ":timestamp"};
static const char *const n_out[] = {"(SELECT count(*) + 1 FROM {t} WHERE k = :key)",
                                    "(SELECT coalesce(max(n), 0) + 1 FROM {t})",
                                    "length(:key)", ":offset::bigint % 3",
                                    "(SELECT count(*) FROM {t} WHERE off < :offset)"};
static const char *const v_in[] = {":value", ":value::text", ":value::jsonb::text", "'x'",
                                   ":header.x-trace-id", "$$d$$",
                                   "CAST(:value AS varchar(64))"};
static const char *const v_out[] = {"upper(:value)", "coalesce(:value, 'none')",
                                    ":value || :key",
                                    "(SELECT count(DISTINCT v)::text FROM {t} WHERE k = :key)"};
static const char *const tail_in[] = {
    "", " ON CONFLICT DO NOTHING", " ON CONFLICT (k, off) DO NOTHING",
    " ON CONFLICT ON CONSTRAINT {t}_pkey DO NOTHING",
    " ON CONFLICT (k, off) WHERE k IS NOT NULL DO NOTHING",
    " ON CONFLICT (k, off) DO UPDATE SET v = EXCLUDED.v",
    " ON CONFLICT (off, k) DO UPDATE SET n = EXCLUDED.n, v = EXCLUDED.v::text",
    " ON CONFLICT ON CONSTRAINT {t}_pkey DO UPDATE SET v = EXCLUDED.v, n = 7"};
static const char *const tail_out[] = {
    " ON CONFLICT (k, off) DO UPDATE SET n = {t}.n + 1",
    " ON CONFLICT (k, off) DO UPDATE SET v = EXCLUDED.v WHERE {t}.n < 1",
    " ON CONFLICT (k, off) DO UPDATE SET n = (SELECT count(*) FROM {t})",
    " ON CONFLICT (k, off) DO UPDATE SET v = EXCLUDED.v RETURNING n",
    " RETURNING n", " ON CONFLICT DO NOTHING RETURNING off"};
static const char *const form_in[] = {"INSERT INTO {t} (k, off, n, v) VALUES (%s, %s, %s, %s)"};
static const char *const form_out[] = {
    "INSERT INTO {t} (k, off, n, v) SELECT %s, %s, %s, %s",
    ("WITH c AS (SELECT count(*) AS c FROM {t}) INSERT INTO {t} (k, off, n, v) "
     "SELECT %s, %s, %s, %s FROM c"),
    "WITH c AS (SELECT 1) INSERT INTO {t} (k, off, n, v) VALUES (%s, %s, %s, %s)"};

static const slot_t slots[] = {SLOT(form_in, form_out), SLOT(k_in, k_out),
                               SLOT(off_in, off_out),   SLOT(n_in, n_out),
                               SLOT(v_in, v_out),       SLOT(tail_in, tail_out)};

#define NSLOTS (sizeof(slots) / sizeof(slots[0]))

/* The COPY shape: a lone placeholder in every slot, no tail. */
static const char *const k_bare[] = {":key", ":header.x-trace-id"};
static const char *const off_bare[] = {":offset", ":partition"};
static const char *const n_bare[] = {":timestamp", ":offset", ":partition"};
static const char *const v_bare[] = {":value", ":header.x-trace-id", ":key", ":topic"};
static const char *const tail_bare[] = {""};

static const slot_t bare_slots[NSLOTS] = {SLOT(form_in, form_in), SLOT(k_bare, k_bare),
                                          SLOT(off_bare, off_bare), SLOT(n_bare, n_bare),
                                          SLOT(v_bare, v_bare), SLOT(tail_bare, tail_bare)};

static const char *pick(const slot_t *s, bool inside, uint64_t *rnd)
{
    return inside ? s->in[rnd_below(rnd, s->nin)] : s->out[rnd_below(rnd, s->nout)];
}

/* A quarter of the statements have every slot inside the grammar, a
 * quarter exactly one outside it (the cases that probe the folding
 * decision's edge), a quarter each slot inside 4 times in 5, and a quarter
 * are of the COPY shape. */
static void gen_statement(uint64_t seed, char *out, size_t size)
{
    const char *p[NSLOTS];
    char tuple[512];
    uint64_t rnd = seed;
    size_t shape = rnd_below(&rnd, 4), outside = rnd_below(&rnd, NSLOTS);

    for (size_t i = 0; i < NSLOTS; i++)
        p[i] = pick(shape == 3 ? &bare_slots[i] : &slots[i],
                    shape == 0 || shape == 3 || (shape == 1 && i != outside) ||
                        (shape == 2 && rnd_below(&rnd, 5)),
                    &rnd);
    snprintf(tuple, sizeof(tuple), p[0], p[1], p[2], p[3], p[4]); /* the form */
    snprintf(out, size, "%s%s", tuple, p[5]);
}

/* Values that COPY's text format must escape, or tell apart. */
static const char *const odd_values[] = {
    "a\tb", "line1\nline2", "cr\r\n", "back\\slash", "\\N", "", "\\.",
    "\\x41", "d\u00e9j\u00e0 \u4e2d \U0001F642", "\"quoted\"", "\t"};

/*
 * The messages of case @p seed: 10 to 25 (one case in eight 100 to 130, for
 * the 100-row statement), keys k0..k2 (one in twenty NULL), one in six a
 * copy of an earlier message's key and offset, one in fifteen a value that
 * is not JSON, one in twenty a tombstone, one in six an odd value.
 */
static void fill_random(bt_batch_t *b, void *arg)
{
    uint64_t rnd = *(const uint64_t *)arg ^ 0x5eedULL;
    size_t n = rnd_below(&rnd, 8) ? 10 + rnd_below(&rnd, 16) : 100 + rnd_below(&rnd, 31);

    bt_batch_fill(b, n, "orders", 100);
    for (size_t i = 0; i < n; i++) {
        struct ballast_message_s *m = &b->m[i];
        snprintf(b->keys[i], sizeof(b->keys[i]), "k%zu", rnd_below(&rnd, 3));
        m->key = rnd_below(&rnd, 20) ? b->keys[i] : NULL;
        m->key_len = m->key ? strlen(m->key) : 0;
        if (i && !rnd_below(&rnd, 6)) {
            size_t j = rnd_below(&rnd, i);
            m->key = b->m[j].key;
            m->key_len = b->m[j].key_len;
            m->offset = b->m[j].offset;
        }
        if (!rnd_below(&rnd, 6))
            bt_batch_set_value(b, i,
                               odd_values[rnd_below(&rnd, sizeof(odd_values) /
                                                              sizeof(odd_values[0]))]);
        else if (!rnd_below(&rnd, 15))
            bt_batch_set_value(b, i, "{bad");
        else if (!rnd_below(&rnd, 20))
            bt_batch_set_value(b, i, NULL);
    }
}

/* How the postgres handler runs a batch of @p stmt ({t}: a table). */
typedef enum batch_path { A_STATEMENT_A_MESSAGE, FOLDED, COPIED } batch_path_t;

static batch_path_t batch_path(const char *stmt)
{
    bl_sqltmpl_t t;
    bl_sqlcopy_t copy;
    char sql[1024], err[256], *multi = NULL;
    batch_path_t path = A_STATEMENT_A_MESSAGE;

    subst(stmt, "t", sql, sizeof(sql));
    if (!bl_sqltmpl_parse(sql, BL_SQL_POSTGRES, &t, err, sizeof(err))) {
        multi = bl_sqltmpl_multirow(&t, 10);
        path = !bl_sqltmpl_copy(&t, &copy, err, sizeof(err)) ? COPIED
               : multi                                       ? FOLDED
                                                             : A_STATEMENT_A_MESSAGE;
        bl_sqlcopy_free(&copy);
    }
    bl_sqltmpl_free(&t);
    free(multi);
    return path;
}

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);

    return v && *v ? strtoull(v, NULL, 10) : dflt;
}

#define EQUIV_DDL                                                                  \
    "CREATE TABLE {t} (k text, off bigint, n bigint, v text, PRIMARY KEY (k, off)); " \
    "INSERT INTO {t} VALUES ('k0', 100, 0, 'pre'), ('k1', 105, 0, 'pre')"

/* Random statements, each in every mode over the same random batch. */
static void test_pg_differential(void **unused)
{
    uint64_t seed = env_u64("SQL_EQUIV_SEED", 1), cases = env_u64("SQL_EQUIV_CASES", 40);
    size_t folded = 0, copied = 0;
    static const char *const path_names[] = {"a statement a message", "folds", "COPY"};

    (void)unused;
    BT_NEED_PG();
    for (uint64_t c = 0; c < cases; c++) {
        uint64_t cs = seed + c;
        char stmt[1024], base[64], ctx[128], drop[256];
        batch_path_t path;
        gen_statement(cs, stmt, sizeof(stmt));
        path = batch_path(stmt);
        folded += path != A_STATEMENT_A_MESSAGE;
        copied += path == COPIED;
        snprintf(base, sizeof(base), "eq%llu", (unsigned long long)cs);
        snprintf(ctx, sizeof(ctx), "case seed %llu (%s)", (unsigned long long)cs,
                 path_names[path]);
        free(pg_equiv(base, EQUIV_DDL, stmt, fill_random, &cs, ctx));
        snprintf(drop, sizeof(drop), "DROP TABLE %s_m, %s_b, %s_e", base, base, base);
        bt_pg_admin_exec(drop);
    }
    printf("equivalence: %llu statements from seed %llu, %zu of them folded, %zu of "
           "those as COPY\n",
           (unsigned long long)cases, (unsigned long long)seed, folded, copied);
    /* The grammar must reach both sides of the folding decision, and COPY. */
    if (cases >= 20)
        assert_true(folded > 0 && folded < cases && copied > 0 && copied < folded);
}

static int pg_setup(void **unused)
{
    (void)unused;
    return bt_pg_schema_setup("ballast_equiv") ? -1 : 0;
}

static int pg_teardown(void **unused)
{
    (void)unused;
    bt_pg_schema_teardown();
    return 0;
}

/* ======================================================================= */
/* SQLite                                                                  */
/* ======================================================================= */

/* The same statement on SQLite, one at a time and as one batch. */
static void test_sqlite_subquery_in_tuple(void **unused)
{
    char path[300], sql[512];
    bt_batch_t b;

    (void)unused;
    for (int m = BY_MESSAGE; m <= BY_BATCH; m++) {
        const char *kv[] = {"handler.sqlite.path", path, "handler.sqlite.sql", sql, NULL};
        char err[512], table[16];
        void *st = NULL;
        snprintf(table, sizeof(table), "t_%s", mode_suffix[m]);
        bt_sqlite_path("equiv.db", path, sizeof(path));
        subst("CREATE TABLE {t} (k TEXT, n INTEGER, off INTEGER)", table, sql,
              sizeof(sql));
        bt_sqlite_exec(path, sql);
        subst(RUNNING_COUNT, table, sql, sizeof(sql));
        if (bt_handler_init(&bl_handler_sqlite, kv, 0, &st, err, sizeof(err)))
            fail_msg("sqlite init: %s", err);
        fill_one_key(&b, NULL);
        if (m == BY_MESSAGE)
            for (size_t i = 0; i < b.n; i++)
                b.out[i] = bl_handler_sqlite.handle(st, b.mp[i], b.rp[i]);
        else
            bl_handler_sqlite.handle_batch(st, b.mp, b.rp, b.n, b.out);
        for (size_t i = 0; i < b.n; i++)
            assert_int_equal(b.out[i], BALLAST_OUTCOME_OK);
        bl_handler_sqlite.destroy(st);
        bt_batch_free(&b);
        snprintf(sql, sizeof(sql),
                 "SELECT count(*) FROM %s WHERE k = 'acct-1' AND n = off - 99", table);
        assert_int_equal(bt_sqlite_long(path, sql), 10);
    }
}

int main(void)
{
    const struct CMUnitTest sqlite_tests[] = {
        cmocka_unit_test(test_sqlite_subquery_in_tuple),
    };
    const struct CMUnitTest pg_tests[] = {
        cmocka_unit_test(test_pg_subquery_in_tuple),
        cmocka_unit_test(test_pg_copy_bytes),
        cmocka_unit_test(test_pg_upsert_repeated_keys),
        cmocka_unit_test(test_pg_upsert_bad_row),
        cmocka_unit_test(test_pg_upsert_where),
        cmocka_unit_test(test_pg_batch_path_logged),
        cmocka_unit_test(test_pg_differential),
    };
    int failed = cmocka_run_group_tests_name("sqlite", sqlite_tests, NULL, NULL);

    failed += cmocka_run_group_tests_name("postgres", pg_tests, pg_setup, pg_teardown);
    return failed ? 1 : 0;
}
