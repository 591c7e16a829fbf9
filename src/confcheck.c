/*
 * confcheck.c - ballast_conf_check(): what `ballast check` reports, item by
 * item.
 *
 * Every verdict comes from the code that makes it at start-up: conf.c's
 * validation, each built-in handler's own check (the same parsing,
 * connecting and preparing its init does), and cluster.c's verdicts on the
 * broker and the topics. This file only orders the items, waits for the
 * broker as start-up does, and reports each to check.c, which counts what
 * failed.
 *
 * The broker is asked with a consumer handle made like the real one (the
 * same kafka.* keys, so the same credentials), which never subscribes:
 * nothing joins the group, nothing is committed or produced.
 */
#include "check.h"
#include "clients.h"
#include "cluster.h"

#include <string.h>

/* ---- the broker and the topics ------------------------------------------ */

/* What librdkafka complained of while we waited: its error_cb, which
 * rd_kafka_poll() calls on our thread. */
typedef struct probe {
    int error;
    char reason[256];
} probe_t;

static void probe_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    probe_t *p = opaque;

    (void)rk;
    bl_kafka_note_cause(&p->error, p->reason, sizeof(p->reason), err, reason);
}

/* Quiet: the outcome is reported once, as an item. */
static void probe_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
    (void)rk;
    (void)level;
    (void)fac;
    (void)buf;
}

/* Waits up to startup.timeout.ms for the cluster's metadata, as start-up
 * does; a refusal no retry can fix ends the wait at once. */
static ballast_error_t *probe_cluster(const ballast_conf_t *conf, probe_t *p, rd_kafka_t **rkp,
                                      const struct rd_kafka_metadata **mdp)
{
    int64_t timeout = bl_conf_int(conf, "startup.timeout.ms");
    int64_t deadline = bl_now_ms() + timeout;
    rd_kafka_conf_t *rkconf;
    rd_kafka_resp_err_t kerr;
    ballast_error_t *err;
    char errstr[512];

    if ((err = bl_consumer_conf_new(conf, &rkconf)))
        return err;
    rd_kafka_conf_set_opaque(rkconf, p);
    rd_kafka_conf_set_error_cb(rkconf, probe_error);
    rd_kafka_conf_set_log_cb(rkconf, probe_log);
    if (!(*rkp = rd_kafka_new(RD_KAFKA_CONSUMER, rkconf, errstr, sizeof(errstr)))) {
        rd_kafka_conf_destroy(rkconf);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "kafka: cannot create the consumer: %s", errstr);
    }
    for (;;) {
        int64_t left = deadline - bl_now_ms();
        kerr = rd_kafka_metadata(*rkp, 1, NULL, mdp,
                                 (int)(left < 100 ? 100 : left > 2000 ? 2000 : left));
        if (!kerr)
            return NULL;
        rd_kafka_poll(*rkp, 0); /* serves probe_error */
        if ((err = bl_kafka_refused(p->error, p->reason)))
            return err;
        if (bl_now_ms() >= deadline || !bl_kafka_waitable(kerr))
            break;
    }
    return bl_kafka_unreachable(conf, timeout, *p->reason ? p->reason : rd_kafka_err2str(kerr));
}

typedef struct topic_walk {
    bl_check_t *ck;
    const struct rd_kafka_metadata *md; /* NULL: the broker did not answer */
    ballast_err_code_t broker_code;
} topic_walk_t;

static void check_topic(const char *key, const char *topic, void *opaque)
{
    topic_walk_t *w = opaque;
    char item[600];

    bl_fmt(item, sizeof(item), "topic %s", topic);
    if (w->md)
        bl_check_error(w->ck, item, bl_topic_missing(w->md, key, topic));
    else
        bl_check_report(w->ck, item, w->broker_code,
                        "%s: topic \"%s\" not checked (no metadata from the broker)", key,
                        topic);
}

static void check_cluster(const ballast_conf_t *conf, bl_check_t *ck)
{
    probe_t p = {0, ""};
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_t *rk = NULL;
    ballast_error_t *err = probe_cluster(conf, &p, &rk, &md);
    topic_walk_t walk = {ck, md, ballast_error_code(err)};
    char item[600];

    bl_fmt(item, sizeof(item), "broker %s", bl_conf_str(conf, "kafka.bootstrap.servers"));
    bl_check_error(ck, item, err);
    bl_each_needed_topic(conf, check_topic, &walk);
    if (md)
        rd_kafka_metadata_destroy(md);
    /* It never joined a group: there is nothing to leave. */
    if (rk)
        rd_kafka_destroy_flags(rk, RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
}

/* ---- the whole check ----------------------------------------------------- */

static const struct {
    const char *handler;
    void (*check)(const ballast_conf_t *conf, bl_check_t *ck);
} handler_checks[] = {
    {"postgres", bl_postgres_check},
    {"sqlite", bl_sqlite_check},
    {"exec", bl_exec_check},
    {"plugin", bl_plugin_check},
};

ballast_error_t *ballast_conf_check(const ballast_conf_t *conf, unsigned flags,
                                    ballast_check_cb *cb, void *opaque)
{
    bl_check_t ck = {flags, cb, opaque, 0, 0, BALLAST_OK};
    const char *handler = bl_conf_str(conf, "handler");
    void *ignored;

    bl_check_error(&ck, "configuration", ballast_conf_validate(conf));
    if (ck.failed)
        return bl_check_result(&ck); /* the rest depends on valid keys */
    if (bl_check_connects(&ck))
        check_cluster(conf, &ck);
    if (!bl_conf_handler(conf, &ignored)) /* else a handler given in code */
        for (size_t i = 0; i < sizeof(handler_checks) / sizeof(handler_checks[0]); i++)
            if (!strcmp(handler, handler_checks[i].handler))
                handler_checks[i].check(conf, &ck);
    return bl_check_result(&ck);
}
