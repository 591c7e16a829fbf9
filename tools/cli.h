/*
 * cli.h - shared pieces of the `ballast` command's subcommands.
 */
#ifndef BALLAST_CLI_H
#define BALLAST_CLI_H

#include <ballast/ballast.h>

#include <sysexits.h>

/** Prints "ballast: <message>" on stderr and returns the exit code that the
 *  error's kind maps to (78 config, 69 unreachable, 70 internal, 1 other).
 *  Destroys @p err. */
int cli_fail(ballast_error_t *err);

/** Prints "ballast: <fmt...>" as one line on stderr. */
void cli_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/** Loads CONFIG and the -X overrides from argv (after the subcommand).
 *  @returns 0 with *confp set, or an exit code. */
int cli_load_config(int argc, char **argv, const char *usage,
                    ballast_conf_t **confp);

int cmd_run(int argc, char **argv);
int cmd_check(int argc, char **argv);
int cmd_demo(int argc, char **argv);
int cmd_lag(int argc, char **argv);
/** `ballast dlq inspect|replay` (argv[0] is "dlq"). */
int cmd_dlq(int argc, char **argv);
int cmd_config_reference(int argc, char **argv);

#endif
