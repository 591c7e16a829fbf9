/* plugin.c - the `plugin` handler: forwards every call to a dlopen()ed handler. */
#include "handlers.h"

#include "../check.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PLUGIN_SYMBOL "ballast_plugin_handler"

typedef const ballast_handler_t *(plugin_entry_fn)(void);

/* One per worker: each dlopen() of the same path shares one mapping (the
 * loader counts references), so a plugin's globals are shared by all
 * workers while its per-worker state comes from its own init. */
typedef struct plugin_state {
    void *dl;
    const ballast_handler_t *h;
    void *inner; /* the plugin's own state */
} plugin_state_t;

static void plugin_destroy(void *state)
{
    plugin_state_t *ps = state;

    if (!ps)
        return;
    if (ps->h && ps->h->destroy)
        ps->h->destroy(ps->inner);
    if (ps->dl)
        dlclose(ps->dl);
    free(ps);
}

/* Finds and checks the plugin's handler table. @returns 0 or a code with a
 * reason in errbuf. */
static int plugin_resolve(plugin_state_t *ps, const char *path, char *errbuf,
                          size_t errsize)
{
    plugin_entry_fn *entry;
    void *sym;
    const char *err;

    dlerror(); /* clear any earlier error of this thread */
    sym = dlsym(ps->dl, PLUGIN_SYMBOL);
    if (!sym) {
        err = dlerror();
        bl_fmt(errbuf, errsize,
               "handler.plugin.path: '%s' does not export %s() (not a ballast "
               "plugin?): %s",
               path, PLUGIN_SYMBOL, err ? err : "symbol is NULL");
        return BALLAST_ERR_CONFIG;
    }
    /* POSIX guarantees that dlsym results convert to function pointers. */
    *(void **)&entry = sym;
    if (!(ps->h = entry())) {
        bl_fmt(errbuf, errsize, "handler.plugin.path: %s() of '%s' returned NULL",
               PLUGIN_SYMBOL, path);
        return BALLAST_ERR_CONFIG;
    }
    if (ps->h->abi_version != BALLAST_HANDLER_ABI_VERSION) {
        bl_fmt(errbuf, errsize,
               "handler.plugin.path: '%s' was built for handler ABI version %d, "
               "this ballast (%s) implements version %d; rebuild the plugin",
               path, ps->h->abi_version, BALLAST_VERSION_STR,
               BALLAST_HANDLER_ABI_VERSION);
        ps->h = NULL; /* its table layout is unknown: call nothing in it */
        return BALLAST_ERR_CONFIG;
    }
    if (!ps->h->handle && !ps->h->handle_batch) {
        bl_fmt(errbuf, errsize,
               "handler.plugin.path: '%s' (%s) has neither handle nor handle_batch",
               path, ps->h->name ? ps->h->name : "unnamed");
        ps->h = NULL;
        return BALLAST_ERR_CONFIG;
    }
    return 0;
}

/* Thread-safety: each state is used by one worker thread; init and destroy
 * of different workers may run concurrently (dlopen/dlclose are
 * thread-safe, and so must the plugin's init and destroy be). */
static int plugin_init(void **statep, const ballast_handler_params_t *params,
                       char *errbuf, size_t errsize)
{
    const char *path = bl_conf_str(params->conf, "handler.plugin.path");
    plugin_state_t *ps = calloc(1, sizeof(*ps));
    int rc;

    *statep = NULL;
    if (!ps) {
        bl_fmt(errbuf, errsize, "handler plugin: out of memory");
        return BALLAST_ERR_INTERNAL;
    }
    if (!*path) {
        bl_fmt(errbuf, errsize, "handler.plugin.path: not set (expected the "
                                "absolute path of a shared object)");
        free(ps);
        return BALLAST_ERR_CONFIG;
    }
    /* RTLD_NOW: an unresolved symbol is a start-up error, not a crash on
     * the first message. RTLD_LOCAL: two plugins cannot clash. */
    if (!(ps->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
        const char *err = dlerror();
        bl_fmt(errbuf, errsize, "handler.plugin.path: cannot load '%s': %s", path,
               err ? err : "unknown error");
        free(ps);
        return BALLAST_ERR_CONFIG;
    }
    if ((rc = plugin_resolve(ps, path, errbuf, errsize))) {
        plugin_destroy(ps);
        return rc;
    }
    if (ps->h->init) {
        if (errsize)
            errbuf[0] = '\0';
        rc = ps->h->init(&ps->inner, params, errbuf, errsize);
        if (rc) {
            /* Its code and reason are the consumer's start-up error. */
            if (errsize && !errbuf[0])
                bl_fmt(errbuf, errsize, "handler plugin '%s': init failed (code %d)",
                       ps->h->name ? ps->h->name : path, rc);
            ps->h = NULL; /* no state to destroy */
            plugin_destroy(ps);
            return rc;
        }
    }
    *statep = ps;
    return 0;
}

/* An outcome outside the enum is a bug in the plugin: it must neither pass
 * for success (its offset would be committed) nor reach code that trusts
 * the enum. It becomes a permanent failure (dead-lettered, or a stop) whose
 * error says what the plugin returned. */
static ballast_outcome_t checked(const plugin_state_t *ps, ballast_outcome_t outcome,
                                 ballast_result_t *res)
{
    char why[256];

    if (outcome == BALLAST_OUTCOME_OK || outcome == BALLAST_OUTCOME_RETRY ||
        outcome == BALLAST_OUTCOME_FAIL)
        return outcome;
    bl_fmt(why, sizeof(why),
           "handler plugin '%s' returned outcome %d, which is none of "
           "BALLAST_OUTCOME_OK (0), BALLAST_OUTCOME_RETRY (1) or BALLAST_OUTCOME_FAIL (2)",
           ps->h->name ? ps->h->name : "unnamed", (int)outcome);
    ballast_result_set_error(res, why);
    return BALLAST_OUTCOME_FAIL;
}

static ballast_outcome_t plugin_handle(void *state, const ballast_message_t *msg,
                                       ballast_result_t *res)
{
    plugin_state_t *ps = state;
    ballast_outcome_t outcome = BALLAST_OUTCOME_RETRY;

    if (ps->h->handle)
        outcome = ps->h->handle(ps->inner, msg, res);
    else
        ps->h->handle_batch(ps->inner, &msg, &res, 1, &outcome);
    return checked(ps, outcome, res);
}

/* Our table is const, so handle_batch always exists: it uses the plugin's
 * own when it has one, else handles the messages one at a time. */
static void plugin_handle_batch(void *state, const ballast_message_t *const *msgs,
                                ballast_result_t *const *results, size_t count,
                                ballast_outcome_t *outcomes)
{
    plugin_state_t *ps = state;

    if (ps->h->handle_batch)
        ps->h->handle_batch(ps->inner, msgs, results, count, outcomes);
    else
        for (size_t i = 0; i < count; i++)
            outcomes[i] = ps->h->handle(ps->inner, msgs[i], results[i]);
    for (size_t i = 0; i < count; i++)
        outcomes[i] = checked(ps, outcomes[i], results[i]);
}

const ballast_handler_t bl_handler_plugin = {
    BALLAST_HANDLER_ABI_VERSION, "plugin", plugin_init, plugin_handle,
    plugin_handle_batch, plugin_destroy};

/* `ballast check`: the file is there to load. It is not loaded: that would
 * run the plugin's code. */
void bl_plugin_check(const ballast_conf_t *conf, bl_check_t *ck)
{
    const char *path = bl_conf_str(conf, "handler.plugin.path");

    if (access(path, R_OK))
        bl_check_report(ck, "plugin file", BALLAST_ERR_CONFIG,
                        "handler.plugin.path: cannot read '%s': %s", path, strerror(errno));
    else
        bl_check_error(ck, "plugin file", NULL);
}
