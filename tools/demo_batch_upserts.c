/*
 * demo_batch_upserts.c - batched upserts, last write wins per key.
 *
 * 20,000 stock-level updates for 200 SKUs, keyed by SKU, are upserted into
 * one row per SKU with `processing = batch`: up to 500 messages per SQLite
 * transaction instead of one transaction per message. An upsert stream is
 * only correct if each key's updates are applied in the order they were
 * produced, so the check is that every SKU ends with the quantity (and the
 * offset) of its last update. examples/batch-upserts.conf is the same
 * pipeline into PostgreSQL.
 */
#include "demo.h"

#include <stdio.h>

#define UPDATES 20000
#define SKUS 200
#define PARTITIONS 4

static const char schema[] =
    "CREATE TABLE inventory (\n"
    "  sku            TEXT PRIMARY KEY,\n"
    "  qty            INTEGER NOT NULL,\n"
    "  updated_offset INTEGER NOT NULL\n"
    ");";

static const char sql[] =
    "INSERT INTO inventory(sku, qty, updated_offset) "
    "VALUES (:key, json_extract(:value, '$.qty'), :offset) "
    "ON CONFLICT(sku) DO UPDATE SET qty = excluded.qty, "
    "updated_offset = excluded.updated_offset";

int demo_batch_upserts(demo_t *d)
{
    static int last_qty[SKUS];
    static int64_t last_offset[SKUS];
    uint32_t seed = 7;
    int skus_seen = 0, wrong = 0, first_wrong = -1;
    char path[4096], sku[16];
    sqlite3 *db;
    sqlite3_stmt *stmt;
    ballast_conf_t *conf;
    ballast_stats_t st;
    int rc = -1;

    demo_say("invariant: each SKU's row holds its last update (per-key "
             "order kept)");
    if (demo_create_topic(d, "inventory", PARTITIONS))
        return -1;
    for (int s = 0; s < SKUS; s++) {
        last_qty[s] = -1;
        last_offset[s] = -1;
    }
    for (int i = 0; i < UPDATES; i++) {
        int s = (int)(demo_rand(&seed) % SKUS);

        last_qty[s] = (int)(demo_rand(&seed) % 1000);
        snprintf(sku, sizeof(sku), "SKU-%04d", s);
        /* The delivery report raises last_offset[s] to this record's
         * offset: afterwards it is the offset of the SKU's last update. */
        if (demo_produce(d, "inventory", sku, &last_offset[s],
                         "{\"sku\":\"%s\",\"qty\":%d}", sku, last_qty[s]))
            return -1;
    }
    if (demo_flush(d))
        return -1;
    for (int s = 0; s < SKUS; s++)
        skus_seen += last_qty[s] >= 0;
    demo_say("produced  %d updates of %d SKUs to inventory (%d partitions, "
             "keyed by SKU)",
             UPDATES, skus_seen, PARTITIONS);

    if (!(db = demo_db_open(d, "inventory.db", schema)))
        return -1;
    demo_path(d, "inventory.db", path, sizeof(path));
    conf = demo_conf(d, "demo-batch-upserts", "inventory",
                     (const char *const[]){"handler", "sqlite",
                                           "handler.sqlite.path", path,
                                           "handler.sqlite.sql", sql,
                                           "processing", "batch",
                                           "batch.max.messages", "500",
                                           NULL});
    if (conf && demo_consume(d, conf, UPDATES, &st) == 0) {
        int64_t rows = demo_db_int(db, "SELECT count(*) FROM inventory");

        if (sqlite3_prepare_v2(db,
                               "SELECT sku, qty, updated_offset "
                               "FROM inventory",
                               -1, &stmt, NULL) == SQLITE_OK) {
            while (sqlite3_step(stmt) == SQLITE_ROW) {
                int s = -1;
                const char *name = (const char *)sqlite3_column_text(stmt, 0);

                if (!name || sscanf(name, "SKU-%d", &s) != 1 || s < 0 ||
                    s >= SKUS ||
                    sqlite3_column_int(stmt, 1) != last_qty[s] ||
                    sqlite3_column_int64(stmt, 2) != last_offset[s]) {
                    if (!wrong++)
                        first_wrong = s;
                }
            }
            sqlite3_finalize(stmt);
        } else {
            wrong = -1;
        }
        demo_check(d, rows == skus_seen,
                   "rows in inventory (%lld) == SKUs (%d)", (long long)rows,
                   skus_seen);
        if (wrong > 0)
            demo_check(d, false,
                       "%d SKUs do not hold their last update (first: "
                       "SKU-%04d)",
                       wrong, first_wrong);
        else
            demo_check(d, wrong == 0,
                       "every SKU holds the qty and offset of its last "
                       "update");
        demo_check_all_handled(d, &st, UPDATES, "demo-batch-upserts", "inventory",
                               PARTITIONS);
        rc = 0;
    }
    ballast_conf_destroy(conf);
    sqlite3_close(db);
    return rc;
}
