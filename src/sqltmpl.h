/* sqltmpl.h - parses a user's SQL statement with named placeholders into positional-parameter SQL. */
#ifndef BALLAST_SQLTMPL_H
#define BALLAST_SQLTMPL_H

/*
 * The `sqlite` and `postgres` handlers run one user statement per message.
 * Users write named placeholders (`:topic :partition :offset :key :value
 * :timestamp :header.NAME`); this module rewrites them into the dialect's
 * positional parameters (`?1` for SQLite, `$1` for PostgreSQL) so that
 * message data is always bound, never spliced into SQL text.
 *
 * Pure: no librdkafka, SQLite or libpq; only the public message accessors.
 */

#include "ballast/ballast.h"
#include "sqlscan.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What a positional parameter is bound to. */
typedef enum bl_param_kind {
    BL_PARAM_TOPIC,
    BL_PARAM_PARTITION,
    BL_PARAM_OFFSET,
    BL_PARAM_KEY,
    BL_PARAM_VALUE,
    BL_PARAM_TIMESTAMP,
    BL_PARAM_HEADER
} bl_param_kind_t;

/** One distinct parameter; params[i] is `?{i+1}` / `${i+1}`. */
typedef struct bl_param {
    bl_param_kind_t kind;
    char *header; /* BL_PARAM_HEADER: the header name (owned); else NULL */
} bl_param_t;

/** A parsed statement. Owns everything it points to. */
typedef struct bl_sqltmpl {
    char *sql;          /* rewritten text, positional parameters, no `;` */
    bl_param_t *params; /* distinct parameters in order of first use */
    size_t count;
} bl_sqltmpl_t;


/**
 * Parses @p sql into @p out (which the caller later releases with
 * bl_sqltmpl_free(), also after a failure).
 *
 * Text inside string literals, quoted identifiers, comments and (PostgreSQL)
 * dollar quotes is copied untouched; `::` is a cast, never a placeholder.
 * Errors (returns -1, one line in @p errbuf, without the key name so the
 * caller can prefix it): an unknown placeholder (the message names it and
 * lists the valid ones), more than one statement, an empty statement, an
 * unterminated quote or comment, and the dialect's own parameter syntax
 * (`?`, `$1`, `@x`), which ballast would never bind.
 *
 * @returns 0 on success, -1 on error. Thread-safe (no shared state).
 */
int bl_sqltmpl_parse(const char *sql, bl_sql_dialect_t dialect,
                     bl_sqltmpl_t *out, char *errbuf, size_t errsize);

/** Releases what @p t owns and zeroes it. NULL is a no-op. */
void bl_sqltmpl_free(bl_sqltmpl_t *t);

/** The placeholder text of a parameter (":value", ":header.x-id") into @p buf. */
void bl_sqltmpl_param_name(const bl_param_t *param, char *buf, size_t size);

/**
 * The value of one parameter for one message. @p data NULL means SQL NULL
 * (missing key, tombstone value, missing or null header, timestamp -1).
 * Integer kinds (partition, offset, timestamp) set @p is_int and @p i, and
 * also their decimal text in @p num, which @p data then points to: so the
 * struct must not be copied after bl_sqltmpl_value() fills it.
 * Other kinds point into the message, valid while the message is.
 */
typedef struct bl_sqlval {
    const void *data;
    size_t len;
    bool is_int;
    int64_t i;
    char num[24];
} bl_sqlval_t;

/** Fills @p out for @p param of @p msg. Never fails. Thread-safe per message. */
void bl_sqltmpl_value(const bl_param_t *param, const ballast_message_t *msg,
                      bl_sqlval_t *out);

/**
 * The statement over @p rows messages at once, for a PostgreSQL statement
 * that writes the same rows this way as run once per message in order: the
 * tuple repeated @p rows times, row r's parameters renumbered from
 * r * count + 1. That is `INSERT INTO name [(columns)] VALUES (tuple)`,
 * optionally followed by `ON CONFLICT [target] DO NOTHING` or `DO UPDATE
 * SET name = value, ...` (each value EXCLUDED.name, a literal or a cast of
 * one), where every element of the tuple is a parameter, a literal or a
 * cast of one of those (the grammar, and why it is equivalent, are in
 * sqlrows.c). For DO UPDATE this holds only for rows of distinct keys: see
 * bl_sqlkey_span(). Statement-level triggers fire once for all the rows,
 * and row-level AFTER triggers (foreign key checks too) when all of them
 * are in.
 *
 * @returns the text (the caller frees it), or NULL for any other statement
 * (a subquery, function call or operator in the tuple, DEFAULT, WITH,
 * RETURNING, DO UPDATE ... WHERE or reading the table, INSERT ... SELECT,
 * more than one tuple, a parameter outside the tuple), if @p rows times
 * count exceeds PostgreSQL's 65535 parameters, or out of memory.
 * Thread-safe.
 */
char *bl_sqltmpl_multirow(const bl_sqltmpl_t *t, size_t rows);

#define BL_SQLKEY_MAX 8        /* key columns read from a conflict target */
#define BL_SQLKEY_SPAN_MAX 128 /* the longest span bl_sqlkey_span() cuts */

/** What the rows of one many-row statement must not share. */
typedef struct bl_sqlkey {
    bool upsert; /* ON CONFLICT ... DO UPDATE: two rows of one statement with
                    the same key are an error (SQLSTATE 21000) */
    bool known;  /* ... and its key is read from the text: param[0 .. n) */
    size_t n;    /* 0 when known: every row has the same key (literals) */
    size_t param[BL_SQLKEY_MAX]; /* the key's parameters (indexes into params) */
} bl_sqlkey_t;

/**
 * For a statement that bl_sqltmpl_multirow() folds: whether it is an upsert,
 * and its conflict key when the target is a list of plain names of the
 * column list (then the key is the parameters of those columns' elements).
 * @returns 0 with @p out filled, or -1 (out zeroed) for a statement with no
 * multi-row form. Thread-safe.
 */
int bl_sqltmpl_key(const bl_sqltmpl_t *t, bl_sqlkey_t *out);

/**
 * How many of the messages msgs[idx[0 .. n)], in that order, may go into one
 * many-row statement: for an upsert with a known key, the rows before the
 * first whose key texts equal those of an earlier one (NULL equal to NULL),
 * at most BL_SQLKEY_SPAN_MAX; otherwise @p n. At least 1 when @p n is.
 * Keys equal but written differently (`'01'` and `'1'` into an integer) are
 * not seen here: PostgreSQL then refuses the statement (21000). Thread-safe.
 */
size_t bl_sqlkey_span(const bl_sqlkey_t *k, const bl_sqltmpl_t *t,
                      const ballast_message_t *const *msgs, const size_t *idx, size_t n);

/** A statement's batches as COPY: see bl_sqltmpl_copy(). Owns its fields. */
typedef struct bl_sqlcopy {
    char *sql;     /* "COPY table (columns) FROM STDIN" */
    char *table;   /* the table's name as the statement wrote it */
    char *columns; /* its column list, without the parentheses */
    size_t *param; /* per column: the index of its parameter in the template */
    size_t ncols;
} bl_sqlcopy_t;

/**
 * The COPY that writes a batch's rows as bl_sqltmpl_multirow()'s statement
 * would, for a statement of its grammar without ON CONFLICT or OVERRIDING,
 * with a column list, and with a lone placeholder as every element of the
 * tuple (why, in sqlrows.c). What the text does not show is the server's
 * to check (postgres.c): that each parameter is typed as its column, and
 * that the table is a plain one without rules or row-level security.
 * @returns 0 with @p out filled (bl_sqlcopy_free() it), or -1 with why not
 * in @p why (one line), -2 when out of memory. Thread-safe.
 */
int bl_sqltmpl_copy(const bl_sqltmpl_t *t, bl_sqlcopy_t *out, char *why, size_t whysize);

/** Releases what @p c owns and zeroes it. NULL is a no-op. */
void bl_sqlcopy_free(bl_sqlcopy_t *c);

/** Appends one field of COPY's text format: @p s NULL is SQL NULL (`\N`);
 *  otherwise its @p len bytes with backslash, tab, newline and carriage
 *  return escaped. */
void bl_sqlcopy_field(sbuf_t *b, const char *s, size_t len);

#endif /* BALLAST_SQLTMPL_H */
