/*
 * cmd_run.c - `ballast run` and `ballast check`.
 */
#include "cli.h"
#include "http.h"
#include "sdnotify.h"
#include "stallwatch.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char run_usage[] =
    "usage: ballast run CONFIG [-X key=value]...\n"
    "\n"
    "Runs the pipeline CONFIG describes until SIGTERM or SIGINT; then stops\n"
    "fetching, lets in-flight messages finish (shutdown.timeout.ms), commits\n"
    "and leaves the group. A second signal exits at once (uncommitted work is\n"
    "delivered again on restart).\n"
    "\n"
    "With exactly-once into Kafka, a transaction call that has not returned 30 s\n"
    "after its own timeout (a librdkafka hang) ends the process with exit code\n"
    "1, so that a supervisor restarts it.\n"
    "  -X key=value   override a config key (repeatable)\n";

static const char check_usage[] =
    "usage: ballast check CONFIG [--connect] [-X key=value]...\n"
    "\n"
    "Checks what `ballast run` would refuse at start, without consuming,\n"
    "joining the group or changing anything.\n"
    "\n"
    "Without --connect (no network): validates the keys, the SQL statement's\n"
    "placeholders, the PostgreSQL connection string's syntax, that the program\n"
    "of handler.exec.command is found in PATH and executable (and that an\n"
    "argument naming a script file, e.g. `node /srv/handler.js`, exists;\n"
    "relative names are taken from the current directory), and that the plugin\n"
    "file is readable. Prints the effective configuration, one `key = value`\n"
    "per line, with secrets redacted; or one line on stderr per problem.\n"
    "\n"
    "With --connect, also: the broker answers (within startup.timeout.ms), each\n"
    "input, retry-tier, output and dead-letter topic exists, and the database\n"
    "accepts the login and prepares the statements (in a transaction that is\n"
    "rolled back; a missing SQLite file is not created). Prints one line per\n"
    "item: `ITEM: ok` or `ITEM: failed: REASON`.\n"
    "\n"
    "Exit 0 when every item is ok; 78 when any failed for a configuration\n"
    "reason (a key, a missing topic, a refused login); else 69 when the broker\n"
    "or the database did not answer. Keys are documented by\n"
    "`ballast config-reference`.\n"
    "  --connect      also ask the broker and the database\n"
    "  -X key=value   override a config key (repeatable)\n";

/* Returns the key=value text of a -X option at argv[*i] (advancing *i past
 * a separate value), NULL when argv[*i] is not -X, or "" when -X lacks one. */
static const char *x_option(int argc, char **argv, int *i)
{
    if (!strcmp(argv[*i], "-X"))
        return ++*i < argc ? argv[*i] : "";
    if (!strncmp(argv[*i], "-X", 2))
        return argv[*i] + 2;
    return NULL;
}

/* Checks the command line before anything is read, so that usage errors
 * are reported as such (64) whatever the config file holds. */
static int parse_args(int argc, char **argv, const char *usage,
                      const char **pathp)
{
    *pathp = NULL;
    for (int i = 1; i < argc; i++) {
        const char *kv = x_option(argc, argv, &i);
        if (kv) {
            const char *eq = strchr(kv, '=');
            if (!eq || eq == kv) {
                cli_error("-X needs key=value, got \"%s\"", kv);
                return EX_USAGE;
            }
        } else if (argv[i][0] == '-') {
            cli_error("unknown option \"%s\" (see --help)", argv[i]);
            return EX_USAGE;
        } else if (*pathp) {
            cli_error("more than one CONFIG given (\"%s\", \"%s\")", *pathp,
                      argv[i]);
            return EX_USAGE;
        } else {
            *pathp = argv[i];
        }
    }
    if (!*pathp) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    return 0;
}

int cli_load_config(int argc, char **argv, const char *usage,
                    ballast_conf_t **confp)
{
    const char *path;
    ballast_conf_t *conf;
    ballast_error_t *err;
    int rc;

    *confp = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            fputs(usage, stdout);
            return -1;
        }
    }
    if ((rc = parse_args(argc, argv, usage, &path)))
        return rc;
    if (!(conf = ballast_conf_new())) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    /* The file first, then -X overrides in order, whatever their position. */
    if ((err = ballast_conf_load_file(conf, path))) {
        ballast_conf_destroy(conf);
        return cli_fail(err);
    }
    for (int i = 1; i < argc; i++) {
        const char *kv = x_option(argc, argv, &i);
        const char *eq = kv ? strchr(kv, '=') : NULL;
        char *key;
        if (!eq)
            continue;
        if (!(key = strndup(kv, (size_t)(eq - kv)))) {
            ballast_conf_destroy(conf);
            cli_error("out of memory");
            return EX_SOFTWARE;
        }
        err = ballast_conf_set(conf, key, eq + 1);
        free(key);
        if (err) {
            ballast_conf_destroy(conf);
            return cli_fail(err);
        }
    }
    *confp = conf;
    return 0;
}

static void print_kv(const char *key, const char *value, void *opaque)
{
    (void)opaque;
    printf("%s = %s\n", key, value);
}

/* --connect: every item on stdout, as it is known. */
static void print_item(const char *item, const ballast_error_t *err, void *opaque)
{
    (void)opaque;
    if (err)
        printf("%s: failed: %s\n", item, ballast_error_message(err));
    else
        printf("%s: ok\n", item);
    fflush(stdout);
}

/* Without --connect: each problem is an error line of its own. */
static void print_problem(const char *item, const ballast_error_t *err, void *opaque)
{
    (void)item;
    (void)opaque;
    if (err)
        cli_error("%s", ballast_error_message(err));
}

int cmd_check(int argc, char **argv)
{
    ballast_conf_t *conf;
    ballast_error_t *err;
    bool connect = false;
    int rc, n = 0;
    char **args = calloc((size_t)argc + 1, sizeof(*args));

    if (!args) {
        cli_error("out of memory");
        return EX_SOFTWARE;
    }
    /* --connect is check's own; the rest is parsed as for run. */
    for (int i = 0; i < argc; i++) {
        if (i > 0 && !strcmp(argv[i], "--connect"))
            connect = true;
        else
            args[n++] = argv[i];
    }
    rc = cli_load_config(n, args, check_usage, &conf);
    free(args);
    if (rc)
        return rc < 0 ? 0 : rc;
    err = ballast_conf_check(conf, connect ? BALLAST_CHECK_CONNECT : 0,
                             connect ? print_item : print_problem, NULL);
    if (!err && !connect)
        ballast_conf_dump(conf, 1, print_kv, NULL);
    ballast_conf_destroy(conf);
    if (err && !connect) {
        /* its problems are printed already, one line each */
        rc = cli_exit_code(err);
        ballast_error_destroy(err);
        return rc;
    }
    return cli_fail(err);
}

/* ---- run ---------------------------------------------------------------- */

/* The consumer's stop flag (ballast_conf_set_stop_flag), which also ends
 * a start-up still waiting for the broker. */
static volatile sig_atomic_t signals_seen;

/* First signal: a graceful stop (async-signal-safe). Second: leave now. */
static void on_signal(int sig)
{
    (void)sig;
    if (signals_seen++ > 0) {
        static const char msg[] = "ballast: second signal, exiting without "
                                  "draining\n";
        ssize_t ignored = write(STDERR_FILENO, msg, sizeof(msg) - 1);
        (void)ignored;
        _exit(1);
    }
}

/* The last STATUS= systemd shows for a run that ended with @p err. */
static void stop_notifier(sdnotify_service_t *svc, const ballast_error_t *err)
{
    char status[600];

    if (!svc)
        return;
    snprintf(status, sizeof(status), "%s%s", err ? "stopped: " : "stopped cleanly",
             err ? ballast_error_message(err) : "");
    sdnotify_service_stop(svc, status);
}

int cmd_run(int argc, char **argv)
{
    ballast_conf_t *conf;
    ballast_consumer_t *cons;
    ballast_error_t *err;
    http_server_t *http = NULL;
    sdnotify_target_t notify;
    sdnotify_service_t *svc;
    stallwatch_t *watch;
    int rc;

    /* First, so that a stop requested during start-up is honoured (start-up
     * ends at once) instead of killing us. */
    cli_handle_stop_signals(on_signal);
    /* Before any thread: it clears systemd's variables from the environment
     * that exec handlers inherit. */
    sdnotify_from_env(&notify);
    if ((rc = cli_load_config(argc, argv, run_usage, &conf)))
        return rc < 0 ? 0 : rc;
    ballast_conf_set_stop_flag(conf, &signals_seen);
    svc = sdnotify_service_start(&notify, &signals_seen);
    err = ballast_consumer_new(conf, &cons);
    /* The HTTP endpoint needs the consumer, and a bind failure must stop
     * us before anything is consumed. */
    if (!err && (rc = http_start_for_consumer(conf, cons, &http))) {
        sdnotify_service_stop(svc, "stopped: metrics.listen cannot be bound");
        ballast_conf_destroy(conf);
        ballast_consumer_destroy(cons);
        return rc;
    }
    ballast_conf_destroy(conf);
    if (err) {
        stop_notifier(svc, err);
        return cli_fail(err);
    }
    sdnotify_service_watch(svc, cons);
    /* A transaction call hung inside librdkafka ends the process (exit 1). */
    watch = stallwatch_start(cons, 1000, stallwatch_exit, NULL);
    err = ballast_consumer_run(cons);
    stallwatch_stop(watch);
    stop_notifier(svc, err);
    http_server_stop(http);
    ballast_consumer_destroy(cons);
    return cli_fail(err);
}
