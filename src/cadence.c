/*
 * cadence.c - when an at-least-once commit is due (see cadence.h).
 */
#include "cadence.h"

bl_cadence_t bl_cadence_init(int64_t set_ms, bool message_bound)
{
    bl_cadence_t c = {.interval_ms = set_ms >= 0 ? set_ms : BL_CADENCE_INTERVAL_MS};

    if (set_ms < 0 && message_bound)
        c.max_messages = BL_CADENCE_MAX_MESSAGES;
    return c;
}

bool bl_cadence_due(const bl_cadence_t *c, int64_t now, bool idle, uint64_t finished)
{
    return now >= c->next_ms || (c->max_messages && finished >= c->max_messages) ||
           (idle && now >= c->last_ms + c->interval_ms / 10);
}

void bl_cadence_sent(bl_cadence_t *c, int64_t now)
{
    c->last_ms = now;
    c->next_ms = now + c->interval_ms;
}
