/*
 * sqlrows.c - which rewritten statements may run over many messages at once
 * (bl_sqltmpl_multirow, sqltmpl.h), and how: the grammar and why it is
 * safe are below; and which of them may run as a COPY (bl_sqltmpl_copy),
 * with COPY's text escaping.
 */
#include "sqltmpl.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

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
 *        {DO NOTHING | DO UPDATE SET name = set_elem, ...}]
 *
 *   elem    = operand {:: type}
 *   operand = $N | 'text' (also E'', B'', X'', N'', $tag$..$tag$) | number
 *           | -number | NULL | TRUE | FALSE | (elem) | CAST(elem AS type)
 *   type    = name[.name] [(number, ...)] [WITH[OUT] TIME ZONE] {[[number]]}
 *             (and DOUBLE PRECISION, CHARACTER / CHAR / NCHAR / BIT VARYING,
 *             NATIONAL CHARACTER [VARYING])
 *   set_elem = elem without $N, whose operand may also be EXCLUDED.name
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
 * DO UPDATE: its SET reads only the proposed row (EXCLUDED.name), literals
 * and casts of them, so each row's update is a function of its message and
 * of the one row it conflicts with. Rows of one statement with distinct
 * keys conflict with distinct rows, each one there before the statement,
 * as the earlier single-row statements (of other keys) left it. Two rows
 * with the same key are what differs: PostgreSQL refuses the statement
 * ("ON CONFLICT DO UPDATE command cannot affect row a second time", 21000)
 * where the single-row statements would update the row twice, in order.
 * So a statement of an upsert's rows ends before the first row whose key
 * one of its rows holds already (bl_sqlkey_span), which then opens the next
 * statement and wins, as in offset order. The key is read from the text
 * when the target is a list of plain column names of the column list
 * (bl_sqltmpl_key): the parameters of those columns' elements, equal when
 * their texts are (NULL equal to NULL: an index may be NULLS NOT DISTINCT).
 * Equal texts are the same key; unequal ones may still be (a cast, a
 * collation, ON CONSTRAINT), and then the 21000 fails the statement like
 * any failing many-row statement, and the batch runs again a statement a
 * message. A WHERE on DO UPDATE is left out (it may read the table, which
 * the rows of one statement see as it was before them), and so is a SET
 * that reads the table or calls a function.
 *
 * Outside the grammar, among others: DO UPDATE ... WHERE, a SET of another
 * form, RETURNING, WITH, INSERT ... SELECT, more than one tuple, DEFAULT
 * (leave the column out of the list instead: its default is then computed
 * row by row), operators and function calls, a parameter outside the tuple.
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
    TK_END,    /* the end of the statement, or of what could be scanned */
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
    size_t prev_end;               /* the end of the token before */
    size_t ntok;                   /* tokens scanned so far */
    size_t table_start, table_end; /* the table's name */
    size_t cols_start, cols_end;   /* the column list: "(" .. past ")", or 0, 0 */
    size_t ncols, nelems;          /* names in the column list, elements in the tuple */
    size_t tuple_start, tuple_end; /* the tuple: "(" .. past ")" */
    size_t *param_at;              /* offsets of the tuple's `$N` */
    size_t nparams;
    size_t *elem_param;            /* per element: the offset of its `$N`, or SIZE_MAX */
    size_t target_start, target_end; /* ON CONFLICT's "(" .. past ")", or 0, 0 */
    bool all_bare;      /* every element of the tuple is a lone `$N` */
    bool overriding;    /* OVERRIDING ... VALUE */
    bool conflict;      /* ON CONFLICT ... DO NOTHING or DO UPDATE */
    bool upsert;        /* ... DO UPDATE */
    bool in_set;        /* scanning DO UPDATE's SET: EXCLUDED.name, no `$N` */
    int depth;
} fold_t;

static tok_kind_t scan_number(parser_t *p)
{
    while (isdigit((unsigned char)bl_sql_peek(p, 0)))
        p->pos++;
    if (bl_sql_peek(p, 0) == '.')
        for (p->pos++; isdigit((unsigned char)bl_sql_peek(p, 0));)
            p->pos++;
    if ((bl_sql_peek(p, 0) == 'e' || bl_sql_peek(p, 0) == 'E') &&
        (isdigit((unsigned char)bl_sql_peek(p, 1)) ||
         ((bl_sql_peek(p, 1) == '+' || bl_sql_peek(p, 1) == '-') &&
          isdigit((unsigned char)bl_sql_peek(p, 2)))))
        for (p->pos += 2; isdigit((unsigned char)bl_sql_peek(p, 0));)
            p->pos++;
    /* 0x1F, 1_000, 12abc: not a number of this grammar. */
    return bl_sql_ident_char((unsigned char)bl_sql_peek(p, 0)) ? TK_OTHER : TK_NUMBER;
}

/* A word, or a string with a one-letter prefix (E'', B'', X'', N''). */
static tok_kind_t scan_word(parser_t *p)
{
    size_t start = p->pos;

    while (p->pos < p->len && bl_sql_ident_char((unsigned char)p->s[p->pos]))
        p->pos++;
    if (p->pos - start == 1 && bl_sql_peek(p, 0) == '\'' && strchr("eEbBxXnN", p->s[start]))
        return bl_sql_copy_quoted(p, '\'', bl_sql_escape_string(p), "string literal") ? TK_OTHER
                                                                          : TK_STRING;
    return TK_WORD;
}

static tok_kind_t scan_token(parser_t *p)
{
    unsigned char c;
    bool matched;

    if (p->failed)
        return TK_END; /* an unterminated quote: no further token (the scan fails) */
    if (p->pos >= p->len)
        return TK_END;
    c = (unsigned char)p->s[p->pos];
    if (bl_sql_ident_start(c))
        return scan_word(p);
    if (isdigit(c) || (c == '.' && isdigit((unsigned char)bl_sql_peek(p, 1))))
        return scan_number(p);
    switch (c) {
    case '\'':
        return bl_sql_copy_quoted(p, '\'', bl_sql_escape_string(p), "string literal") ? TK_OTHER
                                                                          : TK_STRING;
    case '"':
        return bl_sql_copy_quoted(p, '"', false, "quoted identifier") ? TK_OTHER : TK_QIDENT;
    case '$':
        if (isdigit((unsigned char)bl_sql_peek(p, 1))) {
            for (p->pos++; isdigit((unsigned char)bl_sql_peek(p, 0));)
                p->pos++;
            return TK_PARAM;
        }
        if (!bl_sql_copy_dollar_quote(p, &matched) && matched)
            return TK_STRING;
        break;
    case ':':
        if (bl_sql_peek(p, 1) != ':')
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
        if (bl_sql_comment_at(p, &end) <= 0)
            break;
        p->pos = end;
    }
    f->prev_end = f->end;
    f->start = p->pos;
    f->kind = scan_token(p);
    f->end = p->pos;
    f->ntok++;
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
        return !f->in_set && fold_param(f);
    if (f->in_set && accept_word(f, "EXCLUDED"))
        return accept_punct(f, '.') && fold_name(f);
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
    f->all_bare = true;
    fold_next(f);
    do {
        size_t tok = f->ntok, before = f->nparams;
        bool param = f->kind == TK_PARAM;
        size_t *ep = realloc(f->elem_param, (f->nelems + 1) * sizeof(*ep));
        if (!ep)
            return false; /* out of memory: no multi-row form */
        f->elem_param = ep;
        if (!fold_elem(f))
            return false;
        /* An element holds one operand: at most one `$N`. */
        ep[f->nelems] = f->nparams > before ? f->param_at[before] : SIZE_MAX;
        f->all_bare &= param && f->ntok == tok + 1;
        f->nelems++;
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
    f->target_start = f->start;
    do {
        if (f->kind == TK_END || f->kind == TK_PARAM)
            return false;
        depth += is_punct(f, '(');
        depth -= is_punct(f, ')');
        fold_next(f);
    } while (depth);
    f->target_end = f->prev_end;
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

/* DO UPDATE's SET name = set_elem, ...: nothing after it (no WHERE). */
static bool fold_set(fold_t *f)
{
    bool ok;

    if (!accept_word(f, "SET"))
        return false;
    f->in_set = true;
    do {
        ok = fold_name(f) && f->kind == TK_OTHER && f->p.s[f->start] == '=';
        if (ok) {
            fold_next(f);
            ok = fold_elem(f);
        }
    } while (ok && accept_punct(f, ','));
    f->in_set = false;
    return ok;
}

/* The grammar above, over the whole statement. */
static bool fold_statement(fold_t *f)
{
    if (!accept_word(f, "INSERT") || !accept_word(f, "INTO"))
        return false;
    f->table_start = f->start;
    if (!fold_qname(f, 3))
        return false;
    f->table_end = f->prev_end;
    if (accept_word(f, "AS") && !fold_name(f))
        return false;
    if (is_punct(f, '(')) {
        f->cols_start = f->start;
        fold_next(f);
        do {
            if (!fold_name(f))
                return false;
            f->ncols++;
        } while (accept_punct(f, ','));
        if (!is_punct(f, ')'))
            return false;
        f->cols_end = f->end;
        fold_next(f);
    }
    if (accept_word(f, "OVERRIDING")) {
        if (!((accept_word(f, "SYSTEM") || accept_word(f, "USER")) && accept_word(f, "VALUE")))
            return false;
        f->overriding = true;
    }
    if (!accept_word(f, "VALUES") || !fold_tuple(f))
        return false;
    if (accept_word(f, "ON")) {
        if (!(accept_word(f, "CONFLICT") && fold_conflict_target(f) && accept_word(f, "DO")))
            return false;
        if (accept_word(f, "UPDATE")) {
            if (!fold_set(f))
                return false;
            f->upsert = true;
        } else if (!accept_word(f, "NOTHING")) {
            return false;
        }
        f->conflict = true;
    }
    return f->kind == TK_END && !f->p.failed;
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
        bl_sqlbuf_put(b, sql + pos, at - pos);
        bl_fmt(num, sizeof(num), "$%zu", strtoul(sql + at + 1, NULL, 10) + shift);
        bl_sqlbuf_put(b, num, strlen(num));
        pos = end;
    }
    bl_sqlbuf_put(b, sql + pos, f->tuple_end - pos);
}

/* Scans @p t's statement into @p f; the caller frees f->param_at. */
static bool fold_parse(const bl_sqltmpl_t *t, fold_t *f)
{
    bool ok;

    *f = (fold_t){.p = {.s = t->sql, .len = t->sql ? strlen(t->sql) : 0,
                        .dialect = BL_SQL_POSTGRES}};
    if (!t->sql)
        return false;
    fold_next(f);
    ok = fold_statement(f);
    free(f->p.out.p); /* the scanner's copies of quoted text: not needed */
    f->p.out.p = NULL;
    return ok;
}

char *bl_sqltmpl_multirow(const bl_sqltmpl_t *t, size_t rows)
{
    fold_t f;
    sbuf_t b = {0};
    bool ok;

    if (!rows || !t->sql || (t->count && rows > 65535 / t->count))
        return NULL;
    ok = fold_parse(t, &f);
    if (ok) {
        bl_sqlbuf_put(&b, t->sql, f.tuple_start);
        for (size_t r = 0; r < rows; r++) {
            if (r)
                bl_sqlbuf_put(&b, ", ", 2);
            put_tuple(&b, t->sql, &f, r * t->count);
        }
        bl_sqlbuf_put(&b, t->sql + f.tuple_end, strlen(t->sql + f.tuple_end));
    }
    free(f.param_at);
    free(f.elem_param);
    if (!ok || b.oom) {
        free(b.p);
        return NULL;
    }
    return b.p;
}

/* ---- an upsert's conflict key ----------------------------------------------- */

/* A scanner over @p t's statement from @p pos, at its first token there. */
static void scan_from(const bl_sqltmpl_t *t, size_t pos, fold_t *g)
{
    *g = (fold_t){.p = {.s = t->sql, .pos = pos, .len = strlen(t->sql),
                        .dialect = BL_SQL_POSTGRES}};
    fold_next(g);
}

/* The current token as the name PostgreSQL sees: unquoted folded to lower
 * case, quoted without its quotes. @returns false if not a name, or too long. */
static bool token_name(const fold_t *g, char *out, size_t size)
{
    const char *s = g->p.s + g->start;
    size_t n = g->end - g->start, len = 0;
    bool quoted = g->kind == TK_QIDENT;

    if (g->kind != TK_WORD && !quoted)
        return false;
    for (size_t i = quoted; i < n - quoted; i++) {
        if (len + 1 >= size)
            return false;
        out[len++] = quoted ? s[i] : (char)tolower((unsigned char)s[i]);
        i += quoted && s[i] == '"'; /* "" is one quote */
    }
    out[len] = '\0';
    return true;
}

/* The position of the column named @p name in @p f's column list, or SIZE_MAX. */
static size_t column_at(const bl_sqltmpl_t *t, const fold_t *f, const char *name)
{
    char col[128];
    size_t at = SIZE_MAX;
    fold_t g;

    scan_from(t, f->cols_start, &g);
    fold_next(&g); /* past "(" */
    for (size_t j = 0; at == SIZE_MAX && token_name(&g, col, sizeof(col)); j++) {
        if (!strcmp(col, name))
            at = j;
        fold_next(&g);
        if (!accept_punct(&g, ','))
            break;
    }
    free(g.p.out.p);
    return at;
}

/* Fills k->param from ON CONFLICT's target when it is a list of plain
 * names of the column list. @returns whether it is. */
static bool key_params(const bl_sqltmpl_t *t, const fold_t *f, bl_sqlkey_t *k)
{
    char name[128];
    bool ok = f->target_end && f->cols_end;
    fold_t g;

    if (!ok)
        return false;
    scan_from(t, f->target_start, &g);
    fold_next(&g); /* past "(" */
    do {
        size_t col = token_name(&g, name, sizeof(name)) ? column_at(t, f, name) : SIZE_MAX;
        size_t at = col < f->nelems ? f->elem_param[col] : SIZE_MAX;
        ok = col < f->nelems && (at == SIZE_MAX || k->n < BL_SQLKEY_MAX);
        if (ok && at != SIZE_MAX)
            k->param[k->n++] = strtoul(t->sql + at + 1, NULL, 10) - 1;
        fold_next(&g);
    } while (ok && accept_punct(&g, ','));
    ok = ok && is_punct(&g, ')') && g.end == f->target_end;
    free(g.p.out.p);
    return ok;
}

int bl_sqltmpl_key(const bl_sqltmpl_t *t, bl_sqlkey_t *out)
{
    fold_t f;
    bool ok = fold_parse(t, &f);

    *out = (bl_sqlkey_t){.upsert = ok && f.upsert};
    if (out->upsert && !(out->known = key_params(t, &f, out)))
        out->n = 0;
    free(f.param_at);
    free(f.elem_param);
    return ok ? 0 : -1;
}

/*
 * COPY ... FROM STDIN writes rows as the folded INSERT does when nothing but
 * the column's own input function stands between a message's bytes and the
 * stored value. With a lone `$N` as the element, the server types the
 * parameter as the column (postgres.c checks that it did) and parses the
 * text parameter with that type's input function, as COPY parses its field.
 * A literal or a cast converts differently: '2.5' into a bigint column is
 * rounded by INSERT and refused by COPY; `:value::jsonb::text` stores
 * normalised JSON. ON CONFLICT has no COPY form; OVERRIDING changes what an
 * identity column gets, and COPY always writes the given value. Without a
 * column list INSERT fills the first columns and COPY expects all of them.
 */
static const char *copy_refusal(const fold_t *f)
{
    if (f->conflict)
        return "ON CONFLICT (COPY has none)";
    if (f->overriding)
        return "OVERRIDING ... VALUE";
    if (!f->cols_end)
        return "no column list";
    if (!f->all_bare)
        return "a tuple element is not a lone placeholder (a literal or cast converts "
               "otherwise than COPY)";
    if (f->ncols != f->nelems)
        return "the column list and the tuple differ in length";
    return NULL;
}

/* The parameter index of each element of the tuple, into c->param. */
static bool copy_params(const bl_sqltmpl_t *t, const fold_t *f, bl_sqlcopy_t *c)
{
    if (!(c->param = calloc(f->nparams ? f->nparams : 1, sizeof(*c->param))))
        return false;
    for (size_t i = 0; i < f->nparams; i++)
        c->param[i] = strtoul(t->sql + f->param_at[i] + 1, NULL, 10) - 1;
    c->ncols = f->nparams;
    return true;
}

int bl_sqltmpl_copy(const bl_sqltmpl_t *t, bl_sqlcopy_t *out, char *why, size_t whysize)
{
    fold_t f;
    sbuf_t b = {0}, table = {0}, cols = {0};
    const char *refused = NULL;
    bool oom = false;

    *out = (bl_sqlcopy_t){0};
    if (!fold_parse(t, &f))
        refused = "not INSERT INTO t (columns) VALUES (placeholders)";
    else if (!(refused = copy_refusal(&f))) {
        bl_sqlbuf_put(&b, "COPY ", 5);
        bl_sqlbuf_put(&b, t->sql + f.table_start, f.table_end - f.table_start);
        bl_sqlbuf_put(&b, " ", 1);
        bl_sqlbuf_put(&b, t->sql + f.cols_start, f.cols_end - f.cols_start);
        bl_sqlbuf_put(&b, " FROM STDIN", 11);
        bl_sqlbuf_put(&table, t->sql + f.table_start, f.table_end - f.table_start);
        bl_sqlbuf_put(&cols, t->sql + f.cols_start + 1, f.cols_end - f.cols_start - 2);
        out->sql = b.p;
        out->table = table.p;
        out->columns = cols.p;
        if ((oom = b.oom || table.oom || cols.oom || !copy_params(t, &f, out)))
            refused = "out of memory";
    }
    free(f.param_at);
    free(f.elem_param);
    if (!refused)
        return 0;
    bl_sqlcopy_free(out);
    bl_fmt(why, whysize, "%s", refused);
    return oom ? -2 : -1;
}

void bl_sqlcopy_free(bl_sqlcopy_t *c)
{
    if (!c)
        return;
    free(c->sql);
    free(c->table);
    free(c->columns);
    free(c->param);
    *c = (bl_sqlcopy_t){0};
}

void bl_sqlcopy_field(sbuf_t *b, const char *s, size_t len)
{
    size_t from = 0;

    if (!s) {
        bl_sqlbuf_put(b, "\\N", 2);
        return;
    }
    for (size_t i = 0; i < len; i++) {
        const char *esc = s[i] == '\\' ? "\\\\" : s[i] == '\t' ? "\\t"
                          : s[i] == '\n' ? "\\n" : s[i] == '\r' ? "\\r" : NULL;
        if (!esc)
            continue;
        bl_sqlbuf_put(b, s + from, i - from);
        bl_sqlbuf_put(b, esc, 2);
        from = i + 1;
    }
    bl_sqlbuf_put(b, s + from, len - from);
}
