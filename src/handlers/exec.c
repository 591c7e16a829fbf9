/* exec.c - the `exec` handler: a long-running child per worker, speaking JSON lines (the child itself is exec_child.c). */
#include "exec_child.h"

#include "../execproto.h"
#include "../shared/words.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/*
 * Life of a child. init starts it (a command that cannot be run is a
 * configuration error). Each call writes request lines and reads as many
 * reply lines, pipelined, with both pipe ends non-blocking and poll()ed so
 * that neither side can deadlock on a full pipe. Requests carry an "id"
 * (consecutive per child) and the message's "attempt"; a reply answers the
 * oldest request still open, and one that names an "id" must name that one
 * (docs/exec-protocol.md is the contract).
 *
 * What goes wrong, and what each message of the call gets then:
 *   - a line that is not a well-formed reply for the request it would
 *     answer (stray output, junk, a wrong id, a runaway line), or output
 *     between calls: the pairing can no longer be trusted, so the child is
 *     killed. The request the line would have answered gets RETRY
 *     ("handler protocol error"), which counts as an attempt: only
 *     retry.max.attempts of them send a message to the DLQ. A reply is
 *     never matched to a request it does not answer.
 *   - no reply for handler.timeout.ms: killed; the oldest open request
 *     gets RETRY.
 *   - in both cases the other requests the child had read got no verdict:
 *     UNAVAILABLE (below). When several requests were open, a stray line
 *     cannot be pinned on one of them: none takes an attempt, and the
 *     next ones go one at a time (`solo`) until those have been answered,
 *     so that a child which keeps breaking the protocol on one message is
 *     caught on that message alone.
 *   - the child dies (EOF on its stdout) or cannot be started: the handler
 *     is UNAVAILABLE, which is no verdict on any message: the runtime
 *     retries without counting an attempt, pauses consumption and fails
 *     readiness until a child answers again. Requests not yet written are
 *     UNAVAILABLE in every case above.
 * The next call restarts the child once an exponential back-off has passed
 * (100 ms doubling to 5 s; before then a call answers UNAVAILABLE at once,
 * so that the runtime, not this handler, does the waiting and a stop is
 * never held up by it); a valid reply resets the back-off.
 *
 * The child runs in its own process group, so that a Ctrl-C on ballast's
 * terminal reaches ballast only: ballast drains in-flight messages through
 * the child, then closes its stdin (the child should exit on EOF), and
 * sends SIGTERM, then SIGKILL, to the group only if it lingers. A call still
 * running when a stop's drain times out is cancelled (bl_exec_cancel): the
 * child is killed and the call returns at once.
 *
 * SIGPIPE: a write to a dead child raises SIGPIPE, whose default action
 * kills the process. The library does not rely on the application
 * ignoring it: each call blocks SIGPIPE on the calling thread and consumes
 * the signal its own writes raised (see sigpipe_guard_t).
 */

/* ---- the exchange ------------------------------------------------------- */

/* Why a call had to drop the child. */
typedef enum lost_kind {
    LOST_NONE = 0,
    LOST_DIED,     /* EOF, or its stdout cannot be read */
    LOST_PROTOCOL, /* a line that is no reply to the request it would answer */
    LOST_TIMEOUT,  /* no reply within timeout_ms */
    LOST_CANCELLED /* bl_exec_cancel(): the runtime is stopping */
} lost_kind_t;

/* One call's pipelined conversation with the child. */
typedef struct exchange {
    exec_state_t *st;
    const ballast_message_t *const *msgs;
    ballast_result_t *const *results;
    ballast_outcome_t *outcomes;
    size_t count;
    size_t limit;      /* messages that will be sent (count unless encoding fails) */
    size_t sent;       /* requests whose JSON is fully written */
    size_t done;       /* replies matched */
    uint64_t first_id; /* the id of msgs[0]'s request; ids are consecutive */
    char *wline;       /* request being written */
    size_t wlen, woff;
    bool write_dead;   /* stdin is closed: only read what is left */
    lost_kind_t lost;  /* set when the child must be dropped */
    char why[512];     /* LOST_PROTOCOL: what the child did */
    int64_t deadline;
    bool healthy;      /* a well-formed reply was seen */
    sigpipe_guard_t guard;
} exchange_t;

/* The child broke the protocol: its state is unknown from here on. */
static void protocol_error(exchange_t *x, const char *fmt, ...) BL_PRINTF(2, 3);
static void protocol_error(exchange_t *x, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(x->why, sizeof(x->why), fmt, ap);
    va_end(ap);
    for (char *c = x->why; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    x->lost = LOST_PROTOCOL;
}

/* Gives @p outcome with @p why to every message in [from, to). */
static void settle_range(exchange_t *x, size_t from, size_t to, ballast_outcome_t outcome,
                         const char *why)
{
    for (size_t i = from; i < to; i++) {
        x->outcomes[i] = outcome;
        ballast_result_set_error(x->results[i], why);
    }
}

/* Whether a request is to be written now: one is half written, or one is
 * due and the child has fewer than the window open (one, while requests
 * are being isolated after a protocol error; else all of the call). */
static bool want_write(const exchange_t *x)
{
    size_t window = x->st->solo ? 1 : x->count;

    return !x->write_dead &&
           (x->wline || (x->sent < x->limit && x->sent - x->done < window));
}

/* Writes as much of the current request as the pipe takes. */
static void pump_writes(exchange_t *x)
{
    exec_state_t *st = x->st;

    while (want_write(x)) {
        ssize_t n;

        if (!x->wline) {
            if (!(x->wline = bl_exec_encode(x->msgs[x->sent], x->first_id + x->sent,
                                            &x->wlen))) {
                x->limit = x->sent; /* the rest is RETRYed after the replies */
                return;
            }
            x->woff = 0;
        }
        do
            n = write(st->to_child, x->wline + x->woff, x->wlen - x->woff);
        while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return;
            /* EPIPE: the child closed stdin or died; its replies may still
             * be in the pipe, so keep reading until EOF. */
            x->guard.raised |= errno == EPIPE;
            x->write_dead = true;
            return;
        }
        /* The request counts as sent once its JSON is written: a child
         * may answer before reading the final newline. */
        if (x->woff < x->wlen - 1 && x->woff + (size_t)n >= x->wlen - 1)
            x->sent++;
        x->woff += (size_t)n;
        if (x->woff == x->wlen) {
            free(x->wline);
            x->wline = NULL;
        }
    }
}

/* A reply answers the oldest request the child has read and not answered;
 * if it names an id, that request's. */
static ballast_result_t *route_in_order(void *ctx, int64_t id, ballast_outcome_t **outcomepp)
{
    exchange_t *x = ctx;
    long i = bl_exec_pair_in_order(x->first_id, x->sent, x->done, id);

    if (i < 0)
        return NULL;
    *outcomepp = &x->outcomes[i];
    return x->results[i];
}

/* Matches complete reply lines with the requests sent. */
static void take_replies(exchange_t *x)
{
    exec_state_t *st = x->st;
    const char *line;
    size_t len;

    while (!x->lost && x->done < x->limit && (line = bl_exec_next_line(&st->in, &len))) {
        char *why = NULL;
        switch (bl_exec_decode_routed(line, len, route_in_order, x, &why)) {
        case BL_EXEC_DECODED:
            x->healthy = true;
            x->done++;
            if (x->st->solo)
                x->st->solo--;
            pump_writes(x); /* the window may have room again */
            x->deadline = bl_now_ms() + st->timeout_ms;
            break;
        case BL_EXEC_MALFORMED: {
            const char *tp = ballast_message_traceparent(x->msgs[x->done]);
            protocol_error(x, "malformed reply to request %llu (offset %lld%s%.32s): %s",
                           (unsigned long long)(x->first_id + x->done),
                           (long long)ballast_message_offset(x->msgs[x->done]),
                           tp ? " trace=" : "", tp ? tp + 3 : "", why ? why : "(no detail)");
            break;
        }
        case BL_EXEC_NOMEM:
        default:
            protocol_error(x, "out of memory decoding a reply");
            break;
        }
        free(why);
    }
    if (!x->lost && st->in.len > MAX_REPLY_BYTES && x->done < x->limit)
        protocol_error(x, "a reply line longer than %zu bytes", MAX_REPLY_BYTES);
}

/* Reads what the child has written and matches the replies. */
static void take_output(exchange_t *x)
{
    ssize_t n;

    while ((n = bl_exec_read_some(x->st)) > 0) {
        take_replies(x);
        if (x->lost)
            return;
    }
    if (n == 0)
        x->lost = LOST_DIED; /* EOF: the exit status tells the story */
    else if (n == -2)
        protocol_error(x, "%s", errno == ENOMEM ? "out of memory reading replies"
                                                : "cannot read its stdout");
}

/* Waits for the child to be readable (or writable when a request is
 * pending), or for a cancel, then moves data. */
static void step(exchange_t *x)
{
    exec_state_t *st = x->st;
    struct pollfd pfd[3] = {{st->from_child, POLLIN, 0},
                            {st->cancel_fd, POLLIN, 0},
                            {st->to_child, POLLOUT, 0}};
    bool writing = want_write(x);
    int64_t left = x->deadline - bl_now_ms();
    int rc;

    if (left <= 0) {
        x->lost = LOST_TIMEOUT;
        return;
    }
    /* In rounds: a child that exited while something it forked holds its
     * stdout gives no EOF, so its exit is looked for between rounds. */
    rc = poll(pfd, writing ? 3 : 2, left > EXIT_CHECK_MS ? EXIT_CHECK_MS : (int)left);
    if (rc < 0 && errno != EINTR) {
        protocol_error(x, "poll failed");
        return;
    }
    if (rc == 0 && bl_exec_child_exited(st)) {
        take_output(x); /* what it wrote before it went */
        if (!x->lost)
            x->lost = LOST_DIED;
        return;
    }
    if (rc <= 0)
        return;
    if (pfd[1].revents) {
        x->lost = LOST_CANCELLED;
        return;
    }
    if (pfd[0].revents) {
        take_output(x);
        if (x->lost)
            return;
    }
    if (writing && pfd[2].revents)
        pump_writes(x);
}

static const char *timeout_text(const exec_state_t *st, char *buf, size_t size)
{
    bl_fmt(buf, size, "no reply within %lld ms", (long long)st->timeout_ms);
    return buf;
}

/* Drops the child after x->lost, and settles every message without a
 * reply (see the top of this file). */
static void settle_lost(exchange_t *x)
{
    exec_state_t *st = x->st;
    char why[640];

    if (x->lost == LOST_PROTOCOL || x->lost == LOST_TIMEOUT) {
        bl_exec_child_lost(st, x->lost == LOST_PROTOCOL ? x->why
                                                        : timeout_text(st, why, sizeof(why)));
        /* A child that lied once is replaced at once; one that keeps doing
         * it waits out the back-off like any lost child. */
        if (st->losses == 1)
            st->restart_at_ms = bl_now_ms();
    }

    /* The request the bad line or the silence belongs to (the only one
     * open, or the oldest) takes the attempt; the others the child had
     * read got no verdict. */
    switch (x->lost) {
    case LOST_PROTOCOL:
        if (x->sent - x->done > 1) {
            /* With several requests open, a stray line cannot be pinned on
             * one of them: none takes an attempt, and they go again one at
             * a time, where a protocol error can. */
            st->solo = x->count - x->done;
            bl_fmt(why, sizeof(why), "exec: handler protocol error: %s; child restarted, "
                   "and its open requests are sent again one at a time", x->why);
            settle_range(x, x->done, x->count, BALLAST_OUTCOME_UNAVAILABLE, why);
            return;
        }
        bl_fmt(why, sizeof(why), "exec: handler protocol error: %s; child restarted", x->why);
        settle_range(x, x->done, x->done < x->sent ? x->done + 1 : x->done,
                     BALLAST_OUTCOME_RETRY, why);
        settle_range(x, x->done < x->sent ? x->done + 1 : x->done, x->count,
                     BALLAST_OUTCOME_UNAVAILABLE, why);
        return;
    case LOST_TIMEOUT:
        settle_range(x, x->done, x->done + 1, BALLAST_OUTCOME_RETRY,
                     bl_exec_down_reason(st));
        settle_range(x, x->done + 1, x->count, BALLAST_OUTCOME_UNAVAILABLE,
                     bl_exec_down_reason(st));
        return;
    case LOST_CANCELLED:
        bl_exec_child_lost(st, bl_exec_cancelled);
        settle_range(x, x->done, x->count, BALLAST_OUTCOME_UNAVAILABLE,
                     bl_exec_down_reason(st));
        return;
    case LOST_DIED:
    default:
        bl_exec_child_lost(st, NULL);
        settle_range(x, x->done, x->count, BALLAST_OUTCOME_UNAVAILABLE,
                     bl_exec_down_reason(st));
        return;
    }
}

/* Runs one call: sends msgs, reads their replies into results/outcomes. */
static void exchange_run(exec_state_t *st, const ballast_message_t *const *msgs,
                         ballast_result_t *const *results, size_t count,
                         ballast_outcome_t *outcomes)
{
    exchange_t x = {.st = st, .msgs = msgs, .results = results,
                    .outcomes = outcomes, .count = count, .limit = count};
    uint64_t stale;

    if (!count)
        return;
    /* A cancel meant for a call that has ended since must not end this one. */
    while (read(st->cancel_fd, &stale, sizeof(stale)) > 0)
        ;
    bl_exec_sigpipe_block(&x.guard);
    bl_exec_check_idle(st);
    if (bl_exec_child_ensure(st)) {
        settle_range(&x, 0, count, BALLAST_OUTCOME_UNAVAILABLE, bl_exec_down_reason(st));
        bl_exec_sigpipe_restore(&x.guard);
        return;
    }
    x.first_id = st->next_id;
    x.deadline = bl_now_ms() + st->timeout_ms;
    pump_writes(&x);
    while (x.done < x.limit && !x.lost) {
        if (x.write_dead && x.done == x.sent) {
            x.lost = LOST_DIED; /* stdin closed, nothing more to answer: reap it */
            break;
        }
        step(&x);
    }
    st->next_id += x.sent;
    free(x.wline);
    if (x.healthy) {
        st->backoff_ms = BACKOFF_INITIAL_MS;
        st->losses = 0;
    }
    if (x.lost)
        settle_lost(&x);
    else if (x.limit < count)
        settle_range(&x, x.limit, count, BALLAST_OUTCOME_RETRY,
                     "exec: out of memory encoding the message");
    bl_exec_sigpipe_restore(&x.guard);
}

void bl_exec_cancel(void *state)
{
    exec_state_t *st = state;
    uint64_t one = 1;

    if (st && write(st->cancel_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: a cancel is pending already. */
    }
}

/* ---- the handler -------------------------------------------------------- */

/* The pids of @p states' children still running, for bl_exec_close(). */
static size_t running_children(exec_state_t *const *states, size_t n)
{
    size_t left = 0;

    for (size_t i = 0; i < n; i++) {
        int status;
        if (states[i] && states[i]->pid && bl_exec_child_reap(states[i]->pid, 0, &status))
            states[i]->pid = 0;
        left += states[i] && states[i]->pid;
    }
    return left;
}

/* Waits until @p deadline (bl_now_ms) for every child to exit. */
static size_t wait_children(exec_state_t *const *states, size_t n, int64_t deadline)
{
    size_t left;

    while ((left = running_children(states, n)) && bl_now_ms() < deadline)
        bl_sleep_ms(20);
    return left;
}

/* Sends @p sig to the process group of every child still running. */
static void signal_children(exec_state_t *const *states, size_t n, int sig)
{
    for (size_t i = 0; i < n; i++) {
        if (!states[i] || !states[i]->pid)
            continue;
        if (sig == SIGTERM)
            bl_log(&states[i]->log, BALLAST_LOG_WARN,
                   "exec: child '%s' (pid %ld) still running %d ms after its stdin "
                   "closed; sending SIGTERM",
                   states[i]->command, (long)states[i]->pid, CLOSE_GRACE_MS);
        kill(-states[i]->pid, sig);
    }
}

void bl_exec_close(void *const *states, size_t n)
{
    exec_state_t *const *sts = (exec_state_t *const *)states;

    /* EOF on stdin is every child's cue to finish and exit; they are all
     * given it at once, and waited for together. */
    for (size_t i = 0; i < n; i++) {
        if (!sts[i])
            continue;
        bl_exec_close_fd(&sts[i]->to_child);
        bl_exec_close_fd(&sts[i]->from_child);
    }
    if (!wait_children(sts, n, bl_now_ms() + CLOSE_GRACE_MS))
        return;
    signal_children(sts, n, SIGTERM);
    if (!wait_children(sts, n, bl_now_ms() + TERM_GRACE_MS))
        return;
    signal_children(sts, n, SIGKILL);
    wait_children(sts, n, bl_now_ms() + 60000);
}

static void exec_destroy(void *state)
{
    exec_state_t *st = state;

    if (!st)
        return;
    bl_exec_close(&state, 1);
    bl_words_free(st->argv);
    bl_exec_close_fd(&st->cancel_fd);
    free(st->command);
    free(st->in.p);
    free(st->down_reason);
    free(st);
}

/* The reply deadline: `handler.timeout.ms` when the configuration knows
 * that key, else EXEC_TIMEOUT_MS. */
static int64_t reply_timeout(const ballast_conf_t *conf)
{
    int64_t ms = ballast_conf_get(conf, "handler.timeout.ms")
                     ? bl_conf_int(conf, "handler.timeout.ms")
                     : 0;
    return ms > 0 ? ms : EXEC_TIMEOUT_MS;
}

/* Thread-safety: each state is used by one worker thread; different
 * states (workers) run concurrently without sharing anything. */
static int exec_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    const char *command = bl_conf_str(params->conf, "handler.exec.command");
    exec_state_t *st = calloc(1, sizeof(*st));
    char ebuf[128];
    int err;

    *statep = NULL;
    if (!st || !(st->command = bl_strdup(command))) {
        free(st);
        bl_fmt(errbuf, errsize, "handler exec: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    st->to_child = st->from_child = -1;
    st->next_id = 1;
    st->log = bl_conf_logger(params->conf);
    if ((st->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        bl_fmt(errbuf, errsize, "handler exec: eventfd: %s",
               bl_exec_errtext(errno, ebuf, sizeof(ebuf)));
        exec_destroy(st);
        return BALLAST_ERR_IO;
    }
    st->timeout_ms = reply_timeout(params->conf);
    st->backoff_ms = BACKOFF_INITIAL_MS;
    if (bl_words_split(command, &st->argv, ebuf, sizeof(ebuf))) {
        bl_fmt(errbuf, errsize, "handler.exec.command: %s", ebuf);
        exec_destroy(st);
        return BALLAST_ERR_CONFIG;
    }
    if ((err = bl_exec_child_spawn(st))) {
        bool resources = err == ENOMEM || err == EAGAIN || err == EMFILE ||
                         err == ENFILE;
        bl_fmt(errbuf, errsize, "handler.exec.command: cannot run '%s': %s",
               st->argv[0], bl_exec_errtext(err, ebuf, sizeof(ebuf)));
        exec_destroy(st);
        return resources ? BALLAST_ERR_IO : BALLAST_ERR_CONFIG;
    }
    bl_log(&st->log, BALLAST_LOG_DEBUG, "exec: worker %d started '%s' (pid %ld)",
           params->worker, st->command, (long)st->pid);
    *statep = st;
    return 0;
}

static ballast_outcome_t exec_handle(void *state, const ballast_message_t *msg,
                                     ballast_result_t *res)
{
    ballast_outcome_t outcome = BALLAST_OUTCOME_RETRY;

    exchange_run(state, &msg, &res, 1, &outcome);
    return outcome;
}

static void exec_handle_batch(void *state, const ballast_message_t *const *msgs,
                              ballast_result_t *const *results, size_t count,
                              ballast_outcome_t *outcomes)
{
    exchange_run(state, msgs, results, count, outcomes);
}

const ballast_handler_t bl_handler_exec = {
    BALLAST_HANDLER_ABI_VERSION, "exec", exec_init, exec_handle,
    exec_handle_batch, exec_destroy};
