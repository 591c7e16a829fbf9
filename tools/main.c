/*
 * main.c - the `ballast` command: dispatches to subcommands.
 *
 * The command is a client of the public library API only.
 */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static const char usage[] =
    "usage: ballast COMMAND [ARGS]\n"
    "\n"
    "Reliable Kafka consumers from a config file.\n"
    "\n"
    "commands:\n"
    "  run CONFIG [-X key=value]...    run a pipeline until SIGTERM/SIGINT, then\n"
    "                                  drain, commit and exit 0\n"
    "  check CONFIG [--connect] [-X key=value]...\n"
    "                                  validate; print the effective config\n"
    "                                  (secrets redacted); --connect also asks\n"
    "                                  the broker and the database\n"
    "  demo                            the reference scenarios on an embedded\n"
    "                                  broker, with a summary\n"
    "  lag -b BOOTSTRAP -g GROUP       a group's offset and time lag with a status\n"
    "                                  per partition; never joins the group\n"
    "  dlq inspect -b BOOTSTRAP -t DLQ_TOPIC\n"
    "                                  list a dead-letter topic, errors by count\n"
    "  dlq replay -b BOOTSTRAP --from DLQ_TOPIC [--to TOPIC] [--where EXPR]...\n"
    "                                  send dead-lettered records back (filters,\n"
    "                                  --rate, --dry-run, x-replay-count)\n"
    "  config-reference [--man]        print the configuration reference (Markdown,\n"
    "                                  or roff: the ballast.conf(5) page)\n"
    "  --help, --version\n"
    "\n"
    "Run `ballast COMMAND --help` for a command's options.\n"
    "Exit codes: 0 success or clean shutdown, 64 usage, 78 configuration,\n"
    "69 broker or database unreachable at start-up, 70 internal, 1 other.\n";

/* The version, and what the librdkafka in use can do (TLS, SASL mechanisms,
 * compression codecs): its builtin.features property. */
static int print_version(void)
{
    char features[512] = "";
    size_t size = sizeof(features);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    if (rd_kafka_conf_get(conf, "builtin.features", features, &size) !=
        RD_KAFKA_CONF_OK)
        snprintf(features, sizeof(features), "unknown");
    rd_kafka_conf_destroy(conf);
    printf("ballast %s\nlibrdkafka %s\nlibrdkafka builtin.features: %s\n",
           ballast_version(), rd_kafka_version_str(), features);
    return 0;
}

int main(int argc, char **argv)
{
    static const struct {
        const char *name;
        int (*fn)(int, char **);
    } cmds[] = {{"run", cmd_run},
                {"check", cmd_check},
                {"demo", cmd_demo},
                {"lag", cmd_lag},
                {"dlq", cmd_dlq},
                {"config-reference", cmd_config_reference}};

    if (argc < 2) {
        fputs(usage, stderr);
        return EX_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") ||
        !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return print_version();
    for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
        if (!strcmp(argv[1], cmds[i].name))
            return cmds[i].fn(argc - 1, argv + 1);
    cli_error("unknown command \"%s\" (see ballast --help)", argv[1]);
    return EX_USAGE;
}
