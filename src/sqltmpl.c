/*
 * sqltmpl.c - rewrites :named placeholders into positional parameters,
 * skipping quotes, comments and casts (the scanner is sqlscan.c; which
 * statements may run over many messages at once is sqlrows.c); and the
 * parameters' values for a message, which also cut an upsert's batch into
 * statements without a repeated key (bl_sqlkey_span).
 */
#include "sqltmpl.h"

#include "internal.h"

#include <ctype.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Placeholder names, indexed by bl_param_kind_t (BL_PARAM_HEADER last). */
static const char *const kind_names[] = {"topic", "partition", "offset", "key",
                                         "value", "timestamp", "header"};

#define VALID_NAMES ":topic :partition :offset :key :value :timestamp :header.NAME"

static bool is_header_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

/* ---- placeholders ------------------------------------------------------- */

static int add_param(parser_t *p, bl_param_kind_t kind, const char *hdr,
                     size_t hlen, size_t *nump)
{
    bl_sqltmpl_t *t = p->t;
    bl_param_t *params;

    for (size_t i = 0; i < t->count; i++) {
        if (t->params[i].kind != kind)
            continue;
        if (kind != BL_PARAM_HEADER ||
            (strlen(t->params[i].header) == hlen &&
             !memcmp(t->params[i].header, hdr, hlen))) {
            *nump = i + 1;
            return 0;
        }
    }
    if (!(params = realloc(t->params, (t->count + 1) * sizeof(*params))))
        return bl_sql_fail(p, "out of memory");
    t->params = params;
    params[t->count].kind = kind;
    params[t->count].header = NULL;
    if (kind == BL_PARAM_HEADER) {
        if (!(params[t->count].header = malloc(hlen + 1)))
            return bl_sql_fail(p, "out of memory");
        memcpy(params[t->count].header, hdr, hlen);
        params[t->count].header[hlen] = '\0';
    }
    *nump = ++t->count;
    return 0;
}

static void emit_param(parser_t *p, size_t num)
{
    char buf[32];

    if (p->out.len && bl_sql_ident_char((unsigned char)p->out.p[p->out.len - 1]))
        bl_sqlbuf_put(&p->out, " ", 1);
    bl_fmt(buf, sizeof(buf), "%c%zu",
           p->dialect == BL_SQL_POSTGRES ? '$' : '?', num);
    bl_sqlbuf_put(&p->out, buf, strlen(buf));
}

/* The end of a header name starting at @p i: greedy over [A-Za-z0-9_.-],
 * but a `--` ends it since that starts a comment. */
static size_t header_name_end(const parser_t *p, size_t i)
{
    while (i < p->len && is_header_char((unsigned char)p->s[i]) &&
           !(p->s[i] == '-' && i + 1 < p->len && p->s[i + 1] == '-'))
        i++;
    return i;
}

/* pos is at ':' followed by an identifier start. */
static int placeholder(parser_t *p)
{
    size_t start = p->pos, i = p->pos + 1, namelen, num, kind;

    while (i < p->len && (isalnum((unsigned char)p->s[i]) || p->s[i] == '_'))
        i++;
    namelen = i - start - 1;
    for (kind = 0; kind <= BL_PARAM_HEADER; kind++)
        if (strlen(kind_names[kind]) == namelen &&
            !strncasecmp(kind_names[kind], p->s + start + 1, namelen))
            break;
    if (kind > BL_PARAM_HEADER)
        return bl_sql_fail(p, "unknown placeholder \":%.*s\" at character %zu (valid: "
                       VALID_NAMES ")",
                    (int)namelen, p->s + start + 1, start + 1);
    if (kind == BL_PARAM_HEADER) {
        size_t hstart = i + 1, hend;
        if (i >= p->len || p->s[i] != '.' ||
            (hend = header_name_end(p, hstart)) == hstart)
            return bl_sql_fail(p, "placeholder \":header\" at character %zu needs a "
                           "header name, as in :header.x-trace-id",
                        start + 1);
        if (add_param(p, BL_PARAM_HEADER, p->s + hstart, hend - hstart, &num))
            return -1;
        i = hend;
    } else if (add_param(p, (bl_param_kind_t)kind, NULL, 0, &num)) {
        return -1;
    }
    emit_param(p, num);
    p->pos = i;
    return 0;
}

/* `?`, `?1`, `$1`, `@x`, `$x` are the database's own parameter syntax: a
 * parameter ballast never binds would silently be NULL (SQLite) or fail
 * every message (PostgreSQL), so they are refused up front. */
static int foreign_param(parser_t *p)
{
    size_t i = p->pos + 1;

    while (i < p->len && bl_sql_ident_char((unsigned char)p->s[i]) && p->s[i] != '$')
        i++;
    return bl_sql_fail(p, "\"%.*s\" at character %zu is the database's own parameter "
                   "syntax, which ballast does not bind; use the placeholders "
                   VALID_NAMES,
                (int)(i - p->pos), p->s + p->pos, p->pos + 1);
}

/* ---- the statement loop -------------------------------------------------- */

/* After the statement's `;`: only spaces, comments and more `;`. */
static int after_end(parser_t *p)
{
    while (p->pos < p->len) {
        size_t end;
        int rc = bl_sql_comment_at(p, &end);
        if (rc < 0)
            return -1;
        if (rc) {
            p->pos = end;
        } else if (isspace((unsigned char)p->s[p->pos]) || p->s[p->pos] == ';') {
            p->pos++;
        } else {
            return bl_sql_fail(p, "more than one statement (text after ';' at character "
                           "%zu); ballast runs one statement per message",
                        p->pos + 1);
        }
    }
    return 0;
}

/* Handles the character at pos in the statement body; *endedp is set at
 * the `;` that ends the statement. */
static int step(parser_t *p, bool *endedp, bool *contentp)
{
    unsigned char c = (unsigned char)p->s[p->pos];
    bool pg = p->dialect == BL_SQL_POSTGRES;
    size_t end;
    int rc;

    if ((rc = bl_sql_comment_at(p, &end)) != 0) {
        if (rc > 0)
            bl_sql_copy_to(p, end);
        return rc < 0 ? -1 : 0;
    }
    if (!isspace(c) && c != ';')
        *contentp = true;
    switch (c) {
    case '\'':
        return bl_sql_copy_quoted(p, '\'', bl_sql_escape_string(p), "string literal");
    case '"':
        return bl_sql_copy_quoted(p, '"', false, "quoted identifier");
    case '`':
        return pg ? (bl_sql_copy_to(p, p->pos + 1), 0)
                  : bl_sql_copy_quoted(p, '`', false, "quoted identifier");
    case '[':
        return pg ? (bl_sql_copy_to(p, p->pos + 1), 0)
                  : bl_sql_copy_quoted(p, ']', false, "quoted identifier");
    case ';':
        *endedp = true;
        p->pos++;
        return 0;
    case ':':
        if (bl_sql_peek(p, 1) == ':') {
            if (!pg) /* not a cast in SQLite: part of its own parameter syntax */
                return foreign_param(p);
            bl_sql_copy_to(p, p->pos + 2);
            return 0;
        }
        if (bl_sql_ident_start((unsigned char)bl_sql_peek(p, 1)))
            return placeholder(p);
        /* SQLite also binds `:1`, `:$`, ...: never ours. */
        if (!pg && bl_sql_ident_char((unsigned char)bl_sql_peek(p, 1)))
            return foreign_param(p);
        break;
    case '?':
        if (!pg)
            return foreign_param(p);
        break; /* a PostgreSQL operator (jsonb ?, ?|, ?&) */
    case '$':
        if (bl_sql_ident_char((unsigned char)bl_sql_prev_char(p)))
            break; /* inside an identifier such as a$b */
        if (isdigit((unsigned char)bl_sql_peek(p, 1)))
            return foreign_param(p);
        if (pg) {
            bool matched;
            if (bl_sql_copy_dollar_quote(p, &matched) || matched)
                return p->failed ? -1 : 0;
        } else if (bl_sql_ident_char((unsigned char)bl_sql_peek(p, 1)) ||
                   (bl_sql_peek(p, 1) == ':' && bl_sql_peek(p, 2) == ':')) {
            return foreign_param(p); /* SQLite's $x, $$, $::x */
        }
        break;
    case '@':
    case '#':
        /* SQLite binds @x, @1, @$, @::x and #x, #::x too, even right
         * after a word ('@' and '#' cannot be part of one). */
        if (!pg && (bl_sql_ident_char((unsigned char)bl_sql_peek(p, 1)) ||
                    (bl_sql_peek(p, 1) == ':' && bl_sql_peek(p, 2) == ':')))
            return foreign_param(p);
        break;
    default:
        break;
    }
    bl_sql_copy_to(p, p->pos + 1);
    return 0;
}

int bl_sqltmpl_parse(const char *sql, bl_sql_dialect_t dialect,
                     bl_sqltmpl_t *out, char *errbuf, size_t errsize)
{
    parser_t p = {.s = sql, .len = sql ? strlen(sql) : 0, .dialect = dialect,
                  .t = out, .err = errbuf, .errsize = errsize};
    bool ended = false, content = false;

    memset(out, 0, sizeof(*out));
    if (errsize)
        errbuf[0] = '\0';
    while (p.pos < p.len && !ended)
        if (step(&p, &ended, &content))
            goto failed;
    if (after_end(&p))
        goto failed;
    if (!content) {
        bl_sql_fail(&p, "empty statement (expected one SQL statement)");
        goto failed;
    }
    bl_sqlbuf_put(&p.out, "", 0);
    if (p.out.oom) {
        bl_sql_fail(&p, "out of memory");
        goto failed;
    }
    out->sql = p.out.p;
    return 0;
failed:
    free(p.out.p);
    return -1;
}

void bl_sqltmpl_free(bl_sqltmpl_t *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->count; i++)
        free(t->params[i].header);
    free(t->params);
    free(t->sql);
    memset(t, 0, sizeof(*t));
}

void bl_sqltmpl_param_name(const bl_param_t *param, char *buf, size_t size)
{
    if (param->kind == BL_PARAM_HEADER)
        bl_fmt(buf, size, ":header.%s", param->header);
    else
        bl_fmt(buf, size, ":%s", kind_names[param->kind]);
}

static void set_int(bl_sqlval_t *out, int64_t v)
{
    out->is_int = true;
    out->i = v;
    bl_fmt(out->num, sizeof(out->num), "%" PRId64, v);
    out->data = out->num;
    out->len = strlen(out->num);
}

void bl_sqltmpl_value(const bl_param_t *param, const ballast_message_t *msg,
                      bl_sqlval_t *out)
{
    memset(out, 0, sizeof(*out));
    switch (param->kind) {
    case BL_PARAM_TOPIC:
        out->data = ballast_message_topic(msg);
        out->len = out->data ? strlen(out->data) : 0;
        break;
    case BL_PARAM_PARTITION:
        set_int(out, ballast_message_partition(msg));
        break;
    case BL_PARAM_OFFSET:
        set_int(out, ballast_message_offset(msg));
        break;
    case BL_PARAM_TIMESTAMP:
        if (ballast_message_timestamp(msg) >= 0)
            set_int(out, ballast_message_timestamp(msg));
        break;
    case BL_PARAM_KEY:
        out->data = ballast_message_key(msg, &out->len);
        break;
    case BL_PARAM_VALUE:
        out->data = ballast_message_value(msg, &out->len);
        break;
    case BL_PARAM_HEADER:
        if (ballast_message_header_find(msg, param->header, &out->data,
                                        &out->len))
            out->data = NULL;
        break;
    }
    if (!out->data)
        out->len = 0;
}

/* ---- which rows of an upsert may share a statement (sqltmpl.h) ---------- */

/* FNV-1a over @p len bytes. */
static uint64_t fnv(uint64_t h, const void *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        h = (h ^ ((const unsigned char *)p)[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t key_hash(const bl_sqlkey_t *k, const bl_sqltmpl_t *t,
                         const ballast_message_t *m)
{
    uint64_t h = 0xcbf29ce484222325ULL;

    for (size_t i = 0; i < k->n; i++) {
        bl_sqlval_t v;
        size_t len;
        bl_sqltmpl_value(&t->params[k->param[i]], m, &v);
        len = v.data ? v.len : SIZE_MAX; /* NULL: apart from every text */
        h = fnv(h, &len, sizeof(len));
        if (v.data)
            h = fnv(h, v.data, v.len);
    }
    return h;
}

/* Whether messages @p a and @p b give the key's parameters equal texts. */
static bool key_equal(const bl_sqlkey_t *k, const bl_sqltmpl_t *t,
                      const ballast_message_t *a, const ballast_message_t *b)
{
    for (size_t i = 0; i < k->n; i++) {
        bl_sqlval_t va, vb;
        bl_sqltmpl_value(&t->params[k->param[i]], a, &va);
        bl_sqltmpl_value(&t->params[k->param[i]], b, &vb);
        if (!va.data != !vb.data ||
            (va.data && (va.len != vb.len || memcmp(va.data, vb.data, va.len))))
            return false;
    }
    return true;
}

size_t bl_sqlkey_span(const bl_sqlkey_t *k, const bl_sqltmpl_t *t,
                      const ballast_message_t *const *msgs, const size_t *idx, size_t n)
{
    uint64_t h[BL_SQLKEY_SPAN_MAX];

    if (!k->upsert || !k->known)
        return n;
    if (n > BL_SQLKEY_SPAN_MAX)
        n = BL_SQLKEY_SPAN_MAX;
    for (size_t i = 0; i < n; i++) {
        h[i] = key_hash(k, t, msgs[idx[i]]);
        for (size_t j = 0; j < i; j++)
            if (h[j] == h[i] && key_equal(k, t, msgs[idx[j]], msgs[idx[i]]))
                return i;
    }
    return n;
}
