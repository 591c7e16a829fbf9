/*
 * fuzz_sqltmpl.c - the SQL placeholder parser, bl_sqltmpl_parse(), in both
 * dialects.
 *
 * Each input (up to its first NUL: the parser takes a C string) is parsed
 * as SQLite and as PostgreSQL. When it parses:
 *  - params <= the number of ':' in the input;
 *  - walk: the output is the input up to the statement's ';' with each
 *    recognised placeholder (`:name`, `:header.NAME`) replaced by one
 *    positional parameter (`?N` / `$N`, a blank before it only after an
 *    identifier character) and nothing else changed; N names a parameter of
 *    that placeholder's kind (and header), parameters are numbered in order
 *    of first use and every one is used; so no recognised `:name` is left
 *    in the output;
 *  - re-parse: the output with each parameter turned back into its
 *    canonical placeholder (bl_sqltmpl_param_name()) parses to the same SQL
 *    and the same parameters;
 *  - multi-row (PostgreSQL): bl_sqltmpl_multirow() of one row is the
 *    statement itself, and three rows exist exactly when one does; an
 *    upsert's key (bl_sqltmpl_key()) exists for every statement that folds,
 *    and names at most BL_SQLKEY_MAX of the statement's parameters;
 *  - SQLite differential: when SQLite itself compiles the output, the
 *    parameters it sees are exactly ?1..?count (no parameter ballast would
 *    leave unbound, i.e. silently NULL), and it sees one statement.
 * When it does not parse, the error is one non-empty line.
 */
#include "sqltmpl.h"

#include "fuzz_common.h"

#include <ctype.h>
#include <sqlite3.h>
#include <strings.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static sqlite3 *db;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    if (sqlite3_open(":memory:", &db) != SQLITE_OK)
        abort();
    /* Tables so that more of the fuzzed statements compile. */
    sqlite3_exec(db,
                 "CREATE TABLE t(a, b, c, topic, part, off, k, v, ts);"
                 "CREATE TABLE events(topic TEXT, partition INT, \"offset\" INT,"
                 " key BLOB, value BLOB, ts INT, PRIMARY KEY(topic, partition));",
                 NULL, NULL, NULL);
    return 0;
}

static const char *const kinds[] = {"topic", "partition", "offset", "key",
                                    "value", "timestamp", "header"};

static bool ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static bool header_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

/* Where each emitted parameter sits in the output. */
typedef struct emitted {
    size_t at, len; /* the "?N"/"$N" text in the output */
    size_t num;
} emitted_t;

/* Checks the output against the input; fills *emp (malloc'd). */
static size_t walk(const char *in, const bl_sqltmpl_t *t, bl_sql_dialect_t d,
                   emitted_t **emp)
{
    const char *out = t->sql;
    size_t i = 0, j = 0, len = strlen(in), olen = strlen(out), maxnum = 0, n = 0;
    emitted_t *em = malloc((olen / 2 + 1) * sizeof(*em));

    if (!em)
        abort();
    while (j < olen) {
        size_t name_start, name_end, num = 0, at, kind;

        if (i < len && in[i] == out[j]) {
            i++;
            j++;
            continue;
        }
        /* A parameter: [' '] ('?'|'$') digits, for ':name' in the input. */
        FUZZ_CHECK(i < len && in[i] == ':',
                   "output differs from input at output %zu, input %zu", j, i);
        if (out[j] == ' ') {
            FUZZ_CHECK(j > 0 && ident_char((unsigned char)out[j - 1]),
                       "blank before a parameter at %zu without need", j);
            j++;
        }
        at = j;
        FUZZ_CHECK(out[j] == (d == BL_SQL_POSTGRES ? '$' : '?'),
                   "expected a parameter at output %zu", j);
        FUZZ_CHECK(isdigit((unsigned char)out[j + 1]) && out[j + 1] != '0',
                   "parameter without a number at %zu", j);
        for (j++; isdigit((unsigned char)out[j]); j++)
            num = num * 10 + (size_t)(out[j] - '0');
        FUZZ_CHECK(num >= 1 && num <= t->count, "parameter %zu of %zu", num, t->count);
        FUZZ_CHECK(num <= maxnum + 1, "parameter %zu used before %zu", num, maxnum + 1);
        if (num > maxnum)
            maxnum = num;
        em[n].at = at;
        em[n].len = j - at;
        em[n].num = num;
        n++;

        name_start = i + 1;
        for (name_end = name_start;
             isalnum((unsigned char)in[name_end]) || in[name_end] == '_'; name_end++)
            ;
        for (kind = 0; kind <= BL_PARAM_HEADER; kind++)
            if (strlen(kinds[kind]) == name_end - name_start &&
                !strncasecmp(kinds[kind], in + name_start, name_end - name_start))
                break;
        FUZZ_CHECK(kind <= BL_PARAM_HEADER, "parameter for an unknown name at %zu", i);
        FUZZ_CHECK(t->params[num - 1].kind == (bl_param_kind_t)kind,
                   "$%zu is kind %d, the input says %s", num,
                   (int)t->params[num - 1].kind, kinds[kind]);
        i = name_end;
        if (kind == BL_PARAM_HEADER) {
            size_t h = i + 1;
            FUZZ_CHECK(in[i] == '.', ":header without a name");
            while (header_char((unsigned char)in[h]) && !(in[h] == '-' && in[h + 1] == '-'))
                h++;
            FUZZ_CHECK(h > i + 1 && strlen(t->params[num - 1].header) == h - i - 1 &&
                           !memcmp(t->params[num - 1].header, in + i + 1, h - i - 1),
                       "header parameter %zu is \"%s\"", num, t->params[num - 1].header);
            i = h;
        }
    }
    FUZZ_CHECK(i == len || in[i] == ';', "output ends at input %zu of %zu", i, len);
    FUZZ_CHECK(maxnum == t->count, "%zu parameters, %zu used", t->count, maxnum);
    *emp = em;
    return n;
}

/* bl_sqltmpl_param_name() into a buffer big enough for any header name. */
static char *param_name(const bl_param_t *param)
{
    size_t size = (param->header ? strlen(param->header) : 0) + 32;
    char *name = malloc(size);

    if (!name)
        abort();
    bl_sqltmpl_param_name(param, name, size);
    return name;
}

/* The output with each parameter written back as its placeholder. */
static char *canonical(const bl_sqltmpl_t *t, const emitted_t *em, size_t n)
{
    size_t olen = strlen(t->sql), cap = olen + 1, pos = 0, len = 0;
    char *s;

    for (size_t k = 0; k < n; k++) {
        const bl_param_t *param = &t->params[em[k].num - 1];
        cap += (param->header ? strlen(param->header) : 0) + 32;
    }
    if (!(s = malloc(cap)))
        abort();
    for (size_t k = 0; k < n; k++) {
        char *name = param_name(&t->params[em[k].num - 1]);
        memcpy(s + len, t->sql + pos, em[k].at - pos);
        len += em[k].at - pos;
        memcpy(s + len, name, strlen(name));
        len += strlen(name);
        pos = em[k].at + em[k].len;
        free(name);
    }
    memcpy(s + len, t->sql + pos, olen - pos);
    s[len + olen - pos] = '\0';
    return s;
}

static void check_sqlite(const bl_sqltmpl_t *t, const char *in)
{
    sqlite3_stmt *stmt = NULL;
    const char *tail = NULL;
    int nparams;

    if (sqlite3_prepare_v2(db, t->sql, -1, &stmt, &tail) != SQLITE_OK || !stmt) {
        sqlite3_finalize(stmt);
        return; /* SQLite refuses it: the handler reports it at start-up */
    }
    while (tail && *tail && isspace((unsigned char)*tail))
        tail++;
    FUZZ_CHECK(!tail || !*tail, "SQLite sees a second statement: [%s] from [%s]",
               tail, in);
    nparams = sqlite3_bind_parameter_count(stmt);
    FUZZ_CHECK((size_t)nparams == t->count,
               "SQLite sees %d parameter(s), ballast binds %zu: [%s] -> [%s]",
               nparams, t->count, in, t->sql);
    for (int k = 1; k <= nparams; k++) {
        const char *pn = sqlite3_bind_parameter_name(stmt, k);
        char want[32];
        snprintf(want, sizeof(want), "?%d", k);
        FUZZ_CHECK(pn && !strcmp(pn, want),
                   "SQLite parameter %d is \"%s\", not ballast's: [%s] -> [%s]", k,
                   pn ? pn : "(nameless)", in, t->sql);
    }
    sqlite3_finalize(stmt);
}

/* bl_sqltmpl_key(): a key for every statement that folds (@p folds); the
 * parameters it names are the statement's, and only a known upsert's. */
static void check_key(const bl_sqltmpl_t *t, bool folds)
{
    bl_sqlkey_t k;
    int rc = bl_sqltmpl_key(t, &k);

    FUZZ_CHECK(!folds || rc == 0, "folds, but no key: [%s]", t->sql);
    FUZZ_CHECK(rc == 0 || (!k.upsert && !k.known && !k.n), "no key, yet filled: [%s]", t->sql);
    FUZZ_CHECK(k.known ? k.upsert && k.n <= BL_SQLKEY_MAX : !k.n, "key of %zu: [%s]", k.n,
               t->sql);
    for (size_t i = 0; k.known && i < k.n; i++)
        FUZZ_CHECK(k.param[i] < t->count, "key parameter %zu of %zu: [%s]", k.param[i],
                   t->count, t->sql);
}

/* bl_sqltmpl_multirow(): one row is the statement itself (so the scan
 * finds the tuple's bounds), and three rows exist exactly when one does.
 * (The renumbering is checked by tests/unit/test_sqltmpl.c.) */
static void check_multirow(const bl_sqltmpl_t *t)
{
    char *one = bl_sqltmpl_multirow(t, 1), *three = bl_sqltmpl_multirow(t, 3);

    FUZZ_CHECK(!one || !strcmp(one, t->sql), "one row [%s] is not [%s]", one, t->sql);
    FUZZ_CHECK(!one == !three, "one row %s, three rows %s", one ? "ok" : "NULL",
               three ? "ok" : "NULL");
    FUZZ_CHECK(!three || strlen(three) > strlen(t->sql), "three rows [%s]", three);
    check_key(t, one != NULL);
    free(one);
    free(three);
}

static void check_one(const char *in, bl_sql_dialect_t d, size_t errsize)
{
    bl_sqltmpl_t t, again;
    char err[512];
    int rc = bl_sqltmpl_parse(in, d, &t, errsize ? err : NULL, errsize);
    emitted_t *em;
    size_t colons = 0, n;
    char *canon;

    if (rc) {
        FUZZ_CHECK(rc == -1, "rc %d", rc);
        FUZZ_CHECK(!t.sql, "failed parse left SQL");
        if (errsize > 1)
            FUZZ_CHECK(*err && !strchr(err, '\n'), "error text: [%s]", err);
        bl_sqltmpl_free(&t);
        return;
    }
    FUZZ_CHECK(t.sql != NULL, "no SQL");
    for (const char *p = in; *p; p++)
        colons += *p == ':';
    FUZZ_CHECK(t.count <= colons, "%zu parameters from %zu colons", t.count, colons);
    for (size_t k = 0; k < t.count; k++)
        FUZZ_CHECK((t.params[k].kind == BL_PARAM_HEADER) == (t.params[k].header != NULL),
                   "parameter %zu: header name mismatch", k);

    n = walk(in, &t, d, &em);
    canon = canonical(&t, em, n);
    FUZZ_CHECK(bl_sqltmpl_parse(canon, d, &again, err, sizeof(err)) == 0,
               "canonical form does not parse: %s: [%s]", err, canon);
    FUZZ_CHECK(!strcmp(again.sql, t.sql), "re-parse gives [%s], not [%s]", again.sql,
               t.sql);
    FUZZ_CHECK(again.count == t.count, "re-parse: %zu parameters, not %zu", again.count,
               t.count);
    for (size_t k = 0; k < t.count; k++)
        FUZZ_CHECK(again.params[k].kind == t.params[k].kind &&
                       (!t.params[k].header ||
                        !strcmp(again.params[k].header, t.params[k].header)),
                   "re-parse: parameter %zu differs", k + 1);
    if (d == BL_SQL_SQLITE)
        check_sqlite(&t, in);
    else
        check_multirow(&t);
    bl_sqltmpl_free(&again);
    free(canon);
    free(em);
    bl_sqltmpl_free(&t);
    FUZZ_CHECK(!t.sql && !t.params && !t.count, "bl_sqltmpl_free left state");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *in = fuzz_strndup(data, size); /* cut at a NUL by strlen() */
    /* Vary the error buffer: none, tiny, normal. */
    size_t errsize = size % 3 == 0 ? 0 : size % 3 == 1 ? 2 : 512;

    check_one(in, BL_SQL_SQLITE, errsize);
    check_one(in, BL_SQL_POSTGRES, errsize);
    free(in);
    return 0;
}
