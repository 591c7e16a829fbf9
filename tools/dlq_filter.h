/*
 * dlq_filter.h - the --where expressions of `ballast dlq`: conditions on a
 * dead-letter record joined with AND and OR, parsed into a tree and judged
 * through a callback that tests one condition. Pure: no Kafka, no I/O.
 *
 * Grammar (AND binds tighter than OR; parentheses group):
 *   expr      := conj ( OR conj )*
 *   conj      := operand ( AND operand )*
 *   operand   := "(" expr ")" | condition
 *   condition := header:NAME=VALUE | header:NAME | error~TEXT | error=TEXT
 *              | after=TIME | before=TIME | topic=NAME | partition=N
 *              | key=VALUE
 * AND and OR are words of their own, in capitals, with blanks (or a
 * parenthesis) around them. An unquoted value runs to the next AND or OR,
 * or to the end, and loses its trailing blanks; inside parentheses, a ')'
 * that closes nothing in the value closes the group instead. So a filter
 * without AND, OR or parentheses means what it meant before they existed:
 * `error~connection refused` is one condition. A value quoted with '...'
 * or "..." (where \" and \\ stand for " and \) may hold anything.
 *
 * TIME is ISO-8601: 2024-05-01, 2024-05-01T12:00, 2024-05-01T12:00:00.250Z
 * or 2024-05-01T14:00:00+02:00 (UTC when no zone is given).
 */
#ifndef BALLAST_DLQ_FILTER_H
#define BALLAST_DLQ_FILTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/** What a condition tests. */
typedef enum dlq_cond_kind {
    DLQ_HEADER,         /**< header:NAME=VALUE (the last header NAME) */
    DLQ_HEADER_PRESENT, /**< header:NAME */
    DLQ_ERROR_CONTAINS, /**< error~TEXT: x-error-message contains TEXT */
    DLQ_ERROR_IS,       /**< error=TEXT */
    DLQ_AFTER,          /**< after=TIME: x-failed-at >= TIME */
    DLQ_BEFORE,         /**< before=TIME: x-failed-at < TIME */
    DLQ_TOPIC,          /**< topic=NAME: x-original-topic */
    DLQ_PARTITION,      /**< partition=N: x-original-partition */
    DLQ_KEY             /**< key=VALUE: the record's key */
} dlq_cond_kind_t;

/** One condition, as parsed. */
typedef struct dlq_cond {
    dlq_cond_kind_t kind;
    char *name;  /**< DLQ_HEADER*: the header name; else NULL */
    char *value; /**< the value (NUL-terminated; vlen bytes); NULL for
                      DLQ_HEADER_PRESENT */
    size_t vlen;
    int64_t num; /**< DLQ_AFTER/DLQ_BEFORE: epoch ms; DLQ_PARTITION: N */
} dlq_cond_t;

/** A parsed expression (a tree of conditions). */
typedef struct dlq_filter dlq_filter_t;

/** Parses @p expr. @returns the filter (free with dlq_filter_free()), or
 *  NULL with a one-line reason in @p errbuf (it does not repeat @p expr). */
dlq_filter_t *dlq_filter_parse(const char *expr, char *errbuf, size_t errsize);

/** Frees @p f; NULL is a no-op. */
void dlq_filter_free(dlq_filter_t *f);

/** Tests one condition against the record the caller is judging. */
typedef bool(dlq_cond_test_fn)(const dlq_cond_t *cond, void *arg);

/** Whether the record matches @p f: conditions are tested through @p test
 *  (with @p arg), left to right, only as far as the outcome needs. */
bool dlq_filter_match(const dlq_filter_t *f, dlq_cond_test_fn *test, void *arg);

/** @p f written back with every AND and OR in parentheses and every value
 *  quoted, e.g. `(key="a" OR (key="b" AND error~"x"))`: what was understood.
 *  @returns a string the caller frees, or NULL when out of memory. */
char *dlq_filter_text(const dlq_filter_t *f);

/** Parses the ISO-8601 time [@p text, @p text + @p len) (see above) into
 *  epoch milliseconds. @returns whether it parsed. */
bool dlq_parse_time(const void *text, size_t len, int64_t *ms);

#endif
