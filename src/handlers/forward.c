/*
 * forward.c - the `forward` handler: re-emits each message, key, value and
 * headers unchanged, to `output.topic`. The runtime counts the message done
 * only when the broker has acknowledged the copy.
 */
#include "handlers.h"


static ballast_outcome_t forward_handle(void *state, const ballast_message_t *msg,
                                        ballast_result_t *res)
{
    size_t klen, vlen, count = ballast_message_header_count(msg);
    const void *key = ballast_message_key(msg, &klen);
    const void *value = ballast_message_value(msg, &vlen);

    (void)state;
    if (ballast_result_emit(res, NULL, key, klen, value, vlen))
        goto oom;
    for (size_t i = 0; i < count; i++) {
        const char *name;
        const void *hv;
        size_t hlen;
        if (ballast_message_header(msg, i, &name, &hv, &hlen) == 0 &&
            ballast_result_emit_header(res, name, hv, hlen))
            goto oom;
    }
    return BALLAST_OUTCOME_OK;
oom:
    ballast_result_set_error(res, "out of memory while copying the message");
    return BALLAST_OUTCOME_RETRY;
}

const ballast_handler_t bl_handler_forward = {
    BALLAST_HANDLER_ABI_VERSION, "forward", NULL, forward_handle, NULL, NULL};
