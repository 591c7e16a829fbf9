/* plugin.c - placeholder until the plugin handler lands. */
#include "handlers.h"

static int plugin_init(void **statep, const ballast_handler_params_t *params,
                     char *errbuf, size_t errsize)
{
    (void)statep;
    (void)params;
    bl_fmt(errbuf, errsize, "handler plugin: not implemented yet");
    return BALLAST_ERR_CONFIG;
}

const ballast_handler_t bl_handler_plugin = {
    BALLAST_HANDLER_ABI_VERSION, "plugin", plugin_init, NULL, NULL, NULL};
