/*
 * cmdline.c - what `ballast check` makes of `handler.exec.command`, split
 * into words as the exec handler splits it (shared/words.c): the program
 * must be found and executable as posix_spawnp() would find it, and an
 * argument that names a script file must exist.
 *
 * The script rule, and why it is narrow: a false "missing" error would stop
 * a deploy that works, which is worse than no check. So an argument counts
 * as a script only when it looks like nothing but a file name with a
 * script's extension (.js .mjs .cjs .ts .py .rb .pl .php .sh .lua .jar), and
 * not like an option or inline code (no leading '-', no blanks, quotes,
 * brackets, '=', ';' or '$'): `node /srv/handler.js` and `python3
 * handler.py` are checked, `python3 -c "import x"` and `node
 * --require=./x.js h.js`'s first argument are not. Relative names are
 * resolved against the current directory, as the child started by `run`
 * resolves them; the error says which directory that was.
 */
#include "check.h"
#include "shared/words.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* 0 when @p path is an executable regular file, else an errno value. */
static int executable(const char *path)
{
    struct stat sb;

    if (stat(path, &sb))
        return errno;
    if (!S_ISREG(sb.st_mode))
        return EACCES;
    return access(path, X_OK) ? errno : 0;
}

/* Finds @p file as glibc's posix_spawnp() does: as given when it contains a
 * '/', else in each PATH entry in turn (an empty entry is the current
 * directory; without PATH, /bin:/usr/bin). @returns 0, or ENOENT, or
 * EACCES when only files we may not execute were found. */
static int find_program(const char *file)
{
    const char *path = getenv("PATH");
    char full[PATH_MAX];
    int err = ENOENT;

    if (strchr(file, '/'))
        return executable(file);
    for (const char *p = path ? path : "/bin:/usr/bin";;) {
        size_t n = strcspn(p, ":");
        int e;
        bl_fmt(full, sizeof(full), "%.*s%s%s", (int)n, p, n ? "/" : "", file);
        if (!(e = executable(full)))
            return 0;
        if (e == EACCES)
            err = EACCES;
        if (!p[n])
            return err;
        p += n + 1;
    }
}

/* See the rule at the top of this file. */
static bool names_script(const char *arg)
{
    static const char *const exts[] = {".js", ".mjs", ".cjs", ".ts", ".py", ".rb",
                                       ".pl", ".php", ".sh",  ".lua", ".jar"};
    const char *dot = strrchr(arg, '.');

    if (arg[0] == '-' || !dot || dot == arg || dot[-1] == '/' ||
        strpbrk(arg, " \t\n'\"`()[]{}<>=;$|&*?"))
        return false;
    for (size_t i = 0; i < sizeof(exts) / sizeof(exts[0]); i++)
        if (!strcmp(dot, exts[i]))
            return true;
    return false;
}

/* " (relative to DIR)" for a relative path, else "". */
static void relative_note(const char *path, char *out, size_t size)
{
    char cwd[PATH_MAX];

    if (path[0] == '/' || !getcwd(cwd, sizeof(cwd)))
        out[0] = '\0';
    else
        bl_fmt(out, size, " (relative to %s)", cwd);
}

/* Why the command could not run, or 0 with nothing in @p errbuf. */
static int check_argv(char **argv, char *errbuf, size_t errsize)
{
    char note[PATH_MAX + 32];
    int err = find_program(argv[0]);

    if (err) {
        relative_note(argv[0], note, sizeof(note));
        if (!strchr(argv[0], '/'))
            bl_fmt(errbuf, errsize, "handler.exec.command: cannot run '%s': %s in PATH "
                                    "(%s)",
                   argv[0], err == ENOENT ? "not found" : "not executable",
                   getenv("PATH") ? getenv("PATH") : "/bin:/usr/bin");
        else
            bl_fmt(errbuf, errsize, "handler.exec.command: cannot run '%s': %s%s", argv[0],
                   err == EACCES ? "not an executable file" : strerror(err), note);
        return BALLAST_ERR_CONFIG;
    }
    for (char **arg = argv + 1; *arg; arg++) {
        if (!names_script(*arg) || !access(*arg, R_OK))
            continue;
        err = errno;
        relative_note(*arg, note, sizeof(note));
        bl_fmt(errbuf, errsize, "handler.exec.command: script '%s': %s%s", *arg,
               strerror(err), note);
        return BALLAST_ERR_CONFIG;
    }
    return 0;
}

void bl_exec_check(const ballast_conf_t *conf, bl_check_t *ck)
{
    char err[PATH_MAX + 512] = "", why[256];
    char **argv;
    int rc = BALLAST_ERR_CONFIG;

    if (bl_words_split(bl_conf_str(conf, "handler.exec.command"), &argv, why, sizeof(why))) {
        bl_fmt(err, sizeof(err), "handler.exec.command: %s", why);
    } else {
        rc = check_argv(argv, err, sizeof(err));
        bl_words_free(argv);
    }
    bl_check_report(ck, "exec command", rc, "%s", err);
}
