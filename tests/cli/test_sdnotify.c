/*
 * test_sdnotify.c - `ballast run` under systemd's notification protocol
 * (Type=notify), against the real broker. The test plays systemd: it
 * listens on a Unix datagram socket, names it in NOTIFY_SOCKET (a path, and
 * an abstract '@' name), sets WATCHDOG_USEC, and checks what arrives:
 *   - READY=1 only once a partition is assigned (the assignment is logged
 *     before READY arrives, and /readyz agrees); a member that the group
 *     gives nothing sends pings but no READY until it gets a partition;
 *   - WATCHDOG=1 while healthy, never a gap as long as WATCHDOG_USEC;
 *   - no WATCHDOG=1 while a handler call runs past handler.timeout.ms
 *     (/healthz 503 all along), and the pings resume when the call ends;
 *   - STOPPING=1 at SIGTERM, while the drain still waits for a call.
 */
#include "support.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define ARGV(...) ((const char *const[]){"ballast", __VA_ARGS__, NULL})
/* Short, so that a test sees many pings; the pings come every quarter. */
#define WATCHDOG_USEC 2000000
#define HANDLER_TIMEOUT_MS 1000
/* The test plugin's call on a "sleep" message. */
#define SLEEP_MS 5000

/* ---- the socket systemd would listen on ---------------------------------- */

typedef struct listener {
    int fd;
    char name[108]; /* as NOTIFY_SOCKET names it */
    int pings;      /* WATCHDOG=1 received so far */
    int64_t last_ping_ms, max_gap_ms;
    bool ready, stopping;
    char status[512]; /* the last STATUS= */
} listener_t;

/* Binds a datagram socket at a path in the test directory, or (@p abstract)
 * at a unique name in the abstract namespace. */
static void listener_open(listener_t *l, bool abstract)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    socklen_t len;

    memset(l, 0, sizeof(*l));
    if (abstract)
        snprintf(l->name, sizeof(l->name), "@%s", bt_unique("ballast-notify"));
    else
        snprintf(l->name, sizeof(l->name), "%s/notify.sock", bt_tmpdir());
    memcpy(sa.sun_path, l->name, strlen(l->name));
    if (abstract)
        sa.sun_path[0] = '\0';
    len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(l->name));
    l->fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    assert_true(l->fd >= 0);
    if (bind(l->fd, (struct sockaddr *)&sa, len))
        fail_msg("bind %s: %s", l->name, strerror(errno));
}

static void listener_close(listener_t *l)
{
    close(l->fd);
    if (l->name[0] == '/')
        unlink(l->name);
}

/* Takes one datagram apart into what the test tracks. */
static void note(listener_t *l, char *msg)
{
    for (char *line = msg, *next; line; line = next) {
        if ((next = strchr(line, '\n')))
            *next++ = '\0';
        if (!strcmp(line, "WATCHDOG=1")) {
            int64_t now = bt_now_ms();
            if (l->pings++ && now - l->last_ping_ms > l->max_gap_ms)
                l->max_gap_ms = now - l->last_ping_ms;
            l->last_ping_ms = now;
        } else if (!strcmp(line, "READY=1")) {
            l->ready = true;
        } else if (!strcmp(line, "STOPPING=1")) {
            l->stopping = true;
        } else if (!strncmp(line, "STATUS=", 7)) {
            snprintf(l->status, sizeof(l->status), "%s", line + 7);
        } else {
            fail_msg("an unexpected notification: \"%s\"", line);
        }
    }
}

/* Receives for up to @p ms; @returns whether a datagram arrived. */
static bool receive(listener_t *l, int ms)
{
    struct pollfd pfd = {.fd = l->fd, .events = POLLIN};
    char buf[1024];
    ssize_t n;

    if (poll(&pfd, 1, ms) <= 0)
        return false;
    n = recv(l->fd, buf, sizeof(buf) - 1, 0);
    assert_true(n >= 0);
    buf[n] = '\0';
    note(l, buf);
    return true;
}

/* Receives until @p done holds, or fails the test after @p timeout_ms. */
static void receive_until(listener_t *l, bool (*done)(const listener_t *), const char *what,
                          int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;

    while (!done(l)) {
        if (bt_now_ms() > deadline)
            fail_msg("no %s within %d ms (last STATUS: \"%s\", %d pings)", what, timeout_ms,
                     l->status, l->pings);
        receive(l, 100);
    }
}

static bool is_ready(const listener_t *l) { return l->ready; }
static bool is_stopping(const listener_t *l) { return l->stopping; }

/* ---- the daemon ------------------------------------------------------------ */

typedef struct daemon {
    pid_t pid;
    char conf[300], err[300], addr[64];
} daemon_t;

/* Writes a config for the test plugin on @p topic, group @p group, with
 * librdkafka's client.id @p client_id (the range assignor orders members by
 * it, so that a test knows who gets partition 0). */
static void write_conf(daemon_t *d, const char *name, const char *topic, const char *group,
                       const char *client_id)
{
    snprintf(d->conf, sizeof(d->conf), "%s/%s.conf", bt_tmpdir(), name);
    snprintf(d->err, sizeof(d->err), "%s/%s.err", bt_tmpdir(), name);
    bt_write_file(d->conf,
                  "kafka.bootstrap.servers = %s\n"
                  "kafka.group.id = %s\n"
                  "kafka.client.id = %s\n"
                  "topics = %s\n"
                  "handler = plugin\n"
                  "handler.plugin.path = %s\n"
                  "handler.plugin.param.sleep_ms = %d\n"
                  "handler.timeout.ms = %d\n"
                  "metrics.listen = 127.0.0.1:0\n",
                  bt_bootstrap(), group, client_id, topic, BALLAST_TEST_PLUGIN, SLEEP_MS,
                  HANDLER_TIMEOUT_MS);
}

/* Starts `ballast run` with NOTIFY_SOCKET naming @p l (NULL: none). */
static void start(daemon_t *d, const listener_t *l)
{
    char usec[32];

    snprintf(usec, sizeof(usec), "%d", WATCHDOG_USEC);
    if (l) {
        setenv("NOTIFY_SOCKET", l->name, 1);
        setenv("WATCHDOG_USEC", usec, 1);
    }
    d->pid = bt_spawn_ballast(ARGV("run", d->conf), d->err);
    unsetenv("NOTIFY_SOCKET");
    unsetenv("WATCHDOG_USEC");
    bt_wait_listening(d->err, d->pid, d->addr, sizeof(d->addr));
}

static int http_status(const daemon_t *d, const char *path)
{
    bt_http_reply_t r = bt_http_get(d->addr, path);
    int status = r.status;

    bt_http_reply_free(&r);
    return status;
}

/* One record of @p value (bt_produce_seq numbers its values; the plugin
 * hangs on "sleep"). */
static void produce(const char *topic, const char *value)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    char errstr[256];
    rd_kafka_t *rk;

    rd_kafka_conf_set(conf, "bootstrap.servers", bt_bootstrap(), NULL, 0);
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
    assert_non_null(rk);
    assert_int_equal(rd_kafka_producev(rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_PARTITION(0),
                                       RD_KAFKA_V_VALUE((void *)value, strlen(value)),
                                       RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                       RD_KAFKA_V_END),
                     0);
    assert_int_equal(rd_kafka_flush(rk, 30000), 0);
    rd_kafka_destroy(rk);
}

/* Waits until /healthz answers @p want. */
static void wait_health(const daemon_t *d, int want, int timeout_ms)
{
    int64_t deadline = bt_now_ms() + timeout_ms;
    int got;

    while ((got = http_status(d, "/healthz")) != want) {
        if (bt_now_ms() > deadline)
            fail_msg("/healthz answered %d, expected %d", got, want);
        usleep(50 * 1000);
    }
}

/* ---- tests ------------------------------------------------------------------- */

static void test_ready_watchdog_hang_and_stopping(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("notify");
    listener_t l;
    daemon_t d;
    int pings;

    bt_create_topic(bt_bootstrap(), topic, 1);
    listener_open(&l, false);
    write_conf(&d, "one", topic, bt_unique("notify-g"), "ballast-notify");
    start(&d, &l);

    /* READY=1 comes after the assignment, and /readyz agrees. */
    receive_until(&l, is_ready, "READY=1", 60000);
    if (!bt_file_has(d.err, "assigned 1 partition(s)"))
        fail_msg("READY=1 before the partition was assigned");
    assert_int_equal(http_status(&d, "/readyz"), 200);

    /* Healthy: pings, never a gap as long as the watchdog's timeout. */
    pings = l.pings;
    for (int64_t until = bt_now_ms() + 3000; bt_now_ms() < until;)
        receive(&l, 100);
    assert_true(l.pings >= pings + 3);
    if (l.max_gap_ms >= WATCHDOG_USEC / 1000)
        fail_msg("a gap of %lld ms between pings while healthy", (long long)l.max_gap_ms);

    /* A call stuck past handler.timeout.ms: /healthz fails, and from then on
     * no ping arrives while it keeps failing. What was sent before the 503
     * is in the socket already, and is drained first. */
    produce(topic, "sleep");
    wait_health(&d, 503, 15000);
    while (receive(&l, 0))
        ;
    pings = l.pings;
    for (int64_t until = bt_now_ms() + WATCHDOG_USEC / 1000; bt_now_ms() < until;)
        receive(&l, 100);
    assert_int_equal(http_status(&d, "/healthz"), 503); /* unhealthy all along */
    if (l.pings != pings)
        fail_msg("%d watchdog ping(s) while /healthz failed", l.pings - pings);
    if (!strstr(l.status, "unhealthy"))
        fail_msg("STATUS does not say unhealthy: \"%s\"", l.status);

    /* The call ends: healthy, and the pings resume. */
    wait_health(&d, 200, 30000);
    pings = l.pings;
    for (int64_t until = bt_now_ms() + 10000; l.pings == pings && bt_now_ms() < until;)
        receive(&l, 100);
    assert_true(l.pings > pings);

    /* SIGTERM while a call holds the drain: STOPPING=1 while it still runs. */
    produce(topic, "sleep");
    wait_health(&d, 503, 15000);
    bt_term(d.pid);
    receive_until(&l, is_stopping, "STOPPING=1", 10000);
    assert_int_equal(waitpid(d.pid, NULL, WNOHANG), 0); /* still draining */
    assert_int_equal(bt_wait(d.pid, 60000), 0);
    while (receive(&l, 0))
        ;
    if (strcmp(l.status, "stopped cleanly"))
        fail_msg("the last STATUS is \"%s\", expected \"stopped cleanly\"", l.status);
    listener_close(&l);
}

/* While another member holds the only partition, a member is alive (it
 * pings) but not READY; it is READY once it has the partition. */
static void test_not_ready_until_assigned(void **state)
{
    (void)state;
    BT_REQUIRE_ENV();
    const char *topic = bt_unique("notify-standby");
    const char *group = bt_unique("notify-standby-g");
    daemon_t holder, standby;
    listener_t l;
    int pings;

    bt_create_topic(bt_bootstrap(), topic, 1);
    /* The range assignor gives partition 0 to the member whose id sorts
     * first; member ids start with the client.id. */
    write_conf(&holder, "holder", topic, group, "a-holder");
    write_conf(&standby, "standby", topic, group, "z-standby");
    start(&holder, NULL);
    assert_true(bt_wait_file_has(holder.err, "assigned 1 partition(s)", 60000));

    listener_open(&l, true);
    start(&standby, &l);
    /* Until the standby has joined: its empty assignment is logged. */
    assert_true(bt_wait_file_has(standby.err, "assigned 0 partition(s)", 60000));
    pings = l.pings;
    for (int64_t until = bt_now_ms() + 3000; bt_now_ms() < until;)
        receive(&l, 100);
    assert_true(l.pings > pings); /* alive */
    if (l.ready)
        fail_msg("READY=1 from a member with no partition");
    if (!strstr(l.status, "no partitions assigned"))
        fail_msg("STATUS does not say why it is not ready: \"%s\"", l.status);
    assert_int_equal(http_status(&standby, "/readyz"), 503);

    bt_term(holder.pid);
    assert_int_equal(bt_wait(holder.pid, 60000), 0);
    receive_until(&l, is_ready, "READY=1", 60000);
    if (!bt_file_has(standby.err, "assigned 1 partition(s)"))
        fail_msg("READY=1 before the partition was assigned");
    bt_term(standby.pid);
    assert_int_equal(bt_wait(standby.pid, 60000), 0);
    listener_close(&l);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_watchdog_hang_and_stopping),
        cmocka_unit_test(test_not_ready_until_assigned),
    };
    return bt_run_group_tests(tests, NULL, NULL);
}
