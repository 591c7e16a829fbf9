/* test_sqltmpl.c - unit tests of the SQL placeholder parser and parameter rendering. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "message.h"
#include "sqltmpl.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LITE BL_SQL_SQLITE
#define PG BL_SQL_POSTGRES

/* One parse case: either the rewritten SQL and the parameter list
 * ("value,header:x-id"), or a substring of the expected error. */
typedef struct parse_case {
    const char *what;
    bl_sql_dialect_t dialect;
    const char *in;
    const char *sql;    /* NULL: an error is expected */
    const char *params; /* comma-separated kinds; header:NAME */
    const char *error;  /* substring of the error */
} parse_case_t;

static const parse_case_t cases[] = {
    /* basics, both dialects */
    {"all kinds sqlite", LITE,
     "INSERT INTO t VALUES (:topic, :partition, :offset, :key, :value, :timestamp)",
     "INSERT INTO t VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
     "topic,partition,offset,key,value,timestamp", NULL},
    {"all kinds pg", PG,
     "INSERT INTO t VALUES (:topic, :partition, :offset, :key, :value, :timestamp)",
     "INSERT INTO t VALUES ($1, $2, $3, $4, $5, $6)",
     "topic,partition,offset,key,value,timestamp", NULL},
    {"no placeholders", LITE, "DELETE FROM t", "DELETE FROM t", "", NULL},
    {"no placeholders pg", PG, "SELECT 1", "SELECT 1", "", NULL},
    {"repeated placeholder", PG,
     "INSERT INTO t VALUES (:key, :value) ON CONFLICT (k) DO UPDATE SET v = :value, k2 = :key",
     "INSERT INTO t VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2, k2 = $1",
     "key,value", NULL},
    {"repeated placeholder sqlite", LITE, "SELECT :value, :offset, :value",
     "SELECT ?1, ?2, ?1", "value,offset", NULL},
    {"case-insensitive names", LITE, "SELECT :VALUE, :Value", "SELECT ?1, ?1",
     "value", NULL},
    {"no spaces around", LITE, "VALUES(:key,:value)", "VALUES(?1,?2)", "key,value", NULL},
    {"glued to identifier", PG, "SELECT a:value", "SELECT a $1", "value", NULL},

    /* casts */
    {"jsonb cast", PG, "INSERT INTO t(doc) VALUES (:value::jsonb)",
     "INSERT INTO t(doc) VALUES ($1::jsonb)", "value", NULL},
    {"cast of expression", PG, "SELECT 'x'::text, (:offset)::bigint, now()::date",
     "SELECT 'x'::text, ($1)::bigint, now()::date", "offset", NULL},
    {"cast not a placeholder", PG, "SELECT a::value FROM t", "SELECT a::value FROM t", "", NULL},
    {"header with cast", PG, "SELECT :header.x-id::uuid", "SELECT $1::uuid",
     "header:x-id", NULL},
    {"assignment operator", PG, "SELECT f(a := :value)", "SELECT f(a := $1)", "value", NULL},

    /* strings and identifiers */
    {"colons in string", LITE, "INSERT INTO t VALUES (':value', 'a:b', :key)",
     "INSERT INTO t VALUES (':value', 'a:b', ?1)", "key", NULL},
    {"escaped quote", PG, "SELECT 'it''s :value', :key", "SELECT 'it''s :value', $1",
     "key", NULL},
    {"E string with backslash quote", PG, "SELECT E'it\\'s :value', :key",
     "SELECT E'it\\'s :value', $1", "key", NULL},
    {"plain string backslash", PG, "SELECT 'a\\', :key", "SELECT 'a\\', $1", "key", NULL},
    {"quoted identifier", PG, "SELECT \"col:value\", \"a\"\"b:key\" FROM t WHERE x = :offset",
     "SELECT \"col:value\", \"a\"\"b:key\" FROM t WHERE x = $1", "offset", NULL},
    {"sqlite brackets and backticks", LITE, "SELECT [a:value], `b:key`, :topic",
     "SELECT [a:value], `b:key`, ?1", "topic", NULL},
    {"pg array slice literal", PG, "SELECT arr[1:2] FROM t", "SELECT arr[1:2] FROM t", "", NULL},

    /* comments */
    {"line comment", LITE, "SELECT :key -- not :valu\n, 1",
     "SELECT ?1 -- not :valu\n, 1", "key", NULL},
    {"block comment", PG, "SELECT /* :valu; 'x */ :key", "SELECT /* :valu; 'x */ $1",
     "key", NULL},
    {"nested block comment pg", PG, "SELECT /* a /* :x */ :y */ :key",
     "SELECT /* a /* :x */ :y */ $1", "key", NULL},
    {"trailing comment after semicolon", LITE, "SELECT :key; -- done\n/* end */  ",
     "SELECT ?1", "key", NULL},

    /* dollar quotes */
    {"dollar quote", PG, "SELECT $$ :value ' $$, :key", "SELECT $$ :value ' $$, $1",
     "key", NULL},
    {"tagged dollar quote", PG, "SELECT $fn$ a $$ :value $fn$ || :key",
     "SELECT $fn$ a $$ :value $fn$ || $1", "key", NULL},
    {"dollar in identifier", PG, "SELECT a$b, :key FROM t$1",
     "SELECT a$b, $1 FROM t$1", "key", NULL},

    /* headers */
    {"header with dashes", PG, "SELECT :header.x-trace-id", "SELECT $1",
     "header:x-trace-id", NULL},
    {"header with dots", LITE, "SELECT :header.app.version, :header.a_b",
     "SELECT ?1, ?2", "header:app.version,header:a_b", NULL},
    {"header repeated and distinct", PG,
     "SELECT :header.a, :header.b, :header.a, :header.A",
     "SELECT $1, $2, $1, $3", "header:a,header:b,header:A", NULL},
    {"header before comment", LITE, "SELECT :header.id--c\n", "SELECT ?1--c\n",
     "header:id", NULL},
    {"header without name", LITE, "SELECT :header", NULL, NULL, "needs a header name"},
    {"header with dot only", LITE, "SELECT :header. ", NULL, NULL, "needs a header name"},

    /* statements */
    {"trailing semicolon", PG, "INSERT INTO t VALUES (:value);",
     "INSERT INTO t VALUES ($1)", "value", NULL},
    {"trailing semicolons and space", LITE, "SELECT 1 ; ;\n", "SELECT 1 ", "", NULL},
    {"semicolon in string", LITE, "SELECT ';', :key", "SELECT ';', ?1", "key", NULL},
    {"two statements", LITE, "INSERT INTO t VALUES (:value); DELETE FROM t", NULL,
     NULL, "one statement per message"},
    {"two statements pg", PG, "SELECT 1;SELECT 2", NULL, NULL, "more than one statement"},
    {"empty", PG, "  ", NULL, NULL, "empty statement"},
    {"only comment", LITE, "-- nothing\n", NULL, NULL, "empty statement"},
    {"only semicolon", LITE, ";", NULL, NULL, "empty statement"},

    /* errors */
    {"unknown placeholder", LITE, "SELECT :valu", NULL, NULL,
     "unknown placeholder \":valu\""},
    {"unknown lists valid", PG, "SELECT :partitions", NULL, NULL,
     ":topic :partition :offset :key :value :timestamp :header.NAME"},
    {"unterminated string", LITE, "SELECT 'abc", NULL, NULL, "unterminated string literal"},
    {"unterminated identifier", PG, "SELECT \"abc", NULL, NULL, "unterminated quoted identifier"},
    {"unterminated comment", PG, "SELECT /* x", NULL, NULL, "unterminated /* comment"},
    {"unterminated dollar quote", PG, "SELECT $x$ abc $y$", NULL, NULL,
     "unterminated dollar-quoted string $x$"},
    {"sqlite question mark", LITE, "SELECT ?", NULL, NULL, "own parameter syntax"},
    {"sqlite numbered", LITE, "SELECT ?2", NULL, NULL, "\"?2\""},
    {"sqlite at name", LITE, "SELECT @foo", NULL, NULL, "\"@foo\""},
    {"sqlite dollar name", LITE, "SELECT $foo", NULL, NULL, "\"$foo\""},
    {"pg positional", PG, "SELECT $1", NULL, NULL, "\"$1\""},
    {"pg jsonb question operator", PG, "SELECT :value::jsonb ? 'a'",
     "SELECT $1::jsonb ? 'a'", "value", NULL},
};

static void params_text(const bl_sqltmpl_t *t, char *buf, size_t size)
{
    static const char *const names[] = {"topic", "partition", "offset", "key",
                                        "value", "timestamp", "header"};
    size_t used = 0;

    buf[0] = '\0';
    for (size_t i = 0; i < t->count && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%s%s%s", i ? "," : "",
                         names[t->params[i].kind],
                         t->params[i].header ? ":" : "",
                         t->params[i].header ? t->params[i].header : "");
        if (n < 0)
            break;
        used += (size_t)n;
    }
}

static void test_parse_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const parse_case_t *c = &cases[i];
        bl_sqltmpl_t t;
        char err[512], params[512];
        int rc = bl_sqltmpl_parse(c->in, c->dialect, &t, err, sizeof(err));

        if (c->sql) {
            if (rc != 0)
                fprintf(stderr, "case %s: unexpected error: %s\n", c->what, err);
            assert_int_equal(rc, 0);
            assert_string_equal(t.sql, c->sql);
            params_text(&t, params, sizeof(params));
            assert_string_equal(params, c->params);
        } else {
            if (rc != -1)
                fprintf(stderr, "case %s: parsed as \"%s\", expected an error\n",
                        c->what, t.sql);
            assert_int_equal(rc, -1);
            if (!strstr(err, c->error))
                fprintf(stderr, "case %s: error \"%s\" lacks \"%s\"\n", c->what, err,
                            c->error);
            assert_non_null(strstr(err, c->error));
            assert_null(strchr(err, '\n'));
        }
        bl_sqltmpl_free(&t);
    }
}

static void test_free_is_idempotent(void **state)
{
    bl_sqltmpl_t t;
    char err[128];

    (void)state;
    assert_int_equal(bl_sqltmpl_parse("SELECT :header.a", BL_SQL_SQLITE, &t, err,
                                      sizeof(err)),
                     0);
    bl_sqltmpl_free(&t);
    bl_sqltmpl_free(&t);
    bl_sqltmpl_free(NULL);
    assert_int_equal(bl_sqltmpl_parse(NULL, BL_SQL_SQLITE, &t, err, sizeof(err)), -1);
    bl_sqltmpl_free(&t);
}

static void test_param_name(void **state)
{
    bl_param_t v = {BL_PARAM_VALUE, NULL}, h = {BL_PARAM_HEADER, (char *)"x-id"};
    char buf[64];

    (void)state;
    bl_sqltmpl_param_name(&v, buf, sizeof(buf));
    assert_string_equal(buf, ":value");
    bl_sqltmpl_param_name(&h, buf, sizeof(buf));
    assert_string_equal(buf, ":header.x-id");
}

/* Renders every kind for a hand-built message. */
static void test_values(void **state)
{
    struct ballast_message_s m;
    bl_sqltmpl_t t;
    bl_sqlval_t v;
    char err[128];

    (void)state;
    memset(&m, 0, sizeof(m));
    m.topic = "orders";
    m.partition = 3;
    m.offset = 1234567890123LL;
    m.timestamp = 1700000000000LL;
    m.key = "k1";
    m.key_len = 2;
    m.value = "{\"a\":1}";
    m.value_len = 7;
    m.hdrs = rd_kafka_headers_new(4);
    m.hdrs_loaded = true;
    rd_kafka_header_add(m.hdrs, "x-trace-id", -1, "abc", 3);
    rd_kafka_header_add(m.hdrs, "nullh", -1, NULL, 0);

    assert_int_equal(bl_sqltmpl_parse(
                         ":topic :partition :offset :key :value :timestamp "
                         ":header.x-trace-id :header.nullh :header.missing",
                         BL_SQL_POSTGRES, &t, err, sizeof(err)),
                     0);
    assert_int_equal(t.count, 9);

    bl_sqltmpl_value(&t.params[0], &m, &v);
    assert_false(v.is_int);
    assert_int_equal(v.len, 6);
    assert_memory_equal(v.data, "orders", 6);
    bl_sqltmpl_value(&t.params[1], &m, &v);
    assert_true(v.is_int);
    assert_int_equal(v.i, 3);
    assert_string_equal(v.data, "3");
    bl_sqltmpl_value(&t.params[2], &m, &v);
    assert_string_equal(v.data, "1234567890123");
    assert_int_equal(v.len, 13);
    bl_sqltmpl_value(&t.params[3], &m, &v);
    assert_int_equal(v.len, 2);
    assert_memory_equal(v.data, "k1", 2);
    bl_sqltmpl_value(&t.params[4], &m, &v);
    assert_int_equal(v.len, 7);
    bl_sqltmpl_value(&t.params[5], &m, &v);
    assert_int_equal(v.i, 1700000000000LL);
    bl_sqltmpl_value(&t.params[6], &m, &v);
    assert_int_equal(v.len, 3);
    assert_memory_equal(v.data, "abc", 3);
    bl_sqltmpl_value(&t.params[7], &m, &v);
    assert_null(v.data);
    bl_sqltmpl_value(&t.params[8], &m, &v);
    assert_null(v.data);

    /* Absent key, tombstone, no timestamp, no headers at all: NULLs. */
    m.key = NULL;
    m.key_len = 0;
    m.value = NULL;
    m.value_len = 0;
    m.timestamp = -1;
    rd_kafka_headers_destroy(m.hdrs);
    m.hdrs = NULL;
    bl_sqltmpl_value(&t.params[3], &m, &v);
    assert_null(v.data);
    bl_sqltmpl_value(&t.params[4], &m, &v);
    assert_null(v.data);
    bl_sqltmpl_value(&t.params[5], &m, &v);
    assert_null(v.data);
    assert_false(v.is_int);
    bl_sqltmpl_value(&t.params[6], &m, &v);
    assert_null(v.data);
    bl_sqltmpl_free(&t);
}

/* bl_sqltmpl_multirow: the statement over 2 rows, or NULL where rows of
 * one statement could write other rows than one statement a message. */
typedef struct multi_case {
    const char *in, *two_rows; /* NULL: runs a statement a message */
} multi_case_t;

static const multi_case_t multi_cases[] = {
    /* Folded: parameters, literals and casts of them. */
    {"INSERT INTO t (a, b) VALUES (:key, :value)",
     "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4)"},
    {"insert into s.t as x (k, \"V\") values (:value::jsonb, CAST(:key AS int))",
     "insert into s.t as x (k, \"V\") values ($1::jsonb, CAST($2 AS int)), "
     "($3::jsonb, CAST($4 AS int))"},
    {"INSERT INTO t VALUES (:key, ':value', $$ ($1) $$, (:offset), -1.5e3, NULL, TRUE, "
     "false, E'it\\'s', x'1f', .5) -- (x)",
     "INSERT INTO t VALUES ($1, ':value', $$ ($1) $$, ($2), -1.5e3, NULL, TRUE, false, "
     "E'it\\'s', x'1f', .5), ($3, ':value', $$ ($1) $$, ($4), -1.5e3, NULL, TRUE, false, "
     "E'it\\'s', x'1f', .5) -- (x)"},
    {"INSERT INTO t VALUES (:timestamp::text::timestamp(3) with time zone, "
     ":value::double precision, :key::character varying(10)[], "
     "CAST(CAST(:value AS text) AS pg_catalog.\"numeric\"(10, 2)), NULL::int[][3], "
     ":key::national char varying)",
     "INSERT INTO t VALUES ($1::text::timestamp(3) with time zone, $2::double precision, "
     "$3::character varying(10)[], CAST(CAST($2 AS text) AS pg_catalog.\"numeric\"(10, 2)), "
     "NULL::int[][3], $3::national char varying), ($4::text::timestamp(3) with time zone, "
     "$5::double precision, $6::character varying(10)[], CAST(CAST($5 AS text) AS "
     "pg_catalog.\"numeric\"(10, 2)), NULL::int[][3], $6::national char varying)"},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO NOTHING",
     "INSERT INTO t (k) VALUES ($1), ($2) ON CONFLICT (k) DO NOTHING"},
    {"INSERT INTO t (k) VALUES (:key) on conflict on constraint t_pk do nothing;",
     "INSERT INTO t (k) VALUES ($1), ($2) on conflict on constraint t_pk do nothing"},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT DO NOTHING",
     "INSERT INTO t (k) VALUES ($1), ($2) ON CONFLICT DO NOTHING"},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT ((lower(k)), j COLLATE \"C\") "
     "WHERE (k <> 'x') AND j > 0 DO NOTHING",
     "INSERT INTO t (k) VALUES ($1), ($2) ON CONFLICT ((lower(k)), j COLLATE \"C\") "
     "WHERE (k <> 'x') AND j > 0 DO NOTHING"},
    {"INSERT INTO t (id, k) OVERRIDING SYSTEM VALUE VALUES (:offset, :key)",
     "INSERT INTO t (id, k) OVERRIDING SYSTEM VALUE VALUES ($1, $2), ($3, $4)"},
    {"INSERT INTO t VALUES (1, 'x')", "INSERT INTO t VALUES (1, 'x'), (1, 'x')"},
    /* The bench's postgres scenario. */
    {"INSERT INTO bench_pg (topic, part, off, value) VALUES (:topic, :partition, "
     ":offset, :value)",
     "INSERT INTO bench_pg (topic, part, off, value) VALUES ($1, $2, $3, $4), "
     "($5, $6, $7, $8)"},

    /* A statement a message: the tuple reads tables or calls functions. */
    {"INSERT INTO t(k, n, off) VALUES (:key, (SELECT count(*) + 1 FROM t WHERE k = "
     ":key), :offset)",
     NULL},
    {"INSERT INTO t VALUES (:key, EXISTS (SELECT 1 FROM u))", NULL},
    {"INSERT INTO t VALUES (:key, ARRAY(SELECT 1))", NULL},
    {"INSERT INTO t VALUES (:key, now())", NULL},
    {"INSERT INTO t VALUES (:key, nextval('s'))", NULL},
    {"INSERT INTO t VALUES (:key, random())", NULL},
    {"INSERT INTO t VALUES (:key, current_timestamp)", NULL},
    {"INSERT INTO t VALUES (:key, f(:value))", NULL},
    {"INSERT INTO t VALUES (:key, :value::jsonb ->> 'id')", NULL},
    {"INSERT INTO t VALUES ((:offset + 1))", NULL},
    {"INSERT INTO t VALUES (-:offset)", NULL},
    {"INSERT INTO t VALUES (:key COLLATE \"C\")", NULL},
    {"INSERT INTO t VALUES (:key::text IS NULL)", NULL},
    {"INSERT INTO t VALUES (:value::timestamp AT TIME ZONE 'UTC')", NULL},
    {"INSERT INTO t VALUES (CAST(:value AS int) + 0)", NULL},
    {"INSERT INTO t VALUES (CAST((SELECT max(n) FROM t) AS int))", NULL},
    {"INSERT INTO t VALUES (:value::int[(SELECT 1)])", NULL},
    {"INSERT INTO t VALUES (:value::interval day)", NULL},
    {"INSERT INTO t VALUES (date '2024-01-01')", NULL},
    {"INSERT INTO t VALUES (ROW(:key, 1))", NULL},
    {"INSERT INTO t VALUES (0x1F, :key)", NULL},
    {"INSERT INTO t VALUES (DEFAULT, :key)", NULL},
    /* An upsert whose SET only copies the proposed row, literals and casts. */
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n",
     "INSERT INTO t (k) VALUES ($1), ($2) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n"},
    {"INSERT INTO t (k, v) VALUES (:key, :value::jsonb) on conflict on constraint t_pk do "
     "update set v = excluded.v, n = 1, w = (EXCLUDED.w)::text, x = CAST(Excluded.x AS int), "
     "y = NULL, z = 'lit'",
     "INSERT INTO t (k, v) VALUES ($1, $2::jsonb), ($3, $4::jsonb) on conflict on constraint "
     "t_pk do update set v = excluded.v, n = 1, w = (EXCLUDED.w)::text, x = "
     "CAST(Excluded.x AS int), y = NULL, z = 'lit'"},
    /* ... but not one whose SET reads the table, calls a function, takes a
     * parameter, or that has WHERE or RETURNING. */
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = t.n + 1", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = t.n", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n + 1", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = :value", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = now()", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = DEFAULT", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = (SELECT 1)", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET (a, b) = "
     "(EXCLUDED.a, EXCLUDED.b)",
     NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET a[1] = EXCLUDED.a", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET a = \"excluded\".a", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET a = EXCLUDED", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n "
     "WHERE t.n < EXCLUDED.n",
     NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n "
     "RETURNING k",
     NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE n = EXCLUDED.n", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO UPDATE SET n = EXCLUDED.n,", NULL},
    /* ... or the statement around the tuple is not a plain insert. */
    {"INSERT INTO t (k) VALUES (:key) RETURNING k", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT DO NOTHING RETURNING k", NULL},
    {"INSERT INTO t (k) VALUES (:key), (:value)", NULL},
    {"INSERT INTO t (k) VALUES (:key) UNION SELECT 1", NULL},
    {"INSERT INTO t (k) VALUES (:key) ORDER BY 1", NULL},
    {"INSERT INTO t (k) SELECT :key WHERE :value IS NOT NULL", NULL},
    {"INSERT INTO t (k) SELECT * FROM (VALUES (:key)) v", NULL},
    {"INSERT INTO t (k) (VALUES (:key))", NULL},
    {"WITH x AS (SELECT 1) INSERT INTO t (k) VALUES (:key)", NULL},
    {"INSERT INTO t DEFAULT VALUES", NULL},
    {"INSERT INTO t (a[1]) VALUES (:key)", NULL},
    {"UPDATE t SET v = :value WHERE k = :key", NULL},
    {"SELECT :key", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) WHERE k > :offset DO NOTHING", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k DO NOTHING", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) WHERE x) DO NOTHING", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT ON CONSTRAINT DO NOTHING", NULL},
    /* A dollar quote that the fold scanner cannot end (after `$$$$`, a
     * `$$` that the placeholder parser reads as part of a word). */
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT ((k) DO NOTHING $$$$$$", NULL},
    {"INSERT INTO t (k) VALUES (:key) ON CONFLICT (k) DO NOTHING $$$$$$", NULL},
    {"INSERT INTO t VALUES ()", NULL},
    {"INSERT INTO t VALUES (:key,)", NULL},
    {"INSERT INTO t VALUES ((((((((((((((((((((((((((((((((((:key))))))))))))))))))))))))))))))))))",
     NULL},
};

static void test_multirow(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(multi_cases) / sizeof(multi_cases[0]); i++) {
        const multi_case_t *c = &multi_cases[i];
        bl_sqltmpl_t t;
        char err[256], *sql;
        assert_int_equal(bl_sqltmpl_parse(c->in, PG, &t, err, sizeof(err)), 0);
        sql = bl_sqltmpl_multirow(&t, 2);
        if (c->two_rows) {
            if (!sql || strcmp(sql, c->two_rows))
                fail_msg("%s:\n got %s\nwant %s", c->in, sql ? sql : "NULL", c->two_rows);
        } else if (sql) {
            fail_msg("%s: not a multi-row shape, got %s", c->in, sql);
        }
        free(sql);
        bl_sqltmpl_free(&t);
    }
}

/* Past PostgreSQL's 65535 parameters there is no multi-row form. */
static void test_multirow_limit(void **state)
{
    bl_sqltmpl_t t;
    char err[256], *sql;

    (void)state;
    assert_int_equal(bl_sqltmpl_parse("INSERT INTO t VALUES (:key, :value, :offset)",
                                      PG, &t, err, sizeof(err)), 0);
    sql = bl_sqltmpl_multirow(&t, 21845); /* 65535 parameters */
    assert_non_null(sql);
    assert_non_null(strstr(sql, "($65533, $65534, $65535)"));
    free(sql);
    assert_null(bl_sqltmpl_multirow(&t, 21846));
    bl_sqltmpl_free(&t);
}

/* bl_sqltmpl_key: which parameters make up the conflict key of an upsert,
 * as "key:<parameter indexes>"; "plain" for a folding statement that is
 * not an upsert, "unknown" for an upsert whose key the text does not show,
 * "-" for one with no multi-row form. */
typedef struct key_case {
    const char *in, *key;
} key_case_t;

static const key_case_t key_cases[] = {
    {"INSERT INTO t (k, off, v) VALUES (:key, :offset::bigint, :value) ON CONFLICT (k, off) "
     "DO UPDATE SET v = EXCLUDED.v",
     "key:01"},
    {"INSERT INTO t (v, k) VALUES (:value, CAST(:key AS text)) ON CONFLICT (K) WHERE v IS "
     "NOT NULL DO UPDATE SET v = EXCLUDED.v",
     "key:1"},
    {"INSERT INTO t (\"K\", v) VALUES (:value, :key) ON CONFLICT (\"K\") DO UPDATE SET v = "
     "EXCLUDED.v",
     "key:0"},
    {"INSERT INTO t (K, v) VALUES (:value, :key) ON CONFLICT (\"k\") DO UPDATE SET v = 1",
     "key:0"},
    {"INSERT INTO t (k, v) VALUES ('one', :value) ON CONFLICT (k) DO UPDATE SET v = 1",
     "key:"},
    {"INSERT INTO t (\"K\", v) VALUES (:value, :key) ON CONFLICT (k) DO UPDATE SET v = 1",
     "unknown"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT (z) DO UPDATE SET v = 1",
     "unknown"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT ((lower(k))) DO UPDATE SET v = 1",
     "unknown"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT (k COLLATE \"C\") DO UPDATE "
     "SET v = 1",
     "unknown"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT ON CONSTRAINT t_pk DO UPDATE "
     "SET v = 1",
     "unknown"},
    {"INSERT INTO t VALUES (:key, :value) ON CONFLICT (k) DO UPDATE SET v = 1", "unknown"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT (k) DO NOTHING", "plain"},
    {"INSERT INTO t (k, v) VALUES (:key, :value)", "plain"},
    {"INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT (k) DO UPDATE SET v = 1 "
     "WHERE t.v IS NULL",
     "-"},
    {"INSERT INTO t (k, v) VALUES (upper(:key), :value) ON CONFLICT (k) DO UPDATE SET v = 1",
     "-"},
};

static void test_key(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(key_cases) / sizeof(key_cases[0]); i++) {
        const key_case_t *c = &key_cases[i];
        bl_sqltmpl_t t;
        bl_sqlkey_t k;
        char err[256], got[64] = "-";
        assert_int_equal(bl_sqltmpl_parse(c->in, PG, &t, err, sizeof(err)), 0);
        if (!bl_sqltmpl_key(&t, &k)) {
            bl_fmt(got, sizeof(got), "%s", !k.upsert ? "plain" : !k.known ? "unknown" : "key:");
            for (size_t p = 0; k.known && p < k.n; p++)
                got[4 + p] = (char)('0' + k.param[p]), got[5 + p] = '\0';
        }
        if (strcmp(got, c->key))
            fail_msg("%s:\n got %s\nwant %s", c->in, got, c->key);
        bl_sqltmpl_free(&t);
    }
}

/* The spans of @p keys ("k/offset" per message, "-" for no key) under @p sql, as
 * bl_sqlkey_span cuts them from the start, e.g. "3,2,1". */
static void spans(const char *sql, const char *const *keys, size_t n, char *out, size_t size)
{
    struct ballast_message_s m[16];
    const ballast_message_t *mp[16];
    size_t idx[16];
    bl_sqltmpl_t t;
    bl_sqlkey_t k;
    char err[256];

    assert_true(n <= 16);
    assert_int_equal(bl_sqltmpl_parse(sql, PG, &t, err, sizeof(err)), 0);
    assert_int_equal(bl_sqltmpl_key(&t, &k), 0);
    for (size_t i = 0; i < n; i++) {
        const char *slash = strchr(keys[i], '/');
        m[i] = (struct ballast_message_s){.topic = "orders", .hdrs_loaded = true};
        m[i].key = keys[i][0] == '-' ? NULL : keys[i];
        m[i].key_len = m[i].key ? (size_t)(slash - keys[i]) : 0;
        m[i].offset = strtoll(slash + 1, NULL, 10);
        m[i].value = "v";
        m[i].value_len = 1;
        mp[i] = &m[i];
        idx[i] = n - 1 - i; /* the messages in reverse: spans follow idx */
    }
    out[0] = '\0';
    for (size_t from = 0; from < n;) {
        size_t len = bl_sqlkey_span(&k, &t, mp, idx + from, n - from);
        assert_true(len >= 1 && len <= n - from);
        bl_fmt(out + strlen(out), size - strlen(out), "%s%zu", from ? "," : "", len);
        from += len;
    }
    bl_sqltmpl_free(&t);
}

/* bl_sqlkey_span: a statement of an upsert's rows ends before the first
 * row whose key repeats one of its rows; NULL keys count as equal; other
 * statements are not cut. */
static void test_key_span(void **state)
{
    /* in idx order (reversed below): a/1 b/1 a/2 a/1 -/1 -/1 b/1 ab/1 */
    static const char *const keys[] = {"ab/1", "b/1", "-/1", "-/1", "a/1", "a/2", "b/1", "a/1"};
    static const char *const one_key[] = {"k/1", "k/2", "k/3"};
    char got[64];

    (void)state;
    spans("INSERT INTO t (k, off, v) VALUES (:key, :offset, :value) ON CONFLICT (k, off) DO "
          "UPDATE SET v = EXCLUDED.v",
          keys, 8, got, sizeof(got));
    assert_string_equal(got, "3,2,3");
    spans("INSERT INTO t (k, v) VALUES (:key, :value) ON CONFLICT (k) DO UPDATE SET v = 1",
          keys, 8, got, sizeof(got));
    assert_string_equal(got, "2,1,2,3");
    spans("INSERT INTO t (k, off) VALUES ('c', :offset) ON CONFLICT (k) DO UPDATE SET off = 1",
          one_key, 3, got, sizeof(got));
    assert_string_equal(got, "1,1,1"); /* a constant key: a row a statement */
    spans("INSERT INTO t (k, off) VALUES (:key, :offset) ON CONFLICT ON CONSTRAINT t_pk DO "
          "UPDATE SET off = EXCLUDED.off",
          keys, 8, got, sizeof(got));
    assert_string_equal(got, "8"); /* unknown key: PostgreSQL's 21000 says */
    spans("INSERT INTO t (k, off) VALUES (:key, :offset) ON CONFLICT (k) DO NOTHING", one_key,
          3, got, sizeof(got));
    assert_string_equal(got, "3");
}

/* bl_sqltmpl_copy: the COPY of a plain insert of lone placeholders, and
 * nothing for a statement whose rows COPY could write otherwise. */
typedef struct copy_case {
    const char *in, *copy, *params; /* copy NULL: no COPY form */
} copy_case_t;

static const copy_case_t copy_cases[] = {
    {"INSERT INTO t (topic, part, off, value) VALUES (:topic, :partition, :offset, :value)",
     "COPY t (topic, part, off, value) FROM STDIN", "0123"},
    {"insert into s.\"T x\" as a (\"V\", k, k2) values (:value, :key, ( :key ))", NULL, NULL},
    {"insert into s.\"T x\" as a (\"V\", k, k2) values (:value, :key, :key)",
     "COPY s.\"T x\" (\"V\", k, k2) FROM STDIN", "011"},
    {"INSERT INTO t (a, b) VALUES (:key, 'lit')", NULL, NULL},
    {"INSERT INTO t (a) VALUES (:value::jsonb)", NULL, NULL},
    {"INSERT INTO t (a) VALUES (CAST(:value AS text))", NULL, NULL},
    {"INSERT INTO t VALUES (:key)", NULL, NULL},
    {"INSERT INTO t (a) VALUES (:key) ON CONFLICT DO NOTHING", NULL, NULL},
    {"INSERT INTO t (a) OVERRIDING SYSTEM VALUE VALUES (:key)", NULL, NULL},
    {"INSERT INTO t (a, b) VALUES (:key)", NULL, NULL},
    {"INSERT INTO t (a) VALUES (upper(:key))", NULL, NULL},
    {"UPDATE t SET a = :key", NULL, NULL},
};

static void test_copy(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(copy_cases) / sizeof(copy_cases[0]); i++) {
        const copy_case_t *c = &copy_cases[i];
        bl_sqltmpl_t t;
        bl_sqlcopy_t copy;
        char err[256], params[16] = "";
        int rc;
        assert_int_equal(bl_sqltmpl_parse(c->in, PG, &t, err, sizeof(err)), 0);
        rc = bl_sqltmpl_copy(&t, &copy, err, sizeof(err));
        if (!c->copy) {
            if (!rc)
                fail_msg("%s: no COPY form expected, got %s", c->in, copy.sql);
            assert_true(*err);
        } else {
            if (rc)
                fail_msg("%s: no COPY form: %s", c->in, err);
            assert_string_equal(copy.sql, c->copy);
            for (size_t k = 0; k < copy.ncols && k + 1 < sizeof(params); k++)
                params[k] = (char)('0' + copy.param[k]);
            assert_string_equal(params, c->params);
        }
        bl_sqlcopy_free(&copy);
        bl_sqltmpl_free(&t);
    }
}

/* COPY's text format: NULL is \N, and the four special bytes are escaped. */
static void test_copy_field(void **state)
{
    static const char in[] = "a\tb\nc\rd\\e\\N";
    sbuf_t b = {0};

    (void)state;
    bl_sqlcopy_field(&b, NULL, 0);
    bl_sqlbuf_put(&b, "|", 1);
    bl_sqlcopy_field(&b, "", 0);
    bl_sqlbuf_put(&b, "|", 1);
    bl_sqlcopy_field(&b, in, sizeof(in) - 1);
    assert_string_equal(b.p, "\\N||a\\tb\\nc\\rd\\\\e\\\\N");
    free(b.p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_table),
        cmocka_unit_test(test_free_is_idempotent),
        cmocka_unit_test(test_param_name),
        cmocka_unit_test(test_values),
        cmocka_unit_test(test_multirow),
        cmocka_unit_test(test_multirow_limit),
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_key_span),
        cmocka_unit_test(test_copy),
        cmocka_unit_test(test_copy_field),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
