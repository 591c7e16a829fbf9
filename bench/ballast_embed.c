/*
 * ballast_embed.c - runs a ballast consumer through the public library API
 * with a handler taken from a plugin shared object, as `ballast run` does with
 * `handler = plugin`, but loading the plugin itself (dlopen) and installing it
 * with ballast_conf_set_handler().
 *
 * The driver (bench/run) uses it only when `ballast run` cannot load plugins
 * (BENCH_BALLAST_VIA=auto, the default) or when asked to
 * (BENCH_BALLAST_VIA=embed); the results then say so in their `via` field.
 * The consumer runtime measured is the same library code either way.
 *
 * usage: ballast_embed CONFIG PLUGIN.so [key=value]...
 * SIGTERM/SIGINT: clean stop (drain, commit, leave), as `ballast run`.
 */
#include <ballast/ballast.h>

#include <dlfcn.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static ballast_consumer_t *volatile running;
static volatile sig_atomic_t stop_seen;

static void on_signal(int sig)
{
    (void)sig;
    stop_seen = 1;
    if (running)
        ballast_consumer_stop(running);
}

static int fail(ballast_error_t *err)
{
    fprintf(stderr, "ballast_embed: %s\n", ballast_error_message(err));
    ballast_error_destroy(err);
    return 1;
}

int main(int argc, char **argv)
{
    const ballast_handler_t *(*entry)(void);
    const ballast_handler_t *handler;
    ballast_conf_t *conf;
    ballast_consumer_t *cons;
    ballast_error_t *err;
    struct sigaction sa;
    void *dl;

    if (argc < 3) {
        fputs("usage: ballast_embed CONFIG PLUGIN.so [key=value]...\n", stderr);
        return 2;
    }
    if (!(dl = dlopen(argv[2], RTLD_NOW | RTLD_LOCAL))) {
        fprintf(stderr, "ballast_embed: %s\n", dlerror());
        return 1;
    }
    *(void **)&entry = dlsym(dl, "ballast_plugin_handler");
    if (!entry || !(handler = entry()) ||
        handler->abi_version != BALLAST_HANDLER_ABI_VERSION) {
        fprintf(stderr, "ballast_embed: %s: not a ballast plugin (ABI %d)\n",
                argv[2], BALLAST_HANDLER_ABI_VERSION);
        return 1;
    }
    conf = ballast_conf_new();
    if ((err = ballast_conf_load_file(conf, argv[1])))
        return fail(err);
    for (int i = 3; i < argc; i++) {
        char *eq = strchr(argv[i], '='), *key;
        if (!eq)
            return 2;
        key = strndup(argv[i], (size_t)(eq - argv[i]));
        err = ballast_conf_set(conf, key, eq + 1);
        free(key);
        if (err)
            return fail(err);
    }
    ballast_conf_set_handler(conf, handler, NULL);

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    err = ballast_consumer_new(conf, &cons);
    ballast_conf_destroy(conf);
    if (err)
        return fail(err);
    running = cons;
    if (stop_seen)
        ballast_consumer_stop(cons);
    err = ballast_consumer_run(cons);
    running = NULL;
    ballast_consumer_destroy(cons);
    if (err)
        return fail(err);
    return 0;
}
