/*
 * test_observe.c - the metrics text, the status document and the history
 * kept for the dashboard, rendered from hand-made views (no Kafka):
 *   - every ballast_* sample carries the consumer group label, escaped, and
 *     values are written as the shortest text that reads back (uptime 4.087);
 *   - the status document's totals: the rate is the partitions' sum, the
 *     in-flight count is the view's, the group protocol is named;
 *   - the history keeps BL_HISTORY_FRAMES frames, gaps where a partition
 *     was not assigned, forgets partitions absent from every kept frame,
 *     and renders ages, lags and rates per partition in order.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "history.h"
#include "observe.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static bl_histogram_t latency;

static bl_part_view_t part(const char *topic, int32_t partition, int64_t lag, double rate,
                           size_t inflight)
{
    bl_part_view_t p;

    memset(&p, 0, sizeof(p));
    snprintf(p.topic, sizeof(p.topic), "%s", topic);
    p.partition = partition;
    p.committed = 10;
    p.high_watermark = 10 + lag;
    p.lag = lag;
    p.lag_ms = lag ? 1500 : 0;
    p.rate = rate;
    p.inflight = inflight;
    return p;
}

static bl_view_t view(const char *group, const bl_part_view_t *parts, size_t n)
{
    bl_view_t v;

    memset(&v, 0, sizeof(v));
    v.group = group;
    v.group_protocol = "classic";
    v.topics = "orders";
    v.semantics = "at-least-once";
    v.parts = parts;
    v.nparts = n;
    v.latency = &latency;
    v.uptime_ms = 4087;
    v.poll_headroom_ms = 299987;
    v.healthy = v.ready = true;
    v.health_reason = v.ready_reason = "ok";
    v.processed_per_second = -1;
    return v;
}

/* ---- metrics ------------------------------------------------------------ */

static void test_every_ballast_sample_names_the_group(void **state)
{
    static const char want[] = "{consumergroup=\"pay\\\"ments\"";
    bl_part_view_t parts[] = {part("orders", 0, 5, 1, 2), part("orders", 1, 0, 2, 0)};
    bl_view_t v = view("pay\"ments", parts, 2);
    size_t samples = 0;
    char *text;

    (void)state;
    bl_histogram_observe(&latency, 1500);
    text = bl_render_metrics(&v);
    assert_non_null(text);
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        const char *brace = strchr(line, '{');
        int len = (int)(strchr(line, '\n') - line);
        if (line[0] == '#')
            continue;
        samples++;
        /* kafka_exporter's names carry it first; so must every ballast_ one. */
        if (!brace || brace > line + len || strncmp(brace, want, strlen(want)))
            fail_msg("a sample without the consumer group label first: %.*s", len, line);
    }
    assert_true(samples > 20);
    free(text);
}

static void test_values_are_short(void **state)
{
    bl_view_t v = view("g", NULL, 0);
    char *text;

    (void)state;
    text = bl_render_metrics(&v);
    assert_non_null(text);
    assert_non_null(strstr(text, "\nballast_uptime_seconds{consumergroup=\"g\"} 4.087\n"));
    assert_non_null(
        strstr(text, "\nballast_poll_interval_headroom_seconds{consumergroup=\"g\"} 299.987\n"));
    assert_non_null(strstr(text, "\nballast_up{consumergroup=\"g\"} 1\n"));
    assert_non_null(strstr(text, "le=\"10\"}"));
    assert_non_null(strstr(text, "le=\"0.0001\"}"));
    assert_null(strstr(text, "e+"));
    assert_null(strstr(text, "99999"));
    free(text);
}

/* ---- status ------------------------------------------------------------- */

static void test_status_totals(void **state)
{
    bl_part_view_t parts[] = {part("orders", 0, 5, 12.5, 3), part("orders", 1, 0, 0, 0),
                              part("orders", 2, 7, -1, 4)};
    bl_view_t v = view("g", parts, 3);
    json_t *doc, *p;
    char *text;

    (void)state;
    v.processed_per_second = 12.5;
    v.stats.inflight = 9;
    v.inflight_revoked = 2;
    text = bl_render_status(&v);
    assert_non_null(text);
    doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    assert_string_equal(json_string_value(json_object_get(doc, "group_protocol")), "classic");
    assert_true(json_number_value(json_object_get(doc, "processed_per_second")) == 12.5);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "stats"), "inflight")),
                     9);
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(doc, "stats"), "inflight_revoked")), 2);
    p = json_object_get(doc, "partitions");
    assert_true(json_number_value(json_object_get(json_array_get(p, 0), "processed_per_second")) ==
                12.5);
    assert_true(json_is_null(json_object_get(json_array_get(p, 2), "processed_per_second")));
    assert_true(json_number_value(json_object_get(doc, "uptime_seconds")) == 4.087);
    json_decref(doc);
    free(text);

    v.processed_per_second = -1; /* unknown: null, not 0 */
    text = bl_render_status(&v);
    doc = json_loads(text, 0, NULL);
    assert_true(json_is_null(json_object_get(doc, "processed_per_second")));
    json_decref(doc);
    free(text);
}

/* ---- history ------------------------------------------------------------ */

static json_t *render_history(const bl_history_t *h, int64_t now)
{
    char *text = bl_history_render(h, now);
    json_t *doc;

    assert_non_null(text);
    doc = json_loads(text, 0, NULL);
    assert_non_null(doc);
    free(text);
    return doc;
}

static json_t *series_of(json_t *doc, const char *topic, int partition)
{
    size_t i;
    json_t *s;

    json_array_foreach(json_object_get(doc, "partitions"), i, s) {
        if (!strcmp(json_string_value(json_object_get(s, "topic")), topic) &&
            json_integer_value(json_object_get(s, "partition")) == partition)
            return s;
    }
    return NULL;
}

static void test_history_empty(void **state)
{
    bl_history_t *h = bl_history_new();
    json_t *doc;

    (void)state;
    assert_true(bl_history_due(h, 0));
    doc = render_history(NULL, 0);
    assert_int_equal(json_array_size(json_object_get(doc, "ages_seconds")), 0);
    assert_int_equal(json_array_size(json_object_get(doc, "partitions")), 0);
    assert_true(json_number_value(json_object_get(doc, "window_seconds")) == 300);
    json_decref(doc);
    doc = render_history(h, 0);
    assert_int_equal(json_array_size(json_object_get(doc, "ages_seconds")), 0);
    json_decref(doc);
    bl_history_free(h);
    bl_history_free(NULL);
}

static void test_history_frames_gaps_and_order(void **state)
{
    bl_history_t *h = bl_history_new();
    bl_part_view_t both[] = {part("b", 1, 30, 3, 0), part("a", 0, 10, 1.5, 0)};
    bl_part_view_t one[] = {part("a", 0, 11, -1, 0)};
    json_t *doc, *a, *b;
    int64_t t = 1000000;

    (void)state;
    assert_int_equal(bl_history_add(h, t, both, 2), 0);
    assert_false(bl_history_due(h, t + BL_HISTORY_INTERVAL_MS - 1));
    assert_true(bl_history_due(h, t + BL_HISTORY_INTERVAL_MS));
    assert_int_equal(bl_history_add(h, t + 2000, one, 1), 0);
    assert_int_equal(bl_history_add(h, t + 4000, both, 2), 0);
    doc = render_history(h, t + 4500);
    /* Ages, oldest first. */
    assert_int_equal(json_array_size(json_object_get(doc, "ages_seconds")), 3);
    assert_true(json_number_value(json_array_get(json_object_get(doc, "ages_seconds"), 0)) == 4.5);
    assert_true(json_number_value(json_array_get(json_object_get(doc, "ages_seconds"), 2)) == 0.5);
    /* Sorted by topic: "a" first though it was given second. */
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(doc, "partitions"), 0),
                                          "topic")),
        "a");
    a = series_of(doc, "a", 0);
    b = series_of(doc, "b", 1);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(json_integer_value(json_array_get(json_object_get(a, "lag"), 1)), 11);
    assert_true(json_is_null(json_array_get(json_object_get(a, "processed_per_second"), 1)));
    assert_true(json_number_value(json_array_get(json_object_get(a, "processed_per_second"), 0)) ==
                1.5);
    /* b was not assigned in the middle frame: a gap, not a value. */
    assert_int_equal(json_integer_value(json_array_get(json_object_get(b, "lag"), 0)), 30);
    assert_true(json_is_null(json_array_get(json_object_get(b, "lag"), 1)));
    assert_true(json_is_null(json_array_get(json_object_get(b, "processed_per_second"), 1)));
    assert_int_equal(json_integer_value(json_array_get(json_object_get(b, "lag"), 2)), 30);
    json_decref(doc);
    bl_history_free(h);
}

static void test_history_is_bounded(void **state)
{
    bl_history_t *h = bl_history_new(), *copy;
    bl_part_view_t gone[] = {part("gone", 0, 1, 1, 0)};
    bl_part_view_t stays[] = {part("stays", 0, 0, 0, 0)};
    json_t *doc, *lags;
    int64_t t = 0;
    char *a, *b;

    (void)state;
    assert_int_equal(bl_history_add(h, t, gone, 1), 0);
    /* A full window without "gone": it is forgotten, and the frames kept
     * are the newest BL_HISTORY_FRAMES. */
    for (int i = 0; i < BL_HISTORY_FRAMES; i++) {
        stays[0].lag = i;
        t += BL_HISTORY_INTERVAL_MS;
        assert_int_equal(bl_history_add(h, t, stays, 1), 0);
    }
    doc = render_history(h, t);
    assert_int_equal(json_array_size(json_object_get(doc, "ages_seconds")), BL_HISTORY_FRAMES);
    assert_null(series_of(doc, "gone", 0));
    lags = json_object_get(series_of(doc, "stays", 0), "lag");
    assert_int_equal(json_array_size(lags), BL_HISTORY_FRAMES);
    assert_int_equal(json_integer_value(json_array_get(lags, 0)), 0);
    assert_int_equal(json_integer_value(json_array_get(lags, BL_HISTORY_FRAMES - 1)),
                     BL_HISTORY_FRAMES - 1);
    assert_true(json_number_value(json_array_get(json_object_get(doc, "ages_seconds"), 0)) ==
                (BL_HISTORY_FRAMES - 1) * BL_HISTORY_INTERVAL_MS / 1000.0);
    json_decref(doc);
    /* A copy renders the same. */
    copy = bl_history_copy(h);
    assert_non_null(copy);
    a = bl_history_render(h, t);
    b = bl_history_render(copy, t);
    assert_string_equal(a, b);
    free(a);
    free(b);
    bl_history_free(copy);
    bl_history_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_ballast_sample_names_the_group),
        cmocka_unit_test(test_values_are_short),
        cmocka_unit_test(test_status_totals),
        cmocka_unit_test(test_history_empty),
        cmocka_unit_test(test_history_frames_gaps_and_order),
        cmocka_unit_test(test_history_is_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
