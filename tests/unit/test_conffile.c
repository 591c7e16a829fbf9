/* test_conffile.c - unit tests of the Java-properties style config reader
 * (src/conffile.c): bl_conf_load_text and ballast_conf_load_file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define PATH "test.conf"
/* A file one byte over what ${file:PATH} reads (1 MiB). */
#define FILE_SIZE_OVER (1024 * 1024 + 1)

/* Variables the cases rely on (set in setup). */
static int setup_env(void **state)
{
    (void)state;
    setenv("BALLAST_T_HOME", "/home/tester", 1);
    setenv("BALLAST_T_USER", "alice", 1);
    setenv("BALLAST_T_EMPTY", "", 1);
    setenv("BALLAST_T_WEIRD", "a=b:c#d ${NOT_EXPANDED} $$", 1);
    unsetenv("BALLAST_T_UNSET");
    return 0;
}

/* ---- accepted texts ----------------------------------------------------- */

typedef struct ok_case {
    const char *what;
    const char *text;
    const char *key, *value;   /* the key checked and its expected value */
    const char *key2, *value2; /* optional second check */
} ok_case_t;

static const ok_case_t ok_cases[] = {
    {"comments and blank lines",
     "# a comment\n! another\n\n   \n\t\n   # indented comment\n  ! indented\n"
     "topics = a\n# topics = b\n",
     "topics", "a", NULL, NULL},
    {"colon separator", "topics: a,b\n", "topics", "a,b", NULL, NULL},
    {"colon without blanks", "topics:a\n", "topics", "a", NULL, NULL},
    {"no blanks", "topics=a\n", "topics", "a", NULL, NULL},
    {"blanks around =", "  topics   =   a , b  \n", "topics", "a , b", NULL, NULL},
    {"tabs around =", "\ttopics\t=\ta\t\n", "topics", "a", NULL, NULL},
    {"empty value", "metrics.listen =\n", "metrics.listen", "", NULL, NULL},
    {"empty value with colon", "output.topic:\n", "output.topic", "", NULL, NULL},
    {"value with = kept whole", "handler.postgres.dsn = host=h password=p\n",
     "handler.postgres.dsn", "host=h password=p", NULL, NULL},
    {"value with :value::jsonb",
     "handler.postgres.sql = INSERT INTO t(doc) VALUES (:value::jsonb)\n",
     "handler.postgres.sql", "INSERT INTO t(doc) VALUES (:value::jsonb)", NULL, NULL},
    {"colon separator then = and : in value",
     "handler.sqlite.sql: UPDATE t SET a = :value WHERE k = :key\n",
     "handler.sqlite.sql", "UPDATE t SET a = :value WHERE k = :key", NULL, NULL},
    {"host:port after =", "metrics.listen = 127.0.0.1:9464\n", "metrics.listen",
     "127.0.0.1:9464", NULL, NULL},
    {"host:port after :", "metrics.listen: 127.0.0.1:9464\n", "metrics.listen",
     "127.0.0.1:9464", NULL, NULL},
    {"# inside a value is not a comment", "handler.exec.command = run #1\n",
     "handler.exec.command", "run #1", NULL, NULL},
    {"last line without newline", "topics = a\nconcurrency = 3", "concurrency", "3",
     "topics", "a"},
    {"later line wins", "concurrency = 2\nconcurrency = 5\n", "concurrency", "5", NULL,
     NULL},
    {"kafka key", "kafka.bootstrap.servers = h1:9092,h2:9092\n",
     "kafka.bootstrap.servers", "h1:9092,h2:9092", NULL, NULL},
    {"plugin param", "handler.plugin.param.greeting = hello world\n",
     "handler.plugin.param.greeting", "hello world", NULL, NULL},
    {"CRLF line endings", "topics = a\r\nconcurrency = 4\r\n", "concurrency", "4",
     "topics", "a"},
    {"CRLF comment and blank", "# c\r\n\r\ntopics = a\r\n", "topics", "a", NULL, NULL},
    /* continuation lines */
    {"continuation", "topics = a,\\\n    b,\\\n\tc\nconcurrency = 2\n", "topics",
     "a,b,c", "concurrency", "2"},
    {"continuation with CRLF", "topics = a,\\\r\n  b\r\nconcurrency = 2\r\n", "topics",
     "a,b", "concurrency", "2"},
    {"continuation of the key", "con\\\n  currency = 6\n", "concurrency", "6", NULL,
     NULL},
    {"continuation then blank line", "handler.exec.command = run\\\n\ntopics = a\n",
     "handler.exec.command", "run", "topics", "a"},
    {"continuation at end of text", "handler.exec.command = run \\", 
     "handler.exec.command", "run", NULL, NULL},
    {"even backslashes do not continue",
     "handler.exec.command = x\\\\\nconcurrency = 2\n", "handler.exec.command",
     "x\\\\", "concurrency", "2"},
    {"four backslashes do not continue",
     "handler.exec.command = x\\\\\\\\\nconcurrency = 2\n", "handler.exec.command",
     "x\\\\\\\\", "concurrency", "2"},
    {"three backslashes continue, dropping one",
     "handler.exec.command = x\\\\\\\n   y\nconcurrency = 2\n",
     "handler.exec.command", "x\\\\y", "concurrency", "2"},
    {"backslash inside a value", "handler.sqlite.path = C:\\dir\\db\n",
     "handler.sqlite.path", "C:\\dir\\db", NULL, NULL},
    /* environment */
    {"${VAR}", "handler.sqlite.path = ${BALLAST_T_HOME}/db.sqlite\n",
     "handler.sqlite.path", "/home/tester/db.sqlite", NULL, NULL},
    {"two variables", "handler.postgres.dsn = user=${BALLAST_T_USER} dir=${BALLAST_T_HOME}\n",
     "handler.postgres.dsn", "user=alice dir=/home/tester", NULL, NULL},
    {"adjacent variables", "output.topic = ${BALLAST_T_USER}${BALLAST_T_USER}\n",
     "output.topic", "alicealice", NULL, NULL},
    {"default of an unset variable", "output.topic = ${BALLAST_T_UNSET:-fallback}\n",
     "output.topic", "fallback", NULL, NULL},
    {"default not used when set", "output.topic = ${BALLAST_T_USER:-fallback}\n",
     "output.topic", "alice", NULL, NULL},
    {"default used when empty", "output.topic = ${BALLAST_T_EMPTY:-fallback}\n",
     "output.topic", "fallback", NULL, NULL},
    {"empty default", "output.topic = x${BALLAST_T_UNSET:-}y\n", "output.topic", "xy",
     NULL, NULL},
    {"default with : and =", "metrics.listen = ${BALLAST_T_UNSET:-127.0.0.1:9464}\n",
     "metrics.listen", "127.0.0.1:9464", NULL, NULL},
    {"default with = in a DSN",
     "handler.postgres.dsn = ${BALLAST_T_UNSET:-host=h port=5432}\n",
     "handler.postgres.dsn", "host=h port=5432", NULL, NULL},
    {"set but empty, no default", "output.topic = [${BALLAST_T_EMPTY}]\n",
     "output.topic", "[]", NULL, NULL},
    {"value of a variable is not expanded again",
     "handler.exec.command = ${BALLAST_T_WEIRD}\n", "handler.exec.command",
     "a=b:c#d ${NOT_EXPANDED} $$", NULL, NULL},
    {"$$ is a dollar", "handler.exec.command = echo $$HOME $${BALLAST_T_UNSET} $$$$\n",
     "handler.exec.command", "echo $HOME ${BALLAST_T_UNSET} $$", NULL, NULL},
    {"lone $ kept", "handler.exec.command = cost$ 5$ $x\n", "handler.exec.command",
     "cost$ 5$ $x", NULL, NULL},
    {"variable in a continued line",
     "handler.sqlite.path = ${BALLAST_T_HOME}\\\n  /db\n", "handler.sqlite.path",
     "/home/tester/db", NULL, NULL},
    {"variable in a kafka key",
     "kafka.sasl.username = ${BALLAST_T_USER}\n", "kafka.sasl.username", "alice",
     NULL, NULL},
    {"comment mentioning an unset variable", "# ${BALLAST_T_UNSET}\ntopics = a\n",
     "topics", "a", NULL, NULL},
};

static void test_accepted(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(ok_cases) / sizeof(ok_cases[0]); i++) {
        const ok_case_t *c = &ok_cases[i];
        ballast_conf_t *conf = ballast_conf_new();
        ballast_error_t *err = bl_conf_load_text(conf, c->text, strlen(c->text), PATH);
        const char *v, *v2 = NULL;
        char got[512], got2[512] = "";

        if (err) {
            char msg[600];
            snprintf(msg, sizeof(msg), "%s", ballast_error_message(err));
            ballast_error_destroy(err);
            ballast_conf_destroy(conf);
            fail_msg("%s: unexpected error: %s", c->what, msg);
        }
        v = ballast_conf_get(conf, c->key);
        snprintf(got, sizeof(got), "%s", v ? v : "(null)");
        if (c->key2) {
            v2 = ballast_conf_get(conf, c->key2);
            snprintf(got2, sizeof(got2), "%s", v2 ? v2 : "(null)");
        }
        ballast_conf_destroy(conf);
        if (strcmp(got, c->value))
            fail_msg("%s: %s = \"%s\", expected \"%s\"", c->what, c->key, got,
                     c->value);
        if (c->key2 && strcmp(got2, c->value2))
            fail_msg("%s: %s = \"%s\", expected \"%s\"", c->what, c->key2, got2,
                     c->value2);
    }
}

/* ---- refused texts ------------------------------------------------------ */

typedef struct bad_case {
    const char *what;
    const char *text;
    const char *s1, *s2; /* substrings of the message (s1: "file:line:") */
} bad_case_t;

static const bad_case_t bad_cases[] = {
    {"unknown key", "no.such.key = 1\n", "test.conf:1: ", "no.such.key"},
    {"unknown key keeps its own message", "\nno.such.key = 1\n", "test.conf:2: ",
     "unknown key"},
    {"invalid value, line 4", "# c\n\ntopics = a\nconcurrency = zero\n",
     "test.conf:4: ", "concurrency"},
    {"invalid value names what was expected", "concurrency = 0\n", "test.conf:1: ",
     "expected an integer"},
    {"invalid librdkafka value", "kafka.session.timeout.ms = abc\n", "test.conf:1: ",
     "kafka.session.timeout.ms"},
    {"unknown librdkafka property", "topics=a\nkafka.no.such.prop = 1\n",
     "test.conf:2: ", "unknown librdkafka property"},
    {"managed librdkafka property", "kafka.enable.auto.commit = true\n",
     "test.conf:1: ", "kafka.enable.auto.commit"},
    {"no separator", "topics = a\njust some words\n", "test.conf:2: ",
     "expected \"key = value\""},
    {"no key", "= value\n", "test.conf:1: ", "missing key"},
    {"no key, colon", "  : value\n", "test.conf:1: ", "missing key"},
    {"unset variable", "topics = a\nhandler.sqlite.path = ${BALLAST_T_UNSET}/x\n",
     "test.conf:2: ", "BALLAST_T_UNSET"},
    {"unset variable is named as not set", "output.topic = ${BALLAST_T_UNSET}\n",
     "test.conf:1: ", "environment variable BALLAST_T_UNSET is not set"},
    {"unset variable after a set one",
     "output.topic = ${BALLAST_T_USER}${BALLAST_T_UNSET}\n", "test.conf:1: ",
     "BALLAST_T_UNSET"},
    {"unterminated ${", "output.topic = ${BALLAST_T_HOME\n", "test.conf:1: ",
     "unterminated ${"},
    {"unterminated ${ at the end", "topics = a\n\noutput.topic = x${\n",
     "test.conf:3: ", "unterminated"},
    {"empty variable name", "output.topic = ${}\n", "test.conf:1: ",
     "invalid variable name"},
    {"empty name with default", "output.topic = ${:-x}\n", "test.conf:1: ",
     "invalid variable name"},
    {"blank in variable name", "output.topic = ${A B}\n", "test.conf:1: ",
     "invalid variable name"},
    {"dash in variable name", "output.topic = ${A-B}\n", "test.conf:1: ",
     "\"A-B\""},
    /* line numbers after continuation lines */
    {"error after continuation lines",
     "topics = a,\\\n  b,\\\n  c\nconcurrency = x\n", "test.conf:4: ", "concurrency"},
    {"error in a continued line names its first line",
     "topics = a\nconcurrency = \\\n  x\n", "test.conf:2: ", "concurrency"},
    {"error after even backslashes",
     "handler.exec.command = a\\\\\nconcurrency = x\n", "test.conf:2: ", "concurrency"},
    {"error after CRLF lines", "topics = a\r\n\r\n# c\r\nbad line\r\n",
     "test.conf:4: ", "expected"},
    {"error after a continued comment-free blank",
     "handler.exec.command = run\\\n\nconcurrency = x\n", "test.conf:3: ",
     "concurrency"},
    {"error on a last line without newline", "topics = a\nconcurrency = x",
     "test.conf:2: ", "concurrency"},
};

static void test_refused(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const bad_case_t *c = &bad_cases[i];
        ballast_conf_t *conf = ballast_conf_new();
        ballast_error_t *err = bl_conf_load_text(conf, c->text, strlen(c->text), PATH);
        char msg[600];
        ballast_err_code_t code;

        ballast_conf_destroy(conf);
        if (!err)
            fail_msg("%s: accepted, expected an error", c->what);
        snprintf(msg, sizeof(msg), "%s", ballast_error_message(err));
        code = ballast_error_code(err);
        ballast_error_destroy(err);
        if (code != BALLAST_ERR_CONFIG)
            fail_msg("%s: code %d, expected BALLAST_ERR_CONFIG", c->what, (int)code);
        if (!strstr(msg, c->s1) || (c->s2 && !strstr(msg, c->s2)))
            fail_msg("%s: \"%s\" does not contain \"%s\" and \"%s\"", c->what, msg,
                     c->s1, c->s2 ? c->s2 : "");
    }
}

/* Error messages are one line, even when the cause had CR or LF. */
static void test_error_is_one_line(void **state)
{
    static const char text[] = "topics = a\r\nconcurrency = x\r\n";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = bl_conf_load_text(conf, text, strlen(text), PATH);
    (void)state;

    assert_non_null(err);
    assert_null(strchr(ballast_error_message(err), '\n'));
    assert_null(strchr(ballast_error_message(err), '\r'));
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

static void test_nul_byte(void **state)
{
    static const char text[] = "topics = a\nconcurrency = 2\0\nx = y\n";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = bl_conf_load_text(conf, text, sizeof(text) - 1, PATH);
    (void)state;

    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    assert_non_null(strstr(ballast_error_message(err), "test.conf"));
    assert_non_null(strstr(ballast_error_message(err), "NUL"));
    ballast_error_destroy(err);
    /* nothing of a binary file is applied */
    assert_null(ballast_conf_get(conf, "topics"));
    ballast_conf_destroy(conf);
}

/* A text is parsed by length, not up to a NUL: bytes past len are ignored. */
static void test_length_bounded(void **state)
{
    static const char text[] = "topics = a\nconcurrency = 7\n";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    err = bl_conf_load_text(conf, text, strlen("topics = a\n"), PATH);
    assert_null(err);
    assert_string_equal(ballast_conf_get(conf, "topics"), "a");
    assert_string_equal(ballast_conf_get(conf, "concurrency"), "1");
    err = bl_conf_load_text(conf, "", 0, PATH);
    assert_null(err);
    ballast_conf_destroy(conf);
}

/* A whole, realistic file. */
static void test_full_file_text(void **state)
{
    static const char text[] =
        "# orders pipeline\n"
        "kafka.bootstrap.servers = ${BALLAST_T_UNSET:-127.0.0.1:9092}\n"
        "kafka.group.id: orders-writer\n"
        "topics = orders, \\\n"
        "         payments\n"
        "handler = postgres\n"
        "handler.postgres.dsn = host=db user=${BALLAST_T_USER} password=${BALLAST_T_UNSET:-pw}\n"
        "handler.postgres.sql = INSERT INTO docs(id, doc) \\\n"
        "    VALUES (:key, :value::jsonb) \\\n"
        "    ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc\n"
        "! retries\n"
        "retry.max.attempts=5\n"
        "dlq.topic = orders-dlq\n";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = bl_conf_load_text(conf, text, strlen(text), PATH);
    (void)state;

    if (err)
        fail_msg("%s", ballast_error_message(err));
    assert_string_equal(ballast_conf_get(conf, "kafka.bootstrap.servers"),
                        "127.0.0.1:9092");
    assert_string_equal(ballast_conf_get(conf, "kafka.group.id"), "orders-writer");
    assert_string_equal(ballast_conf_get(conf, "topics"), "orders, payments");
    assert_string_equal(ballast_conf_get(conf, "handler.postgres.dsn"),
                        "host=db user=alice password=pw");
    assert_string_equal(ballast_conf_get(conf, "handler.postgres.sql"),
                        "INSERT INTO docs(id, doc) VALUES (:key, :value::jsonb) "
                        "ON CONFLICT (id) DO UPDATE SET doc = EXCLUDED.doc");
    assert_string_equal(ballast_conf_get(conf, "retry.max.attempts"), "5");
    assert_string_equal(ballast_conf_get(conf, "dlq.topic"), "orders-dlq");
    err = ballast_conf_validate(conf);
    if (err)
        fail_msg("validate: %s", ballast_error_message(err));
    ballast_conf_destroy(conf);
}

/* Java properties: "a comment line cannot be extended" by a trailing
 * backslash. A comment ending in '\' (a Windows path, say) must not swallow
 * the next line.
 * Regression: failed until bl_conf_load_text (src/conffile.c) stops joining a comment line
 * that ends in an odd number of backslashes with the next line */
static void test_comment_with_trailing_backslash(void **state)
{
    static const char text[] = "# data lives in C:\\data\\\ntopics = a\n";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = bl_conf_load_text(conf, text, strlen(text), PATH);
    const char *v;
    char got[64];
    (void)state;

    v = ballast_conf_get(conf, "topics");
    snprintf(got, sizeof(got), "%s", v ? v : "(null: the line was swallowed)");
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
    assert_null(err);
    assert_string_equal(got, "a");
}

/* ---- files -------------------------------------------------------------- */

static void write_file(const char *path, const char *text, size_t len)
{
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(text, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void temp_path(char *buf, size_t size)
{
    int fd;
    snprintf(buf, size, "/tmp/ballast-test-conffile-XXXXXX");
    fd = mkstemp(buf);
    assert_true(fd >= 0);
    close(fd);
}

static void test_load_file(void **state)
{
    static const char text[] = "topics = a\r\nconcurrency: 3\r\n";
    char path[64];
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    temp_path(path, sizeof(path));
    write_file(path, text, strlen(text));
    err = ballast_conf_load_file(conf, path);
    unlink(path);
    if (err)
        fail_msg("%s", ballast_error_message(err));
    assert_string_equal(ballast_conf_get(conf, "topics"), "a");
    assert_string_equal(ballast_conf_get(conf, "concurrency"), "3");
    ballast_conf_destroy(conf);
}

/* A file larger than the reader's 8 KiB buffer. */
static void test_load_big_file(void **state)
{
    char path[64];
    size_t cap = 64 * 1024, len = 0;
    char *text = malloc(cap);
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    assert_non_null(text);
    for (int i = 0; len < 40000; i++)
        len += (size_t)snprintf(text + len, cap - len,
                                "# comment line %d padding padding padding\n"
                                "concurrency = %d\n",
                                i, i % 1024 + 1);
    len += (size_t)snprintf(text + len, cap - len, "topics = last\n");
    temp_path(path, sizeof(path));
    write_file(path, text, len);
    free(text);
    err = ballast_conf_load_file(conf, path);
    unlink(path);
    if (err)
        fail_msg("%s", ballast_error_message(err));
    assert_string_equal(ballast_conf_get(conf, "topics"), "last");
    ballast_conf_destroy(conf);
}

static void test_load_file_error_names_file_and_line(void **state)
{
    static const char text[] = "topics = a\n\nno.such = 1\n";
    char path[64], want[80];
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    temp_path(path, sizeof(path));
    write_file(path, text, strlen(text));
    err = ballast_conf_load_file(conf, path);
    unlink(path);
    assert_non_null(err);
    snprintf(want, sizeof(want), "%s:3: ", path);
    if (!strstr(ballast_error_message(err), want))
        fail_msg("\"%s\" does not name \"%s\"", ballast_error_message(err), want);
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

static void test_load_file_missing(void **state)
{
    const char *path = "/nonexistent/dir/ballast.conf";
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = ballast_conf_load_file(conf, path);
    (void)state;

    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    assert_non_null(strstr(ballast_error_message(err), path));
    assert_non_null(strstr(ballast_error_message(err), "No such file"));
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

static void test_load_directory(void **state)
{
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err = ballast_conf_load_file(conf, "/tmp");
    (void)state;

    assert_non_null(err);
    assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
    assert_non_null(strstr(ballast_error_message(err), "/tmp"));
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

static void test_load_empty_file(void **state)
{
    char path[64];
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    temp_path(path, sizeof(path));
    err = ballast_conf_load_file(conf, path);
    unlink(path);
    assert_null(err);
    assert_null(ballast_conf_get(conf, "topics"));
    ballast_conf_destroy(conf);
}

static void test_load_binary_file(void **state)
{
    static const char text[] = "topics = a\n\0\x01\x02";
    char path[64];
    ballast_conf_t *conf = ballast_conf_new();
    ballast_error_t *err;
    (void)state;

    temp_path(path, sizeof(path));
    write_file(path, text, sizeof(text) - 1);
    err = ballast_conf_load_file(conf, path);
    unlink(path);
    assert_non_null(err);
    assert_non_null(strstr(ballast_error_message(err), path));
    assert_non_null(strstr(ballast_error_message(err), "NUL"));
    ballast_error_destroy(err);
    ballast_conf_destroy(conf);
}

/* ---- ${file:PATH} ------------------------------------------------------- */

/* Loads @p fmt (with the one %s replaced by @p file) and returns the value of
 * @p key (caller frees), or NULL with *errp set. */
static char *load_with_file(const char *fmt, const char *file, const char *key,
                            ballast_error_t **errp)
{
    char text[1024];
    ballast_conf_t *conf = ballast_conf_new();
    char *value = NULL;

    snprintf(text, sizeof(text), fmt, file);
    *errp = bl_conf_load_text(conf, text, strlen(text), PATH);
    if (!*errp)
        value = strdup(ballast_conf_get(conf, key));
    ballast_conf_destroy(conf);
    return value;
}

typedef struct file_case {
    const char *what;
    const char *contents; /* of the secret file */
    size_t len;           /* 0: strlen(contents) */
    const char *line;     /* a config line with one %s for the file's path */
    const char *key, *value;
} file_case_t;

static const file_case_t file_cases[] = {
    {"a password with its newline stripped", "s3cret\n", 0,
     "kafka.sasl.password = ${file:%s}\n", "kafka.sasl.password", "s3cret"},
    {"CRLF and several newlines stripped", "s3cret\r\n\n", 0,
     "kafka.sasl.password = ${file:%s}\n", "kafka.sasl.password", "s3cret"},
    {"no newline at all", "s3cret", 0, "kafka.sasl.password = ${file:%s}\n",
     "kafka.sasl.password", "s3cret"},
    {"inner newlines kept (a PEM key)", "-----BEGIN-----\nabc\n-----END-----\n", 0,
     "kafka.ssl.key.pem = ${file:%s}\n", "kafka.ssl.key.pem",
     "-----BEGIN-----\nabc\n-----END-----"},
    {"inside a longer value", "pw\n", 0,
     "handler.postgres.dsn = host=h password=${file:%s} user=${BALLAST_T_USER}\n",
     "handler.postgres.dsn", "host=h password=pw user=alice"},
    {"contents not expanded again", "${BALLAST_T_UNSET} $$ ${file:/x}\n", 0,
     "handler.exec.command = ${file:%s}\n", "handler.exec.command",
     "${BALLAST_T_UNSET} $$ ${file:/x}"},
    {"an empty file is an empty value", "", 0, "output.topic = [${file:%s}]\n",
     "output.topic", "[]"},
};

static void test_file_reference(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(file_cases) / sizeof(file_cases[0]); i++) {
        const file_case_t *c = &file_cases[i];
        char path[64];
        ballast_error_t *err;
        char *value;

        temp_path(path, sizeof(path));
        write_file(path, c->contents, c->len ? c->len : strlen(c->contents));
        value = load_with_file(c->line, path, c->key, &err);
        unlink(path);
        if (err)
            fail_msg("%s: %s", c->what, ballast_error_message(err));
        if (strcmp(value, c->value))
            fail_msg("%s: got \"%s\", expected \"%s\"", c->what, value, c->value);
        free(value);
    }
}

/* ${file:-x} stays the variable "file" with a default. */
static void test_file_variable_with_default(void **state)
{
    ballast_error_t *err;
    char *value;
    (void)state;

    unsetenv("file");
    value = load_with_file("output.topic = ${file:-fallback}%s\n", "", "output.topic", &err);
    assert_null(err);
    assert_string_equal(value, "fallback");
    free(value);
}

/* A file that cannot be used is a one-line configuration error that names
 * the key and the file, and never shows what the file holds. */
static void test_file_reference_refused(void **state)
{
    static const char secret[] = "do-not-print-me";
    char dir[64], big[64], nul[64], missing[80];
    char *text = malloc(FILE_SIZE_OVER);
    const char *paths[4];
    (void)state;

    assert_non_null(text);
    temp_path(big, sizeof(big));
    memset(text, 'x', FILE_SIZE_OVER);
    memcpy(text, secret, strlen(secret));
    write_file(big, text, FILE_SIZE_OVER);
    free(text);
    temp_path(nul, sizeof(nul));
    write_file(nul, "do-not-print-me\0rest\n", 21);
    snprintf(dir, sizeof(dir), "/tmp");
    snprintf(missing, sizeof(missing), "%s.missing", nul);
    paths[0] = missing;
    paths[1] = dir;
    paths[2] = big;
    paths[3] = nul;
    for (size_t i = 0; i < 4; i++) {
        ballast_error_t *err;
        char *value = load_with_file("topics = a\nkafka.sasl.password = ${file:%s}\n",
                                     paths[i], "kafka.sasl.password", &err);
        const char *msg;

        if (!err)
            fail_msg("${file:%s} was accepted as \"%.40s\"", paths[i], value);
        msg = ballast_error_message(err);
        assert_int_equal(ballast_error_code(err), BALLAST_ERR_CONFIG);
        if (!strstr(msg, "test.conf:2: ") || !strstr(msg, "kafka.sasl.password") ||
            !strstr(msg, paths[i]))
            fail_msg("\"%s\" does not name the line, the key and %s", msg, paths[i]);
        if (strstr(msg, secret) || strchr(msg, '\n'))
            fail_msg("the error shows the file's contents or is not one line: %s", msg);
        ballast_error_destroy(err);
    }
    unlink(big);
    unlink(nul);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accepted),
        cmocka_unit_test(test_refused),
        cmocka_unit_test(test_error_is_one_line),
        cmocka_unit_test(test_nul_byte),
        cmocka_unit_test(test_length_bounded),
        cmocka_unit_test(test_full_file_text),
        cmocka_unit_test(test_comment_with_trailing_backslash),
        cmocka_unit_test(test_load_file),
        cmocka_unit_test(test_load_big_file),
        cmocka_unit_test(test_load_file_error_names_file_and_line),
        cmocka_unit_test(test_load_file_missing),
        cmocka_unit_test(test_load_directory),
        cmocka_unit_test(test_load_empty_file),
        cmocka_unit_test(test_load_binary_file),
        cmocka_unit_test(test_file_reference),
        cmocka_unit_test(test_file_variable_with_default),
        cmocka_unit_test(test_file_reference_refused),
    };
    return cmocka_run_group_tests(tests, setup_env, NULL);
}
