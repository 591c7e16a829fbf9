/*
 * webhook.c - alert notifications over HTTP: a queue and a thread per URL,
 * libcurl's easy interface in that thread, counters per tag (see
 * webhook.h).
 */
#include "webhook.h"

#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define BACKOFF_FIRST_MS 500
#define BACKOFF_MAX_MS 30000

/* A body waiting, and whose counters its delivery goes to. */
typedef struct queued {
    char *body;
    size_t tag;
} queued_t;

struct webhook {
    char *url;
    char shown[256]; /* webhook_public_url() */
    webhook_opts_t o;
    pthread_t thread;
    pthread_mutex_t mtx; /* guards what follows */
    pthread_cond_t cond;
    queued_t *queue;     /* a ring of queue_max bodies */
    size_t head, count;
    bool stopping;
    int64_t stop_by_ms;  /* monotonic: nothing runs past it once stopping */
    webhook_counts_t *counts; /* one per tag */
    size_t ntags;
    bool failing;        /* the last delivery failed (logged once) */
    unsigned long failed_since; /* deliveries failed since the last success */
    unsigned long dropped;      /* bodies dropped from a full queue: logged once */
};

const char *webhook_reason_name(webhook_reason_t r)
{
    static const char *const names[] = {"timeout", "connect",    "http_5xx",
                                        "http_4xx", "queue_full", "other"};
    return r < WEBHOOK_REASON_COUNT ? names[r] : "other";
}

int webhook_global_init(char *errbuf, size_t errsize)
{
    CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);

    if (rc) {
        snprintf(errbuf, errsize, "cannot initialise libcurl: %s", curl_easy_strerror(rc));
        return -1;
    }
    return 0;
}

int webhook_check_url(const char *url, char *errbuf, size_t errsize)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL;
    CURLUcode rc;
    int ret = -1;

    if (!u) {
        snprintf(errbuf, errsize, "out of memory");
        return -1;
    }
    if ((rc = curl_url_set(u, CURLUPART_URL, url, 0)))
        snprintf(errbuf, errsize, "not a URL: \"%s\": %s", url, curl_url_strerror(rc));
    else if (curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) ||
             (strcmp(scheme, "http") && strcmp(scheme, "https")))
        snprintf(errbuf, errsize, "not an http:// or https:// URL: \"%s\"", url);
    else if (curl_url_get(u, CURLUPART_HOST, &host, 0) || !*host)
        snprintf(errbuf, errsize, "no host in the URL \"%s\"", url);
    else
        ret = 0;
    curl_free(scheme);
    curl_free(host);
    curl_url_cleanup(u);
    return ret;
}

void webhook_public_url(const char *url, char *out, size_t size)
{
    CURLU *u = curl_url();
    char *scheme = NULL, *host = NULL, *port = NULL;

    snprintf(out, size, "(a webhook)");
    if (u && !curl_url_set(u, CURLUPART_URL, url, 0) &&
        !curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) &&
        !curl_url_get(u, CURLUPART_HOST, &host, 0)) {
        curl_url_get(u, CURLUPART_PORT, &port, 0);
        snprintf(out, size, "%s://%s%s%s/...", scheme, host, port ? ":" : "", port ? port : "");
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
}

/* ---- one try -------------------------------------------------------------- */

/* Ends a transfer in flight once the webhook is stopping past its grace. */
static int progress_cb(void *opaque, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    webhook_t *w = opaque;
    bool stop;

    (void)dt, (void)dn, (void)ut, (void)un;
    pthread_mutex_lock(&w->mtx);
    stop = w->stopping && bl_now_ms() >= w->stop_by_ms;
    pthread_mutex_unlock(&w->mtx);
    return stop;
}

/* The answer's body is not read: only its status matters. */
static size_t discard_cb(char *p, size_t size, size_t n, void *opaque)
{
    (void)p, (void)opaque;
    return size * n;
}

/* Posts @p body once, within @p timeout_ms. @returns -1 when delivered,
 * else the reason; *retry says whether another try may succeed. */
static int post_once(webhook_t *w, CURL *h, const queued_t *q, long timeout_ms, bool *retry)
{
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    long status = 0;
    CURLcode rc;

    curl_easy_reset(h);
    curl_easy_setopt(h, CURLOPT_URL, w->url);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, q->body);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ballast-lag/" BALLAST_VERSION_STR);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, discard_cb);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, progress_cb);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, w);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    rc = curl_easy_perform(h);
    curl_slist_free_all(headers);
    pthread_mutex_lock(&w->mtx);
    w->counts[q->tag].attempts++;
    pthread_mutex_unlock(&w->mtx);
    *retry = true;
    switch (rc) {
    case CURLE_OK:
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200 && status < 300)
            return -1;
        *retry = status >= 500 || status == 429;
        return *retry ? WEBHOOK_HTTP_5XX : WEBHOOK_HTTP_4XX;
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_ABORTED_BY_CALLBACK:
        return WEBHOOK_TIMEOUT;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
        return WEBHOOK_CONNECT;
    default:
        return WEBHOOK_OTHER;
    }
}

/* ---- the thread ------------------------------------------------------------ */

/* Waits until @p until_ms (monotonic clock). Call with w->mtx held. @returns
 * false when the stop deadline came first. */
static bool wait_until(webhook_t *w, int64_t until_ms)
{
    int64_t now;

    while ((now = bl_now_ms()) < until_ms) {
        int64_t end = until_ms;
        struct timespec ts;
        if (w->stopping && now >= w->stop_by_ms)
            return false;
        if (w->stopping && w->stop_by_ms < end)
            end = w->stop_by_ms;
        ts.tv_sec = end / 1000;
        ts.tv_nsec = (end % 1000) * 1000000;
        pthread_cond_timedwait(&w->cond, &w->mtx, &ts);
    }
    return true;
}

/* Delivers @p q, trying again with back-off. @returns -1 when delivered,
 * else the reason of the last failure. */
static int deliver(webhook_t *w, CURL *h, const queued_t *q)
{
    int64_t start = bl_now_ms(), deadline = start + (int64_t)(w->o.retry_for_s * 1000);
    int64_t backoff = BACKOFF_FIRST_MS;
    long timeout_ms = (long)(w->o.timeout_s * 1000);

    for (;;) {
        bool retry, go_on;
        int reason = post_once(w, h, q, timeout_ms, &retry);
        int64_t next = bl_now_ms() + backoff;
        if (reason < 0 || !retry || next > deadline)
            return reason;
        pthread_mutex_lock(&w->mtx);
        go_on = wait_until(w, next);
        pthread_mutex_unlock(&w->mtx);
        if (!go_on)
            return reason;
        backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
    }
}

/* Counts and, on the first failure after a success, logs a delivery's end. */
static void note_result(webhook_t *w, size_t tag, int reason)
{
    pthread_mutex_lock(&w->mtx);
    if (reason < 0) {
        w->counts[tag].sent++;
        if (w->failing)
            fprintf(stderr, "ballast: lag: webhook %s delivers again (%lu notification%s "
                    "failed meanwhile)\n", w->shown, w->failed_since,
                    w->failed_since == 1 ? "" : "s");
        w->failing = false;
        w->failed_since = 0;
    } else {
        w->counts[tag].failures[reason]++;
        w->failed_since++;
        if (!w->failing)
            fprintf(stderr, "ballast: lag: webhook %s: a notification failed (%s, tried for "
                    "up to %g s); failures are counted in ballast_lag_alert_failures_total "
                    "and not logged again until one succeeds\n", w->shown,
                    webhook_reason_name((webhook_reason_t)reason), w->o.retry_for_s);
        w->failing = true;
    }
    pthread_mutex_unlock(&w->mtx);
}

static void *webhook_main(void *arg)
{
    webhook_t *w = arg;
    CURL *h = curl_easy_init();

    pthread_mutex_lock(&w->mtx);
    for (;;) {
        queued_t q;
        while (!w->count && !w->stopping)
            pthread_cond_wait(&w->cond, &w->mtx);
        if (!w->count || (w->stopping && bl_now_ms() >= w->stop_by_ms))
            break;
        q = w->queue[w->head];
        w->head = (w->head + 1) % w->o.queue_max;
        w->count--;
        pthread_mutex_unlock(&w->mtx);
        note_result(w, q.tag, h ? deliver(w, h, &q) : WEBHOOK_OTHER);
        free(q.body);
        pthread_mutex_lock(&w->mtx);
    }
    pthread_mutex_unlock(&w->mtx);
    if (h)
        curl_easy_cleanup(h);
    return NULL;
}

/* ---- the interface ------------------------------------------------------------ */

webhook_t *webhook_start(const char *url, const webhook_opts_t *o, size_t ntags,
                         char *errbuf, size_t errsize)
{
    webhook_t *w = calloc(1, sizeof(*w));
    pthread_condattr_t attr;
    int err;

    if (!w || !(w->url = strdup(url)) ||
        !(w->queue = calloc(o->queue_max, sizeof(*w->queue))) ||
        !(w->counts = calloc(ntags ? ntags : 1, sizeof(*w->counts)))) {
        snprintf(errbuf, errsize, "out of memory");
        goto fail;
    }
    w->o = *o;
    w->ntags = ntags ? ntags : 1;
    webhook_public_url(url, w->shown, sizeof(w->shown));
    pthread_mutex_init(&w->mtx, NULL);
    /* Waits are timed on the monotonic clock, as bl_now_ms(): a step of
     * the wall clock neither stretches nor skips a back-off. */
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&w->cond, &attr);
    pthread_condattr_destroy(&attr);
    if ((err = pthread_create(&w->thread, NULL, webhook_main, w))) {
        snprintf(errbuf, errsize, "cannot start a thread: %s", strerror(err));
        pthread_cond_destroy(&w->cond);
        pthread_mutex_destroy(&w->mtx);
        goto fail;
    }
    return w;
fail:
    if (w) {
        free(w->counts);
        free(w->queue);
        free(w->url);
    }
    free(w);
    return NULL;
}

void webhook_post(webhook_t *w, size_t tag, const char *body)
{
    char *copy = strdup(body);

    if (!copy || tag >= w->ntags) {
        free(copy);
        return;
    }
    pthread_mutex_lock(&w->mtx);
    if (w->count == w->o.queue_max) {
        queued_t *oldest = &w->queue[w->head];
        free(oldest->body);
        w->head = (w->head + 1) % w->o.queue_max;
        w->count--;
        w->counts[oldest->tag].failures[WEBHOOK_QUEUE_FULL]++;
        if (!w->dropped++)
            fprintf(stderr, "ballast: lag: webhook %s: more than %zu notifications waiting; "
                    "the oldest are dropped (ballast_lag_alert_failures_total"
                    "{reason=\"queue_full\"})\n", w->shown, w->o.queue_max);
    }
    w->queue[(w->head + w->count++) % w->o.queue_max] = (queued_t){copy, tag};
    pthread_cond_signal(&w->cond);
    pthread_mutex_unlock(&w->mtx);
}

void webhook_add_counts(webhook_t *w, size_t tag, webhook_counts_t *c)
{
    if (tag >= w->ntags)
        return;
    pthread_mutex_lock(&w->mtx);
    c->sent += w->counts[tag].sent;
    c->attempts += w->counts[tag].attempts;
    for (int i = 0; i < WEBHOOK_REASON_COUNT; i++)
        c->failures[i] += w->counts[tag].failures[i];
    pthread_mutex_unlock(&w->mtx);
}

void webhook_stop(webhook_t *w, int64_t stop_by_ms)
{
    if (!w)
        return;
    pthread_mutex_lock(&w->mtx);
    w->stopping = true;
    w->stop_by_ms = stop_by_ms;
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mtx);
    pthread_join(w->thread, NULL);
    for (size_t i = 0; i < w->count; i++)
        free(w->queue[(w->head + i) % w->o.queue_max].body);
    pthread_cond_destroy(&w->cond);
    pthread_mutex_destroy(&w->mtx);
    free(w->counts);
    free(w->queue);
    free(w->url);
    free(w);
}
