/*
 * exec_child.c - the exec handler's child: starting it (in its own process
 * group, pipes on its stdin and stdout), noticing and settling its loss
 * (with a restart back-off), ending it (one worker's, or all of them at a
 * stop), reading its reply lines, and the SIGPIPE guard of a call. The
 * protocol over its pipes is exec_exchange.c's.
 */
#include "exec_child.h"

#include "../execproto.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

const char bl_exec_cancelled[] = "the stop's drain timed out";

/* ---- small helpers ------------------------------------------------------ */

static char *vfmt_alloc(const char *fmt, va_list ap)
{
    va_list copy;
    int n;
    char *s;

    va_copy(copy, ap);
    n = vsnprintf(NULL, 0, fmt, copy);
    va_end(copy);
    if (n < 0 || !(s = malloc((size_t)n + 1)))
        return NULL;
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    return s;
}

static char *fmt_alloc(const char *fmt, ...) BL_PRINTF(1, 2);
static char *fmt_alloc(const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = vfmt_alloc(fmt, ap);
    va_end(ap);
    return s;
}

const char *bl_exec_errtext(int err, char *buf, size_t size)
{
    return strerror_r(err, buf, size); /* GNU variant: thread-safe */
}

void bl_exec_close_fd(int *fd)
{
    if (*fd >= 0)
        close(*fd);
    *fd = -1;
}

/* ---- SIGPIPE ------------------------------------------------------------ */

void bl_exec_sigpipe_block(sigpipe_guard_t *g)
{
    sigset_t set, pending;

    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    g->was_pending = sigpending(&pending) == 0 && sigismember(&pending, SIGPIPE) == 1;
    g->raised = false;
    pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

void bl_exec_sigpipe_restore(sigpipe_guard_t *g)
{
    if (g->raised && !g->was_pending) {
        const struct timespec zero = {0, 0};
        sigset_t set;

        sigemptyset(&set);
        sigaddset(&set, SIGPIPE);
        while (sigtimedwait(&set, NULL, &zero) < 0 && errno == EINTR)
            ;
    }
    pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- starting and losing the child -------------------------------------- */

/* The child's environment: ours, plus BALLAST_EXEC_PROTOCOL=2 when more
 * than one request may be open and ours does not pin a version already
 * (docs/exec-protocol.md, "Choosing the version"). @returns environ itself,
 * or a malloc'd array (of environ's strings) the caller frees; NULL when
 * out of memory. */
static char **child_environ(const exec_state_t *st)
{
    static char offer[] = "BALLAST_EXEC_PROTOCOL=2";
    size_t n = 0;
    char **env;

    if (st->max_inflight <= 1 || getenv("BALLAST_EXEC_PROTOCOL"))
        return environ;
    while (environ[n])
        n++;
    if (!(env = malloc((n + 2) * sizeof(*env))))
        return NULL;
    memcpy(env, environ, n * sizeof(*env));
    env[n] = offer;
    env[n + 1] = NULL;
    return env;
}

/* Starts the child with pipes on its stdin and stdout; stderr and the
 * environment are inherited. @returns 0 or an errno value. */
int bl_exec_child_spawn(exec_state_t *st)
{
    char **env = child_environ(st);
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, def;
    pid_t pid;

    if (!env)
        return ENOMEM;
    /* O_CLOEXEC: a child started by another worker must not inherit our
     * ends, or this child's EOF would never be seen. */
    if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC)) {
        err = errno;
        bl_exec_close_fd(&in[0]);
        bl_exec_close_fd(&in[1]);
        if (env != environ)
            free(env);
        return err;
    }
    posix_spawn_file_actions_init(&fa);
    posix_spawnattr_init(&attr);
    sigemptyset(&none);
    sigemptyset(&def);
    /* The child gets a clean signal state: nothing blocked (our worker
     * blocks SIGPIPE during calls) and SIGPIPE at its default, even when
     * the application ignores it. */
    sigaddset(&def, SIGPIPE);
    err = posix_spawn_file_actions_adddup2(&fa, in[0], STDIN_FILENO);
    if (!err)
        err = posix_spawn_file_actions_adddup2(&fa, out[1], STDOUT_FILENO);
#if defined(__GLIBC__) && __GLIBC_PREREQ(2, 34)
    /* Descriptors the application opened without O_CLOEXEC (database
     * files, listening sockets) are none of the child's business. */
    if (!err)
        err = posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
#endif
    if (!err)
        err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK |
                                                  POSIX_SPAWN_SETSIGDEF |
                                                  POSIX_SPAWN_SETPGROUP);
    if (!err)
        err = posix_spawnattr_setsigmask(&attr, &none);
    if (!err)
        err = posix_spawnattr_setsigdefault(&attr, &def);
    if (!err)
        err = posix_spawnattr_setpgroup(&attr, 0);
    /* glibc reports exec failures (ENOENT, EACCES...) here, not as an
     * exit status 127, so "command not found" is detected reliably. */
    if (!err)
        err = posix_spawnp(&pid, st->argv[0], &fa, &attr, st->argv, env);
    if (env != environ)
        free(env);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    bl_exec_close_fd(&in[0]);
    bl_exec_close_fd(&out[1]);
    if (err) {
        bl_exec_close_fd(&in[1]);
        bl_exec_close_fd(&out[0]);
        return err;
    }
    fcntl(in[1], F_SETFL, fcntl(in[1], F_GETFL) | O_NONBLOCK);
    fcntl(out[0], F_SETFL, fcntl(out[0], F_GETFL) | O_NONBLOCK);
    st->pid = pid;
    st->to_child = in[1];
    st->from_child = out[0];
    st->in.start = st->in.len = st->in.scanned = 0;
    st->proto = 0;
    return 0;
}

/* Waits up to @p grace_ms for the child to exit. @returns 1 when reaped
 * (*statusp set, -1 if the status was lost), 0 when it still runs. */
int bl_exec_child_reap(pid_t pid, int64_t grace_ms, int *statusp)
{
    int64_t until = bl_now_ms() + grace_ms, nap = 1;

    for (;;) {
        pid_t r = waitpid(pid, statusp, WNOHANG);
        if (r == pid)
            return 1;
        if (r < 0 && errno != EINTR) {
            /* ECHILD: SIGCHLD is ignored, so the kernel reaped it. */
            *statusp = -1;
            return 1;
        }
        if (r == 0 && bl_now_ms() >= until)
            return 0;
        if (r == 0) {
            bl_sleep_ms(nap);
            nap = nap < 50 ? nap * 2 : 50;
        }
    }
}

/* Whether the child has exited (it is left to be reaped). */
bool bl_exec_child_exited(const exec_state_t *st)
{
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    return !waitid(P_PID, (id_t)st->pid, &si, WEXITED | WNOHANG | WNOWAIT) &&
           si.si_pid == st->pid;
}

/* Kills the child's process group and reaps it. */
static int child_kill(pid_t pid, int sig, int64_t grace_ms, int *statusp)
{
    kill(-pid, sig);
    if (bl_exec_child_reap(pid, grace_ms, statusp))
        return 1;
    kill(-pid, SIGKILL);
    return bl_exec_child_reap(pid, 60000, statusp);
}

/* "exited with status 3", "killed by signal 11 (SIGSEGV)"... */
static char *describe_status(int status)
{
    if (status == -1)
        return fmt_alloc("exited (status unavailable)");
    if (WIFEXITED(status))
        return fmt_alloc("exited with status %d", WEXITSTATUS(status));
    if (WIFSIGNALED(status)) {
        const char *abbrev = sigabbrev_np(WTERMSIG(status));
        return fmt_alloc("killed by signal %d (SIG%s)", WTERMSIG(status),
                         abbrev ? abbrev : "?");
    }
    return fmt_alloc("stopped (status 0x%x)", (unsigned)status);
}

/* Replaces down_reason with a formatted text. */
static void set_down_reason(exec_state_t *st, const char *fmt, ...) BL_PRINTF(2, 3);
static void set_down_reason(exec_state_t *st, const char *fmt, ...)
{
    va_list ap;
    char *s;

    va_start(ap, fmt);
    s = vfmt_alloc(fmt, ap);
    va_end(ap);
    free(st->down_reason);
    st->down_reason = s; /* NULL: a fixed text is used instead */
}

const char *bl_exec_down_reason(const exec_state_t *st)
{
    return st->down_reason ? st->down_reason : "exec: the child is not running";
}

/* Arms the restart backoff after a loss or a failed start. */
static void arm_backoff(exec_state_t *st)
{
    st->restart_at_ms = bl_now_ms() + st->backoff_ms;
    st->backoff_ms = st->backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS
                                                         : st->backoff_ms * 2;
}

/*
 * Forgets the child: closes the pipes and reaps it, after killing it when
 * @p why is given (it is alive but unusable) or when it does not exit soon
 * after EOF. Sets down_reason ("exec: child exited with status 1", or
 * "exec: <why>; child killed") and arms the restart backoff.
 */
void bl_exec_child_lost(exec_state_t *st, const char *why)
{
    pid_t pid = st->pid;
    int status = -1;
    char *how;

    bl_exec_close_fd(&st->to_child);
    bl_exec_close_fd(&st->from_child);
    st->pid = 0;
    if (why)
        child_kill(pid, SIGKILL, 1000, &status);
    else if (!bl_exec_child_reap(pid, EOF_GRACE_MS, &status))
        child_kill(pid, SIGKILL, 1000, &status);
    else
        kill(-pid, SIGKILL); /* what it forked may still hold its stdout */
    how = describe_status(status);
    if (why)
        set_down_reason(st, "exec: %s; child killed", why);
    else
        set_down_reason(st, "exec: child %s", how ? how : "exited");
    /* The first loss in full; a child that keeps dying is the runtime's
     * one "handler unavailable" line, not one line per restart. */
    if (why == bl_exec_cancelled)
        bl_log(&st->log, BALLAST_LOG_WARN, "exec: child '%s' (pid %ld) killed: %s",
               st->command, (long)pid, why);
    else
        bl_log(&st->log, st->losses++ ? BALLAST_LOG_DEBUG : BALLAST_LOG_WARN,
               "exec: child '%s' (pid %ld) %s%s%s; restarting in %lld ms",
               st->command, (long)pid, how ? how : "exited", why ? " after: " : "",
               why ? why : "", (long long)st->backoff_ms);
    free(how);
    arm_backoff(st);
}

/* Makes sure a child runs, unless the restart back-off has not passed
 * (the caller answers UNAVAILABLE and the runtime waits: no sleep here).
 * @returns 0, or -1 with down_reason saying why not. */
int bl_exec_child_ensure(exec_state_t *st)
{
    int err;
    char ebuf[128];

    if (st->pid)
        return 0;
    if (st->restart_at_ms > bl_now_ms())
        return -1;
    if ((err = bl_exec_child_spawn(st))) {
        set_down_reason(st, "exec: cannot restart '%s': %s", st->argv[0],
                        bl_exec_errtext(err, ebuf, sizeof(ebuf)));
        bl_log(&st->log, st->losses++ ? BALLAST_LOG_DEBUG : BALLAST_LOG_WARN,
               "%s; next attempt in %lld ms", bl_exec_down_reason(st),
               (long long)st->backoff_ms);
        arm_backoff(st);
        return -1;
    }
    bl_log(&st->log, st->losses > 1 ? BALLAST_LOG_DEBUG : BALLAST_LOG_INFO,
           "exec: restarted '%s' (pid %ld)", st->command, (long)st->pid);
    return 0;
}

/* ---- ending the children ---------------------------------------------- */

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

/* ---- reading replies ---------------------------------------------------- */

/* Reads what the child has written. @returns >0 bytes read, 0 at EOF,
 * -1 when nothing is available now, -2 when out of memory or on a read
 * error (errno set). */
ssize_t bl_exec_read_some(exec_state_t *st)
{
    linebuf_t *b = &st->in;
    ssize_t n;

    if (b->start && b->start + b->len + READ_CHUNK > b->cap) {
        memmove(b->p, b->p + b->start, b->len);
        b->start = 0;
    }
    if (b->start + b->len + READ_CHUNK > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : READ_CHUNK * 2;
        char *grown;
        while (cap < b->len + READ_CHUNK)
            cap *= 2;
        if (!(grown = realloc(b->p, cap))) {
            errno = ENOMEM;
            return -2;
        }
        b->p = grown;
        b->cap = cap;
    }
    do
        n = read(st->from_child, b->p + b->start + b->len, READ_CHUNK);
    while (n < 0 && errno == EINTR);
    if (n < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? -1 : -2;
    b->len += (size_t)n;
    return n;
}

/* The next complete line, without its '\n' (consumed), or NULL. */
const char *bl_exec_next_line(linebuf_t *b, size_t *lenp)
{
    char *start = b->p + b->start, *nl;

    if (b->len == b->scanned)
        return NULL;
    nl = memchr(start + b->scanned, '\n', b->len - b->scanned);
    if (!nl) {
        b->scanned = b->len;
        return NULL;
    }
    *lenp = (size_t)(nl - start);
    b->start += *lenp + 1;
    b->len -= *lenp + 1;
    b->scanned = 0;
    return start;
}

/* Output that arrived between calls answers no request: the pairing of
 * requests and replies can no longer be trusted, so the child is
 * restarted. EOF there means it died while idle. Holds no message. */
void bl_exec_check_idle(exec_state_t *st)
{
    ssize_t n;
    size_t len;

    if (!st->pid)
        return;
    while ((n = bl_exec_read_some(st)) > 0)
        ;
    if (!st->proto && st->in.len) {
        /* A version 2 child says hello as soon as it starts. */
        linebuf_t peek = st->in;
        const char *line = bl_exec_next_line(&peek, &len);
        char why[256];
        int rc = line ? bl_exec_take_hello(st, line, len, why, sizeof(why)) : 0;

        if (rc > 0) {
            st->in = peek;
        } else if (rc < 0) {
            bl_exec_child_lost(st, why);
            return;
        }
    }
    if (n == 0 && !st->in.len) {
        bl_exec_child_lost(st, NULL);
    } else if (st->in.len) {
        size_t show = st->in.len < 60 ? st->in.len : 60;
        char *why = fmt_alloc("unrequested output on stdout ('%.*s%s')",
                              (int)show, st->in.p + st->in.start,
                              show < st->in.len ? "..." : "");
        for (char *c = why; c && *c; c++)
            if ((unsigned char)*c < 0x20)
                *c = ' ';
        bl_exec_child_lost(st, why ? why : "unrequested output on stdout");
        free(why);
        st->restart_at_ms = bl_now_ms(); /* no message waits on it: now */
    } else if (n == -2) {
        bl_exec_child_lost(st, "cannot read its stdout");
    }
}


int bl_exec_take_hello(exec_state_t *st, const char *line, size_t len, char *why,
                       size_t whysize)
{
    bl_exec_hello_t hello;
    char *reason = NULL;

    switch (bl_exec_hello(line, len, &hello, &reason)) {
    case BL_EXEC_HELLO_OK:
        st->proto = 2;
        st->child_inflight = (size_t)hello.max_inflight;
        bl_log(&st->log, BALLAST_LOG_DEBUG, "exec: child '%s' (pid %ld) speaks protocol 2%s%s, "
               "max_inflight %lld", st->command, (long)st->pid, *hello.sdk ? " with " : "",
               hello.sdk, (long long)hello.max_inflight);
        return 1;
    case BL_EXEC_HELLO_BAD:
        bl_fmt(why, whysize, "incompatible child: %s", reason ? reason : "a bad hello");
        free(reason);
        return -1;
    case BL_EXEC_HELLO_NOMEM:
        bl_fmt(why, whysize, "out of memory reading its hello");
        return -1;
    case BL_EXEC_NOT_HELLO:
    default:
        return 0;
    }
}
