/*
 * exec.c - the `exec` handler: a long-running child per worker, speaking JSON
 * lines. Its table, and starting and ending a worker's state; the exchange
 * with the child is exec_exchange.c's, the child process exec_child.c's.
 */
#include "exec_exchange.h"

#include "../shared/words.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/eventfd.h>

/*
 * Life of a child. init starts it (a command that cannot be run is a
 * configuration error). An exchange writes request lines and reads reply
 * lines, pipelined, with both pipe ends non-blocking and poll()ed so that
 * neither side can deadlock on a full pipe: a call (handle, handle_batch)
 * sends its messages, a pipeline (bl_exec_pipeline, handler.exec.max.inflight
 * above 1) sends what its feed gives while the window has room. Requests
 * carry an "id" (consecutive per child) and the message's "attempt"
 * (docs/exec-protocol.md is the contract). A child's first line may be its
 * hello (version 2): its replies then name their request's id and come in
 * any order, and a batch call goes as one batch request. Otherwise it is a
 * version 1 child: a reply answers the oldest open request, and one that
 * names an "id" must name that one, and a pipeline keeps one request open.
 *
 * What goes wrong, and what each open message gets then, is told at the
 * top of exec_exchange.c (the exchange); the child process, its pipes and
 * its restarts are exec_child.c's.
 *
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

static void exec_destroy(void *state)
{
    exec_state_t *st = state;

    if (!st)
        return;
    bl_exec_close(&state, 1);
    bl_words_free(st->argv);
    bl_exec_close_fd(&st->cancel_fd);
    bl_exec_close_fd(&st->wake_fd);
    free(st->command);
    free(st->in.p);
    free(st->down_reason);
    free(st);
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
    st->to_child = st->from_child = st->wake_fd = -1;
    st->next_id = 1;
    st->log = bl_conf_logger(params->conf);
    st->max_inflight = (size_t)bl_conf_int(params->conf, "handler.exec.max.inflight");
    if ((st->cancel_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0 ||
        (st->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) < 0) {
        bl_fmt(errbuf, errsize, "handler exec: eventfd: %s",
               bl_exec_errtext(errno, ebuf, sizeof(ebuf)));
        exec_destroy(st);
        return BALLAST_ERR_IO;
    }
    st->timeout_ms = bl_conf_int(params->conf, "handler.timeout.ms"); /* the reply deadline */
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

    bl_exec_exchange(state, &msg, &res, 1, &outcome, false);
    return outcome;
}

static void exec_handle_batch(void *state, const ballast_message_t *const *msgs,
                              ballast_result_t *const *results, size_t count,
                              ballast_outcome_t *outcomes)
{
    bl_exec_exchange(state, msgs, results, count, outcomes, true);
}

const ballast_handler_t bl_handler_exec = {
    BALLAST_HANDLER_ABI_VERSION, "exec", exec_init, exec_handle,
    exec_handle_batch, exec_destroy};
