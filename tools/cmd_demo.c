/*
 * cmd_demo.c - `ballast demo`: the reference scenarios end to end on an
 * embedded broker (librdkafka's mock cluster, in this process) with SQLite
 * files in a temporary directory, and a PASS/FAIL summary per scenario.
 *
 * This file holds the driver; the helpers of demo.h are demo.c, and each
 * scenario is a function in a demo_*.c file and a row in `scenarios` below.
 */
#include "cli.h"
#include "demo.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The scenarios, one in each demo_*.c file. */
int demo_payments(demo_t *d);
int demo_ledger(demo_t *d);
int demo_orders(demo_t *d);
int demo_backpressure(demo_t *d);
int demo_lag(demo_t *d);
int demo_batch_upserts(demo_t *d);

static const struct {
    const char *name, *title;
    demo_scenario_fn *run;
} scenarios[] = {
    {"payments", "at-least-once with idempotency keys", demo_payments},
    {"ledger", "a ledger posted exactly once, with balances, across kill -9",
     demo_ledger},
    {"orders", "poison orders to a dead-letter topic, the rest in order",
     demo_orders},
    {"backpressure", "a slow handler: pause/resume, then a graceful SIGTERM",
     demo_backpressure},
    {"lag", "lag monitoring without joining the group, with an alert",
     demo_lag},
    {"batch-upserts", "batched upserts, last write wins per key",
     demo_batch_upserts},
};
#define NSCENARIOS (sizeof(scenarios) / sizeof(scenarios[0]))

/* ---- the command -------------------------------------------------------- */

static void usage(FILE *out)
{
    fputs("usage: ballast demo [--scenario NAME] [--keep]\n"
          "\n"
          "Runs the reference scenarios end to end on an embedded Kafka broker\n"
          "(librdkafka's mock cluster, inside this process) with SQLite files\n"
          "in a temporary directory, and prints each scenario's invariant with\n"
          "PASS or FAIL. Exit 0 only when every scenario passes. Needs no\n"
          "broker, no database and no network beyond 127.0.0.1.\n"
          "\n"
          "  --scenario NAME  run only this scenario (repeatable)\n"
          "  --keep           keep the temporary directory and print its path\n"
          "  --help           this text\n"
          "\n"
          "scenarios:\n",
          out);
    for (size_t i = 0; i < NSCENARIOS; i++)
        fprintf(out, "  %-15s %s\n", scenarios[i].name, scenarios[i].title);
}

static int remove_entry(const char *path, const struct stat *sb, int flag,
                        struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

/* The embedded broker: a dedicated client handle that owns a one-broker
 * mock cluster, and a producer connected to it like any other client. */
static int start_broker(demo_t *d, rd_kafka_t **mock_rkp)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();

    rd_kafka_conf_set(conf, "log_level", "3", NULL, 0);
    if (!(*mock_rkp = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr,
                                   sizeof(errstr)))) {
        rd_kafka_conf_destroy(conf);
        cli_error("demo: cannot create a client handle: %s", errstr);
        return -1;
    }
    if (!(d->mcluster = rd_kafka_mock_cluster_new(*mock_rkp, 1))) {
        cli_error("demo: cannot start librdkafka's mock cluster");
        return -1;
    }
    d->bootstrap = rd_kafka_mock_cluster_bootstraps(d->mcluster);

    return demo_producer_start(d);
}

static void stop_broker(demo_t *d, rd_kafka_t *mock_rk)
{
    if (d->producer)
        rd_kafka_destroy(d->producer);
    if (d->mcluster)
        rd_kafka_mock_cluster_destroy(d->mcluster);
    if (mock_rk)
        rd_kafka_destroy(mock_rk);
}

int cmd_demo(int argc, char **argv)
{
    bool keep = false, selected[NSCENARIOS] = {false}, any_selected = false;
    char dir[4096], failed_names[512] = "";
    const char *tmp = getenv("TMPDIR");
    demo_t d = {0};
    rd_kafka_t *mock_rk = NULL;
    int passed = 0, failed = 0, run = 0;
    double t0 = cli_now_s();

    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--keep")) {
            keep = true;
        } else if (!strcmp(argv[i], "--scenario")) {
            size_t s = 0;
            if (++i == argc) {
                cli_error("demo: --scenario needs a NAME (see ballast demo "
                          "--help)");
                return EX_USAGE;
            }
            while (s < NSCENARIOS && strcmp(scenarios[s].name, argv[i]))
                s++;
            if (s == NSCENARIOS) {
                char names[256] = "";
                for (size_t n = 0; n < NSCENARIOS; n++)
                    snprintf(names + strlen(names),
                             sizeof(names) - strlen(names), "%s%s",
                             n ? ", " : "", scenarios[n].name);
                cli_error("demo: unknown scenario \"%s\" (expected one of: "
                          "%s)",
                          argv[i], names);
                return EX_USAGE;
            }
            selected[s] = any_selected = true;
        } else {
            cli_error("demo: unknown option \"%s\" (see ballast demo "
                      "--help)",
                      argv[i]);
            return EX_USAGE;
        }
    }

    snprintf(dir, sizeof(dir), "%s/ballast-demo-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        cli_error("demo: cannot create a temporary directory in %s: %m",
                  tmp && *tmp ? tmp : "/tmp");
        return EX_CANTCREAT;
    }
    d.dir = dir;
    if (start_broker(&d, &mock_rk)) {
        stop_broker(&d, mock_rk);
        rmdir(dir);
        return EX_SOFTWARE;
    }
    printf("ballast %s demo: embedded Kafka broker at %s (librdkafka %s "
           "mock cluster), SQLite files in %s\n",
           ballast_version(), d.bootstrap, rd_kafka_version_str(), dir);

    for (size_t s = 0; s < NSCENARIOS; s++) {
        double ts = cli_now_s();
        int rc;

        if (any_selected && !selected[s])
            continue;
        printf("\n[%s] %s\n", scenarios[s].name, scenarios[s].title);
        fflush(stdout);
        d.failed_checks = 0;
        rc = scenarios[s].run(&d);
        run++;
        if (rc == 0 && d.failed_checks == 0) {
            passed++;
            printf("  PASS  %s (%.1f s)\n", scenarios[s].name, cli_now_s() - ts);
        } else {
            failed++;
            snprintf(failed_names + strlen(failed_names),
                     sizeof(failed_names) - strlen(failed_names), " %s",
                     scenarios[s].name);
            printf("  FAIL  %s (%.1f s)\n", scenarios[s].name, cli_now_s() - ts);
        }
        fflush(stdout);
    }
    stop_broker(&d, mock_rk);

    printf("\n%d of %d scenarios passed in %.1f s%s%s\n", passed, run,
           cli_now_s() - t0, failed ? "; failed:" : "", failed_names);
    if (keep)
        printf("kept %s\n", dir);
    else
        nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    return failed ? 1 : 0;
}
