/*
 * handlers.h - the built-in handlers. Each is an ordinary ballast_handler_t
 * (the same ABI plugins implement) whose init reads its keys from
 * params->conf. Internal.
 */
#ifndef BALLAST_HANDLERS_H
#define BALLAST_HANDLERS_H

#include "../internal.h"

extern const ballast_handler_t bl_handler_sqlite;   /* sqlite.c */
extern const ballast_handler_t bl_handler_postgres; /* postgres.c */
extern const ballast_handler_t bl_handler_exec;     /* exec.c */
extern const ballast_handler_t bl_handler_plugin;   /* plugin.c */
extern const ballast_handler_t bl_handler_forward;  /* forward.c */

/** The built-in handler called @p name (the `handler` key), or NULL. */
const ballast_handler_t *bl_handler_by_name(const char *name);

#endif
