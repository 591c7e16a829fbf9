/* test_dlq_filter.c - unit tests of the --where expressions of `ballast dlq`
 * (tools/dlq_filter.c): what each expression is understood as (AND binds
 * tighter than OR, parentheses group, values with blanks, parentheses and
 * quotes), one-line errors for what cannot be understood, evaluation with
 * short-circuit, and the ISO-8601 times of after= and before=. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "dlq_filter.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Each expression and what it must be understood as. */
static const struct {
    const char *expr, *understood;
} parses[] = {
    {"key=a", "key=\"a\""},
    {"key=a OR key=b AND key=c", "(key=\"a\" OR (key=\"b\" AND key=\"c\"))"},
    {"key=a AND key=b OR key=c", "((key=\"a\" AND key=\"b\") OR key=\"c\")"},
    {"key=a OR key=b OR key=c", "((key=\"a\" OR key=\"b\") OR key=\"c\")"},
    {"(key=a OR key=b) AND key=c", "((key=\"a\" OR key=\"b\") AND key=\"c\")"},
    {"key=a AND (key=b OR key=c)", "(key=\"a\" AND (key=\"b\" OR key=\"c\"))"},
    {"key=a AND(key=b OR key=c)", "(key=\"a\" AND (key=\"b\" OR key=\"c\"))"},
    {"((key=a))", "key=\"a\""},
    {"  key=a   OR\tkey=b  ", "(key=\"a\" OR key=\"b\")"},
    /* Without AND, OR or parentheses a filter means what it always meant:
     * the rest of the text is the value, blanks and all. */
    {"error~connection refused", "error~\"connection refused\""},
    {"error~x or y", "error~\"x or y\""},
    {"error~ORDER failed", "error~\"ORDER failed\""},
    {"error~syntax error at or near \")\"", "error~\"syntax error at or near \\\")\\\"\""},
    {"key=a)", "key=\"a)\""},
    /* Inside parentheses a ')' the value did not open closes the group. */
    {"(error~f(x)) OR key=1", "(error~\"f(x)\" OR key=\"1\")"},
    {"(error~a) AND (key=b)", "(error~\"a\" AND key=\"b\")"},
    {"(error~f(x) OR key=1)", "(error~\"f(x)\" OR key=\"1\")"},
    /* Quoted values hold anything. */
    {"error~'a AND b' OR key=\"x \\\"y\\\" \\\\\"",
     "(error~\"a AND b\" OR key=\"x \\\"y\\\" \\\\\")"},
    {"(error~'unbalanced )')", "error~\"unbalanced )\""},
    {"key=''", "key=\"\""},
    {"key=", "key=\"\""},
    {"header:tenant=a OR header:trace", "(header:tenant=\"a\" OR header:trace)"},
    {"header:tenant=a b", "header:tenant=\"a b\""},
    {"topic=orders AND partition=2 AND after=2024-05-01 AND before=2024-06-01T00:00Z",
     "(((topic=\"orders\" AND partition=\"2\") AND after=\"2024-05-01\") AND "
     "before=\"2024-06-01T00:00Z\")"},
    {"error=db timeout", "error=\"db timeout\""},
};

static void test_parses(void **state)
{
    char errbuf[300];
    (void)state;

    for (size_t i = 0; i < sizeof(parses) / sizeof(parses[0]); i++) {
        dlq_filter_t *f = dlq_filter_parse(parses[i].expr, errbuf, sizeof(errbuf));
        char *text;
        if (!f)
            fail_msg("%s: %s", parses[i].expr, errbuf);
        text = dlq_filter_text(f);
        assert_non_null(text);
        if (strcmp(text, parses[i].understood))
            fail_msg("%s: understood as %s, expected %s", parses[i].expr, text,
                     parses[i].understood);
        free(text);
        dlq_filter_free(f);
    }
}

/* Each expression that must be refused, and a part of the reason. */
static const struct {
    const char *expr, *reason;
} refusals[] = {
    {"", "expected a condition at the end"},
    {"   ", "expected a condition at the end"},
    {"key=a AND", "expected a condition at the end"},
    {"OR key=a", "expected a condition at \"OR key=a\""},
    {"key=a AND OR key=b", "expected a condition at \"OR key=b\""},
    {"()", "expected a condition at \")\""},
    {"(key=a OR key=b", "expected AND, OR or ) at the end"},
    {"(key=a))", "a ) that closes nothing"},
    {"key=a key=b", "expected AND or OR before \"key=b\""},
    {"error~timeout topic=orders", "expected AND or OR before \"topic=orders\""},
    {"colour=red", "expected header:NAME=VALUE"},
    {"key=a OR colour=red", "at \"colour=red\""},
    {"after=yesterday", "ISO-8601"},
    {"before=2024-02-31", "ISO-8601"},
    {"partition=x", "partition=N"},
    {"partition=-1", "partition=N"},
    {"error~", "error~TEXT needs some text"},
    {"topic=", "topic=NAME needs a topic name"},
    {"header:=v", "needs a header name"},
    {"error~'open", "not closed"},
    {"key='a'b", "after the closing '"},
};

static void test_refusals(void **state)
{
    char errbuf[300];
    (void)state;

    for (size_t i = 0; i < sizeof(refusals) / sizeof(refusals[0]); i++) {
        dlq_filter_t *f;
        errbuf[0] = '\0';
        f = dlq_filter_parse(refusals[i].expr, errbuf, sizeof(errbuf));
        if (f) {
            char *text = dlq_filter_text(f);
            fail_msg("\"%s\" was accepted as %s", refusals[i].expr, text);
        }
        if (!strstr(errbuf, refusals[i].reason))
            fail_msg("\"%s\": the reason \"%s\" does not say \"%s\"", refusals[i].expr,
                     errbuf, refusals[i].reason);
        assert_null(strchr(errbuf, '\n'));
    }
}

/* A record for the tests: the set of key= values that hold, as " a b ";
 * every condition tested is counted. */
typedef struct truth {
    const char *holds;
    int tested;
} truth_t;

static bool holds(const dlq_cond_t *c, void *arg)
{
    truth_t *t = arg;
    char word[32];

    t->tested++;
    assert_int_equal(c->kind, DLQ_KEY);
    snprintf(word, sizeof(word), " %s ", c->value);
    return strstr(t->holds, word) != NULL;
}

static const struct {
    const char *expr, *holds;
    bool match;
    int tested; /* conditions tested: evaluation stops once it knows */
} evaluations[] = {
    {"key=a OR key=b AND key=c", " a ", true, 1},
    {"key=a OR key=b AND key=c", " b ", false, 3},
    {"key=a OR key=b AND key=c", " b c ", true, 3},
    {"(key=a OR key=b) AND key=c", " a ", false, 2},
    {"(key=a OR key=b) AND key=c", " b c ", true, 3},
    {"key=a AND key=b OR key=c", " c ", true, 2},
    {"key=a AND key=b OR key=c", " a b ", true, 2},
    {"key=a AND key=b OR key=c", " a ", false, 3},
    {"key=x", " ", false, 1},
};

static void test_evaluation(void **state)
{
    char errbuf[300];
    (void)state;

    for (size_t i = 0; i < sizeof(evaluations) / sizeof(evaluations[0]); i++) {
        truth_t t = {evaluations[i].holds, 0};
        dlq_filter_t *f = dlq_filter_parse(evaluations[i].expr, errbuf, sizeof(errbuf));
        bool got;
        assert_non_null(f);
        got = dlq_filter_match(f, holds, &t);
        if (got != evaluations[i].match || t.tested != evaluations[i].tested)
            fail_msg("%s with%s: %s after %d tests, expected %s after %d",
                     evaluations[i].expr, evaluations[i].holds, got ? "match" : "no match",
                     t.tested, evaluations[i].match ? "match" : "no match",
                     evaluations[i].tested);
        dlq_filter_free(f);
    }
}

static bool capture(const dlq_cond_t *c, void *arg)
{
    *(const dlq_cond_t **)arg = c;
    return true;
}

/* The one condition of @p expr, as a tester gets it (valid until @p f is
 * freed). */
static const dlq_cond_t *only_condition(const char *expr, dlq_filter_t **f)
{
    char errbuf[300];
    const dlq_cond_t *c = NULL;

    *f = dlq_filter_parse(expr, errbuf, sizeof(errbuf));
    if (!*f)
        fail_msg("%s: %s", expr, errbuf);
    assert_true(dlq_filter_match(*f, capture, &c));
    assert_non_null(c);
    return c;
}

/* A tester gets decoded values: times in epoch ms, numbers, header names. */
static void test_condition_values(void **state)
{
    dlq_filter_t *f;
    const dlq_cond_t *c;
    (void)state;

    c = only_condition("after=2024-05-01T12:00:00.250Z", &f);
    assert_int_equal(c->kind, DLQ_AFTER);
    assert_int_equal(c->num, 1714564800250LL);
    dlq_filter_free(f);
    c = only_condition("before=2024-05-01", &f);
    assert_int_equal(c->kind, DLQ_BEFORE);
    assert_int_equal(c->num, 1714521600000LL);
    dlq_filter_free(f);
    c = only_condition("partition=7", &f);
    assert_int_equal(c->kind, DLQ_PARTITION);
    assert_int_equal(c->num, 7);
    dlq_filter_free(f);
    c = only_condition("header:x-tenant=a b", &f);
    assert_int_equal(c->kind, DLQ_HEADER);
    assert_string_equal(c->name, "x-tenant");
    assert_string_equal(c->value, "a b");
    assert_int_equal(c->vlen, 3);
    dlq_filter_free(f);
    c = only_condition("header:trace", &f);
    assert_int_equal(c->kind, DLQ_HEADER_PRESENT);
    assert_string_equal(c->name, "trace");
    assert_null(c->value);
    dlq_filter_free(f);
    c = only_condition("error~timeout", &f);
    assert_int_equal(c->kind, DLQ_ERROR_CONTAINS);
    dlq_filter_free(f);
    c = only_condition("error=timeout", &f);
    assert_int_equal(c->kind, DLQ_ERROR_IS);
    dlq_filter_free(f);
    c = only_condition("topic=orders", &f);
    assert_int_equal(c->kind, DLQ_TOPIC);
    dlq_filter_free(f);
    dlq_filter_free(NULL);
}

static void test_times(void **state)
{
    static const struct {
        const char *text;
        int64_t ms; /* -1: refused */
    } times[] = {
        {"2024-05-01", 1714521600000LL},
        {"2024-05-01T12:00", 1714564800000LL},
        {"2024-05-01T12:00:00.250Z", 1714564800250LL},
        {"2024-05-01 12:00:00Z", 1714564800000LL},
        {"2024-05-01T14:00:00+02:00", 1714564800000LL},
        {"2024-05-01T10:00:00-0200", 1714564800000LL},
        {"1970-01-01T00:00:00Z", 0},
        {"2024-02-31", -1},
        {"2024-13-01", -1},
        {"2024-05-01T25:00", -1},
        {"2024-05-01T12:00:00.", -1},
        {"2024-05-01Tnoon", -1},
        {"yesterday", -1},
        {"", -1},
    };
    (void)state;

    for (size_t i = 0; i < sizeof(times) / sizeof(times[0]); i++) {
        int64_t ms = -1;
        bool ok = dlq_parse_time(times[i].text, strlen(times[i].text), &ms);
        if (ok != (times[i].ms >= 0) || (ok && ms != times[i].ms))
            fail_msg("%s: %s %lld, expected %lld", times[i].text, ok ? "parsed" : "refused",
                     (long long)ms, (long long)times[i].ms);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parses),          cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_evaluation),      cmocka_unit_test(test_condition_values),
        cmocka_unit_test(test_times),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
