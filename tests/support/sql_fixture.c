/* sql_fixture.c - SQLite and PostgreSQL fixtures of the SQL handler tests
 * (see sql_fixture.h). */
#include "sql_fixture.h"

#include <librdkafka/rdkafka.h>
#include <libpq-fe.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void bt_batch_fill(bt_batch_t *b, size_t n, const char *topic, int64_t first)
{
    assert_true(n <= BT_BATCH_MAX);
    memset(b, 0, sizeof(*b));
    b->n = n;
    for (size_t i = 0; i < n; i++) {
        struct ballast_message_s *m = &b->m[i];
        char trace[32];
        snprintf(b->keys[i], sizeof(b->keys[i]), "k%zu", i);
        snprintf(b->values[i], sizeof(b->values[i]), "{\"n\": %zu}", i);
        snprintf(trace, sizeof(trace), "t%zu", i);
        m->topic = topic;
        m->partition = 2;
        m->offset = first + (int64_t)i;
        m->timestamp = 1700000000000LL + (int64_t)i;
        m->key = b->keys[i];
        m->key_len = strlen(b->keys[i]);
        m->value = b->values[i];
        m->value_len = strlen(b->values[i]);
        m->hdrs = rd_kafka_headers_new(2);
        m->hdrs_loaded = true;
        rd_kafka_header_add(m->hdrs, "x-trace-id", -1, trace, (ssize_t)strlen(trace));
        m->attempt = 1;
        b->mp[i] = m;
        b->rp[i] = &b->r[i];
    }
}

void bt_batch_set_value(bt_batch_t *b, size_t i, const char *v)
{
    b->m[i].value = v;
    b->m[i].value_len = v ? strlen(v) : 0;
}

void bt_batch_free(bt_batch_t *b)
{
    for (size_t i = 0; i < b->n; i++) {
        if (b->m[i].hdrs)
            rd_kafka_headers_destroy(b->m[i].hdrs);
        bl_result_reset(&b->r[i]);
    }
}

ballast_conf_t *bt_conf_from(const char *const *kv)
{
    ballast_conf_t *conf = ballast_conf_new();

    assert_non_null(conf);
    for (; kv[0]; kv += 2) {
        ballast_error_t *err = ballast_conf_set(conf, kv[0], kv[1]);
        if (err)
            fail_msg("conf %s: %s", kv[0], ballast_error_message(err));
    }
    return conf;
}

int bt_handler_init(const ballast_handler_t *h, const char *const *kv, int worker,
                    void **statep, char *err, size_t errsize)
{
    ballast_conf_t *conf = bt_conf_from(kv);
    ballast_handler_params_t p = {conf, worker, 1, NULL};
    int rc;

    err[0] = '\0';
    rc = h->init(statep, &p, err, errsize);
    ballast_conf_destroy(conf);
    return rc;
}

void bt_sqlite_path(const char *name, char *buf, size_t size)
{
    static const char *dir;

    if (!dir)
        dir = bt_tmpdir();
    snprintf(buf, size, "%s/%s", dir, name);
}

void bt_sqlite_exec(const char *path, const char *sql)
{
    sqlite3 *db;
    char *msg = NULL;

    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK)
        fail_msg("sqlite: %s: %s", sql, msg);
    sqlite3_close(db);
}

char bt_pg_dsn[1024];
char bt_pg_app[64];
static PGconn *admin; /* the test's own connection */

bool bt_pg_ready(void)
{
    return admin != NULL;
}

void bt_pg_admin_exec(const char *sql)
{
    PGresult *res = PQexec(admin, sql);

    if (PQresultStatus(res) != PGRES_COMMAND_OK && PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("postgres: %s: %s", sql, PQerrorMessage(admin));
    PQclear(res);
}

char *bt_pg_admin_text(const char *sql)
{
    PGresult *res = PQexec(admin, sql);
    char *v = NULL;

    if (PQresultStatus(res) != PGRES_TUPLES_OK)
        fail_msg("postgres: %s: %s", sql, PQerrorMessage(admin));
    if (PQntuples(res) > 0 && !PQgetisnull(res, 0, 0))
        v = strdup(PQgetvalue(res, 0, 0));
    PQclear(res);
    return v;
}

long bt_pg_admin_long(const char *sql)
{
    char *v = bt_pg_admin_text(sql);
    long n = v ? strtol(v, NULL, 10) : -999;

    free(v);
    return n;
}

void bt_pg_kill_sessions(void)
{
    char sql[256];

    snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid, 5000) FROM "
                               "pg_stat_activity WHERE application_name = '%s'",
             bt_pg_app);
    bt_pg_admin_exec(sql);
}

int bt_pg_schema_setup(const char *prefix)
{
    const char *base = getenv("BALLAST_TEST_PG");
    char sql[256];

    if (!base || !*base)
        return 0;
    snprintf(bt_pg_app, sizeof(bt_pg_app), "%s_%ld", prefix, (long)getpid());
    if (!strncmp(base, "postgres", 8))
        snprintf(bt_pg_dsn, sizeof(bt_pg_dsn),
                 "%s%capplication_name=%s&options=-csearch_path%%3D%s", base,
                 strchr(base, '?') ? '&' : '?', bt_pg_app, bt_pg_app);
    else
        snprintf(bt_pg_dsn, sizeof(bt_pg_dsn),
                 "%s application_name=%s options='-csearch_path=%s'", base, bt_pg_app,
                 bt_pg_app);
    admin = PQconnectdb(base);
    if (PQstatus(admin) != CONNECTION_OK) {
        fprintf(stderr, "BALLAST_TEST_PG: %s", PQerrorMessage(admin));
        PQfinish(admin);
        admin = NULL;
        return -1;
    }
    bt_pg_admin_exec("SET client_min_messages = warning");
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE; CREATE SCHEMA %s; "
                               "SET search_path = %s",
             bt_pg_app, bt_pg_app, bt_pg_app);
    bt_pg_admin_exec(sql);
    return 0;
}

void bt_pg_schema_teardown(void)
{
    char sql[128];

    if (!admin)
        return;
    bt_pg_kill_sessions();
    snprintf(sql, sizeof(sql), "DROP SCHEMA IF EXISTS %s CASCADE", bt_pg_app);
    bt_pg_admin_exec(sql);
    PQfinish(admin);
    admin = NULL;
}
