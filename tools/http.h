/*
 * http.h - the command's small HTTP server (libmicrohttpd): the daemon's
 * /metrics, /healthz, /readyz, /status.json and dashboard, and the
 * Prometheus endpoint of `ballast lag --listen`.
 */
#ifndef BALLAST_HTTP_H
#define BALLAST_HTTP_H

#include <ballast/ballast.h>

#include <stddef.h>

typedef struct http_server http_server_t;

/** What a route answers. */
typedef struct http_response {
    int status;               /**< e.g. 200; 0 means 404 */
    const char *content_type; /**< a static string */
    char *body;               /**< released with release() after sending */
    size_t len;
    void (*release)(void *);  /**< free, ballast_free, or NULL for static */
    /** Instead of body: the body written a piece at a time, as it is sent,
     *  so that a large one is never whole in memory. Called on the
     *  server's thread with at most @p max bytes of room; @returns the
     *  bytes written, 0 at the end, or -1 on failure (the connection is
     *  then closed, so that the client sees a broken answer, not a short
     *  one). */
    long (*stream)(void *arg, char *buf, size_t max);
    void *stream_arg;
    void (*stream_free)(void *arg); /**< releases stream_arg, sent or not */
} http_response_t;

/**
 * Answers a GET (or HEAD) of @p path (without the query string). Runs on
 * the server's thread; must be thread-safe with respect to @p opaque.
 */
typedef void(http_route_fn)(const char *path, http_response_t *resp,
                            void *opaque);

/**
 * Listens on @p listen ("HOST:PORT", "[V6]:PORT", or "PORT" alone for
 * 127.0.0.1; port 0 picks a free one) and serves @p route on an internal
 * thread. Methods other than GET and HEAD get 405; routes that answer
 * status 0 give 404.
 * @returns 0 with *srvp set, or -1 with a one-line reason in @p errbuf
 *          ("cannot listen on 127.0.0.1:9464: Address already in use").
 */
int http_server_start(const char *listen, http_route_fn *route, void *opaque,
                      http_server_t **srvp, char *errbuf, size_t errsize);

/** @returns the bound address, e.g. "127.0.0.1:41234" (owned by @p srv). */
const char *http_server_address(const http_server_t *srv);

/** Stops serving (waits for requests in progress) and frees. NULL: no-op. */
void http_server_stop(http_server_t *srv);

/** The routes of `ballast run` for @p cons (passed as opaque). */
http_route_fn http_consumer_routes;

/**
 * The daemon's endpoint: when `metrics.listen` of @p conf is set, serves
 * http_consumer_routes for @p cons and logs the bound address on stderr.
 * @returns 0 (with *srvp NULL when disabled), or EX_CONFIG after printing
 *          "metrics.listen: cannot listen on ...".
 */
int http_start_for_consumer(const ballast_conf_t *conf, ballast_consumer_t *cons,
                            http_server_t **srvp);

#endif
