/*
 * sdnotify.h - systemd's service notification protocol for `ballast run`
 * (Type=notify): READY=1 once the consumer is assigned and its handler's
 * dependency is reachable, WATCHDOG=1 only while it is healthy, STOPPING=1
 * when it drains, and a STATUS= line saying why. One datagram to
 * $NOTIFY_SOCKET per message, as sd_notify(3) sends it; written here on the
 * public API and plain sockets, so the command needs no libsystemd.
 */
#ifndef BALLAST_SDNOTIFY_H
#define BALLAST_SDNOTIFY_H

#include <ballast/ballast.h>

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/un.h>

/** Where the notifications go and how often the watchdog wants a ping. */
typedef struct sdnotify_target {
    struct sockaddr_un addr;
    socklen_t addr_len;     /**< 0: no $NOTIFY_SOCKET, notifications are off */
    int64_t watchdog_usec;  /**< 0: no watchdog for this process */
} sdnotify_target_t;

/**
 * Reads a notification target from the values of NOTIFY_SOCKET,
 * WATCHDOG_USEC and WATCHDOG_PID (each may be NULL) for the process
 * @p self. A socket is an absolute path or, with a leading '@', a name in
 * the abstract namespace. The watchdog counts only when WATCHDOG_PID is
 * unset or names @p self (as sd_watchdog_enabled(3) decides). Pure: reads no
 * environment. @returns true with *t filled (addr_len 0 when @p socket is
 * NULL or empty), or false with a one-line reason in @p errbuf.
 */
bool sdnotify_parse(const char *socket, const char *watchdog_usec,
                    const char *watchdog_pid, long self, sdnotify_target_t *t,
                    char *errbuf, size_t errsize);

/**
 * The process's target, from its environment, which it then clears of the
 * three variables, so that exec handlers and other children do not talk to
 * systemd in ballast's name. Call it before any thread starts (it changes
 * the environment). A malformed variable is reported on stderr, once, and
 * notifications are off.
 */
void sdnotify_from_env(sdnotify_target_t *t);

/** Sends @p text as one datagram. @returns 0, or -1 with errno set
 *  (a target without a socket: 0, nothing sent). Thread-safe. */
int sdnotify_send(const sdnotify_target_t *t, const char *text);

/** The notifier thread of one `ballast run`. start, watch and stop are
 *  called from one thread (the command's main thread); the notifier owns
 *  its copy of the target. */
typedef struct sdnotify_service sdnotify_service_t;

/**
 * Starts the notifier for @p t (copied). Until sdnotify_service_watch()
 * hands it the consumer it pings the watchdog unconditionally: start-up is
 * bounded by startup.timeout.ms. Once @p stop_flag is non-zero it says
 * STOPPING=1. @returns NULL when notifications are off (no socket) or the
 * thread cannot start (said on stderr); the other calls take NULL.
 */
sdnotify_service_t *sdnotify_service_start(const sdnotify_target_t *t,
                                           const volatile sig_atomic_t *stop_flag);

/**
 * From now on, watches @p cons: READY=1 the first time
 * ballast_consumer_ready() holds, WATCHDOG=1 only while
 * ballast_consumer_healthy() holds, STATUS= whenever the reason changes.
 * @p cons must stay valid until sdnotify_service_stop().
 */
void sdnotify_service_watch(sdnotify_service_t *s, const ballast_consumer_t *cons);

/** Says STOPPING=1 (if not said yet) with @p status (NULL: none), stops the
 *  thread and frees. Call it before the consumer is destroyed. */
void sdnotify_service_stop(sdnotify_service_t *s, const char *status);

#endif
