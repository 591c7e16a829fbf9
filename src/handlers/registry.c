/*
 * registry.c - the built-in handlers by name, and which of them hold
 * exactly-once transactions (see handlers.h).
 */
#include "sqltxn.h"

#include <string.h>

const ballast_handler_t *bl_handler_by_name(const char *name)
{
    static const ballast_handler_t *const all[] = {
        &bl_handler_sqlite, &bl_handler_postgres, &bl_handler_exec,
        &bl_handler_plugin, &bl_handler_forward};

    for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
        if (!strcmp(all[i]->name, name))
            return all[i];
    return NULL;
}

const bl_dbtxn_ops_t *bl_handler_dbtxn_ops(const ballast_handler_t *handler)
{
    if (handler == &bl_handler_sqlite)
        return &bl_sqlite_dbtxn_ops;
    if (handler == &bl_handler_postgres)
        return &bl_postgres_dbtxn_ops;
    return NULL;
}
