/* sqltmpl.c - rewrites :named placeholders into positional parameters, skipping quotes, comments and casts; and which statements may run over many messages at once. */
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
 * A batch runs as one statement over many messages (a tuple each) only
 * when that statement is sure to write what the single-row statements, run
 * one after another in the same transaction, would. The test is a
 * whitelist grammar over the rewritten statement; anything outside it runs
 * one statement a message:
 *
 *   INSERT INTO name[.name[.name]] [AS name] [(name, ...)]
 *       [OVERRIDING {SYSTEM | USER} VALUE]
 *       VALUES (elem, ...)
 *       [ON CONFLICT [(target) [WHERE predicate] | ON CONSTRAINT name]
 *        DO NOTHING]
 *
 *   elem    = operand {:: type}
 *   operand = $N | 'text' (also E'', B'', X'', N'', $tag$..$tag$) | number
 *           | -number | NULL | TRUE | FALSE | (elem) | CAST(elem AS type)
 *   type    = name[.name] [(number, ...)] [WITH[OUT] TIME ZONE] {[[number]]}
 *             (and DOUBLE PRECISION, CHARACTER / CHAR / NCHAR / BIT VARYING,
 *             NATIONAL CHARACTER [VARYING])
 *
 * Why that is equivalent. Each row's values are a function of its own
 * message alone: the tuple reads no table (every row of one statement reads
 * the statement's one snapshot, so a subquery counting or summing earlier
 * rows would see none of the batch's), and calls no function (now(),
 * nextval(), random() or a user's function may depend on time, on order or
 * on what earlier rows wrote); a cast only converts its operand. PostgreSQL
 * inserts the rows of a VALUES list in order and checks each row's NOT NULL,
 * CHECK and (non-deferrable) unique constraints as it inserts it; a failed
 * many-row statement is run again a statement a message, which pins the
 * failure on its message. DO NOTHING skips a row that conflicts with one
 * already there, an earlier row of the same statement included, as that
 * row's own statement would. The conflict target and its WHERE hold no
 * parameter: they only pick the arbiter index, the same one for every row.
 *
 * Outside the grammar, among others: DO UPDATE (two rows of one statement
 * with the same key are an error, "cannot affect row a second time", and
 * its SET may read the table), RETURNING, WITH, INSERT ... SELECT, more than
 * one tuple, DEFAULT (leave the column out of the list instead: its default
 * is then computed row by row), operators and function calls, a parameter
 * outside the tuple.
 *
 * What no statement text shows is the table's triggers, rules, foreign keys,
 * column defaults and domain checks. Column defaults and row-level BEFORE
 * triggers run row by row, and when volatile they see the statement's
 * earlier rows, as separate statements would. Row-level AFTER triggers,
 * foreign key checks among them, run when the statement ends, so they see
 * all of its rows; statement-level triggers fire once a statement. A user
 * whose AFTER trigger reads the table it fires on needs processing =
 * message (docs/design.md, "Database batches").
 */

typedef enum tok_kind {
    TK_END,    /* the end of the statement */
    TK_WORD,   /* a keyword or an unquoted identifier */
    TK_QIDENT, /* "quoted identifier" */
    TK_STRING, /* '..', E'..', B'..', X'..', N'..', $tag$..$tag$ */
    TK_NUMBER, /* 12, 1.5, .5e3 */
    TK_PARAM,  /* $N */
    TK_CAST,   /* :: */
    TK_PUNCT,  /* one of ( ) , . [ ] */
    TK_OTHER   /* an operator or anything else: never part of the grammar */
} tok_kind_t;

#define FOLD_MAX_DEPTH 32 /* nested parentheses in one element */

typedef struct fold {
    parser_t p;                    /* the scanner over the rewritten SQL */
    tok_kind_t kind;               /* the current token, */
    size_t start, end;             /* ... s[start, end) */
    size_t tuple_start, tuple_end; /* the tuple: "(" .. past ")" */
    size_t *param_at;              /* offsets of the tuple's `$N` */
    size_t nparams;
    int depth;
} fold_t;

static tok_kind_t scan_number(parser_t *p)
{
    while (isdigit((unsigned char)peek(p, 0)))
        p->pos++;
    if (peek(p, 0) == '.')
        for (p->pos++; isdigit((unsigned char)peek(p, 0));)
            p->pos++;
    if ((peek(p, 0) == 'e' || peek(p, 0) == 'E') &&
        (isdigit((unsigned char)peek(p, 1)) ||
         ((peek(p, 1) == '+' || peek(p, 1) == '-') && isdigit((unsigned char)peek(p, 2)))))
        for (p->pos += 2; isdigit((unsigned char)peek(p, 0));)
            p->pos++;
    /* 0x1F, 1_000, 12abc: not a number of this grammar. */
    return is_ident_char((unsigned char)peek(p, 0)) ? TK_OTHER : TK_NUMBER;
}

/* A word, or a string with a one-letter prefix (E'', B'', X'', N''). */
static tok_kind_t scan_word(parser_t *p)
{
    size_t start = p->pos;

    while (p->pos < p->len && is_ident_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos - start == 1 && peek(p, 0) == '\'' && strchr("eEbBxXnN", p->s[start]))
        return copy_quoted(p, '\'', is_escape_string(p), "string literal") ? TK_OTHER
                                                                          : TK_STRING;
    return TK_WORD;
}

static tok_kind_t scan_token(parser_t *p)
{
    unsigned char c;
    bool matched;

    if (p->failed)
        return TK_OTHER;
    if (p->pos >= p->len)
        return TK_END;
    c = (unsigned char)p->s[p->pos];
    if (is_ident_start(c))
        return scan_word(p);
    if (isdigit(c) || (c == '.' && isdigit((unsigned char)peek(p, 1))))
        return scan_number(p);
    switch (c) {
    case '\'':
        return copy_quoted(p, '\'', is_escape_string(p), "string literal") ? TK_OTHER
                                                                          : TK_STRING;
    case '"':
        return copy_quoted(p, '"', false, "quoted identifier") ? TK_OTHER : TK_QIDENT;
    case '$':
        if (isdigit((unsigned char)peek(p, 1))) {
            for (p->pos++; isdigit((unsigned char)peek(p, 0));)
                p->pos++;
            return TK_PARAM;
        }
        if (!copy_dollar_quote(p, &matched) && matched)
            return TK_STRING;
        break;
    case ':':
        if (peek(p, 1) != ':')
            break;
        p->pos += 2;
        return TK_CAST;
    case '(':
    case ')':
    case ',':
    case '.':
    case '[':
    case ']':
        p->pos++;
        return TK_PUNCT;
    default:
        break;
    }
    p->pos++;
    return TK_OTHER;
}

/* Moves to the next token, past blanks and comments. */
static void fold_next(fold_t *f)
{
    parser_t *p = &f->p;
    size_t end;

    for (;;) {
        while (p->pos < p->len && isspace((unsigned char)p->s[p->pos]))
            p->pos++;
        if (comment_at(p, &end) <= 0)
            break;
        p->pos = end;
    }
    f->start = p->pos;
    f->kind = scan_token(p);
    f->end = p->pos;
}

static bool is_word(const fold_t *f, const char *word)
{
    size_t n = f->end - f->start;

    return f->kind == TK_WORD && strlen(word) == n &&
           !strncasecmp(f->p.s + f->start, word, n);
}

static bool is_punct(const fold_t *f, char c)
{
    return f->kind == TK_PUNCT && f->p.s[f->start] == c;
}

static bool accept_word(fold_t *f, const char *word)
{
    if (!is_word(f, word))
        return false;
    fold_next(f);
    return true;
}

static bool accept_punct(fold_t *f, char c)
{
    if (!is_punct(f, c))
        return false;
    fold_next(f);
    return true;
}

static bool accept_kind(fold_t *f, tok_kind_t kind)
{
    if (f->kind != kind)
        return false;
    fold_next(f);
    return true;
}

static bool fold_name(fold_t *f)
{
    return accept_kind(f, TK_WORD) || accept_kind(f, TK_QIDENT);
}

/* name[.name ...], at most @p parts of them. */
static bool fold_qname(fold_t *f, int parts)
{
    if (!fold_name(f))
        return false;
    while (--parts && accept_punct(f, '.'))
        if (!fold_name(f))
            return false;
    return true;
}

/* (number, ...) after a type name, if there. */
static bool fold_typmods(fold_t *f)
{
    if (!accept_punct(f, '('))
        return true;
    do {
        if (!accept_kind(f, TK_NUMBER))
            return false;
    } while (accept_punct(f, ','));
    return accept_punct(f, ')');
}

static bool fold_type(fold_t *f)
{
    bool zoned = is_word(f, "TIME") || is_word(f, "TIMESTAMP");
    bool varying = is_word(f, "CHARACTER") || is_word(f, "CHAR") ||
                   is_word(f, "NCHAR") || is_word(f, "BIT");

    if (accept_word(f, "DOUBLE")) {
        if (!accept_word(f, "PRECISION"))
            return false;
    } else if (accept_word(f, "NATIONAL")) {
        if (!accept_word(f, "CHARACTER") && !accept_word(f, "CHAR"))
            return false;
        varying = true;
    } else if (!fold_qname(f, 2)) {
        return false;
    }
    if (varying)
        accept_word(f, "VARYING");
    if (!fold_typmods(f))
        return false;
    if (zoned && (accept_word(f, "WITH") || accept_word(f, "WITHOUT")) &&
        !(accept_word(f, "TIME") && accept_word(f, "ZONE")))
        return false;
    while (accept_punct(f, '[')) {
        accept_kind(f, TK_NUMBER);
        if (!accept_punct(f, ']'))
            return false;
    }
    return true;
}

static bool fold_param(fold_t *f)
{
    size_t *at = realloc(f->param_at, (f->nparams + 1) * sizeof(*at));

    if (!at)
        return false; /* out of memory: no multi-row form */
    f->param_at = at;
    at[f->nparams++] = f->start;
    fold_next(f);
    return true;
}

static bool fold_elem(fold_t *f);

static bool fold_operand(fold_t *f)
{
    if (f->kind == TK_PARAM)
        return fold_param(f);
    if (accept_kind(f, TK_STRING) || accept_kind(f, TK_NUMBER) || accept_word(f, "NULL") ||
        accept_word(f, "TRUE") || accept_word(f, "FALSE"))
        return true;
    if (f->kind == TK_OTHER && f->end - f->start == 1 && f->p.s[f->start] == '-') {
        fold_next(f); /* a negative number is a constant, not an operator call */
        return accept_kind(f, TK_NUMBER);
    }
    if (accept_punct(f, '('))
        return fold_elem(f) && accept_punct(f, ')');
    return accept_word(f, "CAST") && accept_punct(f, '(') && fold_elem(f) &&
           accept_word(f, "AS") && fold_type(f) && accept_punct(f, ')');
}

static bool fold_elem(fold_t *f)
{
    bool ok = ++f->depth <= FOLD_MAX_DEPTH && fold_operand(f);

    while (ok && accept_kind(f, TK_CAST))
        ok = fold_type(f);
    f->depth--;
    return ok;
}

static bool fold_tuple(fold_t *f)
{
    if (!is_punct(f, '('))
        return false;
    f->tuple_start = f->start;
    fold_next(f);
    do {
        if (!fold_elem(f))
            return false;
    } while (accept_punct(f, ','));
    if (!is_punct(f, ')'))
        return false;
    f->tuple_end = f->end;
    fold_next(f);
    return true;
}

/* ON CONFLICT's target, up to DO: ON CONSTRAINT name, or a parenthesised
 * index inference with an optional WHERE. Its tokens are not checked one
 * by one (index expressions and predicates can only be immutable), but it
 * may hold no parameter, which would be row 0's alone. */
static bool fold_conflict_target(fold_t *f)
{
    size_t depth = 0;

    if (accept_word(f, "ON"))
        return accept_word(f, "CONSTRAINT") && fold_name(f);
    if (!is_punct(f, '('))
        return true; /* no target: any conflict */
    do {
        if (f->kind == TK_END || f->kind == TK_PARAM)
            return false;
        depth += is_punct(f, '(');
        depth -= is_punct(f, ')');
        fold_next(f);
    } while (depth);
    if (!accept_word(f, "WHERE"))
        return true;
    while (depth || !is_word(f, "DO")) {
        if (f->kind == TK_END || f->kind == TK_PARAM || (!depth && is_punct(f, ')')))
            return false;
        depth += is_punct(f, '(');
        depth -= is_punct(f, ')');
        fold_next(f);
    }
    return true;
}

/* The grammar above, over the whole statement. */
static bool fold_statement(fold_t *f)
{
    if (!accept_word(f, "INSERT") || !accept_word(f, "INTO") || !fold_qname(f, 3))
        return false;
    if (accept_word(f, "AS") && !fold_name(f))
        return false;
    if (accept_punct(f, '(')) {
        do {
            if (!fold_name(f))
                return false;
        } while (accept_punct(f, ','));
        if (!accept_punct(f, ')'))
            return false;
    }
    if (accept_word(f, "OVERRIDING") &&
        !((accept_word(f, "SYSTEM") || accept_word(f, "USER")) && accept_word(f, "VALUE")))
        return false;
    if (!accept_word(f, "VALUES") || !fold_tuple(f))
        return false;
    if (accept_word(f, "ON") &&
        !(accept_word(f, "CONFLICT") && fold_conflict_target(f) && accept_word(f, "DO") &&
          accept_word(f, "NOTHING")))
        return false;
    return f->kind == TK_END;
}

/* Appends the tuple once, its parameters shifted by @p shift. */
static void put_tuple(sbuf_t *b, const char *sql, const fold_t *f, size_t shift)
{
    size_t pos = f->tuple_start;
    char num[32];

    for (size_t i = 0; i < f->nparams; i++) {
        size_t at = f->param_at[i], end = at + 1;
        while (isdigit((unsigned char)sql[end]))
            end++;
        sb_put(b, sql + pos, at - pos);
        bl_fmt(num, sizeof(num), "$%zu", strtoul(sql + at + 1, NULL, 10) + shift);
        sb_put(b, num, strlen(num));
        pos = end;
    }
    sb_put(b, sql + pos, f->tuple_end - pos);
}

char *bl_sqltmpl_multirow(const bl_sqltmpl_t *t, size_t rows)
{
    fold_t f = {.p = {.s = t->sql, .len = t->sql ? strlen(t->sql) : 0,
                      .dialect = BL_SQL_POSTGRES}};
    sbuf_t b = {0};
    bool ok;

    if (!rows || !t->sql || (t->count && rows > 65535 / t->count))
        return NULL;
    fold_next(&f);
    ok = fold_statement(&f);
    free(f.p.out.p); /* the scanner's copies of quoted text: not needed */
    if (ok) {
        sb_put(&b, t->sql, f.tuple_start);
        for (size_t r = 0; r < rows; r++) {
            if (r)
                sb_put(&b, ", ", 2);
            put_tuple(&b, t->sql, &f, r * t->count);
        }
        sb_put(&b, t->sql + f.tuple_end, strlen(t->sql + f.tuple_end));
    }
    free(f.param_at);
    if (!ok || b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
