/*
 * webhook.h - delivers `ballast lag`'s alert notifications: an HTTP POST of
 * a JSON body to a URL (libcurl), from a thread of its own per URL, so that
 * a slow or dead receiver never holds up the evaluations.
 *
 * Each webhook has a bounded queue: when it is full, the oldest body is
 * dropped (and counted). A delivery is tried again after a timeout, a
 * refused or failed connection, an HTTP 5xx or 429, with exponential
 * back-off (0.5 s, 1 s, 2 s, ... at most 30 s between tries), until its
 * retry time has passed; any other HTTP 4xx is final. A failed delivery is
 * counted by reason and logged once, on the first failure after a success
 * (so a dead receiver is one line, not one per try or per alert); the next
 * success says so.
 */
#ifndef BALLAST_WEBHOOK_H
#define BALLAST_WEBHOOK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Why a delivery failed (or a body was never tried). */
typedef enum webhook_reason {
    WEBHOOK_TIMEOUT,    /* no answer within the timeout */
    WEBHOOK_CONNECT,    /* could not connect: refused, no route, name unknown, TLS */
    WEBHOOK_HTTP_5XX,   /* the receiver answered 5xx (or 429) until the retry time ended */
    WEBHOOK_HTTP_4XX,   /* the receiver refused the body (4xx): not tried again */
    WEBHOOK_QUEUE_FULL, /* dropped, oldest first, from a full queue */
    WEBHOOK_OTHER,      /* anything else libcurl reports */
    WEBHOOK_REASON_COUNT
} webhook_reason_t;

/** @returns "timeout", "connect", "http_5xx", "http_4xx", "queue_full" or
 *  "other". */
const char *webhook_reason_name(webhook_reason_t r);

typedef struct webhook_opts {
    double timeout_s;   /* per try: connecting and the whole request */
    double retry_for_s; /* no new try starts this long after the first */
    size_t queue_max;   /* bodies waiting, at most */
} webhook_opts_t;

/* Counters of a webhook: one set per tag (alert.h: per cluster) given
 * with each body. */
typedef struct webhook_counts {
    unsigned long sent;                              /* delivered (2xx) */
    unsigned long failures[WEBHOOK_REASON_COUNT];    /* by reason */
    unsigned long attempts;                          /* HTTP requests made */
} webhook_counts_t;

typedef struct webhook webhook_t;

/* Threads: webhook_post(), webhook_add_counts() may be called from any
 * thread; webhook_stop() once, from the thread that started it. */

/** Whether @p url is an http:// or https:// URL with a host. @returns 0, or
 *  -1 with a one-line reason. */
int webhook_check_url(const char *url, char *errbuf, size_t errsize);
/** What may be logged of @p url: its scheme, host and port only (a Slack
 *  URL's path is its secret). */
void webhook_public_url(const char *url, char *out, size_t size);

/** Initialises libcurl once for the process; call before any thread
 *  starts. @returns 0, or -1 with a reason. */
int webhook_global_init(char *errbuf, size_t errsize);
/** Starts the delivery thread of @p url (copied), with @p ntags sets of
 *  counters (tags 0 to ntags - 1). @returns NULL with a reason on
 *  failure. */
webhook_t *webhook_start(const char *url, const webhook_opts_t *o, size_t ntags,
                         char *errbuf, size_t errsize);
/** Queues a copy of @p body (JSON) for delivery, its outcome counted under
 *  @p tag; never blocks on the network. */
void webhook_post(webhook_t *w, size_t tag, const char *body);
/** Adds the webhook's counters of @p tag to @p c. */
void webhook_add_counts(webhook_t *w, size_t tag, webhook_counts_t *c);
/** Delivers what is queued until @p stop_by_ms (bl_now_ms()'s monotonic
 *  clock; a try in flight is then cut short), stops the thread and frees
 *  @p w. NULL is a no-op. */
void webhook_stop(webhook_t *w, int64_t stop_by_ms);

#endif
