/*
 * exec_exchange.c - the exec handler's exchanges with its child (exec.c
 * tells the whole handler): writing a call's or a pipeline's requests,
 * pairing the reply lines with them, and settling every open message when
 * the child has to be dropped. The child process and its pipes are
 * exec_child.c's.
 *
 * What goes wrong, and what each open message gets then (bl_exec_blame()
 * decides who is blamed):
 *   - a line that is not a well-formed reply to a request it may answer
 *     (stray output, junk, an unknown or repeated id, a runaway line), or
 *     output between exchanges: the pairing can no longer be trusted, so the
 *     child is killed. The request the line is pinned on (the one it names,
 *     in version 2, or the only one open) gets RETRY ("handler protocol
 *     error"), which counts as an attempt: only retry.max.attempts of them
 *     send a message to the DLQ. A reply is never matched to a request it
 *     does not answer, and an id is answered once.
 *   - no reply for handler.timeout.ms (version 2: counted per request from
 *     its writing; version 1: from the later of that and the last reply):
 *     killed; the request that timed out gets RETRY.
 *   - a batch request of several messages is never blamed as a whole: its
 *     messages are UNAVAILABLE and go again one per request.
 *   - in both cases the other requests the child had read got no verdict:
 *     UNAVAILABLE (below). When no request can be pinned and several were
 *     open, none takes an attempt, and the next ones go one at a time
 *     (`solo`) until those have been answered, so that a child which keeps
 *     breaking the protocol on one message is caught on that message alone.
 *   - a hello ballast cannot honour (another protocol, a bad max_inflight),
 *     the child dies (EOF on its stdout) or cannot be started: the handler
 *     is UNAVAILABLE, which is no verdict on any message: the runtime
 *     retries without counting an attempt, pauses consumption and fails
 *     readiness until a child answers again. Requests not yet written are
 *     UNAVAILABLE in every case above.
 */
#include "exec_exchange.h"

#include "../execproto.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Why a call had to drop the child. */
typedef enum lost_kind {
    LOST_NONE = 0,
    LOST_DIED,         /* EOF, or its stdout cannot be read */
    LOST_PROTOCOL,     /* a line that is no reply to a request it may answer */
    LOST_TIMEOUT,      /* no reply within timeout_ms */
    LOST_CANCELLED,    /* bl_exec_cancel(): the runtime is stopping */
    LOST_INCOMPATIBLE  /* a hello ballast cannot honour */
} lost_kind_t;

/* An open request: one message, or (version 2) a batch of them. */
typedef struct exec_req {
    uint64_t id;
    int64_t deadline; /* written + timeout_ms */
    size_t count;
    bool batch;       /* sent as one batch request */
    bool written;     /* its JSON is written: the child may answer it */
    /* A call's messages... */
    const ballast_message_t *const *msgs;
    ballast_result_t *const *results;
    ballast_outcome_t *outcomes;
    /* ... or the feed's one. */
    ballast_message_t *fmsg;
    ballast_result_t *fres;
    ballast_outcome_t fout;
} exec_req_t;

/* One conversation with the child: a call's messages (handle, handle_batch)
 * or a feed's (bl_exec_pipeline). */
typedef struct exchange {
    exec_state_t *st;
    const ballast_message_t *const *msgs;
    ballast_result_t *const *results;
    ballast_outcome_t *outcomes;
    size_t count;
    size_t limit;      /* messages that will be sent (count unless encoding fails) */
    size_t taken;      /* messages put in requests */
    size_t answered;   /* messages answered */
    bool batch_call;   /* handle_batch: may go as one batch request */
    const bl_exec_feed_t *feed;
    exec_req_t *open;  /* open requests in the order written: [head, head + nopen) */
    size_t head, nopen, cap;
    long routed;       /* the open request a reply was routed to */
    char *wline;       /* the request being written (the last open one) */
    size_t wlen, woff;
    bool write_dead;   /* stdin is closed: only read what is left */
    lost_kind_t lost;  /* set when the child must be dropped */
    long named;        /* LOST_PROTOCOL, LOST_TIMEOUT: the open request named */
    char why[512];     /* LOST_PROTOCOL, LOST_INCOMPATIBLE: what the child did */
    int64_t progress;  /* version 1: the last reply (its deadline counts from it) */
    bool healthy;      /* a well-formed reply was seen */
    sigpipe_guard_t guard;
} exchange_t;

static exec_req_t *open_req(exchange_t *x, size_t i)
{
    return &x->open[x->head + i];
}

static ballast_result_t *req_res(exec_req_t *r, size_t i)
{
    return r->msgs ? r->results[i] : r->fres;
}

static void req_settle(exchange_t *x, exec_req_t *r, size_t i, ballast_outcome_t o)
{
    if (r->msgs)
        r->outcomes[i] = o;
    else
        x->feed->done(x->feed->ctx, r->fmsg, o);
}

/* The child broke the protocol: its state is unknown from here on. */
static void protocol_error(exchange_t *x, long named, const char *fmt, ...) BL_PRINTF(3, 4);
static void protocol_error(exchange_t *x, long named, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(x->why, sizeof(x->why), fmt, ap);
    va_end(ap);
    for (char *c = x->why; *c; c++)
        if ((unsigned char)*c < 0x20)
            *c = ' ';
    x->lost = LOST_PROTOCOL;
    x->named = named;
}

/* How many requests may be open at once: one while requests are being
 * isolated after a protocol error; with a feed, one until the child said
 * hello, then the smaller of its and our max_inflight. A call (a batch)
 * pipelines all of its requests to a version 1 child, which answers them
 * in order, one at a time; to a child that may speak version 2 it sends
 * one request at a time: until the child has said which it speaks, a
 * second request could be run beside the first, and a version 2 child
 * gets the rest of the batch as one batch request once the first is
 * answered, never two requests holding messages of one key. */
static size_t window(const exchange_t *x)
{
    const exec_state_t *st = x->st;

    if (st->solo)
        return 1;
    if (!x->feed)
        return st->proto == 2 || (st->max_inflight > 1 && !st->proto) ? 1 : x->count;
    if (st->proto != 2)
        return 1;
    return st->child_inflight < st->max_inflight ? st->child_inflight : st->max_inflight;
}

/* Opens the next request, encoded into wline: the call's next message, or
 * the rest of a batch call as one batch request (version 2), or the feed's
 * next message. @returns false when there is none to send now. */
static bool open_next(exchange_t *x)
{
    exec_state_t *st = x->st;
    exec_req_t r = {.id = st->next_id, .count = 1};

    if (x->nopen >= window(x) || x->nopen >= x->cap)
        return false;
    if (x->feed) {
        if (!(r.fmsg = x->feed->next(x->feed->ctx, &r.fres)))
            return false;
        x->wline = bl_exec_encode(r.fmsg, r.id, &x->wlen);
    } else {
        if (x->taken >= x->limit)
            return false;
        r.msgs = x->msgs + x->taken;
        r.results = x->results + x->taken;
        r.outcomes = x->outcomes + x->taken;
        if (x->batch_call && st->proto == 2 && !st->solo && x->count - x->taken > 1) {
            r.batch = true;
            r.count = x->count - x->taken;
            x->wline = bl_exec_encode_batch(r.msgs, r.count, r.id, &x->wlen);
        } else {
            x->wline = bl_exec_encode(r.msgs[0], r.id, &x->wlen);
        }
    }
    if (!x->wline) {
        if (x->feed) {
            ballast_result_set_error(r.fres, "exec: out of memory encoding the message");
            x->feed->done(x->feed->ctx, r.fmsg, BALLAST_OUTCOME_RETRY);
        } else {
            x->limit = x->taken; /* the rest is RETRYed after the replies */
        }
        return false;
    }
    if (x->head + x->nopen == x->cap) {
        memmove(x->open, x->open + x->head, x->nopen * sizeof(*x->open));
        x->head = 0;
    }
    st->next_id++;
    x->taken += r.msgs ? r.count : 0;
    r.deadline = bl_now_ms() + st->timeout_ms;
    x->open[x->head + x->nopen++] = r;
    x->woff = 0;
    return true;
}

/* Writes requests while the window has room and the pipe takes them. */
static void pump_writes(exchange_t *x)
{
    exec_state_t *st = x->st;

    while (!x->write_dead && !x->lost) {
        ssize_t n;

        if (!x->wline && !open_next(x))
            return;
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
        /* The request may be answered once its JSON is written: a child
         * may answer before reading the final newline. */
        if (x->woff + (size_t)n >= x->wlen - 1)
            open_req(x, x->nopen - 1)->written = true;
        x->woff += (size_t)n;
        if (x->woff == x->wlen) {
            free(x->wline);
            x->wline = NULL;
        }
    }
}

/* The open request with id @p id, or -1. */
static long find_open(exchange_t *x, int64_t id)
{
    for (size_t i = 0; id >= 0 && i < x->nopen; i++)
        if (open_req(x, i)->id == (uint64_t)id && open_req(x, i)->written)
            return (long)i;
    return -1;
}

/* Version 2: a reply answers the open request it names. Version 1: the
 * oldest open one, which a reply that names an id must name. */
static bool route_reply(void *ctx, int64_t id, bl_exec_target_t *t)
{
    exchange_t *x = ctx;
    exec_req_t *r;

    if (x->st->proto == 2)
        x->routed = find_open(x, id);
    else if (x->nopen && open_req(x, 0)->written)
        x->routed = bl_exec_pair_in_order(open_req(x, 0)->id, x->nopen, 0, id);
    else
        x->routed = -1;
    if (x->routed < 0)
        return false;
    r = open_req(x, (size_t)x->routed);
    t->count = r->count;
    t->batch = r->batch;
    t->results = r->msgs ? r->results : &r->fres;
    t->outcomes = r->msgs ? r->outcomes : &r->fout;
    return true;
}

/* Takes open request @p i out of the open list (answered). */
static void close_req(exchange_t *x, size_t i)
{
    exec_req_t r = *open_req(x, i);

    if (i == 0)
        x->head++;
    else
        memmove(open_req(x, i), open_req(x, i + 1), (x->nopen - i - 1) * sizeof(r));
    if (!--x->nopen)
        x->head = 0;
    x->answered += r.count;
    if (!r.msgs)
        x->feed->done(x->feed->ctx, r.fmsg, r.fout);
}

/* A line from a child that has written nothing before: its hello, or the
 * first reply of a version 1 child. @returns true when the line was its
 * hello (consumed). */
static bool first_line(exchange_t *x, const char *line, size_t len)
{
    exec_state_t *st = x->st;
    char why[256];

    switch (bl_exec_take_hello(st, line, len, why, sizeof(why))) {
    case 1:
        return true;
    case -1:
        bl_fmt(x->why, sizeof(x->why), "%s", why);
        x->lost = LOST_INCOMPATIBLE;
        return true;
    default:
        break;
    }
    st->proto = 1;
    if (st->max_inflight > 1 && !st->warned_v1) {
        st->warned_v1 = true;
        bl_log(&st->log, BALLAST_LOG_WARN,
               "exec: child '%s' speaks protocol 1 (its first line is no hello): it gets one "
               "request at a time, not handler.exec.max.inflight = %zu", st->command,
               st->max_inflight);
    }
    return false;
}

/* A bad reply: version 2 pins it on the open request it names; the error
 * names the request it would have answered (that one, or the oldest). */
static void malformed_reply(exchange_t *x, int64_t id, const char *why)
{
    long named = x->st->proto == 2 ? find_open(x, id) : -1;
    long shown = named >= 0 ? named : x->nopen ? 0 : -1;
    exec_req_t *r = shown >= 0 ? open_req(x, (size_t)shown) : NULL;
    const ballast_message_t *m = r ? (r->msgs ? r->msgs[0] : r->fmsg) : NULL;
    const char *tp = m ? ballast_message_traceparent(m) : NULL;

    if (!why)
        why = "(no detail)";
    if (!r)
        protocol_error(x, named, "output while no request is open: %s", why);
    else
        protocol_error(x, named, "malformed reply to request %llu (offset %lld%s%s%.32s): %s",
                       (unsigned long long)r->id, (long long)ballast_message_offset(m),
                       r->count > 1 ? ", a batch" : "", tp ? " trace=" : "", tp ? tp + 3 : "",
                       why);
}

/* Matches complete reply lines with the open requests. */
static void take_replies(exchange_t *x)
{
    exec_state_t *st = x->st;
    const char *line;
    size_t len;

    while (!x->lost && (x->nopen || !st->proto) && (line = bl_exec_next_line(&st->in, &len))) {
        char *why = NULL;
        int64_t id = -1;

        if (!st->proto && first_line(x, line, len))
            continue;
        switch (bl_exec_decode_routed(line, len, route_reply, x, &id, &why)) {
        case BL_EXEC_DECODED:
            x->healthy = true;
            close_req(x, (size_t)x->routed);
            if (st->solo)
                st->solo--;
            x->progress = bl_now_ms();
            pump_writes(x); /* the window may have room again */
            break;
        case BL_EXEC_MALFORMED:
            malformed_reply(x, id, why);
            break;
        case BL_EXEC_NOMEM:
        default:
            protocol_error(x, -1, "out of memory decoding a reply");
            break;
        }
        free(why);
    }
    if (!x->lost && st->in.len > MAX_REPLY_BYTES && x->nopen)
        protocol_error(x, -1, "a reply line longer than %zu bytes", MAX_REPLY_BYTES);
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
        protocol_error(x, -1, "%s", errno == ENOMEM ? "out of memory reading replies"
                                                    : "cannot read its stdout");
}

/* The open request whose deadline comes first, and when (*atp): the
 * oldest, since each deadline is set when its request is written, the same
 * time ahead, and requests stay in the order they were written. Version 2
 * counts its time from its writing; version 1, from the later of that and
 * the last reply (its replies come in order). */
static long first_deadline(const exchange_t *x, int64_t *atp)
{
    const exec_req_t *r;

    if (!x->nopen)
        return -1;
    r = &x->open[x->head];
    *atp = r->deadline;
    if (x->st->proto != 2 && x->progress + x->st->timeout_ms > *atp)
        *atp = x->progress + x->st->timeout_ms;
    return 0;
}

/* Waits for the child to be readable (or writable when a request is
 * pending), for a cancel, or (a feed) for new messages or a retry's due
 * time, then moves data. */
static void step(exchange_t *x)
{
    exec_state_t *st = x->st;
    struct pollfd pfd[4] = {{st->from_child, POLLIN, 0},
                            {st->cancel_fd, POLLIN, 0},
                            {st->wake_fd, POLLIN, 0},
                            {st->to_child, POLLOUT, 0}};
    bool writing = x->wline != NULL;
    bool room = x->feed && !writing && x->nopen < window(x); /* the feed may send more */
    int64_t now = bl_now_ms(), at = now + EXIT_CHECK_MS, due;
    long first = first_deadline(x, &at);
    int timeout, rc;

    if (first >= 0 && at <= now) {
        x->lost = LOST_TIMEOUT;
        x->named = first;
        return;
    }
    if (room && (due = x->feed->due(x->feed->ctx)) > 0 && due < at)
        at = due;
    timeout = at - now > EXIT_CHECK_MS ? EXIT_CHECK_MS : (int)(at > now ? at - now : 0);
    /* In rounds: a child that exited while something it forked holds its
     * stdout gives no EOF, so its exit is looked for between rounds. */
    if (writing)
        pfd[2] = pfd[3];
    rc = poll(pfd, writing || room ? 3 : 2, timeout);
    if (rc < 0 && errno != EINTR) {
        protocol_error(x, -1, "poll failed");
        return;
    }
    if (rc == 0 && bl_exec_child_exited(st)) {
        take_output(x); /* what it wrote before it went */
        if (!x->lost)
            x->lost = LOST_DIED;
        return;
    }
    if (rc < 0)
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
    if (room && pfd[2].revents) {
        uint64_t n;
        while (read(st->wake_fd, &n, sizeof(n)) > 0)
            ;
    }
    pump_writes(x); /* the pipe, or the window, or the feed may take more */
}

static const char *timeout_text(const exec_state_t *st, char *buf, size_t size)
{
    bl_fmt(buf, size, "no reply within %lld ms", (long long)st->timeout_ms);
    return buf;
}

/* Drops the child after x->lost, and settles every message without a
 * reply: the request a bad line or a timeout is pinned on takes an attempt
 * (RETRY), every other one goes again without one (UNAVAILABLE; see
 * bl_exec_blame() and the top of this file). */
static void settle_lost(exchange_t *x)
{
    exec_state_t *st = x->st;
    bl_exec_fault_t fault = x->lost == LOST_PROTOCOL  ? BL_EXEC_FAULT_PROTOCOL
                            : x->lost == LOST_TIMEOUT ? BL_EXEC_FAULT_TIMEOUT
                                                      : BL_EXEC_FAULT_GONE;
    bl_exec_blame_t blame;
    char why[640], tbuf[64];
    const char *reason;

    switch (x->lost) {
    case LOST_PROTOCOL:
    case LOST_TIMEOUT:
        bl_exec_child_lost(st, x->lost == LOST_PROTOCOL ? x->why
                                                        : timeout_text(st, tbuf, sizeof(tbuf)));
        /* A child that lied once is replaced at once; one that keeps doing
         * it waits out the back-off like any lost child. */
        if (st->losses == 1)
            st->restart_at_ms = bl_now_ms();
        break;
    case LOST_CANCELLED:
        bl_exec_child_lost(st, bl_exec_cancelled);
        break;
    case LOST_INCOMPATIBLE:
        bl_exec_child_lost(st, x->why);
        break;
    case LOST_DIED:
    default:
        bl_exec_child_lost(st, NULL);
        break;
    }
    blame = bl_exec_blame(fault, x->named, x->nopen,
                          x->nopen ? open_req(x, x->named >= 0 ? (size_t)x->named : 0)->count
                                   : 0);
    if (x->lost == LOST_PROTOCOL) {
        bl_fmt(why, sizeof(why), "exec: handler protocol error: %s; child restarted%s", x->why,
               blame.one_at_a_time ? ", and its open requests are sent again one at a time"
                                   : "");
        reason = why;
    } else {
        reason = bl_exec_down_reason(st);
    }
    /* Those isolated go again one message per request, one at a time,
     * where the next bad line can be pinned. */
    if (blame.one_at_a_time)
        st->solo = x->feed ? x->nopen : x->count - x->answered;
    else if (blame.split >= 0)
        st->solo = open_req(x, (size_t)blame.split)->count;
    for (size_t i = 0; i < x->nopen; i++) {
        exec_req_t *r = open_req(x, i);
        ballast_outcome_t o = (long)i == blame.attempt ? BALLAST_OUTCOME_RETRY
                                                       : BALLAST_OUTCOME_UNAVAILABLE;
        for (size_t k = 0; k < r->count; k++) {
            ballast_result_set_error(req_res(r, k), reason);
            req_settle(x, r, k, o);
        }
    }
    x->nopen = 0;
    for (size_t i = x->taken; i < x->count; i++) {
        ballast_result_set_error(x->results[i], reason);
        x->outcomes[i] = BALLAST_OUTCOME_UNAVAILABLE;
    }
    x->taken = x->count;
}

/* What every exchange does first and last. @returns false when no child
 * runs (its down_reason says why). */
static bool exchange_begin(exchange_t *x)
{
    exec_state_t *st = x->st;
    uint64_t stale;

    /* A cancel meant for a call that has ended since must not end this one. */
    while (read(st->cancel_fd, &stale, sizeof(stale)) > 0)
        ;
    bl_exec_sigpipe_block(&x->guard);
    bl_exec_check_idle(st);
    if (bl_exec_child_ensure(st)) {
        bl_exec_sigpipe_restore(&x->guard);
        return false;
    }
    x->progress = bl_now_ms();
    return true;
}

static void exchange_end(exchange_t *x)
{
    exec_state_t *st = x->st;

    free(x->wline);
    x->wline = NULL;
    if (x->healthy) {
        st->backoff_ms = BACKOFF_INITIAL_MS;
        st->losses = 0;
    }
    if (x->lost)
        settle_lost(x);
    bl_exec_sigpipe_restore(&x->guard);
}

/* Runs one call: sends msgs, reads their replies into results/outcomes. */
void bl_exec_exchange(exec_state_t *st, const ballast_message_t *const *msgs,
                      ballast_result_t *const *results, size_t count,
                      ballast_outcome_t *outcomes, bool batch_call)
{
    exec_req_t one;
    exchange_t x = {.st = st, .msgs = msgs, .results = results, .outcomes = outcomes,
                    .count = count, .limit = count, .batch_call = batch_call,
                    .cap = count, .named = -1};

    if (!count)
        return;
    if (!exchange_begin(&x)) {
        for (size_t i = 0; i < count; i++) {
            ballast_result_set_error(results[i], bl_exec_down_reason(st));
            outcomes[i] = BALLAST_OUTCOME_UNAVAILABLE;
        }
        return;
    }
    x.open = count > 1 ? malloc(count * sizeof(*x.open)) : &one;
    if (!x.open) {
        x.limit = 0;
    } else {
        pump_writes(&x);
        while (x.answered < x.limit && !x.lost) {
            if (x.write_dead && !x.nopen) {
                x.lost = LOST_DIED; /* stdin closed, nothing more to answer: reap it */
                break;
            }
            step(&x);
        }
    }
    exchange_end(&x);
    if (x.open != &one)
        free(x.open);
    for (size_t i = x.limit; !x.lost && i < count; i++) {
        ballast_result_set_error(results[i], "exec: out of memory encoding the message");
        outcomes[i] = BALLAST_OUTCOME_RETRY;
    }
}

size_t bl_exec_max_inflight(const void *state)
{
    return ((const exec_state_t *)state)->max_inflight;
}

void bl_exec_pipeline(void *state, const bl_exec_feed_t *feed)
{
    exec_state_t *st = state;
    exchange_t x = {.st = st, .feed = feed, .cap = st->max_inflight, .named = -1};
    ballast_message_t *m;
    ballast_result_t *res;

    if (!exchange_begin(&x)) {
        /* No child: the first message says so (the caller waits). */
        if ((m = feed->next(feed->ctx, &res))) {
            ballast_result_set_error(res, bl_exec_down_reason(st));
            feed->done(feed->ctx, m, BALLAST_OUTCOME_UNAVAILABLE);
        }
        return;
    }
    if (!(x.open = malloc(x.cap * sizeof(*x.open)))) {
        if ((m = feed->next(feed->ctx, &res))) {
            ballast_result_set_error(res, "exec: out of memory");
            feed->done(feed->ctx, m, BALLAST_OUTCOME_RETRY);
        }
    } else {
        pump_writes(&x);
        while (!x.lost && (x.nopen || x.wline)) {
            if (x.write_dead && !x.nopen) {
                x.lost = LOST_DIED;
                break;
            }
            step(&x);
        }
    }
    exchange_end(&x);
    free(x.open);
}

void bl_exec_wake(void *state)
{
    exec_state_t *st = state;
    uint64_t one = 1;

    if (st && write(st->wake_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: a wake-up is pending already. */
    }
}

void bl_exec_cancel(void *state)
{
    exec_state_t *st = state;
    uint64_t one = 1;

    if (st && write(st->cancel_fd, &one, sizeof(one)) < 0) {
        /* EAGAIN: a cancel is pending already. */
    }
}
