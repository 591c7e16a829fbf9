/*
 * dlq_filter.c - the --where expressions of `ballast dlq` (see
 * dlq_filter.h): a recursive-descent parser over the expression's text, the
 * tree it builds, and ISO-8601 times.
 *
 * The parser reads the text in place. A condition's value is found by
 * scanning ahead (unquoted_end()), because an unquoted value may hold
 * blanks and parentheses: it ends only at a blank-separated AND or OR, at
 * the end, or at a ')' that closes a group the value did not open.
 */
#include "dlq_filter.h"

#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum node_op { N_COND, N_AND, N_OR } node_op_t;

struct dlq_filter {
    node_op_t op;
    dlq_cond_t cond;            /* N_COND */
    dlq_filter_t *left, *right; /* N_AND, N_OR */
};

typedef struct parser {
    const char *s; /* the expression */
    size_t pos;
    int depth; /* parentheses open at pos */
    char *errbuf;
    size_t errsize;
    bool failed;
} parser_t;

static bool fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(parser_t *ps, const char *fmt, ...)
{
    va_list ap;

    if (!ps->failed) {
        va_start(ap, fmt);
        vsnprintf(ps->errbuf, ps->errsize, fmt, ap);
        va_end(ap);
        ps->failed = true;
    }
    return false;
}

/* Where the parser is, for a message: the next few characters, quoted, or
 * "the end". */
static const char *here(const parser_t *ps, char *buf, size_t size)
{
    const char *p = ps->s + ps->pos;

    if (!*p)
        return "the end";
    snprintf(buf, size, "\"%.24s%s\"", p, strlen(p) > 24 ? "..." : "");
    return buf;
}

static bool blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static void skip_blanks(parser_t *ps)
{
    while (blank(ps->s[ps->pos]))
        ps->pos++;
}

enum { KW_NONE = 0, KW_OR = 2, KW_AND = 3 }; /* the values are the lengths */

/* The keyword at @p p, if it is a word of its own there. */
static int keyword_at(const char *p)
{
    int n = !strncmp(p, "AND", 3) ? KW_AND : !strncmp(p, "OR", 2) ? KW_OR : KW_NONE;

    if (n && (p[n] == '\0' || blank(p[n]) || p[n] == '(' || p[n] == ')'))
        return n;
    return KW_NONE;
}

/* Where an unquoted word that starts at ps->pos ends: at a blank-separated
 * AND or OR, at the end, at a ')' that closes a group (one the word did not
 * open, while a group is open) or, with @p stop_at_eq, at a '='. Trailing
 * blanks are left out. */
static size_t unquoted_end(const parser_t *ps, bool stop_at_eq)
{
    const char *s = ps->s;
    size_t i = ps->pos, end;
    int nested = 0;

    for (; s[i]; i++) {
        if (stop_at_eq && s[i] == '=')
            break;
        if (blank(s[i])) {
            size_t next = i;
            while (blank(s[next]))
                next++;
            if (keyword_at(s + next))
                break;
            i = next - 1;
        } else if (s[i] == '(') {
            nested++;
        } else if (s[i] == ')') {
            if (nested)
                nested--;
            else if (ps->depth)
                break;
        }
    }
    for (end = i; end > ps->pos && blank(s[end - 1]); end--)
        ;
    return end;
}

static const struct {
    const char *text;
    dlq_cond_kind_t kind;
} prefixes[] = {
    {"error~", DLQ_ERROR_CONTAINS}, {"error=", DLQ_ERROR_IS}, {"after=", DLQ_AFTER},
    {"before=", DLQ_BEFORE},        {"topic=", DLQ_TOPIC},    {"partition=", DLQ_PARTITION},
    {"key=", DLQ_KEY},
};

/* Whether a condition starts at @p p. */
static bool condition_at(const char *p)
{
    if (!strncmp(p, "header:", 7))
        return true;
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
        if (!strncmp(p, prefixes[i].text, strlen(prefixes[i].text)))
            return true;
    return false;
}

/* A value quoted with ' or " at ps->pos, into @p c. */
static bool quoted_value(parser_t *ps, dlq_cond_t *c)
{
    char quote = ps->s[ps->pos++], next;
    size_t n = 0;

    if (!(c->value = malloc(strlen(ps->s + ps->pos) + 1)))
        return fail(ps, "out of memory");
    for (;;) {
        char ch = ps->s[ps->pos];
        if (!ch)
            return fail(ps, "a value opened with %c is not closed", quote);
        ps->pos++;
        if (ch == quote)
            break;
        if (quote == '"' && ch == '\\' && (ps->s[ps->pos] == '"' || ps->s[ps->pos] == '\\'))
            ch = ps->s[ps->pos++];
        c->value[n++] = ch;
    }
    c->value[n] = '\0';
    c->vlen = n;
    next = ps->s[ps->pos];
    if (next && !blank(next) && next != ')') {
        char buf[64];
        return fail(ps, "expected a blank, ) or the end after the closing %c, got %s", quote,
                    here(ps, buf, sizeof(buf)));
    }
    return true;
}

/* The value of a condition at ps->pos, quoted or not, into @p c. */
static bool value(parser_t *ps, dlq_cond_t *c)
{
    size_t end;

    if (ps->s[ps->pos] == '\'' || ps->s[ps->pos] == '"')
        return quoted_value(ps, c);
    end = unquoted_end(ps, false);
    /* "key=a key=b" is a forgotten AND far more often than a key with a
     * blank and an equals sign in it: say so rather than match nothing. */
    for (size_t i = ps->pos; i < end; i++)
        if (blank(ps->s[i]) && condition_at(ps->s + i + 1))
            return fail(ps, "expected AND or OR before \"%.*s\" (quote the value if it "
                            "is part of it)",
                        (int)(end - i - 1), ps->s + i + 1);
    if (!(c->value = strndup(ps->s + ps->pos, end - ps->pos)))
        return fail(ps, "out of memory");
    c->vlen = end - ps->pos;
    ps->pos = end;
    return true;
}

/* Checks (and decodes) the value of @p c. */
static bool check_value(parser_t *ps, dlq_cond_t *c)
{
    switch (c->kind) {
    case DLQ_ERROR_CONTAINS:
        return c->vlen || fail(ps, "error~TEXT needs some text");
    case DLQ_TOPIC:
        return c->vlen || fail(ps, "topic=NAME needs a topic name");
    case DLQ_AFTER:
    case DLQ_BEFORE:
        return dlq_parse_time(c->value, c->vlen, &c->num) ||
               fail(ps, "expected an ISO-8601 time such as 2024-05-01T12:00:00Z, got \"%s\"",
                    c->value);
    case DLQ_PARTITION:
        return bl_parse_int64(c->value, 0, INT32_MAX, &c->num) ||
               fail(ps, "partition=N needs a partition number >= 0, got \"%s\"", c->value);
    default:
        return true;
    }
}

/* header:NAME=VALUE or header:NAME, after "header:". */
static bool header_condition(parser_t *ps, dlq_cond_t *c)
{
    size_t end = unquoted_end(ps, true);

    if (end == ps->pos)
        return fail(ps, "header: needs a header name (header:NAME=VALUE or header:NAME)");
    if (!(c->name = strndup(ps->s + ps->pos, end - ps->pos)))
        return fail(ps, "out of memory");
    ps->pos = end;
    if (ps->s[ps->pos] != '=') {
        c->kind = DLQ_HEADER_PRESENT;
        return true;
    }
    ps->pos++;
    c->kind = DLQ_HEADER;
    return value(ps, c);
}

static bool condition(parser_t *ps, dlq_cond_t *c)
{
    const char *p = ps->s + ps->pos;
    char buf[64];

    if (!strncmp(p, "header:", 7)) {
        ps->pos += 7;
        return header_condition(ps, c);
    }
    for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++) {
        size_t len = strlen(prefixes[i].text);
        if (strncmp(p, prefixes[i].text, len))
            continue;
        ps->pos += len;
        c->kind = prefixes[i].kind;
        return value(ps, c) && check_value(ps, c);
    }
    return fail(ps,
                "expected header:NAME=VALUE, header:NAME, error~TEXT, error=TEXT, "
                "after=TIME, before=TIME, topic=NAME, partition=N or key=VALUE at %s",
                here(ps, buf, sizeof(buf)));
}

void dlq_filter_free(dlq_filter_t *f)
{
    if (!f)
        return;
    free(f->cond.name);
    free(f->cond.value);
    dlq_filter_free(f->left);
    dlq_filter_free(f->right);
    free(f);
}

/* @p left OP @p right; both are freed when out of memory. */
static dlq_filter_t *join(parser_t *ps, node_op_t op, dlq_filter_t *left, dlq_filter_t *right)
{
    dlq_filter_t *f = calloc(1, sizeof(*f));

    if (!f) {
        dlq_filter_free(left);
        dlq_filter_free(right);
        fail(ps, "out of memory");
        return NULL;
    }
    f->op = op;
    f->left = left;
    f->right = right;
    return f;
}

static dlq_filter_t *parse_or(parser_t *ps);

static dlq_filter_t *parse_operand(parser_t *ps)
{
    dlq_filter_t *f;
    char buf[64];
    int kw;

    skip_blanks(ps);
    if (ps->s[ps->pos] == '(') {
        ps->pos++;
        ps->depth++;
        if (!(f = parse_or(ps)))
            return NULL;
        skip_blanks(ps);
        if (ps->s[ps->pos] != ')') {
            fail(ps, "expected AND, OR or ) at %s", here(ps, buf, sizeof(buf)));
            dlq_filter_free(f);
            return NULL;
        }
        ps->pos++;
        ps->depth--;
        return f;
    }
    if ((kw = keyword_at(ps->s + ps->pos)) || !ps->s[ps->pos] || ps->s[ps->pos] == ')') {
        fail(ps, "expected a condition at %s", here(ps, buf, sizeof(buf)));
        return NULL;
    }
    if (!(f = calloc(1, sizeof(*f)))) {
        fail(ps, "out of memory");
        return NULL;
    }
    f->op = N_COND;
    if (!condition(ps, &f->cond)) {
        dlq_filter_free(f);
        return NULL;
    }
    return f;
}

/* One level of the grammar: operands of @p down joined by @p keyword. */
static dlq_filter_t *parse_chain(parser_t *ps, int keyword, node_op_t op,
                                 dlq_filter_t *(*down)(parser_t *))
{
    dlq_filter_t *left = down(ps), *right;

    while (left) {
        skip_blanks(ps);
        if (keyword_at(ps->s + ps->pos) != keyword)
            break;
        ps->pos += (size_t)keyword;
        if (!(right = down(ps))) {
            dlq_filter_free(left);
            return NULL;
        }
        left = join(ps, op, left, right);
    }
    return left;
}

static dlq_filter_t *parse_and(parser_t *ps)
{
    return parse_chain(ps, KW_AND, N_AND, parse_operand);
}

static dlq_filter_t *parse_or(parser_t *ps)
{
    return parse_chain(ps, KW_OR, N_OR, parse_and);
}

dlq_filter_t *dlq_filter_parse(const char *expr, char *errbuf, size_t errsize)
{
    parser_t ps = {expr, 0, 0, errbuf, errsize, false};
    dlq_filter_t *f = parse_or(&ps);
    char buf[64];

    if (!f)
        return NULL;
    skip_blanks(&ps);
    if (expr[ps.pos]) {
        fail(&ps, "expected AND, OR or the end at %s%s", here(&ps, buf, sizeof(buf)),
             expr[ps.pos] == ')' ? " (a ) that closes nothing)" : "");
        dlq_filter_free(f);
        return NULL;
    }
    return f;
}

bool dlq_filter_match(const dlq_filter_t *f, dlq_cond_test_fn *test, void *arg)
{
    switch (f->op) {
    case N_AND:
        return dlq_filter_match(f->left, test, arg) && dlq_filter_match(f->right, test, arg);
    case N_OR:
        return dlq_filter_match(f->left, test, arg) || dlq_filter_match(f->right, test, arg);
    case N_COND:
        break;
    }
    return test(&f->cond, arg);
}

static void write_quoted(FILE *fp, const char *s, size_t len)
{
    fputc('"', fp);
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '"' || s[i] == '\\')
            fputc('\\', fp);
        fputc(s[i], fp);
    }
    fputc('"', fp);
}

static void write_filter(FILE *fp, const dlq_filter_t *f)
{
    const dlq_cond_t *c = &f->cond;

    if (f->op != N_COND) {
        fputc('(', fp);
        write_filter(fp, f->left);
        fputs(f->op == N_AND ? " AND " : " OR ", fp);
        write_filter(fp, f->right);
        fputc(')', fp);
        return;
    }
    if (c->kind == DLQ_HEADER || c->kind == DLQ_HEADER_PRESENT) {
        fprintf(fp, "header:%s%s", c->name, c->kind == DLQ_HEADER ? "=" : "");
    } else {
        for (size_t i = 0; i < sizeof(prefixes) / sizeof(prefixes[0]); i++)
            if (prefixes[i].kind == c->kind)
                fputs(prefixes[i].text, fp);
    }
    if (c->value)
        write_quoted(fp, c->value, c->vlen);
}

static void write_text(FILE *fp, const void *f)
{
    write_filter(fp, f);
}

char *dlq_filter_text(const dlq_filter_t *f)
{
    return bl_text(write_text, f);
}

/* ---- ISO-8601 ------------------------------------------------------------ */

/* Reads exactly @p n digits at *p. */
static bool digits(const char **p, int n, int *out)
{
    int v = 0;

    for (int i = 0; i < n; i++) {
        if ((*p)[i] < '0' || (*p)[i] > '9')
            return false;
        v = v * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = v;
    return true;
}

/* YYYY-MM-DD, then optionally T (or a space) HH:MM[:SS[.fraction]], then
 * optionally Z or +HH[:MM] / -HH[:MM]. */
bool dlq_parse_time(const void *text, size_t len, int64_t *ms)
{
    char buf[64];
    const char *p = buf;
    int year, mon, day, hour = 0, min = 0, sec = 0, frac_ms = 0, off_min = 0;
    struct tm tm;
    time_t t;

    if (!text || len >= sizeof(buf))
        return false;
    memcpy(buf, text, len);
    buf[len] = '\0';
    if (!digits(&p, 4, &year) || *p++ != '-' || !digits(&p, 2, &mon) || *p++ != '-' ||
        !digits(&p, 2, &day))
        return false;
    if (*p == 'T' || *p == 't' || *p == ' ') {
        p++;
        if (!digits(&p, 2, &hour) || *p++ != ':' || !digits(&p, 2, &min))
            return false;
        if (*p == ':') {
            p++;
            if (!digits(&p, 2, &sec))
                return false;
            if (*p == '.' || *p == ',') {
                int scale = 100, nd = 0;
                p++;
                while (*p >= '0' && *p <= '9') {
                    frac_ms += (*p - '0') * scale;
                    scale /= 10;
                    p++;
                    nd++;
                }
                if (!nd)
                    return false;
            }
        }
        if (*p == 'Z' || *p == 'z') {
            p++;
        } else if (*p == '+' || *p == '-') {
            int sign = *p++ == '-' ? -1 : 1, oh, om = 0;
            if (!digits(&p, 2, &oh))
                return false;
            if (*p == ':')
                p++;
            if (*p && !digits(&p, 2, &om))
                return false;
            if (oh > 23 || om > 59)
                return false;
            off_min = sign * (oh * 60 + om);
        }
    }
    if (*p || mon < 1 || mon > 12 || day < 1 || day > 31 || hour > 23 || min > 59 ||
        sec > 60)
        return false;
    memset(&tm, 0, sizeof(tm));
    tm.tm_year = year - 1900;
    tm.tm_mon = mon - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    t = timegm(&tm);
    if (t == (time_t)-1 && !(year == 1969 && mon == 12 && day == 31))
        return false;
    /* timegm() normalises 2024-02-31 into March: refuse such dates. */
    if (tm.tm_mday != day || tm.tm_mon != mon - 1)
        return false;
    *ms = ((int64_t)t - (int64_t)off_min * 60) * 1000 + frac_ms;
    return true;
}
