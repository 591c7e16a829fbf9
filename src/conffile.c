/*
 * conffile.c - reads a Java-properties style configuration file.
 *
 * Accepted: `key = value` or `key: value`; `#` and `!` start comment lines;
 * a line ending in an odd number of backslashes continues on the next line
 * (leading white space of the continuation is dropped); `${VAR}` expands an
 * environment variable, `${VAR:-default}` gives a default, `$$` is a literal
 * dollar. An unset variable without default is an error: a secret silently
 * replaced by "" would fail far from its cause.
 *
 * `${file:PATH}` expands to the contents of the file PATH (relative to the
 * current directory), without its trailing newlines: a secret mounted as a
 * file (/run/secrets/...) then never appears on a command line or in the
 * environment, where `ps` and /proc would show it. A file that cannot be read
 * is a configuration error naming the key and the file; the error never
 * quotes the file's contents.
 */
#include "internal.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A growable string. */
typedef struct sbuf {
    char *s;
    size_t len, cap;
    bool oom;
} sbuf_t;

static void sb_add(sbuf_t *sb, const char *p, size_t n)
{
    if (sb->oom)
        return;
    if (sb->len + n + 1 > sb->cap) {
        size_t cap = sb->cap ? sb->cap : 128;
        char *grown;
        while (cap < sb->len + n + 1)
            cap *= 2;
        if (!(grown = realloc(sb->s, cap))) {
            sb->oom = true;
            return;
        }
        sb->s = grown;
        sb->cap = cap;
    }
    memcpy(sb->s + sb->len, p, n);
    sb->len += n;
    sb->s[sb->len] = '\0';
}

/* The largest file ${file:PATH} reads. Secrets, certificates and keys are
 * far smaller; a bigger file is a mistake (a log, a device). */
#define FILE_REF_MAX (1024 * 1024)

/* The "file:" prefix of a ${file:PATH} reference. */
#define FILE_REF "file:"

/* Reads @p fp into @p out, stopping once it holds more than @p max bytes.
 * @returns 0, or the errno of a read error. */
static int read_all(FILE *fp, size_t max, sbuf_t *out)
{
    char buf[8192];
    size_t n;

    while (out->len <= max && (n = fread(buf, 1, sizeof(buf), fp)) > 0)
        sb_add(out, buf, n);
    return ferror(fp) ? (errno ? errno : EIO) : 0;
}

/* Appends the contents of file @p name, less its trailing newlines, to
 * @p out. The errors name @p key (whose value it is) and the file, and never
 * quote what the file holds. */
static ballast_error_t *expand_file(const char *name, sbuf_t *out, const char *key,
                                    const char *path, int lineno)
{
    FILE *fp;
    sbuf_t text = {0};
    const char *problem = NULL;
    int saved;

    if (!*name)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s:%d: %s: ${file:} names no file", path, lineno, key);
    if (!(fp = fopen(name, "rb")))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s:%d: %s: cannot read ${file:%s}: %s", path, lineno, key,
                            name, strerror(errno));
    if ((saved = read_all(fp, FILE_REF_MAX, &text))) {
        problem = "cannot read";
    } else if (text.len > FILE_REF_MAX) {
        problem = "larger than 1 MiB";
    } else if (text.len && memchr(text.s, '\0', text.len)) {
        problem = "contains a NUL byte";
    }
    fclose(fp);
    if (problem) {
        free(text.s);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false, "%s:%d: %s: ${file:%s}: %s%s%s",
                            path, lineno, key, name, problem, saved ? ": " : "",
                            saved ? strerror(saved) : "");
    }
    while (text.len && (text.s[text.len - 1] == '\n' || text.s[text.len - 1] == '\r'))
        text.len--;
    if (text.oom)
        out->oom = true;
    else if (text.len)
        sb_add(out, text.s, text.len);
    free(text.s);
    return NULL;
}

/* Expands ${VAR}, ${VAR:-default} and ${file:PATH} in @p in, the value of
 * @p key. */
static ballast_error_t *expand_env(const char *in, sbuf_t *out, const char *key,
                                   const char *path, int lineno)
{
    for (const char *p = in; *p;) {
        if (p[0] == '$' && p[1] == '$') {
            sb_add(out, "$", 1);
            p += 2;
        } else if (p[0] == '$' && p[1] == '{') {
            const char *end = strchr(p + 2, '}');
            const char *dflt;
            char name[256];
            size_t n;
            const char *val;

            if (!end)
                return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                    "%s:%d: unterminated ${ in value", path,
                                    lineno);
            /* (${file:-x} is the variable "file" with a default.) */
            if (!strncmp(p + 2, FILE_REF, strlen(FILE_REF)) &&
                p[2 + strlen(FILE_REF)] != '-') {
                const char *from = p + 2 + strlen(FILE_REF);
                char *file = strndup(from, (size_t)(end - from));
                ballast_error_t *err;

                if (!file)
                    return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
                err = expand_file(file, out, key, path, lineno);
                free(file);
                if (err)
                    return err;
                p = end + 1;
                continue;
            }
            dflt = strstr(p + 2, ":-");
            if (dflt && dflt > end)
                dflt = NULL;
            n = (size_t)((dflt ? dflt : end) - (p + 2));
            if (n == 0 || n >= sizeof(name))
                return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                    "%s:%d: invalid variable name in ${...}",
                                    path, lineno);
            memcpy(name, p + 2, n);
            name[n] = '\0';
            for (size_t i = 0; i < n; i++)
                if (!isalnum((unsigned char)name[i]) && name[i] != '_')
                    return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                        "%s:%d: invalid variable name \"%s\"",
                                        path, lineno, name);
            val = getenv(name);
            if (val && *val)
                sb_add(out, val, strlen(val));
            else if (dflt)
                sb_add(out, dflt + 2, (size_t)(end - dflt - 2));
            else if (val)
                ; /* set but empty: the user chose "" */
            else
                return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                                    "%s:%d: environment variable %s is not set",
                                    path, lineno, name);
            p = end + 1;
        } else {
            sb_add(out, p, 1);
            p++;
        }
    }
    return NULL;
}

static char *trim(char *s)
{
    char *end;

    while (isspace((unsigned char)*s))
        s++;
    end = s + strlen(s);
    while (end > s && isspace((unsigned char)end[-1]))
        *--end = '\0';
    return s;
}

/* True when the line ends with an odd number of backslashes. */
static bool continues(const char *s, size_t len)
{
    size_t n = 0;
    while (n < len && s[len - 1 - n] == '\\')
        n++;
    return n % 2 == 1;
}

static bool is_comment(const char *line, size_t n)
{
    while (n && isspace((unsigned char)*line)) {
        line++;
        n--;
    }
    return n && (*line == '#' || *line == '!');
}

/* Handles one logical line (continuations already joined). */
static ballast_error_t *apply_line(ballast_conf_t *conf, char *line,
                                   const char *path, int lineno)
{
    char *s = trim(line), *sep, *key, *value;
    sbuf_t expanded = {0};
    ballast_error_t *err;

    if (!*s || *s == '#' || *s == '!')
        return NULL;
    sep = strpbrk(s, "=:");
    if (!sep)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s:%d: expected \"key = value\"", path, lineno);
    *sep = '\0';
    key = trim(s);
    value = trim(sep + 1);
    if (!*key)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s:%d: missing key before '='", path, lineno);
    sb_add(&expanded, "", 0);
    if ((err = expand_env(value, &expanded, key, path, lineno))) {
        free(expanded.s);
        return err;
    }
    if (expanded.oom) {
        free(expanded.s);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    err = ballast_conf_set(conf, key, expanded.s);
    free(expanded.s);
    if (err) {
        /* Say where the bad key came from, keeping the key's own message. */
        ballast_error_t *located = bl_error_new(
            ballast_error_code(err), false, false, "%s:%d: %s", path, lineno,
            ballast_error_message(err));
        ballast_error_destroy(err);
        return located;
    }
    return NULL;
}

ballast_error_t *bl_conf_load_text(ballast_conf_t *conf, const char *text,
                                   size_t len, const char *path)
{
    sbuf_t logical = {0};
    ballast_error_t *err = NULL;
    int lineno = 0, first_line = 1;
    const char *p = text, *end = text + len;

    if (memchr(text, '\0', len))
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s: contains a NUL byte (not a text file)", path);
    while (p < end && !err) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        const char *line = p;

        lineno++;
        if (n && line[n - 1] == '\r')
            n--;
        if (logical.len) { /* a continuation: drop its leading blanks */
            while (n && isspace((unsigned char)*line)) {
                line++;
                n--;
            }
        } else {
            first_line = lineno;
        }
        /* A comment line never continues, whatever it ends with. */
        if (continues(line, n) && !(logical.len == 0 && is_comment(line, n))) {
            sb_add(&logical, line, n - 1);
        } else {
            sb_add(&logical, line, n);
            if (logical.oom)
                break;
            err = apply_line(conf, logical.s, path, first_line);
            logical.len = 0;
        }
        p = nl ? nl + 1 : end;
    }
    if (!err && logical.len && !logical.oom)
        err = apply_line(conf, logical.s, path, first_line);
    if (!err && logical.oom)
        err = bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    free(logical.s);
    return err;
}

ballast_error_t *ballast_conf_load_file(ballast_conf_t *conf, const char *path)
{
    FILE *fp = fopen(path, "rb");
    sbuf_t text = {0};
    ballast_error_t *err;

    if (!fp)
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s: cannot open config file: %s", path,
                            strerror(errno));
    if (read_all(fp, SIZE_MAX, &text)) {
        fclose(fp);
        free(text.s);
        return bl_error_new(BALLAST_ERR_CONFIG, false, false,
                            "%s: cannot read config file", path);
    }
    fclose(fp);
    if (text.oom) {
        free(text.s);
        return bl_error_new(BALLAST_ERR_INTERNAL, false, true, "out of memory");
    }
    err = bl_conf_load_text(conf, text.s ? text.s : "", text.len, path);
    free(text.s);
    return err;
}
