/*
 * lag_alert.c - `ballast lag --on-change`: a command run without a shell
 * whenever the group's status changes, with the status in its environment.
 */
#include "lagmon.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

void lag_reap_children(monitor_t *m, bool block, int64_t deadline_ms)
{
    for (size_t i = 0; i < m->nchildren;) {
        int status;
        pid_t r = waitpid(m->children[i], &status, WNOHANG);
        while (!r && block && bl_wall_ms() < deadline_ms) {
            usleep(20000);
            r = waitpid(m->children[i], &status, WNOHANG);
        }
        if (r == m->children[i] || (r < 0 && errno == ECHILD))
            m->children[i] = m->children[--m->nchildren];
        else
            i++;
    }
}

/* Appends "NAME=value" to @p env. */
static bool env_add(char **env, size_t *n, const char *name, const char *value)
{
    size_t len = strlen(name) + strlen(value) + 2;
    if (!(env[*n] = malloc(len)))
        return false;
    snprintf(env[(*n)++], len, "%s=%s", name, value);
    return true;
}

void lag_run_on_change(monitor_t *m, const char *previous)
{
    extern char **environ;
    size_t nenv = 0, ours = 0, cap;
    char **env, buf[64], *topics = NULL, *parts = NULL;
    size_t tlen = 0, plen = 0;
    FILE *tf = open_memstream(&topics, &tlen), *pf = open_memstream(&parts, &plen);
    double max_seconds = -1;
    bool unknown_seconds = false;
    pid_t pid, *grown;

    for (size_t i = 0; i < m->ntopics && tf; i++)
        fprintf(tf, "%s%s", i ? "," : "", m->topics[i]);
    for (size_t i = 0, k = 0; i < m->nparts && pf; i++) {
        const part_state_t *p = &m->parts[i];
        if (p->status == m->status && p->status != BL_LAG_OK)
            fprintf(pf, "%s%s:%d", k++ ? "," : "", p->topic, (int)p->partition);
        if (p->ok && p->lag > 0 && p->lag_seconds < 0)
            unknown_seconds = true;
        if (p->ok && p->lag_seconds > max_seconds)
            max_seconds = p->lag_seconds;
    }
    if (tf)
        fclose(tf);
    if (pf)
        fclose(pf);
    while (environ[nenv])
        nenv++;
    cap = nenv + 8;
    if (!(env = calloc(cap, sizeof(*env))))
        goto out;
    /* Ours first; inherited variables of the same names are dropped. */
    env_add(env, &ours, "BALLAST_LAG_GROUP", m->o->group);
    env_add(env, &ours, "BALLAST_LAG_STATUS", bl_lag_status_name(m->status));
    env_add(env, &ours, "BALLAST_LAG_PREVIOUS_STATUS", previous);
    env_add(env, &ours, "BALLAST_LAG_TOPIC", topics ? topics : "");
    snprintf(buf, sizeof(buf), "%lld", (long long)lag_total(m));
    env_add(env, &ours, "BALLAST_LAG_TOTAL_LAG", buf);
    if (unknown_seconds || max_seconds < 0)
        buf[0] = '\0';
    else
        snprintf(buf, sizeof(buf), "%.3f", max_seconds);
    env_add(env, &ours, "BALLAST_LAG_MAX_LAG_SECONDS", buf);
    env_add(env, &ours, "BALLAST_LAG_PARTITIONS", parts ? parts : "");
    for (size_t i = 0, n = ours; i < nenv; i++)
        if (strncmp(environ[i], "BALLAST_LAG_", 12))
            env[n++] = environ[i];
    fflush(stdout);
    fflush(stderr);
    pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY);
        if (devnull >= 0) {
            dup2(devnull, STDIN_FILENO);
            close(devnull);
        }
        /* stdout belongs to our own output (JSON lines, tables). */
        dup2(STDERR_FILENO, STDOUT_FILENO);
        signal(SIGPIPE, SIG_DFL);
        execvpe(m->o->on_change[0], m->o->on_change, env);
        dprintf(STDERR_FILENO, "ballast: --on-change: cannot run %s: %s\n",
                m->o->on_change[0], strerror(errno));
        _exit(127);
    }
    if (pid < 0) {
        cli_error("--on-change: cannot start %s: %s", m->o->on_change[0], strerror(errno));
    } else if ((grown = realloc(m->children, (m->nchildren + 1) * sizeof(*grown)))) {
        m->children = grown;
        m->children[m->nchildren++] = pid;
    }
out:
    for (size_t i = 0; env && i < ours; i++)
        free(env[i]);
    free(env);
    free(topics);
    free(parts);
}
