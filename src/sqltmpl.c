/* sqltmpl.c - rewrites :named placeholders into positional parameters, skipping quotes, comments and casts. */
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

/* ---- a growable output string ------------------------------------------- */

typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_put(sbuf_t *b, const char *s, size_t n)
{
    if (b->oom)
        return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        char *p;
        while (cap < b->len + n + 1)
            cap *= 2;
        if (!(p = realloc(b->p, cap))) {
            b->oom = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

/* ---- the scanner -------------------------------------------------------- */

typedef struct parser {
    const char *s;
    size_t pos, len;
    bl_sql_dialect_t dialect;
    sbuf_t out;
    bl_sqltmpl_t *t;
    char *err;
    size_t errsize;
    bool failed;
} parser_t;

static bool is_ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

/* Characters that continue an identifier or number: a parameter written
 * right after one would merge with it (PostgreSQL even allows `$` inside
 * identifiers), so the rewrite puts a space in between. */
static bool is_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

static bool is_header_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '.' || c == '-';
}

static int fail(parser_t *p, const char *fmt, ...) BL_PRINTF(2, 3);
static int fail(parser_t *p, const char *fmt, ...)
{
    va_list ap;

    if (p->errsize) {
        va_start(ap, fmt);
        if (vsnprintf(p->err, p->errsize, fmt, ap) < 0)
            p->err[0] = '\0';
        va_end(ap);
    }
    p->failed = true;
    return -1;
}

/* Copies s[pos, end) to the output and moves past it. */
static void copy_to(parser_t *p, size_t end)
{
    sb_put(&p->out, p->s + p->pos, end - p->pos);
    p->pos = end;
}

static char peek(const parser_t *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->s[p->pos + ahead] : '\0';
}

static char prev_char(const parser_t *p)
{
    return p->pos ? p->s[p->pos - 1] : '\0';
}

/* A PostgreSQL E'...' string: the quote follows a lone E, and backslash
 * escapes (E'it\'s') must not end it early. */
static bool is_escape_string(const parser_t *p)
{
    if (p->dialect != BL_SQL_POSTGRES || p->pos == 0)
        return false;
    if (p->s[p->pos - 1] != 'E' && p->s[p->pos - 1] != 'e')
        return false;
    return p->pos == 1 || !is_ident_char((unsigned char)p->s[p->pos - 2]);
}

/* Copies a quoted run ('..', "..", `..`) where a doubled quote is an
 * escaped quote, and with @p backslash, a backslash escapes any char. */
static int copy_quoted(parser_t *p, char close, bool backslash, const char *what)
{
    size_t start = p->pos, i = p->pos + 1;

    while (i < p->len) {
        if (backslash && p->s[i] == '\\' && i + 1 < p->len) {
            i += 2;
        } else if (p->s[i] == close) {
            if (i + 1 < p->len && p->s[i + 1] == close && close != ']')
                i += 2;
            else
                break;
        } else {
            i++;
        }
    }
    if (i >= p->len)
        return fail(p, "unterminated %s starting at character %zu", what, start + 1);
    copy_to(p, i + 1);
    return 0;
}

static size_t line_comment_end(const parser_t *p)
{
    const char *nl = memchr(p->s + p->pos, '\n', p->len - p->pos);
    return nl ? (size_t)(nl - p->s) + 1 : p->len;
}

/* Returns the end of the block comment at pos; PostgreSQL nests them. */
static int block_comment_end(parser_t *p, size_t *endp)
{
    size_t i = p->pos + 2, depth = 1;

    while (i + 1 < p->len && depth) {
        if (p->s[i] == '*' && p->s[i + 1] == '/') {
            depth--;
            i += 2;
        } else if (p->dialect == BL_SQL_POSTGRES && p->s[i] == '/' &&
                   p->s[i + 1] == '*') {
            depth++;
            i += 2;
        } else {
            i++;
        }
    }
    if (depth)
        return fail(p, "unterminated /* comment starting at character %zu",
                    p->pos + 1);
    *endp = i;
    return 0;
}

/* If pos starts a comment, sets *endp past it and returns 1; 0 if not,
 * -1 on an unterminated comment (*endp is pos then). */
static int comment_at(parser_t *p, size_t *endp)
{
    *endp = p->pos;
    if (peek(p, 0) == '-' && peek(p, 1) == '-') {
        *endp = line_comment_end(p);
        return 1;
    }
    if (peek(p, 0) == '/' && peek(p, 1) == '*')
        return block_comment_end(p, endp) ? -1 : 1;
    return 0;
}

/* PostgreSQL $tag$...$tag$ (tag empty or an identifier without `$`). */
static int copy_dollar_quote(parser_t *p, bool *matched)
{
    size_t i = p->pos + 1, taglen;
    const char *close;

    *matched = false;
    if (i < p->len && is_ident_start((unsigned char)p->s[i]))
        for (i++; i < p->len && is_ident_char((unsigned char)p->s[i]) &&
                  p->s[i] != '$';)
            i++;
    if (i >= p->len || p->s[i] != '$')
        return 0;
    *matched = true;
    taglen = i + 1 - p->pos; /* "$tag$" */
    close = p->s + i + 1;
    for (;;) {
        close = memchr(close, '$', (size_t)(p->s + p->len - close));
        if (!close || (size_t)(p->s + p->len - close) < taglen)
            return fail(p, "unterminated dollar-quoted string %.*s starting at "
                           "character %zu",
                        (int)taglen, p->s + p->pos, p->pos + 1);
        if (!memcmp(close, p->s + p->pos, taglen))
            break;
        close++;
    }
    copy_to(p, (size_t)(close - p->s) + taglen);
    return 0;
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
        return fail(p, "out of memory");
    t->params = params;
    params[t->count].kind = kind;
    params[t->count].header = NULL;
    if (kind == BL_PARAM_HEADER) {
        if (!(params[t->count].header = malloc(hlen + 1)))
            return fail(p, "out of memory");
        memcpy(params[t->count].header, hdr, hlen);
        params[t->count].header[hlen] = '\0';
    }
    *nump = ++t->count;
    return 0;
}

static void emit_param(parser_t *p, size_t num)
{
    char buf[32];

    if (p->out.len && is_ident_char((unsigned char)p->out.p[p->out.len - 1]))
        sb_put(&p->out, " ", 1);
    bl_fmt(buf, sizeof(buf), "%c%zu",
           p->dialect == BL_SQL_POSTGRES ? '$' : '?', num);
    sb_put(&p->out, buf, strlen(buf));
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
        return fail(p, "unknown placeholder \":%.*s\" at character %zu (valid: "
                       VALID_NAMES ")",
                    (int)namelen, p->s + start + 1, start + 1);
    if (kind == BL_PARAM_HEADER) {
        size_t hstart = i + 1, hend;
        if (i >= p->len || p->s[i] != '.' ||
            (hend = header_name_end(p, hstart)) == hstart)
            return fail(p, "placeholder \":header\" at character %zu needs a "
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

    while (i < p->len && is_ident_char((unsigned char)p->s[i]) && p->s[i] != '$')
        i++;
    return fail(p, "\"%.*s\" at character %zu is the database's own parameter "
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
        int rc = comment_at(p, &end);
        if (rc < 0)
            return -1;
        if (rc) {
            p->pos = end;
        } else if (isspace((unsigned char)p->s[p->pos]) || p->s[p->pos] == ';') {
            p->pos++;
        } else {
            return fail(p, "more than one statement (text after ';' at character "
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

    if ((rc = comment_at(p, &end)) != 0) {
        if (rc > 0)
            copy_to(p, end);
        return rc < 0 ? -1 : 0;
    }
    if (!isspace(c) && c != ';')
        *contentp = true;
    switch (c) {
    case '\'':
        return copy_quoted(p, '\'', is_escape_string(p), "string literal");
    case '"':
        return copy_quoted(p, '"', false, "quoted identifier");
    case '`':
        return pg ? (copy_to(p, p->pos + 1), 0)
                  : copy_quoted(p, '`', false, "quoted identifier");
    case '[':
        return pg ? (copy_to(p, p->pos + 1), 0)
                  : copy_quoted(p, ']', false, "quoted identifier");
    case ';':
        *endedp = true;
        p->pos++;
        return 0;
    case ':':
        if (peek(p, 1) == ':') {
            if (!pg) /* not a cast in SQLite: part of its own parameter syntax */
                return foreign_param(p);
            copy_to(p, p->pos + 2);
            return 0;
        }
        if (is_ident_start((unsigned char)peek(p, 1)))
            return placeholder(p);
        /* SQLite also binds `:1`, `:$`, ...: never ours. */
        if (!pg && is_ident_char((unsigned char)peek(p, 1)))
            return foreign_param(p);
        break;
    case '?':
        if (!pg)
            return foreign_param(p);
        break; /* a PostgreSQL operator (jsonb ?, ?|, ?&) */
    case '$':
        if (is_ident_char((unsigned char)prev_char(p)))
            break; /* inside an identifier such as a$b */
        if (isdigit((unsigned char)peek(p, 1)))
            return foreign_param(p);
        if (pg) {
            bool matched;
            if (copy_dollar_quote(p, &matched) || matched)
                return p->failed ? -1 : 0;
        } else if (is_ident_char((unsigned char)peek(p, 1)) ||
                   (peek(p, 1) == ':' && peek(p, 2) == ':')) {
            return foreign_param(p); /* SQLite's $x, $$, $::x */
        }
        break;
    case '@':
    case '#':
        /* SQLite binds @x, @1, @$, @::x and #x, #::x too, even right
         * after a word ('@' and '#' cannot be part of one). */
        if (!pg && (is_ident_char((unsigned char)peek(p, 1)) ||
                    (peek(p, 1) == ':' && peek(p, 2) == ':')))
            return foreign_param(p);
        break;
    default:
        break;
    }
    copy_to(p, p->pos + 1);
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
        fail(&p, "empty statement (expected one SQL statement)");
        goto failed;
    }
    sb_put(&p.out, "", 0);
    if (p.out.oom) {
        fail(&p, "out of memory");
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

/* ---- multi-row INSERT ------------------------------------------------------ */

/*
 * The shape a statement must have to run as one statement over many
 * messages: INSERT ... VALUES (tuple), optionally ON CONFLICT ... DO
 * NOTHING, and nothing else at the top level (no WITH, RETURNING, ORDER
 * BY, UNION, second tuple, DO UPDATE: with those, rows of one statement
 * would not behave as statements run one after another).
 */
typedef struct shape {
    size_t words;                  /* top-level words so far */
    size_t tuple_start, tuple_end; /* "(" .. past ")"; 0: not yet; start
                                      AWAIT_TUPLE: VALUES seen */
    size_t *param_at;              /* offsets of `$N` inside the tuple */
    size_t nparams;
    char first_after[16], last_word[16], second_last[16]; /* after the tuple */
} shape_t;

#define AWAIT_TUPLE SIZE_MAX

static bool in_tuple(const shape_t *sh, size_t depth)
{
    return sh->tuple_start && sh->tuple_start != AWAIT_TUPLE && !sh->tuple_end &&
           depth;
}

/* A top-level word. @returns false if the statement cannot have the shape. */
static bool shape_word(shape_t *sh, const parser_t *p, size_t start)
{
    char w[16];
    size_t n = p->pos - start < sizeof(w) - 1 ? p->pos - start : sizeof(w) - 1;

    for (size_t i = 0; i < n; i++)
        w[i] = (char)toupper((unsigned char)p->s[start + i]);
    w[n] = '\0';
    if (!sh->words++)
        return !strcmp(w, "INSERT");
    if (sh->tuple_start == AWAIT_TUPLE)
        return false; /* DEFAULT VALUES, or VALUES without a tuple */
    if (sh->tuple_end) {
        if (!sh->first_after[0])
            memcpy(sh->first_after, w, sizeof(w));
        memcpy(sh->second_last, sh->last_word, sizeof(w));
        memcpy(sh->last_word, w, sizeof(w));
    } else if (!sh->tuple_start && !strcmp(w, "VALUES")) {
        sh->tuple_start = AWAIT_TUPLE;
    }
    return true;
}

/* A `$N` parameter: only inside the tuple, where each row has its own. */
static bool shape_param(shape_t *sh, parser_t *p, size_t depth)
{
    size_t *at;

    if (!in_tuple(sh, depth))
        return false;
    if (!(at = realloc(sh->param_at, (sh->nparams + 1) * sizeof(*at))))
        return false;
    sh->param_at = at;
    at[sh->nparams++] = p->pos;
    for (p->pos++; p->pos < p->len && isdigit((unsigned char)p->s[p->pos]);)
        p->pos++;
    return true;
}

/* Parentheses and other punctuation at @p pos. */
static bool shape_punct(shape_t *sh, parser_t *p, size_t *depth)
{
    unsigned char c = (unsigned char)p->s[p->pos++];

    if (c == '(') {
        if (!*depth && sh->tuple_start == AWAIT_TUPLE)
            sh->tuple_start = p->pos - 1;
        else if (!*depth && sh->tuple_end && !sh->first_after[0])
            return false; /* a second tuple */
        ++*depth;
    } else if (c == ')') {
        if (!*depth)
            return false;
        if (!--*depth && in_tuple(sh, 1))
            sh->tuple_end = p->pos;
    } else if (!*depth && sh->tuple_end && !sh->first_after[0] && !isspace(c) &&
               c != ';') {
        return false; /* `, (...)`, an operator: more than one tuple */
    } else if (!*depth && sh->tuple_start == AWAIT_TUPLE && !isspace(c)) {
        return false;
    }
    return true;
}

/* Scans the rewritten statement (PostgreSQL: `$N` parameters). */
static bool shape_scan(parser_t *p, shape_t *sh)
{
    size_t depth = 0, end;
    bool ok = true;

    while (ok && p->pos < p->len && !p->failed) {
        unsigned char c = (unsigned char)p->s[p->pos];
        bool after_ident = is_ident_char((unsigned char)prev_char(p)), matched;
        if (comment_at(p, &end) > 0) {
            p->pos = end;
        } else if (c == '\'') {
            copy_quoted(p, '\'', is_escape_string(p), "string literal");
        } else if (c == '"') {
            copy_quoted(p, '"', false, "quoted identifier");
        } else if (c == '$' && !after_ident && isdigit((unsigned char)peek(p, 1))) {
            ok = shape_param(sh, p, depth);
        } else if (c == '$' && !after_ident) {
            if (!copy_dollar_quote(p, &matched) && !matched)
                p->pos++;
        } else if (is_ident_start(c)) {
            size_t start = p->pos;
            while (p->pos < p->len && is_ident_char((unsigned char)p->s[p->pos]))
                p->pos++;
            ok = depth || shape_word(sh, p, start);
        } else {
            ok = shape_punct(sh, p, &depth);
        }
    }
    return ok && !p->failed && !depth;
}

/* What may follow the tuple: nothing, or ON CONFLICT [target] DO NOTHING. */
static bool shape_tail_ok(const shape_t *sh)
{
    if (!sh->first_after[0])
        return true;
    return !strcmp(sh->first_after, "ON") && !strcmp(sh->second_last, "DO") &&
           !strcmp(sh->last_word, "NOTHING");
}

/* Appends the tuple once, its parameters shifted by @p shift. */
static void put_tuple(sbuf_t *b, const char *sql, const shape_t *sh, size_t shift)
{
    size_t pos = sh->tuple_start;
    char num[32];

    for (size_t i = 0; i < sh->nparams; i++) {
        size_t at = sh->param_at[i], end = at + 1;
        while (isdigit((unsigned char)sql[end]))
            end++;
        sb_put(b, sql + pos, at - pos);
        bl_fmt(num, sizeof(num), "$%zu", strtoul(sql + at + 1, NULL, 10) + shift);
        sb_put(b, num, strlen(num));
        pos = end;
    }
    sb_put(b, sql + pos, sh->tuple_end - pos);
}

char *bl_sqltmpl_multirow(const bl_sqltmpl_t *t, size_t rows)
{
    parser_t p = {.s = t->sql, .len = t->sql ? strlen(t->sql) : 0,
                  .dialect = BL_SQL_POSTGRES};
    shape_t sh = {0};
    sbuf_t b = {0};

    if (!rows || !t->sql || !shape_scan(&p, &sh) || !sh.tuple_end ||
        !shape_tail_ok(&sh) || sh.nparams == 0 || t->count * rows > 65535) {
        free(sh.param_at);
        free(p.out.p);
        return NULL;
    }
    free(p.out.p); /* the scanner's copies of quoted text: not needed */
    sb_put(&b, t->sql, sh.tuple_start);
    for (size_t r = 0; r < rows; r++) {
        if (r)
            sb_put(&b, ", ", 2);
        put_tuple(&b, t->sql, &sh, r * t->count);
    }
    sb_put(&b, t->sql + sh.tuple_end, strlen(t->sql + sh.tuple_end));
    free(sh.param_at);
    if (b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
