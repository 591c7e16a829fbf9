/*
 * cmdline.h - `handler.exec.command`: splitting it into arguments the way
 * the exec handler starts it, and `ballast check`'s look at the program it
 * names. Internal; no Kafka.
 */
#ifndef BALLAST_CMDLINE_H
#define BALLAST_CMDLINE_H

#include <stddef.h>

/**
 * Splits @p cmd like a shell would split a simple command, without any
 * expansion: blanks separate words, '...' is literal, "..." is literal but
 * for \" and \\, and a backslash outside quotes takes the next character.
 * @returns 0 with a NULL-terminated *argvp (free it with bl_cmdline_free()),
 * or -1 with a reason naming handler.exec.command in @p errbuf.
 */
int bl_cmdline_split(const char *cmd, char ***argvp, char *errbuf, size_t errsize);

/** Releases what bl_cmdline_split() made. NULL is a no-op. */
void bl_cmdline_free(char **argv);

#endif
