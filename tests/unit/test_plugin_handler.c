/* test_plugin_handler.c - `handler = plugin`: loading, ABI checks, forwarding. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <dirent.h>
#include <dlfcn.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#include "handlers/handlers.h"
#include "message.h"

static char g_dir[] = "/tmp/ballast-plugin-test-XXXXXX";
static int g_have_cc; /* a C compiler is there to build fake plugins */
static char g_libdir[1024]; /* where libballast.so is */

/* ---- helpers ------------------------------------------------------------ */

static char *path_in_dir(const char *name)
{
    size_t n = strlen(g_dir) + strlen(name) + 2;
    char *p = malloc(n);

    assert_non_null(p);
    snprintf(p, n, "%s/%s", g_dir, name);
    return p;
}

/* Compiles @p source into <dir>/<name>.so. @returns its path. Without a
 * compiler the test fails: a skipped check would pass for a proven one. */
static char *build_plugin(const char *name, const char *source)
{
    char *src, *so, *cmd;
    size_t n;
    FILE *f;

    if (!g_have_cc)
        fail_msg("no C compiler (cc) to build the test plugins with; "
                 "scripts/install-deps installs one");
    n = strlen(name) + 4;
    src = malloc(n);
    assert_non_null(src);
    snprintf(src, n, "%s.c", name);
    cmd = path_in_dir(src);
    free(src);
    src = cmd;
    f = fopen(src, "w");
    assert_non_null(f);
    assert_true(fputs(source, f) >= 0);
    assert_int_equal(fclose(f), 0);
    so = malloc(strlen(src) + 2);
    assert_non_null(so);
    memcpy(so, src, strlen(src) - 1);
    memcpy(so + strlen(src) - 1, "so", 3);
    /* Linked like a real plugin: against libballast.so, which sits beside
     * the example plugin in the build tree. */
    n = strlen(src) + strlen(so) + strlen(BALLAST_SRC_DIR) + 2 * strlen(g_libdir) + 96;
    cmd = malloc(n);
    assert_non_null(cmd);
    snprintf(cmd, n,
             "cc -shared -fPIC -I'%s/include' -o '%s' '%s' -L'%s' -Wl,-rpath,'%s' "
             "-lballast",
             BALLAST_SRC_DIR, so, src, g_libdir, g_libdir);
    if (system(cmd) != 0)
        fail_msg("could not build a test plugin: %s", cmd);
    unlink(src);
    free(src);
    free(cmd);
    return so;
}

static int group_setup(void **state)
{
    (void)state;
    if (!mkdtemp(g_dir))
        return -1;
    g_have_cc = system("cc --version >/dev/null 2>&1") == 0;
    snprintf(g_libdir, sizeof(g_libdir), "%s", BALLAST_EXAMPLE_PLUGIN);
    *strrchr(g_libdir, '/') = '\0';
    return 0;
}

/* Empties and removes the test directory, whatever a failed test left. */
static int group_teardown(void **state)
{
    DIR *d = opendir(g_dir);
    struct dirent *e;

    (void)state;
    if (chdir("/") || !d)
        return -1;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            char *p = path_in_dir(e->d_name);
            unlink(p);
            free(p);
        }
    }
    closedir(d);
    return rmdir(g_dir);
}

/* Runs the plugin handler's init for @p path. */
static int plugin_start(const char *path, void **statep, char *errbuf, size_t errsize)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_handler_params_t params = {0};
    ballast_error_t *err;
    int rc;

    assert_non_null(conf);
    if (path) {
        err = ballast_conf_set(conf, "handler.plugin.path", path);
        if (err)
            fail_msg("conf: %s", ballast_error_message(err));
    }
    params.conf = conf;
    params.workers = 1;
    errbuf[0] = '\0';
    *statep = (void *)1;
    rc = bl_handler_plugin.init(statep, &params, errbuf, errsize);
    ballast_conf_destroy(conf);
    return rc;
}

static void expect_init_error(const char *path, int code, const char *prefix)
{
    char errbuf[1024];
    void *st;
    int rc = plugin_start(path, &st, errbuf, sizeof(errbuf));

    assert_int_equal(rc, code);
    assert_null(st);
    if (strncmp(errbuf, prefix, strlen(prefix)))
        fail_msg("error '%s', want prefix '%s'", errbuf, prefix);
}

static void msg_init(struct ballast_message_s *m, const char *value)
{
    memset(m, 0, sizeof(*m));
    m->topic = "in";
    m->value = value;
    m->value_len = value ? strlen(value) : 0;
    m->timestamp = -1;
    m->attempt = 1;
}

/* ---- the example plugin ------------------------------------------------- */

static void test_example_plugin(void **state)
{
    static const char *const values[] = {"a", "poison", "b", NULL};
    struct ballast_message_s m[4];
    struct ballast_result_s res[4] = {{0}};
    const ballast_message_t *msgs[4];
    ballast_result_t *results[4];
    ballast_outcome_t outcomes[4];
    char errbuf[512];
    void *st;

    (void)state;
    if (plugin_start(BALLAST_EXAMPLE_PLUGIN, &st, errbuf, sizeof(errbuf)))
        fail_msg("init: %s", errbuf);
    assert_non_null(st);

    msg_init(&m[0], "poison");
    assert_int_equal(bl_handler_plugin.handle(st, &m[0], &res[0]), BALLAST_OUTCOME_FAIL);
    assert_string_equal(res[0].error, "poison value");
    bl_result_reset(&res[0]);
    msg_init(&m[0], "fine");
    assert_int_equal(bl_handler_plugin.handle(st, &m[0], &res[0]), BALLAST_OUTCOME_OK);
    assert_null(res[0].error);

    /* No handle_batch in the plugin: the batch is handled one by one. */
    for (int i = 0; i < 4; i++) {
        msg_init(&m[i], values[i]);
        msgs[i] = &m[i];
        results[i] = &res[i];
        outcomes[i] = (ballast_outcome_t)-1;
    }
    bl_handler_plugin.handle_batch(st, msgs, results, 4, outcomes);
    assert_int_equal(outcomes[0], BALLAST_OUTCOME_OK);
    assert_int_equal(outcomes[1], BALLAST_OUTCOME_FAIL);
    assert_string_equal(res[1].error, "poison value");
    assert_int_equal(outcomes[2], BALLAST_OUTCOME_OK);
    assert_int_equal(outcomes[3], BALLAST_OUTCOME_OK); /* tombstone */
    for (int i = 0; i < 4; i++)
        bl_result_reset(&res[i]);
    bl_handler_plugin.destroy(st);
}

/* concurrency=N loads the same object N times, each with its own state. */
static void test_example_plugin_twice(void **state)
{
    char errbuf[512];
    void *a, *b;

    (void)state;
    assert_int_equal(plugin_start(BALLAST_EXAMPLE_PLUGIN, &a, errbuf, sizeof(errbuf)), 0);
    assert_int_equal(plugin_start(BALLAST_EXAMPLE_PLUGIN, &b, errbuf, sizeof(errbuf)), 0);
    assert_ptr_not_equal(a, b);
    bl_handler_plugin.destroy(a);
    bl_handler_plugin.destroy(b);
}

/* ---- load errors -------------------------------------------------------- */

static void test_wrong_path(void **state)
{
    (void)state;
    expect_init_error("/nonexistent/dir/plugin.so", BALLAST_ERR_CONFIG,
                      "handler.plugin.path: cannot load '/nonexistent/dir/plugin.so': ");
    expect_init_error(NULL, BALLAST_ERR_CONFIG, "handler.plugin.path: not set");
}

/* A real shared object that is not a plugin: librdkafka. (Not libc: with
 * clang's sanitizers, printf() and friends resolve to interceptors linked
 * into the test executable, which cannot be dlopen()ed.) */
static void test_not_a_plugin(void **state)
{
    Dl_info info;
    char prefix[1024];

    (void)state;
    assert_true(dladdr((void *)&rd_kafka_version, &info) && info.dli_fname);
    snprintf(prefix, sizeof(prefix),
             "handler.plugin.path: '%s' does not export ballast_plugin_handler()",
             info.dli_fname);
    expect_init_error(info.dli_fname, BALLAST_ERR_CONFIG, prefix);
}

/* A file that is not a shared object at all. */
static void test_not_an_elf(void **state)
{
    char *path = path_in_dir("text.so");
    FILE *f = fopen(path, "w");

    (void)state;
    assert_non_null(f);
    fputs("not an ELF file\n", f);
    fclose(f);
    expect_init_error(path, BALLAST_ERR_CONFIG, "handler.plugin.path: cannot load '");
    unlink(path);
    free(path);
}

/* ---- fake plugins (built at test time) ---------------------------------- */

#define FAKE_HEAD                                                              \
    "#include <ballast/ballast.h>\n"                                           \
    "#include <stdio.h>\n"                                                     \
    "#include <stdlib.h>\n"

static void test_abi_mismatch(void **state)
{
    char *so = build_plugin("abi99", FAKE_HEAD
        "static ballast_outcome_t h(void *s, const ballast_message_t *m,\n"
        "                           ballast_result_t *r)\n"
        "{ (void)s; (void)m; (void)r; return BALLAST_OUTCOME_OK; }\n"
        "static const ballast_handler_t t = {99, \"future\", 0, h, 0, 0};\n"
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return &t; }\n");
    char expect[1024];

    (void)state;
    snprintf(expect, sizeof(expect),
             "handler.plugin.path: '%s' was built for handler ABI version 99, "
             "this ballast (%s) implements version %d",
             so, BALLAST_VERSION_STR, BALLAST_HANDLER_ABI_VERSION);
    expect_init_error(so, BALLAST_ERR_CONFIG, expect);
    unlink(so);
    free(so);
}

static void test_no_callbacks_and_null_table(void **state)
{
    char *empty = build_plugin("empty", FAKE_HEAD
        "static const ballast_handler_t t = {BALLAST_HANDLER_ABI_VERSION, \"empty\",\n"
        "                                    0, 0, 0, 0};\n"
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return &t; }\n");
    char *null = build_plugin("null", FAKE_HEAD
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return NULL; }\n");
    char expect[1024];

    (void)state;
    snprintf(expect, sizeof(expect),
             "handler.plugin.path: '%s' (empty) has neither handle nor handle_batch",
             empty);
    expect_init_error(empty, BALLAST_ERR_CONFIG, expect);
    snprintf(expect, sizeof(expect),
             "handler.plugin.path: ballast_plugin_handler() of '%s' returned NULL",
             null);
    expect_init_error(null, BALLAST_ERR_CONFIG, expect);
    unlink(empty);
    unlink(null);
    free(empty);
    free(null);
}

/* The plugin's init failure is the consumer's start-up error: its code and
 * its text, or a generic text when it gave none. */
static void test_plugin_init_failure(void **state)
{
    char *so = build_plugin("initfail", FAKE_HEAD
        "static int i(void **sp, const ballast_handler_params_t *p, char *e,\n"
        "             size_t n)\n"
        "{\n"
        "    const char *mode = ballast_conf_get(p->conf, \"handler.plugin.param.mode\");\n"
        "    (void)sp;\n"
        "    if (mode && mode[0] == 's') {\n"
        "        snprintf(e, n, \"db down\");\n"
        "        return BALLAST_ERR_UNREACHABLE;\n"
        "    }\n"
        "    return 42;\n"
        "}\n"
        "static ballast_outcome_t h(void *s, const ballast_message_t *m,\n"
        "                           ballast_result_t *r)\n"
        "{ (void)s; (void)m; (void)r; return BALLAST_OUTCOME_OK; }\n"
        "static const ballast_handler_t t = {BALLAST_HANDLER_ABI_VERSION, \"failing\",\n"
        "                                    i, h, 0, 0};\n"
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return &t; }\n");
    ballast_conf_t *conf;
    ballast_handler_params_t params = {0};
    char errbuf[512];
    void *st = (void *)1;

    (void)state;
    /* No text from the plugin: a generic one naming it and its code. It
     * reads params->conf with ballast_conf_get(), which it resolves from
     * libballast.so, so this also checks the params reach it. */
    expect_init_error(so, 42, "handler plugin 'failing': init failed (code 42)");

    conf = ballast_conf_new();
    assert_non_null(conf);
    assert_null(ballast_conf_set(conf, "handler.plugin.path", so));
    assert_null(ballast_conf_set(conf, "handler.plugin.param.mode", "say"));
    params.conf = conf;
    params.workers = 1;
    assert_int_equal(bl_handler_plugin.init(&st, &params, errbuf, sizeof(errbuf)),
                     BALLAST_ERR_UNREACHABLE);
    assert_string_equal(errbuf, "db down");
    assert_null(st);
    ballast_conf_destroy(conf);
    unlink(so);
    free(so);
}

/* A batch-only plugin still answers single messages (as a batch of one),
 * and its state travels from init to handle_batch to destroy. */
static void test_batch_only_plugin(void **state)
{
    char *so = build_plugin("batchonly", FAKE_HEAD
        "typedef struct { int calls; int *destroyed; } st_t;\n"
        "int batch_destroyed;\n"
        "static int i(void **sp, const ballast_handler_params_t *p, char *e, size_t n)\n"
        "{ (void)p; (void)e; (void)n; st_t *s = calloc(1, sizeof(*s));\n"
        "  if (!s) return BALLAST_ERR_INTERNAL; *sp = s; return 0; }\n"
        "static void b(void *sv, const ballast_message_t *const *m,\n"
        "              ballast_result_t *const *r, size_t c, ballast_outcome_t *o)\n"
        "{ st_t *s = sv; (void)m; (void)r; s->calls++;\n"
        "  for (size_t k = 0; k < c; k++)\n"
        "    o[k] = (k + (size_t)s->calls) % 2 ? BALLAST_OUTCOME_RETRY : BALLAST_OUTCOME_OK; }\n"
        "static void d(void *s) { batch_destroyed++; free(s); }\n"
        "static const ballast_handler_t t = {BALLAST_HANDLER_ABI_VERSION, \"batchy\",\n"
        "                                    i, 0, b, d};\n"
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return &t; }\n");
    struct ballast_message_s m[3];
    struct ballast_result_s res[3] = {{0}};
    const ballast_message_t *msgs[3];
    ballast_result_t *results[3];
    ballast_outcome_t outcomes[3];
    char errbuf[512];
    void *st, *dl;
    int *destroyed;

    (void)state;
    assert_int_equal(plugin_start(so, &st, errbuf, sizeof(errbuf)), 0);
    /* Keep the object mapped past destroy to read its counter. */
    dl = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    assert_non_null(dl);
    destroyed = dlsym(dl, "batch_destroyed");
    assert_non_null(destroyed);

    for (int k = 0; k < 3; k++) {
        msg_init(&m[k], "x");
        msgs[k] = &m[k];
        results[k] = &res[k];
    }
    bl_handler_plugin.handle_batch(st, msgs, results, 3, outcomes); /* call 1 */
    assert_int_equal(outcomes[0], BALLAST_OUTCOME_RETRY);
    assert_int_equal(outcomes[1], BALLAST_OUTCOME_OK);
    assert_int_equal(outcomes[2], BALLAST_OUTCOME_RETRY);
    /* call 2: a batch of one, (0 + 2) % 2 == 0 -> OK */
    assert_int_equal(bl_handler_plugin.handle(st, &m[0], &res[0]), BALLAST_OUTCOME_OK);
    assert_int_equal(*destroyed, 0);
    bl_handler_plugin.destroy(st);
    assert_int_equal(*destroyed, 1);
    dlclose(dl);
    unlink(so);
    free(so);
}

/* A plugin that returns a number outside ballast_outcome_t (a bug in it):
 * a permanent failure that says so, never success, in both call paths. */
static void test_outcome_outside_the_enum_fails(void **state)
{
    char *so = build_plugin("odd", FAKE_HEAD
        "#include <string.h>\n"
        "static ballast_outcome_t h(void *s, const ballast_message_t *m,\n"
        "                           ballast_result_t *r)\n"
        "{ size_t n; const char *v = ballast_message_value(m, &n); (void)s; (void)r;\n"
        "  return v && n == 3 && !memcmp(v, \"odd\", 3) ? (ballast_outcome_t)7\n"
        "       : v && n == 3 && !memcmp(v, \"neg\", 3) ? (ballast_outcome_t)-1\n"
        "       : BALLAST_OUTCOME_OK; }\n"
        "static const ballast_handler_t t = {BALLAST_HANDLER_ABI_VERSION, \"odd\",\n"
        "                                    0, h, 0, 0};\n"
        "__attribute__((visibility(\"default\")))\n"
        "const ballast_handler_t *ballast_plugin_handler(void) { return &t; }\n");
    static const char *const values[] = {"odd", "fine", "neg"};
    struct ballast_message_s m[3];
    struct ballast_result_s res[3] = {{0}};
    const ballast_message_t *msgs[3];
    ballast_result_t *results[3];
    ballast_outcome_t outcomes[3];
    char errbuf[512];
    void *st;

    (void)state;
    assert_int_equal(plugin_start(so, &st, errbuf, sizeof(errbuf)), 0);
    msg_init(&m[0], "odd");
    assert_int_equal(bl_handler_plugin.handle(st, &m[0], &res[0]), BALLAST_OUTCOME_FAIL);
    assert_non_null(res[0].error);
    if (!strstr(res[0].error, "'odd' returned outcome 7"))
        fail_msg("the error does not say what the plugin returned: %s", res[0].error);
    bl_result_reset(&res[0]);
    for (int i = 0; i < 3; i++) {
        msg_init(&m[i], values[i]);
        msgs[i] = &m[i];
        results[i] = &res[i];
    }
    bl_handler_plugin.handle_batch(st, msgs, results, 3, outcomes);
    assert_int_equal(outcomes[0], BALLAST_OUTCOME_FAIL);
    assert_int_equal(outcomes[1], BALLAST_OUTCOME_OK);
    assert_null(res[1].error);
    assert_int_equal(outcomes[2], BALLAST_OUTCOME_FAIL);
    assert_non_null(strstr(res[2].error, "returned outcome -1"));
    for (int i = 0; i < 3; i++)
        bl_result_reset(&res[i]);
    bl_handler_plugin.destroy(st);
    unlink(so);
    free(so);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_example_plugin),
        cmocka_unit_test(test_example_plugin_twice),
        cmocka_unit_test(test_wrong_path),
        cmocka_unit_test(test_not_a_plugin),
        cmocka_unit_test(test_not_an_elf),
        cmocka_unit_test(test_abi_mismatch),
        cmocka_unit_test(test_no_callbacks_and_null_table),
        cmocka_unit_test(test_plugin_init_failure),
        cmocka_unit_test(test_batch_only_plugin),
        cmocka_unit_test(test_outcome_outside_the_enum_fails),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
