/* exec.c - placeholder until the exec handler lands. */
#include "handlers.h"

static int exec_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    (void)statep;
    (void)params;
    bl_fmt(errbuf, errsize, "handler exec: not implemented yet");
    return BALLAST_ERR_CONFIG;
}

const ballast_handler_t bl_handler_exec = {
    BALLAST_HANDLER_ABI_VERSION, "exec", exec_init, NULL, NULL, NULL};
