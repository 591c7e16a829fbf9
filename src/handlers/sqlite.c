/* sqlite.c - placeholder until the sqlite handler lands. */
#include "handlers.h"

static int sqlite_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    (void)statep;
    (void)params;
    bl_fmt(errbuf, errsize, "handler sqlite: not implemented yet");
    return BALLAST_ERR_CONFIG;
}

const ballast_handler_t bl_handler_sqlite = {
    BALLAST_HANDLER_ABI_VERSION, "sqlite", sqlite_init, NULL, NULL, NULL};
