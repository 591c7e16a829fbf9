/*
 * exec_child.h - the exec handler's child process and its pipes
 * (exec_child.c), for the exchange (exec_exchange.c), which speaks the
 * protocol over them, and the handler proper (exec.c), which starts and
 * ends them. Internal to the three.
 */
#ifndef BALLAST_EXEC_CHILD_H
#define BALLAST_EXEC_CHILD_H

#include "handlers.h"

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Why a cancelled call's child was killed (compared by address). */
extern const char bl_exec_cancelled[];

#define BACKOFF_INITIAL_MS 100
#define BACKOFF_MAX_MS 5000
#define EOF_GRACE_MS 1000   /* after EOF, for the exit status to appear */
#define CLOSE_GRACE_MS 5000 /* destroy: after closing stdin */
#define TERM_GRACE_MS 2000  /* destroy: after SIGTERM */
#define EXIT_CHECK_MS 200   /* a call looks for its child's exit this often */
/* A reply longer than this is a runaway child, not a record. */
#define MAX_REPLY_BYTES ((size_t)64 << 20)
#define READ_CHUNK 65536

/* Reply bytes read but not yet consumed: p[start, start+len). */
typedef struct linebuf {
    char *p;
    size_t start, len, cap;
    size_t scanned; /* bytes after start known to hold no '\n' */
} linebuf_t;

typedef struct exec_state {
    char *command; /* as configured, for messages */
    char **argv;   /* NULL-terminated; argv[0] is searched in PATH */
    bl_logger_t log;
    int64_t timeout_ms;

    pid_t pid;      /* 0: no child */
    int to_child;   /* its stdin (ours non-blocking), -1 if none */
    int from_child; /* its stdout (ours non-blocking), -1 if none */
    linebuf_t in;

    uint64_t next_id;      /* the id of the next request */
    int proto;             /* the child's protocol: 0 until its first line,
                              then 2 (that line was a hello) or 1 */
    size_t max_inflight;   /* handler.exec.max.inflight */
    size_t child_inflight; /* its hello's max_inflight */
    bool warned_v1;        /* "speaks version 1" was logged */
    int wake_fd;           /* an eventfd: bl_exec_wake() wakes a pipeline */
    size_t solo;           /* requests still to send one at a time (below) */
    int cancel_fd;         /* an eventfd: bl_exec_cancel() wakes a call */

    int64_t restart_at_ms; /* monotonic time of the next start attempt */
    int64_t backoff_ms;    /* delay armed by the next loss */
    int losses;            /* children lost since the last good reply */
    char *down_reason;     /* why no child runs (UNAVAILABLE error text) */
} exec_state_t;

/* Blocks SIGPIPE on this thread for one call. A SIGPIPE raised by our own
 * write to a dead child is then pending on the thread; it is consumed
 * before the old mask comes back, unless one was pending already (someone
 * else's, which we leave alone). */
typedef struct sigpipe_guard {
    sigset_t old;
    bool was_pending;
    bool raised; /* a write failed with EPIPE */
} sigpipe_guard_t;

/** Output that arrived between calls answers no request: the pairing of
 * requests and replies can no longer be trusted, so the child is
 * restarted. EOF there means it died while idle. Holds no message. */
void bl_exec_check_idle(exec_state_t *st);

/** Reads a child's first line as a hello: one ballast can honour sets its
 *  protocol to 2 and @returns 1; a line that is no hello @returns 0 (and
 *  changes nothing); a hello ballast cannot honour (another protocol, a bad
 *  max_inflight) @returns -1 with @p why set. */
int bl_exec_take_hello(exec_state_t *st, const char *line, size_t len, char *why,
                       size_t whysize);

/** Makes sure a child runs, unless the restart back-off has not passed
 * (the caller answers UNAVAILABLE and the runtime waits: no sleep here).
 * @returns 0, or -1 with down_reason saying why not. */
int bl_exec_child_ensure(exec_state_t *st);

/** Whether the child has exited (it is left to be reaped). */
bool bl_exec_child_exited(const exec_state_t *st);

/**
 * Forgets the child: closes the pipes and reaps it, after killing it when
 * @p why is given (it is alive but unusable) or when it does not exit soon
 * after EOF. Sets down_reason ("exec: child exited with status 1", or
 * "exec: <why>; child killed") and arms the restart backoff.
 */
void bl_exec_child_lost(exec_state_t *st, const char *why);

/** Waits up to @p grace_ms for the child to exit. @returns 1 when reaped
 * (*statusp set, -1 if the status was lost), 0 when it still runs. */
int bl_exec_child_reap(pid_t pid, int64_t grace_ms, int *statusp);

/** Starts the child with pipes on its stdin and stdout; stderr and the
 * environment are inherited. @returns 0 or an errno value. */
int bl_exec_child_spawn(exec_state_t *st);

/** Closes *fd if open and marks it closed (-1). */
void bl_exec_close_fd(int *fd);

/** Why no child runs, for an UNAVAILABLE error text. */
const char *bl_exec_down_reason(const exec_state_t *st);

/** strerror_r() of @p err into @p buf. @returns the text. */
const char *bl_exec_errtext(int err, char *buf, size_t size);

/** The next complete line, without its '\n' (consumed), or NULL. */
const char *bl_exec_next_line(linebuf_t *b, size_t *lenp);

/** Reads what the child has written. @returns >0 bytes read, 0 at EOF,
 * -1 when nothing is available now, -2 when out of memory or on a read
 * error (errno set). */
ssize_t bl_exec_read_some(exec_state_t *st);

void bl_exec_sigpipe_block(sigpipe_guard_t *g);

void bl_exec_sigpipe_restore(sigpipe_guard_t *g);

#endif
