/*
 * words.c - a command line split into words like a shell would (words.h).
 */
#include "words.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

static int blank(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

void bl_words_free(char **argv)
{
    if (argv) {
        free(argv[0]); /* one buffer holds every word */
        free(argv);
    }
}

int bl_words_split(const char *cmd, char ***argvp, char *errbuf, size_t errsize)
{
    size_t n = strlen(cmd), argc = 0;
    /* Output never outgrows input: every word consumes at least one
     * character, and its NUL takes the place of a separator or quote. */
    char *buf = malloc(n + 1), *o = buf;
    char **argv = calloc(n / 2 + 2, sizeof(*argv));
    const char *p = cmd;

    if (!buf || !argv) {
        bl_fmt(errbuf, errsize, "out of memory");
        goto fail;
    }
    while (*p) {
        while (blank(*p))
            p++;
        if (!*p)
            break;
        argv[argc++] = o;
        while (*p && !blank(*p)) {
            char q = *p;
            if (q == '\'' || q == '"') {
                for (p++; *p && *p != q; p++) {
                    if (q == '"' && *p == '\\' && p[1] && strchr("\"\\$`", p[1]))
                        p++;
                    *o++ = *p;
                }
                if (!*p) {
                    bl_fmt(errbuf, errsize, "unterminated %s quote",
                           q == '"' ? "double" : "single");
                    goto fail;
                }
                p++;
            } else if (q == '\\' && p[1]) {
                *o++ = p[1];
                p += 2;
            } else {
                *o++ = *p++;
            }
        }
        *o++ = '\0';
    }
    if (!argc) {
        bl_fmt(errbuf, errsize, "no command given");
        goto fail;
    }
    argv[argc] = NULL; /* argv[0] == buf, as bl_words_free() expects */
    *argvp = argv;
    return 0;
fail:
    free(buf);
    free(argv);
    return -1;
}
