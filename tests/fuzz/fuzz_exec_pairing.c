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

typedef struct session {
    uint64_t first_id;
    size_t sent, done;        /* requests the child read; replies accepted */
    size_t answered_by_child; /* replies the child wrote (it answers in order) */
    ballast_outcome_t outcomes[MAX_REQ];
    struct ballast_result_s results[MAX_REQ];
    char buf[8192];           /* bytes written, not yet split into lines */
    size_t len;
    bool over;                /* a line was refused: the child is gone */
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
static void take_line(session_t *s, const char *line, size_t len, long meant)
{
    char *why = NULL, want[32];
    size_t before = s->done;
    bl_exec_decode_status_t st = bl_exec_decode_routed(line, len, route, s, NULL, &why);

    free(why);
    if (st != BL_EXEC_DECODED) {
        s->over = true; /* the handler kills the child here */
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

/* Splits complete lines off the buffer; @p meant says what each line is,
 * in the order the child wrote them. */
static void take_lines(session_t *s, long *meant, size_t *nmeant)
{
    char *nl;

    while (!s->over && (nl = memchr(s->buf, '\n', s->len))) {
        size_t n = (size_t)(nl - s->buf);
        long m = *nmeant ? meant[0] : -1;
        take_line(s, s->buf, n, m);
        memmove(s->buf, nl + 1, s->len - n - 1);
        s->len -= n + 1;
        if (*nmeant) {
            memmove(meant, meant + 1, (*nmeant - 1) * sizeof(*meant));
            (*nmeant)--;
        }
    }
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
    char buf[16384];
    size_t len;
    bool over;
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
static void take_line2(session2_t *s, const char *line, size_t len, long meant)
{
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
        s->over = true;
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
    long meant[256];
    size_t nmeant = 0;
    char pending[512];
    size_t plen = 0, poff = 0;

    if (!s)
        abort();
    s->first_id = 1 + fr_u8(r);
    for (size_t i = 0; i < MAX_REQ; i++)
        for (size_t k = 0; k < BATCH_MAX; k++)
            s->rptr[i][k] = &s->results[i][k];
    plen = (size_t)snprintf(pending, sizeof(pending),
                            "{\"hello\":{\"protocol\":2,\"max_inflight\":8}}\n");
    meant[nmeant++] = -1;
    while (r->left && !s->over) {
        uint8_t ev = fr_u8(r), cut = fr_u8(r);
        if (poff == plen) {
            long m = -1;
            size_t open[MAX_REQ], nopen = 0, pick;
            for (size_t i = 0; i < s->sent; i++)
                if (!s->child_answered[i])
                    open[nopen++] = i;
            pick = nopen ? open[(ev >> 3) % nopen] : 0;
            plen = poff = 0;
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
                plen = real_reply2(s, pick, pending, sizeof(pending));
                break;
            case 3: /* a second reply for an id the child answered */
                for (size_t i = 0; i < s->sent && !plen; i++)
                    if (s->child_answered[i])
                        plen = real_reply2(s, i, pending, sizeof(pending));
                if (!plen)
                    continue;
                break;
            case 4: /* an id never sent */
                plen = (size_t)snprintf(pending, sizeof(pending),
                                        "{\"id\":%llu,\"status\":\"ok\"}\n",
                                        (unsigned long long)(s->first_id + s->sent + (ev >> 3)));
                break;
            case 5: /* a version 1 reply: no id */
                plen = (size_t)snprintf(pending, sizeof(pending), "{\"status\":\"ok\"}\n");
                break;
            case 6: /* results of the wrong length, to an open request */
                if (!nopen)
                    continue;
                plen = (size_t)snprintf(pending, sizeof(pending),
                                        "{\"id\":%llu,\"results\":[%s]}\n",
                                        (unsigned long long)(s->first_id + pick),
                                        s->count[pick] == 2 ? "" : "{\"status\":\"ok\"},"
                                                               "{\"status\":\"ok\"}");
                break;
            default: /* a second hello, or junk */
                plen = (size_t)snprintf(pending, sizeof(pending), "%s\n",
                                        ev & 8 ? "{\"hello\":{\"protocol\":2,\"max_inflight\":8}}"
                                               : "debug: x");
                break;
            }
            if (nmeant < sizeof(meant) / sizeof(meant[0]))
                meant[nmeant++] = m;
        }
        {
            size_t n = 1 + cut % 16;
            char *nl;
            if (n > plen - poff)
                n = plen - poff;
            if (s->len + n > sizeof(s->buf))
                break;
            memcpy(s->buf + s->len, pending + poff, n);
            s->len += n;
            poff += n;
            while (!s->over && (nl = memchr(s->buf, '\n', s->len))) {
                size_t len = (size_t)(nl - s->buf);
                long mm = nmeant ? meant[0] : -1;
                take_line2(s, s->buf, len, mm);
                memmove(s->buf, nl + 1, s->len - len - 1);
                s->len -= len + 1;
                if (nmeant) {
                    memmove(meant, meant + 1, (nmeant - 1) * sizeof(*meant));
                    nmeant--;
                }
            }
        }
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
    long meant[256];
    size_t nmeant = 0;
    char pending[512];
    size_t plen = 0, poff = 0;

    if (size && data[0] & 1) {
        r.left--;
        r.p++;
        run_v2(&r);
        free(s);
        return 0;
    }
    if (!s)
        abort();
    s->first_id = 1 + fr_u8(&r);
    while (r.left && !s->over) {
        uint8_t ev = fr_u8(&r), cut = fr_u8(&r);
        if (poff == plen) {
            long m = -1;
            uint64_t id = s->first_id + s->answered_by_child;
            plen = poff = 0;
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
                    plen = (size_t)snprintf(pending, sizeof(pending),
                                            "{\"id\":%llu,\"status\":\"retry\",\"error\":"
                                            "\"req=%ld\"}\n",
                                            (unsigned long long)id, m);
                else
                    plen = (size_t)snprintf(pending, sizeof(pending),
                                            "{\"status\":\"retry\",\"error\":\"req=%ld\"}\n", m);
                break;
            case 3: /* a reply naming another request's id */
                plen = (size_t)snprintf(pending, sizeof(pending),
                                        "{\"id\":%llu,\"status\":\"ok\"}\n",
                                        (unsigned long long)(id + 1 + (ev >> 3)));
                break;
            case 4: /* a stray debug line */
                plen = (size_t)snprintf(pending, sizeof(pending), "debug: %u\n", ev);
                break;
            case 5: /* half a reply, then a newline */
                plen = (size_t)snprintf(pending, sizeof(pending), "{\"status\":\"o\n");
                break;
            case 6: /* a well-formed JSON line that is not a reply */
                plen = (size_t)snprintf(pending, sizeof(pending), "{\"hello\":1}\n");
                break;
            default: /* an empty line */
                plen = (size_t)snprintf(pending, sizeof(pending), "\n");
                break;
            }
            if (nmeant < sizeof(meant) / sizeof(meant[0]))
                meant[nmeant++] = m;
        }
        /* The child's write: a piece of the pending text. */
        {
            size_t n = 1 + cut % 16;
            if (n > plen - poff)
                n = plen - poff;
            if (s->len + n > sizeof(s->buf))
                break;
            memcpy(s->buf + s->len, pending + poff, n);
            s->len += n;
            poff += n;
            take_lines(s, meant, &nmeant);
        }
    }
    FUZZ_CHECK(s->done <= s->sent, "%zu replies accepted for %zu requests", s->done, s->sent);
    for (size_t i = 0; i < MAX_REQ; i++)
        bl_result_reset(&s->results[i]);
    free(s);
    return 0;
}
