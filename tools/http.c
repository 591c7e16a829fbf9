/*
 * http.c - the command's HTTP server, on libmicrohttpd with its own polling
 * thread. The library opens no socket; this file is where the daemon's
 * metrics, health checks, status document and dashboard meet the network.
 *
 * The listening socket is made here rather than by libmicrohttpd so that a
 * bind failure can be reported precisely (which address, which errno) and
 * so that the server binds only the address it was given: loopback unless
 * the operator names another interface.
 */
#include "http.h"

#include "cli.h"
#include "dashboard_html.h"

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#if MHD_VERSION < 0x00097002
typedef int MHD_RESULT;
#else
typedef enum MHD_Result MHD_RESULT;
#endif

struct http_server {
    struct MHD_Daemon *daemon;
    http_route_fn *route;
    void *opaque;
    char address[128];
};

/* The page must not reach anything but its own origin: say so to the
 * browser too, so a mistake in the page cannot fetch from elsewhere. */
static const char dashboard_csp[] =
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

/* Splits "HOST:PORT", "[V6]:PORT" or "PORT" into host and port text. */
static int split_listen(const char *text, char *host, size_t hsize, char *port,
                        size_t psize)
{
    const char *colon, *p;
    size_t hlen;

    if (text[0] == '[') {
        const char *end = strchr(text, ']');
        if (!end || end[1] != ':')
            return -1;
        hlen = (size_t)(end - text - 1);
        if (hlen >= hsize)
            return -1;
        memcpy(host, text + 1, hlen);
        host[hlen] = '\0';
        colon = end + 1;
    } else if ((colon = strrchr(text, ':'))) {
        hlen = (size_t)(colon - text);
        if (hlen >= hsize || memchr(text, ':', hlen))
            return -1; /* an IPv6 address needs brackets */
        memcpy(host, text, hlen);
        host[hlen] = '\0';
    } else {
        host[0] = '\0';
        colon = text - 1;
    }
    if (!host[0])
        snprintf(host, hsize, "127.0.0.1");
    p = colon + 1;
    if (!*p || strlen(p) >= psize || strspn(p, "0123456789") != strlen(p) ||
        strtol(p, NULL, 10) > 65535)
        return -1;
    snprintf(port, psize, "%s", p);
    return 0;
}

/* Binds and listens on the first address @p host:@p port resolves to.
 * @returns the socket, or -1 with a reason in @p errbuf. */
static int open_listener(const char *address, char *errbuf, size_t errsize)
{
    char host[256], port[16];
    struct addrinfo hints, *res, *ai;
    int fd = -1, gai, saved = 0;

    if (split_listen(address, host, sizeof(host), port, sizeof(port))) {
        snprintf(errbuf, errsize,
                 "cannot listen on %s: expected HOST:PORT, [IPV6]:PORT or PORT",
                 address);
        return -1;
    }
    memset(&hints, 0, sizeof(hints));
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    if ((gai = getaddrinfo(host, port, &hints, &res))) {
        snprintf(errbuf, errsize, "cannot listen on %s: %s", address,
                 gai_strerror(gai));
        return -1;
    }
    for (ai = res; ai; ai = ai->ai_next) {
        int one = 1;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (ai->ai_family == AF_INET6)
            setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
        if (!bind(fd, ai->ai_addr, ai->ai_addrlen) && !listen(fd, 64))
            break;
        saved = errno;
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        snprintf(errbuf, errsize, "cannot listen on %s: %s", address,
                 strerror(saved ? saved : EADDRNOTAVAIL));
    return fd;
}

static void describe_bound(int fd, char *out, size_t size)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    char ip[INET6_ADDRSTRLEN] = "?";

    if (getsockname(fd, (struct sockaddr *)&ss, &len)) {
        snprintf(out, size, "?");
        return;
    }
    if (ss.ss_family == AF_INET6) {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip));
        snprintf(out, size, "[%s]:%u", ip, (unsigned)ntohs(a->sin6_port));
    } else {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip));
        snprintf(out, size, "%s:%u", ip, (unsigned)ntohs(a->sin_port));
    }
}

static MHD_RESULT send_text(struct MHD_Connection *conn, unsigned int status,
                            const char *text, const char *allow)
{
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        strlen(text), (void *)text, MHD_RESPMEM_PERSISTENT);
    MHD_RESULT ret;

    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", "text/plain; charset=utf-8");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    if (allow)
        MHD_add_response_header(resp, "Allow", allow);
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* A streamed body (http_response_t.stream) as libmicrohttpd reads it. */
typedef struct stream {
    long (*fn)(void *arg, char *buf, size_t max);
    void *arg;
    void (*release)(void *arg);
} stream_t;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    stream_t *st = cls;
    long n = st->fn(st->arg, buf, max);

    (void)pos;
    return n > 0 ? (ssize_t)n : n == 0 ? MHD_CONTENT_READER_END_OF_STREAM
                                       : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void stream_release(void *cls)
{
    stream_t *st = cls;

    if (st->release)
        st->release(st->arg);
    free(st);
}

/* The response of @p r's stream (which it then owns); NULL when out of
 * memory, the stream released. */
static struct MHD_Response *stream_response(const http_response_t *r)
{
    stream_t *st = malloc(sizeof(*st));
    struct MHD_Response *resp;

    if (!st) {
        if (r->stream_free)
            r->stream_free(r->stream_arg);
        return NULL;
    }
    *st = (stream_t){r->stream, r->stream_arg, r->stream_free};
    resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, stream_read, st,
                                             stream_release);
    if (!resp)
        stream_release(st);
    return resp;
}

static MHD_RESULT on_request(void *cls, struct MHD_Connection *conn,
                             const char *url, const char *method,
                             const char *version, const char *upload_data,
                             size_t *upload_data_size, void **con_cls)
{
    http_server_t *srv = cls;
    http_response_t r;
    struct MHD_Response *resp;
    MHD_RESULT ret;

    (void)version;
    (void)upload_data;
    (void)upload_data_size;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) && strcmp(method, MHD_HTTP_METHOD_HEAD))
        return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED,
                         "method not allowed: use GET\n", "GET, HEAD");
    memset(&r, 0, sizeof(r));
    srv->route(url, &r, srv->opaque);
    if (!r.status) {
        if (r.release)
            r.release(r.body);
        if (r.stream_free)
            r.stream_free(r.stream_arg);
        return send_text(conn, MHD_HTTP_NOT_FOUND, "not found\n", NULL);
    }
    if (r.stream) {
        if (!(resp = stream_response(&r)))
            return MHD_NO;
    } else if (!r.body)
        return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n",
                         NULL);
    else if (!(resp = r.release ? MHD_create_response_from_buffer_with_free_callback(
                                      r.len, r.body, r.release)
                                : MHD_create_response_from_buffer(r.len, r.body,
                                                                  MHD_RESPMEM_PERSISTENT))) {
        if (r.release)
            r.release(r.body);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type",
                            r.content_type ? r.content_type : "text/plain");
    MHD_add_response_header(resp, "Cache-Control", "no-store");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (r.content_type && !strncmp(r.content_type, "text/html", 9))
        MHD_add_response_header(resp, "Content-Security-Policy", dashboard_csp);
    ret = MHD_queue_response(conn, (unsigned int)r.status, resp);
    MHD_destroy_response(resp);
    return ret;
}

int http_server_start(const char *address, http_route_fn *route, void *opaque,
                      http_server_t **srvp, char *errbuf, size_t errsize)
{
    http_server_t *srv;
    int fd;

    *srvp = NULL;
    if ((fd = open_listener(address, errbuf, errsize)) < 0)
        return -1;
    if (!(srv = calloc(1, sizeof(*srv)))) {
        close(fd);
        snprintf(errbuf, errsize, "cannot listen on %s: out of memory", address);
        return -1;
    }
    srv->route = route;
    srv->opaque = opaque;
    describe_bound(fd, srv->address, sizeof(srv->address));
    srv->daemon = MHD_start_daemon(
        MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL, 0, NULL, NULL, on_request,
        srv, MHD_OPTION_LISTEN_SOCKET, fd, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned int)10, MHD_OPTION_CONNECTION_LIMIT, (unsigned int)64,
        MHD_OPTION_END);
    if (!srv->daemon) {
        close(fd);
        free(srv);
        snprintf(errbuf, errsize, "cannot listen on %s: libmicrohttpd failed to start",
                 address);
        return -1;
    }
    *srvp = srv;
    return 0;
}

const char *http_server_address(const http_server_t *srv)
{
    return srv->address;
}

void http_server_stop(http_server_t *srv)
{
    if (!srv)
        return;
    /* MHD closes the listening socket it was given. */
    MHD_stop_daemon(srv->daemon);
    free(srv);
}

/* ---- the daemon's routes ------------------------------------------------ */

static void respond_check(http_response_t *r, int ok, const char *reason)
{
    size_t len = strlen(reason);

    r->status = ok ? 200 : 503;
    r->content_type = "text/plain; charset=utf-8";
    r->release = free;
    if ((r->body = malloc(len + 2))) {
        memcpy(r->body, reason, len);
        r->body[len] = '\n';
        r->body[len + 1] = '\0';
        r->len = len + 1;
    }
}

/* @p body: a document from the library (NULL: out of memory). */
static void respond_json(http_response_t *r, char *body)
{
    r->status = 200;
    r->content_type = "application/json";
    r->body = body;
    r->release = ballast_free;
}

void http_consumer_routes(const char *path, http_response_t *r, void *opaque)
{
    ballast_consumer_t *cons = opaque;
    char reason[512];

    if (!strcmp(path, "/metrics")) {
        r->status = 200;
        r->content_type = "text/plain; version=0.0.4; charset=utf-8";
        r->body = ballast_consumer_metrics(cons);
        r->release = ballast_free;
    } else if (!strcmp(path, "/healthz")) {
        int ok = ballast_consumer_healthy(cons, reason, sizeof(reason));
        respond_check(r, ok, ok ? "ok" : reason);
    } else if (!strcmp(path, "/readyz")) {
        int ok = ballast_consumer_ready(cons, reason, sizeof(reason));
        respond_check(r, ok, ok ? "ok" : reason);
    } else if (!strcmp(path, "/status.json")) {
        respond_json(r, ballast_consumer_status_json(cons));
    } else if (!strcmp(path, "/history.json")) {
        respond_json(r, ballast_consumer_history_json(cons));
    } else if (!strcmp(path, "/") || !strcmp(path, "/index.html")) {
        r->status = 200;
        r->content_type = "text/html; charset=utf-8";
        r->body = (char *)dashboard_html;
        r->len = sizeof(dashboard_html);
        r->release = NULL;
        return;
    }
    if (r->body && !r->len)
        r->len = strlen(r->body);
}

/* One info line in the library's log format (`log.format`), so that the
 * daemon's stderr stays machine-readable. */
static void log_info(const ballast_conf_t *conf, const char *msg)
{
    const char *level = ballast_conf_get(conf, "log.level");
    const char *format = ballast_conf_get(conf, "log.format");
    char when[40];

    if (level && (!strcmp(level, "warn") || !strcmp(level, "error")))
        return;
    bl_iso8601(bl_wall_ms(), when, sizeof(when));
    if (format && !strcmp(format, "json"))
        fprintf(stderr, "{\"ts\":\"%s\",\"level\":\"info\",\"msg\":\"%s\"}\n", when, msg);
    else
        fprintf(stderr, "ts=%s level=info msg=\"%s\"\n", when, msg);
}

int http_start_for_consumer(const ballast_conf_t *conf, ballast_consumer_t *cons,
                            http_server_t **srvp)
{
    const char *address = ballast_conf_get(conf, "metrics.listen");
    char errbuf[512], msg[256];

    *srvp = NULL;
    if (!address || !*address)
        return 0;
    if (http_server_start(address, http_consumer_routes, cons, srvp, errbuf,
                          sizeof(errbuf))) {
        cli_error("metrics.listen: %s", errbuf);
        return EX_CONFIG;
    }
    snprintf(msg, sizeof(msg), "metrics listening on %s (http://%s/)",
             http_server_address(*srvp), http_server_address(*srvp));
    log_info(conf, msg);
    return 0;
}
