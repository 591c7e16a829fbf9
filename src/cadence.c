/*
 * cadence.c - when an at-least-once commit is due (see cadence.h).
 */
#include "cadence.h"

bool bl_cadence_due(const bl_cadence_t *c, int64_t now, bool idle)
{
    return now >= c->next_ms || (idle && now >= c->last_ms + c->interval_ms / 10);
}

void bl_cadence_sent(bl_cadence_t *c, int64_t now)
{
    c->last_ms = now;
    c->next_ms = now + c->interval_ms;
}
