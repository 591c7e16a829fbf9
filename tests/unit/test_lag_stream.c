/* test_lag_stream.c - unit tests of the streamed /metrics of
 * `ballast lag --all-groups` (tools/lag_cluster_prom.c, tools/lag_groups.c):
 * read a few bytes at a time, the text is the one written whole; and a
 * scrape that an evaluation overtakes keeps rendering the groups it
 * started with (every sample of one evaluation), which are freed only when
 * the scrape ends. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "lagmon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* lag_measure.c's, which the groups' release calls: counted here. */
static int views_cleared;
void lag_view_clear(group_view_t *g)
{
    (void)g;
    views_cleared++;
}

/* Groups g0..g(n-1), each on partitions 0 and 1 of topic t, with lag
 * @p lag. */
static lag_groups_t *make_groups(size_t n, int64_t lag)
{
    static const char topic[] = "t";
    lag_groups_t *gs = calloc(1, sizeof(*gs));

    assert_non_null(gs);
    assert_non_null(gs->g = calloc(n, sizeof(*gs->g)));
    gs->n = n;
    atomic_init(&gs->refs, 1);
    for (size_t i = 0; i < n; i++) {
        cgroup_t *g = &gs->g[i];
        char name[16];
        snprintf(name, sizeof(name), "g%zu", i);
        assert_non_null(g->name = strdup(name));
        g->ok = true;
        g->max_lag_seconds = -1;
        assert_non_null(g->parts = calloc(2, sizeof(*g->parts)));
        g->nparts = g->cap = 2;
        for (int32_t p = 0; p < 2; p++)
            g->parts[p] = (cpart_t){.topic = topic, .partition = p, .member = -1, .ok = true,
                                    .committed = 10, .low = 0, .high = 10 + lag, .lag = lag,
                                    .lag_seconds = -1};
    }
    return gs;
}

static void set_groups(cluster_t *c, lag_groups_t *gs)
{
    c->published = gs;
    c->groups = gs->g;
    c->ngroups = gs->n;
}

static char *whole_text(const cluster_t *c)
{
    char *text = NULL;
    size_t size = 0;
    FILE *fp = open_memstream(&text, &size);

    assert_non_null(fp);
    lag_cluster_write_prometheus(fp, c);
    assert_int_equal(fclose(fp), 0);
    return text;
}

/* Reads @p r's stream @p step bytes at a time; after @p overtake_at bytes
 * (0: never) calls @p overtake(@p arg). */
static char *read_stream(http_response_t *r, size_t step, size_t overtake_at,
                         void (*overtake)(void *), void *arg)
{
    size_t len = 0, cap = 1 << 16;
    char *out = malloc(cap);
    long n;

    assert_non_null(out);
    while ((n = r->stream(r->stream_arg, out + len, step)) > 0) {
        assert_true((size_t)n <= step);
        len += (size_t)n;
        if (overtake_at && len >= overtake_at && overtake) {
            overtake(arg);
            overtake = NULL;
        }
        if (cap - len < step + 1)
            assert_non_null(out = realloc(out, cap *= 2));
    }
    assert_int_equal(n, 0);
    out[len] = '\0';
    r->stream_free(r->stream_arg);
    return out;
}

static cluster_t *new_cluster(void)
{
    cluster_t *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->name = "test";
    c->up = true;
    c->evaluations = 1;
    return c;
}

static void test_streamed_text_is_the_whole_text(void **state)
{
    cluster_t *c = new_cluster();
    http_response_t r;
    char *whole, *streamed;

    (void)state;
    set_groups(c, make_groups(700, 5)); /* two units of partition families */
    whole = whole_text(c);
    memset(&r, 0, sizeof(r));
    assert_true(lag_clusters_stream_prometheus(&r, &c, 1));
    streamed = read_stream(&r, 7, 0, NULL, NULL);
    assert_string_equal(streamed, whole);
    assert_non_null(strstr(whole, "kafka_consumergroup_lag{cluster=\"test\",consumergroup=\"g699\","
                                  "topic=\"t\",partition=\"1\"} 5\n"));
    assert_non_null(strstr(whole, "ballast_lag_groups{cluster=\"test\"} 700\n"));
    free(whole);
    free(streamed);
    views_cleared = 0;
    lag_groups_release(c->published);
    assert_int_equal(views_cleared, 700);
    free(c);
}

/* The evaluation loop's publish(): the new groups replace the old, and the
 * cluster's reference to the old is dropped. */
static void next_evaluation(void *arg)
{
    cluster_t *c = arg;
    lag_groups_t *old = c->published;

    set_groups(c, make_groups(3, 99));
    c->evaluations++;
    lag_groups_release(old);
    assert_int_equal(views_cleared, 0); /* the scrape still holds them */
}

/* Two clusters on one scrape: each family once (a second HELP or TYPE line
 * is an error to Prometheus' parser), with both clusters' samples. */
static void test_two_clusters_share_each_family(void **state)
{
    cluster_t *c[2] = {new_cluster(), new_cluster()};
    http_response_t r;
    char *text;
    const char *at;

    (void)state;
    c[1]->name = "other";
    c[1]->up = false;
    set_groups(c[0], make_groups(3, 5));
    set_groups(c[1], make_groups(2, 7));
    memset(&r, 0, sizeof(r));
    assert_true(lag_clusters_stream_prometheus(&r, c, 2));
    text = read_stream(&r, 13, 0, NULL, NULL);
    for (at = text; (at = strstr(at, "# TYPE ")); at++) {
        char name[128], again[140];
        assert_int_equal(sscanf(at, "# TYPE %127s", name), 1);
        snprintf(again, sizeof(again), "# TYPE %s ", name);
        if (strstr(at + 1, again))
            fail_msg("family %s declared twice:\n%s", name, text);
    }
    assert_non_null(strstr(text, "ballast_lag_up{cluster=\"test\"} 1\n"
                                 "ballast_lag_up{cluster=\"other\"} 0\n"));
    assert_non_null(strstr(text, "kafka_consumergroup_lag{cluster=\"other\",consumergroup=\"g1\","
                                 "topic=\"t\",partition=\"0\"} 7\n"));
    assert_non_null(strstr(text, "ballast_lag_groups{cluster=\"test\"} 3\n"));
    free(text);
    for (int i = 0; i < 2; i++) {
        lag_groups_release(c[i]->published);
        free(c[i]);
    }
}

static void test_overtaken_scrape_keeps_its_evaluation(void **state)
{
    cluster_t *c = new_cluster();
    http_response_t r;
    char *before, *streamed, *after;

    (void)state;
    set_groups(c, make_groups(3, 5));
    before = whole_text(c);
    memset(&r, 0, sizeof(r));
    assert_true(lag_clusters_stream_prometheus(&r, &c, 1));
    views_cleared = 0;
    streamed = read_stream(&r, 16, 100, next_evaluation, c);
    /* The scrape is the first evaluation's, whole, and its groups were
     * freed when it ended, not before. */
    assert_string_equal(streamed, before);
    assert_null(strstr(streamed, " 99\n"));
    assert_int_equal(views_cleared, 3);
    /* The next scrape sees the new evaluation. */
    after = whole_text(c);
    assert_non_null(strstr(after, "consumergroup=\"g2\",topic=\"t\",partition=\"0\"} 99\n"));
    assert_non_null(strstr(after, "ballast_lag_evaluations_total{cluster=\"test\"} 2\n"));
    free(before);
    free(streamed);
    free(after);
    lag_groups_release(c->published);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_streamed_text_is_the_whole_text),
        cmocka_unit_test(test_overtaken_scrape_keeps_its_evaluation),
        cmocka_unit_test(test_two_clusters_share_each_family),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
