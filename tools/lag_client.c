/*
 * lag_client.c - the Kafka clients of `ballast lag`: made with the user's -X
 * properties, and the test that the cluster can be reached at all, which
 * tells a broker that refused our credentials or certificate from one that
 * is down.
 */
#include "lagmon.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>

/* The last error librdkafka reported on a client: used to tell a broker
 * that refused our credentials or certificate from one that is down. */
typedef struct client_error {
    rd_kafka_resp_err_t code;
    char reason[256];
} client_error_t;

static bool refused_by_broker(rd_kafka_resp_err_t err)
{
    return err == RD_KAFKA_RESP_ERR__AUTHENTICATION || err == RD_KAFKA_RESP_ERR__SSL;
}

/* Keeps a refusal once seen: librdkafka follows it with "all brokers are
 * down" and transport errors, its consequences. */
static void note_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
    client_error_t *e = opaque;
    (void)rk;
    if (refused_by_broker(e->code) && !refused_by_broker((rd_kafka_resp_err_t)err))
        return;
    e->code = (rd_kafka_resp_err_t)err;
    snprintf(e->reason, sizeof(e->reason), "%s", reason);
}

static client_error_t last_client_error;

rd_kafka_t *lag_client_new(const lag_opts_t *o, bool probe, char *errbuf, size_t errsize)
{
    /* The admin client names the watched group although it never joins it
     * (it never subscribes): librdkafka (2.4 to at least 2.14) dereferences
     * the client's own group handle when a ListConsumerGroupOffsets answer
     * says NOT_COORDINATOR, and a client without group.id has none
     * (librdkafka issue 5040). Watching all groups, it names one of its own. */
    const char *const plain[] = {"client.id", "ballast-lag", "group.id",
                                 o->group ? o->group : "ballast-lag", NULL};
    static const char *const prober[] = {"client.id", "ballast-lag-probe",
                                         "enable.partition.eof", "true",
                                         "enable.auto.commit", "false",
                                         "fetch.wait.max.ms", "100",
                                         "queued.max.messages.kbytes", "1024",
                                         "auto.offset.reset", "error",
                                         NULL};
    rd_kafka_conf_t *conf = cli_conf_new(o->bootstrap, o->timeout_ms, probe ? prober : plain,
                                         o->props, o->nprops, errbuf, errsize);
    rd_kafka_t *rk;

    if (!conf)
        return NULL;
    memset(&last_client_error, 0, sizeof(last_client_error));
    rd_kafka_conf_set_opaque(conf, &last_client_error);
    rd_kafka_conf_set_error_cb(conf, note_error);
    if ((rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errsize)))
        return rk;
    rd_kafka_conf_destroy(conf);
    return NULL;
}


int lag_reach(const lag_opts_t *o, rd_kafka_t *rk, char *errbuf, size_t errsize)
{
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err;

    /* A broker-only metadata request: the clearest unreachability test. */
    if (!(err = rd_kafka_metadata(rk, 0, NULL, &md, o->timeout_ms))) {
        rd_kafka_metadata_destroy(md);
        return 0;
    }
    rd_kafka_poll(rk, 0); /* serves the error callback */
    if (refused_by_broker(last_client_error.code)) {
        snprintf(errbuf, errsize, "the broker at %s refused the connection's %s: %s",
                 o->bootstrap,
                 last_client_error.code == RD_KAFKA_RESP_ERR__SSL
                     ? "TLS (check -X ssl.*)"
                     : "authentication (check -X sasl.*)",
                 last_client_error.reason);
        return EX_CONFIG;
    }
    snprintf(errbuf, errsize, "cannot reach the broker at %s: %s", o->bootstrap,
             rd_kafka_err2str(err));
    return EX_UNAVAILABLE;
}
