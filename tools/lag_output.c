/*
 * lag_output.c - what `ballast lag` prints of an evaluation: a table
 * (coloured on a terminal), JSON lines, or Prometheus text with
 * kafka_exporter's metric names.
 */
#include "lagmon.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *status_colour(bl_lag_status_t s)
{
    switch (s) {
    case BL_LAG_OK:
        return "\033[32m";
    case BL_LAG_WARN:
        return "\033[33m";
    case BL_LAG_REWIND:
        return "\033[35m";
    case BL_LAG_STALL:
        return "\033[31m";
    default:
        return "\033[1;31m";
    }
}

static void fmt_offset(int64_t v, bool known, char *out, size_t size)
{
    if (known && v >= 0)
        snprintf(out, size, "%lld", (long long)v);
    else
        snprintf(out, size, "-");
}

static void fmt_seconds(double v, bool known, char *out, size_t size)
{
    if (known && v >= 0)
        snprintf(out, size, "%.3f", v);
    else
        snprintf(out, size, "-");
}

int64_t lag_total(const monitor_t *m)
{
    int64_t total = 0;
    for (size_t i = 0; i < m->nparts; i++)
        if (m->parts[i].ok)
            total += m->parts[i].lag;
    return total;
}

/* Prints one table row: each cell padded to its column's width (numbers to
 * the right), the last one unpadded; @p colour, when set, around column
 * @p coloured, or around the whole row when @p coloured >= @p ncols. */
static void print_row(const char *const *cells, const size_t *width, const bool *right,
                      size_t ncols, size_t coloured, const char *colour)
{
    bool whole = colour && coloured >= ncols;

    if (whole)
        fputs(colour, stdout);
    for (size_t c = 0; c < ncols; c++) {
        int w = c + 1 == ncols ? 0 : (int)width[c];
        if (c)
            fputs("  ", stdout);
        if (colour && c == coloured)
            fputs(colour, stdout);
        printf(right[c] ? "%*s" : "%-*s", w, cells[c]);
        if (colour && (c == coloured || (whole && c + 1 == ncols)))
            fputs("\033[0m", stdout);
    }
    putchar('\n');
}

static void widen(size_t *width, const char *const *cells, size_t ncols)
{
    for (size_t c = 0; c < ncols; c++)
        if (strlen(cells[c]) > width[c])
            width[c] = strlen(cells[c]);
}

enum { C_TOPIC, C_PARTITION, C_COMMITTED, C_HIGH, C_LAG, C_SECONDS, C_METHOD, C_STATUS,
       C_CONSUMER, C_HOST, C_CLIENT, C_COUNT };

/* The cells of @p p's row; numbers go to @p buf. */
static void part_cells(const monitor_t *m, const part_state_t *p, const char **cells,
                       char buf[][64])
{
    const member_t *mb = p->member >= 0 ? &m->group.members[p->member] : NULL;

    cells[C_TOPIC] = p->topic;
    snprintf(buf[C_PARTITION], sizeof(buf[0]), "%d", (int)p->partition);
    fmt_offset(p->committed, p->ok, buf[C_COMMITTED], sizeof(buf[0]));
    fmt_offset(p->high, p->ok, buf[C_HIGH], sizeof(buf[0]));
    fmt_offset(p->lag, p->ok, buf[C_LAG], sizeof(buf[0]));
    fmt_seconds(p->lag_seconds, p->ok, buf[C_SECONDS], sizeof(buf[0]));
    for (int c = C_PARTITION; c <= C_SECONDS; c++)
        cells[c] = buf[c];
    cells[C_METHOD] = p->ok ? bl_lag_time_method_name(p->lag_seconds_method) : "-";
    cells[C_STATUS] = bl_lag_status_name(p->status);
    cells[C_CONSUMER] = mb && *mb->consumer_id ? mb->consumer_id : "-";
    cells[C_HOST] = mb && *mb->host ? mb->host : "-";
    cells[C_CLIENT] = mb && *mb->client_id ? mb->client_id : "-";
}

/* The members, as `kafka-consumer-groups --describe --members` lists them. */
static void print_members(const group_view_t *g, bool colour)
{
    static const char *const heads[] = {"CONSUMER-ID", "HOST", "CLIENT-ID", "PARTITIONS"};
    static const bool right[] = {false, false, false, true};
    size_t width[4];
    char count[32];

    for (int c = 0; c < 4; c++)
        width[c] = strlen(heads[c]);
    for (size_t i = 0; i < g->nmembers; i++)
        widen(width, (const char *[]){g->members[i].consumer_id, g->members[i].host,
                                      g->members[i].client_id, ""},
              3);
    putchar('\n');
    print_row(heads, width, right, 4, 4, colour ? "\033[1m" : NULL);
    for (size_t i = 0; i < g->nmembers; i++) {
        const member_t *mb = &g->members[i];
        snprintf(count, sizeof(count), "%d", mb->partitions);
        print_row((const char *[]){mb->consumer_id, mb->host, mb->client_id, count}, width,
                  right, 4, 4, NULL);
    }
}

void lag_print_table(const monitor_t *m, bool colour, bool redraw)
{
    static const char *const heads[C_COUNT] = {
        "TOPIC",       "PARTITION", "COMMITTED", "HIGH-WATERMARK", "LAG",      "LAG-SECONDS",
        "METHOD",      "STATUS",    "CONSUMER-ID", "HOST",         "CLIENT-ID"};
    static const bool right[C_COUNT] = {false, true,  true,  true,  true, true,
                                        false, false, false, false, false};
    const group_view_t *g = &m->group;
    /* The member columns only when the members are known. */
    size_t ncols = g->described ? C_COUNT : C_STATUS + 1, width[C_COUNT];
    const char *cells[C_COUNT];
    char when[40], buf[C_COUNT][64], last[400];

    for (int c = 0; c < C_COUNT; c++)
        width[c] = strlen(heads[c]);
    for (size_t i = 0; i < m->nparts; i++) {
        part_cells(m, &m->parts[i], cells, buf);
        widen(width, cells, ncols);
    }
    if (redraw)
        fputs("\033[H\033[2J", stdout);
    bl_iso8601(m->eval_ms, when, sizeof(when));
    printf("group %s", m->o->group);
    if (g->state[0])
        printf("  state %s", g->state);
    if (g->described)
        printf("  members %zu", g->nmembers);
    if (g->protocol)
        printf("  protocol %s", g->protocol);
    printf("  status %s%s%s  total lag %lld  partitions %zu  %s\n",
           colour ? status_colour(m->status) : "", bl_lag_status_name(m->status),
           colour ? "\033[0m" : "", (long long)lag_total(m), m->nparts, when);
    if (m->nparts)
        print_row(heads, width, right, ncols, ncols, colour ? "\033[1m" : NULL);
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        part_cells(m, p, cells, buf);
        /* An error goes after the row's last cell. */
        if (!p->ok) {
            snprintf(last, sizeof(last), "%s  %s", cells[ncols - 1], p->error);
            cells[ncols - 1] = last;
        }
        print_row(cells, width, right, ncols, C_STATUS,
                  colour ? status_colour(p->status) : NULL);
    }
    if (!m->nparts)
        printf("(no partitions: the group has no committed offsets this principal may see "
               "and its members hold none%s)\n",
               m->o->topic ? "" : "; -t TOPIC shows a topic's lag anyway");
    if (g->nmembers)
        print_members(g, colour);
}

json_t *lag_json_int(int64_t v, bool known)
{
    return known && v >= 0 ? json_integer((json_int_t)v) : json_null();
}

json_t *lag_json_seconds(double v, bool known)
{
    return known && v >= 0 ? json_real(round(v * 1000) / 1000) : json_null();
}

json_t *lag_json_text(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

void lag_json_put_reading(json_t *o, const char *topic, int32_t partition, bool ok,
                          int64_t committed, int64_t high, int64_t low, int64_t lag,
                          double lag_seconds, bl_lag_time_method_t method,
                          bl_lag_status_t status)
{
    json_object_set_new(o, "topic", json_string(topic));
    json_object_set_new(o, "partition", json_integer(partition));
    json_object_set_new(o, "committed", lag_json_int(committed, ok));
    json_object_set_new(o, "high_watermark", lag_json_int(high, ok));
    json_object_set_new(o, "low_watermark", lag_json_int(low, ok));
    json_object_set_new(o, "lag", lag_json_int(lag, ok));
    json_object_set_new(o, "lag_seconds", lag_json_seconds(lag_seconds, ok));
    json_object_set_new(o, "lag_seconds_method",
                        json_string(bl_lag_time_method_name(ok ? method : BL_LAG_TIME_NONE)));
    json_object_set_new(o, "status", json_string(bl_lag_status_name(status)));
}

void lag_json_put_holder(json_t *o, const member_t *mb)
{
    json_object_set_new(o, "consumer_id", lag_json_text(mb ? mb->consumer_id : NULL));
    json_object_set_new(o, "client_id", lag_json_text(mb ? mb->client_id : NULL));
    json_object_set_new(o, "host", lag_json_text(mb ? mb->host : NULL));
}

/* The group's state and member count, and who holds the partition: null
 * where the broker could not say (or nobody holds it). */
static void put_membership(json_t *o, const group_view_t *g, const part_state_t *p)
{
    const member_t *mb = p->member >= 0 ? &g->members[p->member] : NULL;

    json_object_set_new(o, "group_state", lag_json_text(g->state));
    json_object_set_new(o, "group_protocol", lag_json_text(g->protocol));
    json_object_set_new(o, "group_members",
                        g->described ? json_integer((json_int_t)g->nmembers) : json_null());
    lag_json_put_holder(o, mb);
}

void lag_print_json(const monitor_t *m)
{
    char when[40];

    bl_iso8601(m->eval_ms, when, sizeof(when));
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        json_t *o = json_object();
        char *line;
        json_object_set_new(o, "time", json_string(when));
        json_object_set_new(o, "group", json_string(m->o->group));
        lag_json_put_reading(o, p->topic, p->partition, p->ok, p->committed, p->high, p->low,
                             p->lag, p->lag_seconds, p->lag_seconds_method, p->status);
        json_object_set_new(o, "group_status", json_string(bl_lag_status_name(m->status)));
        json_object_set_new(o, "evaluation", json_integer((json_int_t)m->evaluations));
        put_membership(o, &m->group, p);
        if (!p->ok)
            json_object_set_new(o, "error", json_string(p->error));
        line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(12));
        if (line)
            puts(line);
        free(line);
        json_decref(o);
    }
}

static void labels(FILE *fp, const char *group, const part_state_t *p)
{
    fputc('{', fp);
    if (group) {
        fputs("consumergroup=\"", fp);
        bl_prom_label(fp, group);
        fputs("\",", fp);
    }
    fputs("topic=\"", fp);
    bl_prom_label(fp, p->topic);
    fprintf(fp, "\",partition=\"%d\"}", (int)p->partition);
}

enum prom_value { PV_LAG, PV_LAG_SECONDS, PV_COMMITTED, PV_HIGH, PV_LOW, PV_STATUS };

static void prom_family(FILE *fp, const monitor_t *m, const char *name,
                        const char *help, enum prom_value which, bool group_label)
{
    fprintf(fp, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
    for (size_t i = 0; i < m->nparts; i++) {
        const part_state_t *p = &m->parts[i];
        if (which != PV_STATUS && !p->ok)
            continue;
        if ((which == PV_LAG_SECONDS && p->lag_seconds < 0) ||
            (which == PV_COMMITTED && p->committed < 0))
            continue;
        fputs(name, fp);
        labels(fp, group_label ? m->o->group : NULL, p);
        switch (which) {
        case PV_LAG:
            fprintf(fp, " %lld\n", (long long)p->lag);
            break;
        case PV_LAG_SECONDS:
            fprintf(fp, " %.3f\n", p->lag_seconds);
            break;
        case PV_COMMITTED:
            fprintf(fp, " %lld\n", (long long)p->committed);
            break;
        case PV_HIGH:
            fprintf(fp, " %lld\n", (long long)p->high);
            break;
        case PV_LOW:
            fprintf(fp, " %lld\n", (long long)p->low);
            break;
        case PV_STATUS:
            fprintf(fp, " %d\n", (int)p->status);
            break;
        }
    }
}

static void write_prometheus(FILE *fp, const void *arg)
{
    const monitor_t *m = arg;

    prom_family(fp, m, "kafka_consumergroup_lag",
                "High watermark minus the group's committed offset.", PV_LAG, true);
    prom_family(fp, m, "kafka_consumergroup_lag_seconds",
                LAG_SECONDS_HELP, PV_LAG_SECONDS, true);
    prom_family(fp, m, "kafka_consumergroup_current_offset",
                "The group's committed offset.", PV_COMMITTED, true);
    prom_family(fp, m, "kafka_topic_partition_current_offset",
                "The partition's high watermark.", PV_HIGH, false);
    prom_family(fp, m, "kafka_topic_partition_oldest_offset",
                "The partition's low watermark.", PV_LOW, false);
    prom_family(fp, m, "ballast_lag_partition_status",
                "Lag status: 0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.",
                PV_STATUS, true);
    fputs("# HELP ballast_lag_group_status The group's worst partition status: "
          "0 OK, 1 WARN, 2 REWIND, 3 STALL, 4 STOP, 5 ERR.\n"
          "# TYPE ballast_lag_group_status gauge\nballast_lag_group_status{consumergroup=\"",
          fp);
    bl_prom_label(fp, m->o->group);
    fprintf(fp, "\"} %d\n", (int)m->status);
    if (m->group.described) {
        fputs("# HELP ballast_lag_group_members Members of the group.\n"
              "# TYPE ballast_lag_group_members gauge\n"
              "ballast_lag_group_members{consumergroup=\"",
              fp);
        bl_prom_label(fp, m->o->group);
        fprintf(fp, "\"} %zu\n", m->group.nmembers);
    }
    fputs("# HELP ballast_lag_evaluations_total Evaluations made.\n"
          "# TYPE ballast_lag_evaluations_total counter\n"
          "ballast_lag_evaluations_total{consumergroup=\"",
          fp);
    bl_prom_label(fp, m->o->group);
    fprintf(fp, "\"} %lu\n", m->evaluations);
    if (m->alerts)
        alerts_prometheus(fp, m->alerts, "consumergroup", m->o->group);
}

char *lag_render_prometheus(const monitor_t *m)
{
    return bl_text(write_prometheus, m);
}
