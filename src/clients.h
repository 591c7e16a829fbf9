/*
 * clients.h - the librdkafka clients of a consumer (clients.c). Internal.
 */
#ifndef BALLAST_CLIENTS_H
#define BALLAST_CLIENTS_H

#include "runtime.h"

/** Said of a fatal error when another instance with our transactional.id
 *  took over. */
#define BL_FENCED_NOTE " (another instance with the same transactional.id took over)"

/** Sets up what the clients need: @p cbs (kept, not copied) is what every
 *  client made from now on calls back; librdkafka's complaints are summed
 *  up for the start-up error until bl_clients_started(). */
void bl_clients_init(ballast_consumer_t *c, const bl_client_cbs_t *cbs);
/** Start-up is over: librdkafka's complaints are logged from now on. */
void bl_clients_started(ballast_consumer_t *c);
void bl_clients_free(ballast_consumer_t *c);

/** The consumer's configuration: ballast's defaults, then the kafka.* keys
 *  of @p conf; the caller owns *rkconfp (bl_make_client() and `ballast
 *  check` make their consumers from it). */
ballast_error_t *bl_consumer_conf_new(const ballast_conf_t *conf, rd_kafka_conf_t **rkconfp);
/** Makes the consumer or the producer handle from the kafka.* keys, with
 *  the callbacks of bl_clients_init(). */
ballast_error_t *bl_make_client(ballast_consumer_t *c, bool producer, rd_kafka_t **rkp);

/** Waits up to startup.timeout.ms for the cluster's metadata and checks
 *  that every topic the configuration needs exists, asking about those
 *  topics alone (every topic only where asking about one would create it:
 *  kafka.allow.auto.create.topics = true). A refusal no retry can
 *  fix (credentials, certificate) ends the wait at once; so does a stop.
 *  Says every 5 s what it waits for. Poll thread, before the run. */
ballast_error_t *bl_clients_check_cluster(ballast_consumer_t *c);

/** Whether @p err says another instance with our transactional.id fenced
 *  this one. */
bool bl_kafka_fenced(rd_kafka_resp_err_t err);

/** Stops the pipeline on @p rk's fatal error (librdkafka's error_cb for the
 *  producer, a consumer error event for the consumer), with the error kind
 *  it calls for. Any thread. */
void bl_on_fatal(ballast_consumer_t *c, rd_kafka_t *rk);

/** rd_kafka_committed(), asked again while the group coordinator is
 *  loading or moving (librdkafka reports that instead of waiting), within
 *  @p timeout_ms in all. */
rd_kafka_resp_err_t bl_committed(rd_kafka_t *rk, rd_kafka_topic_partition_list_t *list,
                                 int timeout_ms);

/** rd_kafka_destroy() of @p rk, waited for at most 10 s on a thread of its
 *  own (librdkafka has had destroys that hang, and a stop must end); @p what
 *  names it in the warning. */
void bl_client_destroy(ballast_consumer_t *c, rd_kafka_t *rk, const char *what);

#endif
