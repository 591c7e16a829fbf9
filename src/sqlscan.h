/*
 * sqlscan.h - the SQL scanner that sqltmpl.c (placeholders) and sqlrows.c
 * (many rows in one statement) share: the dialects, quotes, comments and
 * dollar quotes of both, and a growable output string. Internal.
 */
#ifndef BALLAST_SQLSCAN_H
#define BALLAST_SQLSCAN_H

#include "shared/util.h"

#include <stdbool.h>
#include <stddef.h>

/** The SQL dialects, with what tells them apart here. */
typedef enum bl_sql_dialect {
    BL_SQL_SQLITE,  /* `?N` parameters; '' strings, "" / [] / `` identifiers */
    BL_SQL_POSTGRES /* `$N` parameters; also $tag$ quotes, E'' strings,
                       nested block comments */
} bl_sql_dialect_t;

struct bl_sqltmpl;

/** A growable output string; oom is sticky. */
typedef struct sbuf {
    char *p;
    size_t len, cap;
    bool oom;
} sbuf_t;

/** Appends @p n bytes of @p s (kept NUL-terminated). */
void bl_sqlbuf_put(sbuf_t *b, const char *s, size_t n);

/** A statement being scanned (and, by sqltmpl.c, rewritten into out). */
typedef struct parser {
    const char *s;
    size_t pos, len;
    bl_sql_dialect_t dialect;
    sbuf_t out;
    struct bl_sqltmpl *t; /* what sqltmpl.c fills in */
    char *err;
    size_t errsize;
    bool failed;
} parser_t;

/** Whether @p c may start an identifier. */
bool bl_sql_ident_start(unsigned char c);
/** Characters that continue an identifier or number: a parameter written
 *  right after one would merge with it (PostgreSQL even allows `$` inside
 *  identifiers), so the rewrite puts a space in between. */
bool bl_sql_ident_char(unsigned char c);
/** Records a failure (the message into p->err). @returns -1. */
int bl_sql_fail(parser_t *p, const char *fmt, ...) BL_PRINTF(2, 3);
/** Copies s[pos, end) to the output and moves past it. */
void bl_sql_copy_to(parser_t *p, size_t end);
/** The character @p ahead of pos, or NUL past the end. */
char bl_sql_peek(const parser_t *p, size_t ahead);
/** The character before pos, or NUL at the start. */
char bl_sql_prev_char(const parser_t *p);
/** Whether the quote at pos opens a PostgreSQL E'...' string: it follows a
 *  lone E, and backslash escapes (E'it\'s') must not end it early. */
bool bl_sql_escape_string(const parser_t *p);
/** Copies a quoted run ('..', "..", `..`) where a doubled quote is an
 *  escaped quote, and with @p backslash, a backslash escapes any char.
 *  @returns 0, or -1 when unterminated (failed, naming @p what). */
int bl_sql_copy_quoted(parser_t *p, char close, bool backslash, const char *what);
/** If pos starts a comment, sets *endp past it and returns 1; 0 if not,
 *  -1 on an unterminated comment (*endp is pos then). */
int bl_sql_comment_at(parser_t *p, size_t *endp);
/** At a `$`: copies a PostgreSQL $tag$...$tag$ string (tag empty or an
 *  identifier without `$`), setting *matched when it is one. @returns 0, or
 *  -1 when unterminated (failed). */
int bl_sql_copy_dollar_quote(parser_t *p, bool *matched);

#endif
