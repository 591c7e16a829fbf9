/*
 * fuzz_exec_pairing.c - the exec protocol, statefully: a simulated child
 * reads requests and writes replies, stray lines, junk, replies with wrong
 * ids, all cut into arbitrary write sizes, and the reply lines go through
 * the same pairing as the exec handler's (bl_exec_pair_in_order() and
 * bl_exec_decode_routed()). Invariants:
 *   - a reply is accepted only for the request it answers: each real reply
 *     carries, in its error text, the number of the request the child
 *     meant, and the request it is paired with must be that one;
 *   - a line that is not a well-formed reply to the oldest open request is
 *     never accepted (the handler then kills the child: the session ends);
 *   - no request is answered twice, none before it was sent.
 * The first byte picks the protocol version. Version 2 (the child says
 * hello, then answers open requests in any order, by id; some requests are
 * batches, answered with "results") goes through bl_exec_hello() and
 * routing by id, as the exec handler's; its bad lines are a reply for an id
 * never sent, a second reply for an id, a reply without an id, a second
 * hello, results of the wrong length and junk.
 * The fuzz input is a script: each byte pair is an event (the child reads
 * a request, or writes one of the line kinds) and a write size.
 */
#include "fuzz_common.h"

#include "execproto.h"

#define MAX_REQ 64

/* The child's side of the pipe: the line it is writing (pending, poff of
 * plen bytes written), the bytes written and not yet split into lines, and
 * what each written line was meant to be (a request's index, -1: no real
 * reply), in order. */
typedef struct wire {
    char pending[512];
    size_t plen, poff;
    char buf[16384];
    size_t len;
    long meant[256];
    size_t nmeant;
    bool over; /* a line was refused: the child is gone */
} wire_t;

/* The pending line is meant as @p m. */
static void wire_mean(wire_t *w, long m)
{
    if (w->nmeant < sizeof(w->meant) / sizeof(w->meant[0]))
        w->meant[w->nmeant++] = m;
}

/* The child's write: a piece of 1 + @p cut % 16 bytes of the pending line;
 * then every complete line goes to @p take with what it was meant to be.
 * @returns false when the buffer has no room. */
static bool wire_write(wire_t *w, uint8_t cut, void (*take)(void *, const char *, size_t, long),
                       void *session)
{
    size_t n = 1 + cut % 16;
    char *nl;

    if (n > w->plen - w->poff)
        n = w->plen - w->poff;
    if (w->len + n > sizeof(w->buf))
        return false;
    memcpy(w->buf + w->len, w->pending + w->poff, n);
    w->len += n;
    w->poff += n;
    while (!w->over && (nl = memchr(w->buf, '\n', w->len))) {
        size_t len = (size_t)(nl - w->buf);
        take(session, w->buf, len, w->nmeant ? w->meant[0] : -1);
        memmove(w->buf, nl + 1, w->len - len - 1);
        w->len -= len + 1;
        if (w->nmeant) {
            memmove(w->meant, w->meant + 1, (w->nmeant - 1) * sizeof(*w->meant));
            w->nmeant--;
        }
    }
    return true;
}

typedef struct session {
    uint64_t first_id;
    size_t sent, done;        /* requests the child read; replies accepted */
    size_t answered_by_child; /* replies the child wrote (it answers in order) */
    ballast_outcome_t outcomes[MAX_REQ];
    struct ballast_result_s results[MAX_REQ];
    wire_t w;
} session_t;

static ballast_result_t *s_results[MAX_REQ];

static bool route(void *ctx, int64_t id, bl_exec_target_t *t)
{
    session_t *s = ctx;
    long i = bl_exec_pair_in_order(s->first_id, s->sent, s->done, id);

    if (i < 0)
        return false;
    s_results[i] = &s->results[i];
    t->results = &s_results[i];
    t->outcomes = &s->outcomes[i];
    t->count = 1;
    t->batch = false;
    return true;
}

/* Whether @p line, as the child meant it, is a real reply to request
 * @p meant (-1: it is no reply at all). */
static void take_line(void *session, const char *line, size_t len, long meant)
{
    session_t *s = session;
    char *why = NULL, want[32];
    size_t before = s->done;
    bl_exec_decode_status_t st = bl_exec_decode_routed(line, len, route, s, NULL, &why);

    free(why);
    if (st != BL_EXEC_DECODED) {
        s->w.over = true; /* the handler kills the child here */
        return;
    }
    FUZZ_CHECK(meant >= 0, "a line that is no reply was accepted: %.*s", (int)len, line);
    FUZZ_CHECK((long)before == meant, "reply meant for request %ld paired with %zu", meant,
               before);
    snprintf(want, sizeof(want), "req=%ld", meant);
    FUZZ_CHECK(s->results[before].error && !strcmp(s->results[before].error, want),
               "request %zu got the result '%s'", before,
               s->results[before].error ? s->results[before].error : "(none)");
    s->done++;
}

/* ---- version 2 -------------------------------------------------------------- */

#define BATCH_MAX 3

/* A version 2 session: requests 0..sent-1 (id first_id + i) were sent,
 * request i holds count[i] messages (more than one: a batch request). */
typedef struct session2 {
    uint64_t first_id;
    size_t sent;
    size_t count[MAX_REQ];
    bool answered[MAX_REQ];        /* by an accepted reply */
    bool child_answered[MAX_REQ];  /* the child wrote a real reply to it */
    int hello;                     /* 0: not yet written, 1: accepted */
    struct ballast_result_s results[MAX_REQ][BATCH_MAX];
    ballast_result_t *rptr[MAX_REQ][BATCH_MAX];
    ballast_outcome_t outcomes[MAX_REQ][BATCH_MAX];
    long routed;
    wire_t w;
} session2_t;

/* By id, among the open requests: sent and not answered. */
static bool route2(void *ctx, int64_t id, bl_exec_target_t *t)
{
    session2_t *s = ctx;
    uint64_t i;

    if (id < (int64_t)s->first_id || (i = (uint64_t)id - s->first_id) >= s->sent ||
        s->answered[i])
        return false;
    s->routed = (long)i;
    t->results = s->rptr[i];
    t->outcomes = s->outcomes[i];
    t->count = s->count[i];
    t->batch = s->count[i] > 1;
    return true;
}

/* A line as the exec handler takes it: the hello first, then replies by
 * id. @p meant: the request a real reply was written for, else -1. */
static void take_line2(void *session, const char *line, size_t len, long meant)
{
    session2_t *s = session;
    char *why = NULL;
    bl_exec_hello_t hello;
    bl_exec_decode_status_t st;

    if (!s->hello) {
        bl_exec_hello_status_t hs = bl_exec_hello(line, len, &hello, &why);
        free(why);
        FUZZ_CHECK(hs == BL_EXEC_HELLO_OK, "the first line is the hello: %.*s", (int)len, line);
        s->hello = 1;
        return;
    }
    st = bl_exec_decode_routed(line, len, route2, s, NULL, &why);
    free(why);
    if (st != BL_EXEC_DECODED) {
        s->w.over = true;
        return;
    }
    FUZZ_CHECK(meant >= 0, "a line that is no reply was accepted: %.*s", (int)len, line);
    FUZZ_CHECK(s->routed == meant, "reply meant for request %ld went to %ld", meant, s->routed);
    FUZZ_CHECK(!s->answered[meant], "request %ld answered twice", meant);
    for (size_t k = 0; k < s->count[meant]; k++) {
        char want[48];
        snprintf(want, sizeof(want), "req=%ld.%zu", meant, k);
        FUZZ_CHECK(s->results[meant][k].error && !strcmp(s->results[meant][k].error, want),
                   "request %ld message %zu got '%s'", meant, k,
                   s->results[meant][k].error ? s->results[meant][k].error : "(none)");
    }
    s->answered[meant] = true;
}

/* Writes into @p out (of @p size) a real reply to request @p i. */
static size_t real_reply2(const session2_t *s, size_t i, char *out, size_t size)
{
    uint64_t id = s->first_id + i;
    size_t n;

    if (s->count[i] == 1)
        return (size_t)snprintf(out, size, "{\"id\":%llu,\"status\":\"retry\",\"error\":"
                                "\"req=%zu.0\"}\n", (unsigned long long)id, i);
    n = (size_t)snprintf(out, size, "{\"id\":%llu,\"results\":[", (unsigned long long)id);
    for (size_t k = 0; k < s->count[i]; k++)
        n += (size_t)snprintf(out + n, size - n, "%s{\"status\":\"fail\",\"error\":"
                              "\"req=%zu.%zu\"}", k ? "," : "", i, k);
    return n + (size_t)snprintf(out + n, size - n, "]}\n");
}

static void run_v2(fuzz_reader_t *r)
{
    session2_t *s = calloc(1, sizeof(*s));
    wire_t *w;

    if (!s)
        abort();
    w = &s->w;
    s->first_id = 1 + fr_u8(r);
    for (size_t i = 0; i < MAX_REQ; i++)
        for (size_t k = 0; k < BATCH_MAX; k++)
            s->rptr[i][k] = &s->results[i][k];
    w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                            "{\"hello\":{\"protocol\":2,\"max_inflight\":8}}\n");
    wire_mean(w, -1);
    while (r->left && !s->w.over) {
        uint8_t ev = fr_u8(r), cut = fr_u8(r);
        if (w->poff == w->plen) {
            long m = -1;
            size_t open[MAX_REQ], nopen = 0, pick;
            for (size_t i = 0; i < s->sent; i++)
                if (!s->child_answered[i])
                    open[nopen++] = i;
            pick = nopen ? open[(ev >> 3) % nopen] : 0;
            w->plen = w->poff = 0;
            switch (ev % 8) {
            case 0: /* ballast sends a request: a message, or a batch */
                if (s->sent < MAX_REQ)
                    s->count[s->sent++] = 1 + (ev >> 3) % BATCH_MAX;
                continue;
            case 1: /* a real reply to an open request, in any order */
            case 2:
                if (!nopen)
                    continue;
                m = (long)pick;
                s->child_answered[pick] = true;
                w->plen = real_reply2(s, pick, w->pending, sizeof(w->pending));
                break;
            case 3: /* a second reply for an id the child answered */
                for (size_t i = 0; i < s->sent && !w->plen; i++)
                    if (s->child_answered[i])
                        w->plen = real_reply2(s, i, w->pending, sizeof(w->pending));
                if (!w->plen)
                    continue;
                break;
            case 4: /* an id never sent */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                                        "{\"id\":%llu,\"status\":\"ok\"}\n",
                                        (unsigned long long)(s->first_id + s->sent + (ev >> 3)));
                break;
            case 5: /* a version 1 reply: no id */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "{\"status\":\"ok\"}\n");
                break;
            case 6: /* results of the wrong length, to an open request */
                if (!nopen)
                    continue;
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                                        "{\"id\":%llu,\"results\":[%s]}\n",
                                        (unsigned long long)(s->first_id + pick),
                                        s->count[pick] == 2 ? "" : "{\"status\":\"ok\"},"
                                                               "{\"status\":\"ok\"}");
                break;
            default: /* a second hello, or junk */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "%s\n",
                                        ev & 8 ? "{\"hello\":{\"protocol\":2,\"max_inflight\":8}}"
                                               : "debug: x");
                break;
            }
            wire_mean(w, m);
        }
        if (!wire_write(w, cut, take_line2, s))
            break;
    }
    for (size_t i = 0; i < MAX_REQ; i++)
        for (size_t k = 0; k < BATCH_MAX; k++)
            bl_result_reset(&s->results[i][k]);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    session_t *s = calloc(1, sizeof(*s));
    wire_t *w;

    if (size && data[0] & 1) {
        r.left--;
        r.p++;
        run_v2(&r);
        free(s);
        return 0;
    }
    if (!s)
        abort();
    w = &s->w;
    s->first_id = 1 + fr_u8(&r);
    while (r.left && !s->w.over) {
        uint8_t ev = fr_u8(&r), cut = fr_u8(&r);
        if (w->poff == w->plen) {
            long m = -1;
            uint64_t id = s->first_id + s->answered_by_child;
            w->plen = w->poff = 0;
            switch (ev % 8) {
            case 0: /* the child reads the next request */
                if (s->sent < MAX_REQ)
                    s->sent++;
                continue;
            case 1: /* a reply naming its id */
            case 2: /* a reply without an id */
                if (s->answered_by_child >= s->sent)
                    continue; /* the model child answers only what it read */
                m = (long)s->answered_by_child++;
                if (ev % 8 == 1)
                    w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                                            "{\"id\":%llu,\"status\":\"retry\",\"error\":"
                                            "\"req=%ld\"}\n",
                                            (unsigned long long)id, m);
                else
                    w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                                            "{\"status\":\"retry\",\"error\":\"req=%ld\"}\n", m);
                break;
            case 3: /* a reply naming another request's id */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending),
                                        "{\"id\":%llu,\"status\":\"ok\"}\n",
                                        (unsigned long long)(id + 1 + (ev >> 3)));
                break;
            case 4: /* a stray debug line */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "debug: %u\n", ev);
                break;
            case 5: /* half a reply, then a newline */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "{\"status\":\"o\n");
                break;
            case 6: /* a well-formed JSON line that is not a reply */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "{\"hello\":1}\n");
                break;
            default: /* an empty line */
                w->plen = (size_t)snprintf(w->pending, sizeof(w->pending), "\n");
                break;
            }
            wire_mean(w, m);
        }
        if (!wire_write(w, cut, take_line, s))
            break;
    }
    FUZZ_CHECK(s->done <= s->sent, "%zu replies accepted for %zu requests", s->done, s->sent);
    for (size_t i = 0; i < MAX_REQ; i++)
        bl_result_reset(&s->results[i]);
    free(s);
    return 0;
}
