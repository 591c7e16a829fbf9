/*
 * cli.h - shared pieces of the `ballast` command's subcommands.
 */
#ifndef BALLAST_CLI_H
#define BALLAST_CLI_H

#include <ballast/ballast.h>
#include <librdkafka/rdkafka.h>

#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sysexits.h>

#include "util.h" /* the library's string, time and encoding helpers */

/** Prints "ballast: <message>" on stderr and returns the exit code that the
 *  error's kind maps to (78 config, 69 unreachable, 70 internal, 1 other).
 *  Destroys @p err. */
int cli_fail(ballast_error_t *err);

/** The exit code that the error's kind maps to (0 for NULL), as cli_fail(). */
int cli_exit_code(const ballast_error_t *err);

/** Prints "ballast: <fmt...>" as one line on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Loads CONFIG and the -X overrides from argv (after the subcommand).
 *  @returns 0 with *confp set, or an exit code. */
int cli_load_config(int argc, char **argv, const char *usage,
                    ballast_conf_t **confp);

/* ---- shared by the subcommands (cli_common.c) ---------------------------- */

/** Set by SIGTERM and SIGINT once cli_catch_stop_signals() ran. */
extern volatile sig_atomic_t cli_stop_requested;
/** Runs @p handler on SIGTERM and SIGINT; ignores SIGPIPE. */
void cli_handle_stop_signals(void (*handler)(int));
/** cli_handle_stop_signals() with a handler that sets cli_stop_requested. */
void cli_catch_stop_signals(void);
/** Seconds from a monotonic clock. */
double cli_now_s(void);
/** Whether @p arg asks for help ("-h", "--help"). */
bool cli_is_help(const char *arg);
/** Zeroed room for one element of @p size bytes per argument (argc of
 *  them), for options that repeat; NULL after printing "out of memory". */
void *cli_slots(int argc, size_t size);
/** @returns the value of option @p name (or @p alias) at argv[*i] ("--name
 *  VALUE" or "--name=VALUE"), advancing *i; NULL if argv[*i] is another
 *  option; sets *missing when the value is absent. */
const char *cli_opt_value(int argc, char **argv, int *i, const char *name,
                          const char *alias, bool *missing);
/** --config's line in a command's --help. */
#define CLI_CONFIG_HELP                                                             \
    "  --config FILE              client settings from a ballast config file: its\n" \
    "                             kafka.bootstrap.servers and connection and\n"      \
    "                             security keys (kafka.security.protocol, kafka.sasl.*,\n" \
    "                             kafka.ssl.*, ...), ${ENV} and ${file:PATH} expanded;\n" \
    "                             -b and -X override it\n"
/** The most client settings `--config FILE` adds to a command's -X list. */
#define CLI_CONFIG_KEYS 128
/** Room for the client settings of a command line of @p argc arguments:
 *  each -X, and those of one --config file. NULL after printing why. */
const char **cli_props_new(int argc);
/** @returns the value of the last "name=value" of @p props, or NULL. */
const char *cli_props_get(const char *const *props, size_t nprops, const char *name);
/** Called with each `lag.*` key of the --config file. */
typedef void cli_config_cb(const char *key, const char *value, void *opaque);
/** Calls @p cb for each key of the --config file that starts with @p prefix
 *  (only `lag.*` keys are kept), in the file's order; none without
 *  --config. */
void cli_config_each(const char *prefix, cli_config_cb *cb, void *opaque);
/** Takes argv[*i] when it is an option of every subcommand that reads
 *  Kafka itself: "--timeout SECONDS" (0.1 to 3600, into *timeout_ms),
 *  "-X PROP=VALUE" (appended to @p props, from cli_props_new()), or
 *  "--config FILE": a ballast config file (the `run` file itself will do),
 *  whose connection and security keys (kafka.bootstrap.servers,
 *  kafka.security.protocol, kafka.sasl.*, kafka.ssl.*, ...: those a
 *  pipeline's clients share with the tools') are appended to @p props, with
 *  ${ENV} and ${file:PATH} expanded, so that no secret need be on the
 *  command line; a later -X overrides them. A file that cannot be read or
 *  parsed is EX_CONFIG.
 *  @returns 1 when it took it, 0 when argv[*i] is another argument (or
 *  *missing was set, as by cli_opt_value()), or EX_USAGE after printing
 *  why. */
int cli_client_option(int argc, char **argv, int *i, bool *missing, int *timeout_ms,
                      const char **props, size_t *nprops);
/** Checks the -X properties ("key=value") once, so that a typo is a clear
 *  error at start. @returns 0 or EX_CONFIG after printing why. */
int cli_check_props(const char *const *props, size_t nprops);
/** A client configuration: socket.timeout.ms, then @p settings (name,
 *  value, ..., NULL), then the -X properties (and --config's), which may
 *  override any of them, then @p bootstrap (-b wins over both). librdkafka's log stays quiet unless -X debug is
 *  set: the tools report failures through results, once. @returns NULL
 *  with a reason on failure. */
rd_kafka_conf_t *cli_conf_new(const char *bootstrap, int timeout_ms,
                              const char *const *settings, const char *const *props,
                              size_t nprops, char *errbuf, size_t errsize);
/** @returns the partition count of @p topic, 0 when it does not exist,
 *  CLI_TOPIC_DENIED with a reason when an ACL refuses to describe it (a
 *  configuration error, exit 78), or -1 with a reason when the metadata
 *  cannot be read. */
#define CLI_TOPIC_DENIED (-2)
int cli_partition_count(rd_kafka_t *rk, const char *topic, int timeout_ms, char *errbuf,
                        size_t errsize);
/** Whether DescribeConsumerGroups must not be sent through @p rk (which has
 *  reached the cluster): librdkafka before 2.10 releases a request twice
 *  when it cannot build it for a broker without the API, and then aborts or
 *  deadlocks. The only such broker is librdkafka's own mock cluster (the
 *  demo's). */
bool cli_cannot_describe_groups(rd_kafka_t *rk, int timeout_ms);

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_lag(int argc, char **argv);
/** `ballast dlq inspect|replay` (argv[0] is "dlq"). */
int cmd_dlq(int argc, char **argv);
int cmd_config_reference(int argc, char **argv);

#endif
