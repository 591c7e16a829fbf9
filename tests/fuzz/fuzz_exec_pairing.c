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

static ballast_result_t *route(void *ctx, int64_t id, ballast_outcome_t **outcomepp)
{
    session_t *s = ctx;
    long i = bl_exec_pair_in_order(s->first_id, s->sent, s->done, id);

    if (i < 0)
        return NULL;
    *outcomepp = &s->outcomes[i];
    return &s->results[i];
}

/* Whether @p line, as the child meant it, is a real reply to request
 * @p meant (-1: it is no reply at all). */
static void take_line(session_t *s, const char *line, size_t len, long meant)
{
    char *why = NULL, want[32];
    size_t before = s->done;
    bl_exec_decode_status_t st = bl_exec_decode_routed(line, len, route, s, &why);

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

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader_t r = {data, size};
    session_t *s = calloc(1, sizeof(*s));
    long meant[256];
    size_t nmeant = 0;
    char pending[512];
    size_t plen = 0, poff = 0;

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
