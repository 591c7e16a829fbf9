/*
 * sqlscan.c - the SQL scanner shared by sqltmpl.c and sqlrows.c (see
 * sqlscan.h): quotes, comments and dollar quotes of both dialects.
 */
#include "sqlscan.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void bl_sqlbuf_put(sbuf_t *b, const char *s, size_t n)
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

bool bl_sql_ident_start(unsigned char c)
{
    return isalpha(c) || c == '_' || c >= 0x80;
}

/* Characters that continue an identifier or number: a parameter written
 * right after one would merge with it (PostgreSQL even allows `$` inside
 * identifiers), so the rewrite puts a space in between. */
bool bl_sql_ident_char(unsigned char c)
{
    return isalnum(c) || c == '_' || c == '$' || c >= 0x80;
}

int bl_sql_fail(parser_t *p, const char *fmt, ...)
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
void bl_sql_copy_to(parser_t *p, size_t end)
{
    bl_sqlbuf_put(&p->out, p->s + p->pos, end - p->pos);
    p->pos = end;
}

char bl_sql_peek(const parser_t *p, size_t ahead)
{
    return p->pos + ahead < p->len ? p->s[p->pos + ahead] : '\0';
}

char bl_sql_prev_char(const parser_t *p)
{
    return p->pos ? p->s[p->pos - 1] : '\0';
}

/* A PostgreSQL E'...' string: the quote follows a lone E, and backslash
 * escapes (E'it\'s') must not end it early. */
bool bl_sql_escape_string(const parser_t *p)
{
    if (p->dialect != BL_SQL_POSTGRES || p->pos == 0)
        return false;
    if (p->s[p->pos - 1] != 'E' && p->s[p->pos - 1] != 'e')
        return false;
    return p->pos == 1 || !bl_sql_ident_char((unsigned char)p->s[p->pos - 2]);
}

/* Copies a quoted run ('..', "..", `..`) where a doubled quote is an
 * escaped quote, and with @p backslash, a backslash escapes any char. */
int bl_sql_copy_quoted(parser_t *p, char close, bool backslash, const char *what)
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
        return bl_sql_fail(p, "unterminated %s starting at character %zu", what, start + 1);
    bl_sql_copy_to(p, i + 1);
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
        return bl_sql_fail(p, "unterminated /* comment starting at character %zu",
                    p->pos + 1);
    *endp = i;
    return 0;
}

/* If pos starts a comment, sets *endp past it and returns 1; 0 if not,
 * -1 on an unterminated comment (*endp is pos then). */
int bl_sql_comment_at(parser_t *p, size_t *endp)
{
    *endp = p->pos;
    if (bl_sql_peek(p, 0) == '-' && bl_sql_peek(p, 1) == '-') {
        *endp = line_comment_end(p);
        return 1;
    }
    if (bl_sql_peek(p, 0) == '/' && bl_sql_peek(p, 1) == '*')
        return block_comment_end(p, endp) ? -1 : 1;
    return 0;
}

/* PostgreSQL $tag$...$tag$ (tag empty or an identifier without `$`). */
int bl_sql_copy_dollar_quote(parser_t *p, bool *matched)
{
    size_t i = p->pos + 1, taglen;
    const char *close;

    *matched = false;
    if (i < p->len && bl_sql_ident_start((unsigned char)p->s[i]))
        for (i++; i < p->len && bl_sql_ident_char((unsigned char)p->s[i]) &&
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
            return bl_sql_fail(p, "unterminated dollar-quoted string %.*s starting at "
                           "character %zu",
                        (int)taglen, p->s + p->pos, p->pos + 1);
        if (!memcmp(close, p->s + p->pos, taglen))
            break;
        close++;
    }
    bl_sql_copy_to(p, (size_t)(close - p->s) + taglen);
    return 0;
}

