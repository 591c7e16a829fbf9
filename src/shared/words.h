/*
 * words.h - a command line split into words the way a POSIX shell splits a
 * simple command, without running a shell: `handler.exec.command` (the exec
 * handler, and `ballast check`'s look at it) and `ballast lag --on-change`.
 * Pure: libc only.
 */
#ifndef BALLAST_WORDS_H
#define BALLAST_WORDS_H

#include <stddef.h>

/**
 * Splits @p cmd into words with no expansion of any kind: blanks (space,
 * tab, newline) separate words, '...' is literal, "..." is literal but for
 * \" \\ \$ and \`, and a backslash outside quotes takes the next character.
 * @returns 0 with a NULL-terminated *argvp (free it with bl_words_free()),
 * or -1 with the reason in @p errbuf ("unterminated single quote",
 * "unterminated double quote", "no command given"), for the caller to
 * prefix with what it split.
 */
int bl_words_split(const char *cmd, char ***argvp, char *errbuf, size_t errsize);

/** Releases what bl_words_split() made. NULL is a no-op. */
void bl_words_free(char **argv);

#endif
