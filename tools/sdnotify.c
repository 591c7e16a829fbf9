/*
 * sdnotify.c - systemd's notification protocol (sd_notify(3)) for
 * `ballast run`, and the thread that tells systemd how the consumer is.
 *
 * The protocol is one datagram of "KEY=VALUE" lines to the Unix socket named
 * by $NOTIFY_SOCKET (a path, or '@' for the abstract namespace). Linking
 * libsystemd for that would add a dependency to the command for a sendto().
 *
 * Why a thread and not the poll loop: the library's poll loop is not the
 * command's to hook into, and ballast_consumer_healthy() already answers
 * whether that loop ran within the last 10 s and no handler is stuck past
 * handler.timeout.ms. So the thread pings the watchdog only while that
 * holds, which is what /healthz answers too: a hung poll loop or a stuck
 * handler silences the watchdog and systemd restarts the service.
 */
#include "sdnotify.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ticker.h"
#include "util.h"

bool sdnotify_parse(const char *socket, const char *watchdog_usec,
                    const char *watchdog_pid, long self, sdnotify_target_t *t,
                    char *errbuf, size_t errsize)
{
    size_t len = socket ? strlen(socket) : 0;
    char *end;

    memset(t, 0, sizeof(*t));
    if (!len)
        return true;
    if (socket[0] != '/' && socket[0] != '@') {
        snprintf(errbuf, errsize,
                 "NOTIFY_SOCKET=%s: expected an absolute path or an @abstract name",
                 socket);
        return false;
    }
    if (len >= sizeof(t->addr.sun_path)) {
        snprintf(errbuf, errsize, "NOTIFY_SOCKET: a name of %zu bytes is too long (at most %zu)",
                 len, sizeof(t->addr.sun_path) - 1);
        return false;
    }
    t->addr.sun_family = AF_UNIX;
    memcpy(t->addr.sun_path, socket, len);
    /* An abstract name starts with a NUL and is exactly as long as given;
     * a path is NUL-terminated. */
    if (socket[0] == '@')
        t->addr.sun_path[0] = '\0';
    t->addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
                              (socket[0] == '/' ? 1 : 0));
    if (watchdog_pid && *watchdog_pid) {
        errno = 0;
        long pid = strtol(watchdog_pid, &end, 10);
        if (errno || *end || pid <= 0) {
            snprintf(errbuf, errsize, "WATCHDOG_PID=%s: expected a process id", watchdog_pid);
            return false;
        }
        if (pid != self)
            return true; /* the watchdog is another process's */
    }
    if (watchdog_usec && *watchdog_usec) {
        errno = 0;
        long long usec = strtoll(watchdog_usec, &end, 10);
        if (errno || *end || usec <= 0) {
            snprintf(errbuf, errsize, "WATCHDOG_USEC=%s: expected a positive number",
                     watchdog_usec);
            return false;
        }
        t->watchdog_usec = usec;
    }
    return true;
}

void sdnotify_from_env(sdnotify_target_t *t)
{
    char err[256];

    if (!sdnotify_parse(getenv("NOTIFY_SOCKET"), getenv("WATCHDOG_USEC"),
                        getenv("WATCHDOG_PID"), (long)getpid(), t, err, sizeof(err))) {
        fprintf(stderr, "ballast: %s; not notifying systemd\n", err);
        memset(t, 0, sizeof(*t));
    }
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    unsetenv("WATCHDOG_PID");
}

int sdnotify_send(const sdnotify_target_t *t, const char *text)
{
    int fd, rc, saved;

    if (!t->addr_len)
        return 0;
    if ((fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
        return -1;
    rc = sendto(fd, text, strlen(text), MSG_NOSIGNAL, (const struct sockaddr *)&t->addr,
                t->addr_len) < 0
             ? -1
             : 0;
    saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

/* ---- the notifier thread -------------------------------------------------- */

/* How the consumer is, as far as systemd is concerned. */
enum service_state { SVC_STARTING, SVC_NOT_READY, SVC_READY, SVC_UNHEALTHY };

struct sdnotify_service {
    sdnotify_target_t target;
    const volatile sig_atomic_t *stop_flag;
    ticker_t tick;
    const ballast_consumer_t *cons; /* under tick.mtx; NULL while starting */
    /* The thread's own state (and stop()'s, after the join). */
    bool ready_sent, stopping_sent, send_failed;
    enum service_state state;
    int64_t last_ping_ms, last_status_ms;
    char status[300];
};

/* The longest a READY, STOPPING or change of health waits to be said. */
#define TICK_MS 200
/* A status whose text keeps changing (a stuck call's growing duration) is
 * repeated at most this often. */
#define STATUS_REPEAT_MS 5000

static void say(sdnotify_service_t *s, const char *text)
{
    if (sdnotify_send(&s->target, text) && !s->send_failed) {
        s->send_failed = true; /* once: systemd may simply be gone */
        fprintf(stderr, "ballast: cannot notify systemd at NOTIFY_SOCKET: %s\n",
                strerror(errno));
    }
}

/* STATUS= when the state changed, or its text did and a while passed. */
static void say_status(sdnotify_service_t *s, enum service_state state,
                       const char *status, int64_t now)
{
    char msg[400];

    if (!strcmp(status, s->status) ||
        (state == s->state && now - s->last_status_ms < STATUS_REPEAT_MS))
        return;
    bl_fmt(s->status, sizeof(s->status), "%s", status);
    s->last_status_ms = now;
    bl_fmt(msg, sizeof(msg), "STATUS=%s", status);
    say(s, msg);
}

/* One look at the consumer: READY, STATUS and whether to ping. */
static bool observe(sdnotify_service_t *s, const ballast_consumer_t *cons, int64_t now)
{
    char reason[256], status[300];
    enum service_state state;
    bool healthy;

    if (!cons) {
        state = SVC_STARTING;
        bl_fmt(status, sizeof(status), "starting: connecting to the broker and the handler");
        healthy = true; /* start-up has its own deadline, startup.timeout.ms */
    } else if (!(healthy = ballast_consumer_healthy(cons, reason, sizeof(reason)))) {
        state = SVC_UNHEALTHY;
        bl_fmt(status, sizeof(status), "unhealthy, watchdog withheld: %s", reason);
    } else if (ballast_consumer_ready(cons, reason, sizeof(reason))) {
        state = SVC_READY;
        bl_fmt(status, sizeof(status), "ready: consuming");
        if (!s->ready_sent) {
            say(s, "READY=1\nSTATUS=ready: consuming");
            s->ready_sent = true;
            bl_fmt(s->status, sizeof(s->status), "%s", status);
            s->last_status_ms = now;
        }
    } else {
        state = SVC_NOT_READY;
        bl_fmt(status, sizeof(status), "not ready: %s", reason);
    }
    if (!s->stopping_sent)
        say_status(s, state, status, now);
    s->state = state;
    return healthy;
}

static void *service_main(void *opaque)
{
    sdnotify_service_t *s = opaque;
    int64_t ping_every = s->target.watchdog_usec / 4000; /* ms; 0: no watchdog */
    int64_t tick = TICK_MS;

    if (ping_every && ping_every < tick)
        tick = ping_every;
    pthread_mutex_lock(&s->tick.mtx);
    do {
        const ballast_consumer_t *cons = s->cons;
        int64_t now = bl_now_ms();

        pthread_mutex_unlock(&s->tick.mtx);
        if (*s->stop_flag && !s->stopping_sent) {
            say(s, "STOPPING=1\nSTATUS=stopping: draining in-flight messages "
                   "(shutdown.timeout.ms), then committing");
            s->stopping_sent = true;
        }
        if (observe(s, cons, now) && ping_every && now - s->last_ping_ms >= ping_every) {
            say(s, "WATCHDOG=1");
            s->last_ping_ms = now;
        }
        pthread_mutex_lock(&s->tick.mtx);
    } while (ticker_wait(&s->tick, tick));
    pthread_mutex_unlock(&s->tick.mtx);
    return NULL;
}

sdnotify_service_t *sdnotify_service_start(const sdnotify_target_t *t,
                                           const volatile sig_atomic_t *stop_flag)
{
    sdnotify_service_t *s;

    if (!t->addr_len)
        return NULL;
    if (!(s = calloc(1, sizeof(*s)))) {
        fprintf(stderr, "ballast: out of memory; not notifying systemd\n");
        return NULL;
    }
    s->target = *t;
    s->stop_flag = stop_flag;
    s->state = SVC_STARTING;
    if (ticker_start(&s->tick, service_main, s)) {
        fprintf(stderr, "ballast: cannot start a thread; not notifying systemd\n");
        free(s);
        return NULL;
    }
    return s;
}

void sdnotify_service_watch(sdnotify_service_t *s, const ballast_consumer_t *cons)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->tick.mtx);
    s->cons = cons;
    pthread_cond_signal(&s->tick.cond);
    pthread_mutex_unlock(&s->tick.mtx);
}

void sdnotify_service_stop(sdnotify_service_t *s, const char *status)
{
    char msg[600];

    if (!s)
        return;
    ticker_stop(&s->tick);
    if (!s->stopping_sent || status) {
        bl_fmt(msg, sizeof(msg), "%s%s%s", s->stopping_sent ? "" : "STOPPING=1",
               status && !s->stopping_sent ? "\n" : "", status ? "STATUS=" : "");
        if (status)
            bl_fmt(msg + strlen(msg), sizeof(msg) - strlen(msg), "%s", status);
        say(s, msg);
    }
    free(s);
}
