/*
 * fuzz_conf.c - the configuration file parser, bl_conf_load_text().
 *
 * Each input is a whole properties text loaded into a fresh ballast_conf_t.
 * Beyond "no crash, no leak, no undefined behaviour", it checks:
 *  - an error is one line that names the file ("fuzz.conf:...");
 *  - what was loaded survives ballast_conf_dup() (same dump);
 *  - parse-print-parse: the dump written back as a properties text (`$`
 *    doubled, blanks at either end of a value written as the default of an
 *    unset variable) loads without error and dumps the same again;
 *  - the redacted dump of handler.postgres.dsn hides the password: libpq
 *    parses the redacted DSN to the same options as the original, except
 *    password/sslpassword, which read "[redacted]" (differential against
 *    libpq's own conninfo parser, the one the postgres handler uses).
 * ${VAR} expansion calls getenv(); the variables set below give the seeds
 * something to expand.
 */
#include "internal.h"

#include "fuzz_common.h"

#include <ctype.h>
#include <libpq-fe.h>

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    setenv("BALLAST_FUZZ_HOST", "broker.example:9092", 1);
    setenv("BALLAST_FUZZ_EMPTY", "", 1);
    setenv("BALLAST_FUZZ_SECRET", "pa$$word ${NOT_EXPANDED} \\", 1);
    unsetenv("BALLAST_FUZZ_NEVER_SET");
    return 0;
}

/* ---- dumps ---------------------------------------------------------------- */

typedef struct dump {
    char **kv; /* key, value, key, value, ... */
    size_t n;  /* pairs */
} dump_t;

static void dump_cb(const char *key, const char *value, void *opaque)
{
    dump_t *d = opaque;
    char **grown = realloc(d->kv, (d->n + 1) * 2 * sizeof(*grown));

    if (!grown)
        abort();
    d->kv = grown;
    d->kv[d->n * 2] = fuzz_strndup(key, strlen(key));
    d->kv[d->n * 2 + 1] = fuzz_strndup(value, strlen(value));
    d->n++;
}

static dump_t dump_of(const ballast_conf_t *conf, int redact)
{
    dump_t d = {0};
    ballast_conf_dump(conf, redact, dump_cb, &d);
    return d;
}

static void dump_free(dump_t *d)
{
    for (size_t i = 0; i < d->n * 2; i++)
        free(d->kv[i]);
    free(d->kv);
}

static const char *dump_get(const dump_t *d, const char *key)
{
    for (size_t i = 0; i < d->n; i++)
        if (!strcmp(d->kv[i * 2], key))
            return d->kv[i * 2 + 1];
    return NULL;
}

static void dump_expect_equal(const dump_t *a, const dump_t *b, const char *what)
{
    FUZZ_CHECK(a->n == b->n, "%s: %zu keys, then %zu", what, a->n, b->n);
    for (size_t i = 0; i < a->n * 2; i++)
        FUZZ_CHECK(!strcmp(a->kv[i], b->kv[i]), "%s: \"%s\" became \"%s\"",
                   what, a->kv[i], b->kv[i]);
}

/* Appends [p, p+n) with `$` doubled (a literal dollar). */
static void put_escaped(char *out, size_t *len, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (p[i] == '$')
            out[(*len)++] = '$';
        out[(*len)++] = p[i];
    }
}

/* Appends blanks the parser would trim, as the default of an unset variable. */
static void put_blanks(char *out, size_t *len, const char *p, size_t n)
{
    static const char open[] = "${BALLAST_FUZZ_NEVER_SET:-";

    if (!n)
        return;
    memcpy(out + *len, open, sizeof(open) - 1);
    *len += sizeof(open) - 1;
    memcpy(out + *len, p, n);
    *len += n;
    out[(*len)++] = '}';
}

/* The dump as a properties text that should load back to the same dump. */
static char *serialize(const dump_t *d, size_t *lenp)
{
    size_t cap = 1, len = 0;
    char *out;

    for (size_t i = 0; i < d->n * 2; i++)
        cap += strlen(d->kv[i]) * 2 + 80;
    if (!(out = malloc(cap)))
        abort();
    for (size_t i = 0; i < d->n; i++) {
        const char *k = d->kv[i * 2], *v = d->kv[i * 2 + 1];
        size_t vlen = strlen(v), lead = 0, trail = 0;

        memcpy(out + len, k, strlen(k));
        len += strlen(k);
        memcpy(out + len, " = ", 3);
        len += 3;
        /* A value can start or end with blanks (from ${VAR:- }); written
         * plainly they would be trimmed. */
        while (lead < vlen && isspace((unsigned char)v[lead]))
            lead++;
        while (trail < vlen - lead && isspace((unsigned char)v[vlen - 1 - trail]))
            trail++;
        put_blanks(out, &len, v, lead);
        put_escaped(out, &len, v + lead, vlen - lead - trail);
        put_blanks(out, &len, v + vlen - trail, trail);
        /* A trailing backslash would continue the line; a blank after it
         * is trimmed away again. */
        if (vlen && !trail && v[vlen - 1] == '\\')
            out[len++] = ' ';
        out[len++] = '\n';
    }
    out[len] = '\0';
    *lenp = len;
    return out;
}

/* ---- DSN redaction against libpq -------------------------------------- */

static bool is_password_option(const char *kw)
{
    return !strcmp(kw, "password") || !strcmp(kw, "sslpassword");
}

static void check_dsn_redaction(const char *dsn, const char *redacted)
{
    PQconninfoOption *orig, *red;
    char *errmsg = NULL;

    FUZZ_CHECK(redacted != NULL, "handler.postgres.dsn missing from the redacted dump");
    if (strlen(redacted) >= 2000)
        return; /* cut to ballast's 2048-byte buffer: not comparable */
    /* libpq reads the DSN as a connection string only when it looks like
     * one (postgres.c passes it as an expanded dbname); else a db name. */
    if (strncmp(dsn, "postgresql://", 13) && strncmp(dsn, "postgres://", 11) &&
        !strchr(dsn, '=')) {
        return;
    }
    orig = PQconninfoParse(dsn, &errmsg);
    if (!orig) {
        PQfreemem(errmsg);
        return; /* libpq refuses it: no password to leak */
    }
    red = PQconninfoParse(redacted, &errmsg);
    FUZZ_CHECK(red != NULL,
               "libpq parses the DSN but not its redacted form (%s): [%s] -> [%s]",
               errmsg ? errmsg : "?", dsn, redacted);
    for (size_t i = 0; orig[i].keyword; i++) {
        const char *kw = orig[i].keyword, *a = orig[i].val, *b = red[i].val;

        FUZZ_CHECK(red[i].keyword && !strcmp(kw, red[i].keyword),
                   "libpq option tables differ");
        if (is_password_option(kw)) {
            if (a && *a)
                FUZZ_CHECK(b && !strcmp(b, "[redacted]"),
                           "%s not redacted: [%s] -> [%s] (libpq reads %s=\"%s\")",
                           kw, dsn, redacted, kw, b ? b : "(null)");
            else
                FUZZ_CHECK(!b || !*b || !strcmp(b, "[redacted]"),
                           "redaction invented %s: [%s] -> [%s]", kw, dsn, redacted);
        } else {
            FUZZ_CHECK((!a && !b) || (a && b && !strcmp(a, b)),
                       "redaction changed %s from \"%s\" to \"%s\": [%s] -> [%s]",
                       kw, a ? a : "(null)", b ? b : "(null)", dsn, redacted);
        }
    }
    PQconninfoFree(orig);
    PQconninfoFree(red);
}

/* ---- the target ---------------------------------------------------------- */

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ballast_conf_t *conf = ballast_conf_new(), *copy, *again;
    ballast_error_t *err;
    dump_t plain, redacted, copied, reloaded;
    const char *dsn;
    char *text;
    size_t text_len;

    if (!conf)
        abort();
    err = bl_conf_load_text(conf, (const char *)data, size, "fuzz.conf");
    if (err) {
        const char *msg = ballast_error_message(err);
        FUZZ_CHECK(msg && *msg, "empty error message");
        FUZZ_CHECK(!strchr(msg, '\n') && !strchr(msg, '\r'),
                   "multi-line error: %s", msg);
        if (ballast_error_code(err) == BALLAST_ERR_CONFIG)
            FUZZ_CHECK(!strncmp(msg, "fuzz.conf:", 10),
                       "error does not name the file: %s", msg);
        ballast_error_destroy(err);
    }

    /* Whatever was loaded (all of it, or the lines before an error). */
    plain = dump_of(conf, 0);
    redacted = dump_of(conf, 1);
    FUZZ_CHECK(plain.n == redacted.n, "redaction changed the key count");

    if (!(copy = ballast_conf_dup(conf)))
        abort();
    copied = dump_of(copy, 0);
    dump_expect_equal(&plain, &copied, "ballast_conf_dup");
    ballast_conf_destroy(copy);
    dump_free(&copied);

    ballast_error_destroy(ballast_conf_validate(conf));

    text = serialize(&plain, &text_len);
    if (!(again = ballast_conf_new()))
        abort();
    err = bl_conf_load_text(again, text, text_len, "reloaded.conf");
    FUZZ_CHECK(!err, "the dump does not load back: %s\n--- dump:\n%s",
               ballast_error_message(err), text);
    reloaded = dump_of(again, 0);
    dump_expect_equal(&plain, &reloaded, "dump, load, dump");
    ballast_conf_destroy(again);
    dump_free(&reloaded);
    free(text);

    if ((dsn = ballast_conf_get(conf, "handler.postgres.dsn")))
        check_dsn_redaction(dsn, dump_get(&redacted, "handler.postgres.dsn"));

    dump_free(&plain);
    dump_free(&redacted);
    ballast_conf_destroy(conf);
    return 0;
}
