/* postgres.c - placeholder until the postgres handler lands. */
#include "handlers.h"

static int postgres_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    (void)statep;
    (void)params;
    bl_fmt(errbuf, errsize, "handler postgres: not implemented yet");
    return BALLAST_ERR_CONFIG;
}

const ballast_handler_t bl_handler_postgres = {
    BALLAST_HANDLER_ABI_VERSION, "postgres", postgres_init, NULL, NULL, NULL};
