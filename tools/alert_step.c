/*
 * alert_step.c - when a group's alert fires, resolves and notifies (see
 * alert.h): pure, the caller gives the clock; tests/unit/test_alert_step.c
 * runs it through tables of evaluations.
 */
#include "alert.h"

alert_kind_t alert_step(alert_state_t *s, bool cond, int64_t now_ms, unsigned long *suppressed)
{
    const alert_rule_t *r = s->rule;
    bool changed = false;
    alert_kind_t want;

    *suppressed = 0;
    if (cond) {
        if (!s->since_ms)
            s->since_ms = now_ms;
        if (!s->firing && now_ms - s->since_ms >= (int64_t)(r->for_s * 1000)) {
            s->firing = true;
            s->fired_ms = s->since_ms;
            changed = true;
        }
    } else {
        s->since_ms = 0;
        if (s->firing) {
            s->firing = false;
            changed = true;
        }
    }
    want = s->firing ? ALERT_FIRING : ALERT_RESOLVED;
    if (s->sent_ms && now_ms - s->sent_ms < (int64_t)(r->rate_limit_s * 1000)) {
        if (changed)
            s->suppressed++;
        return ALERT_NONE;
    }
    /* Past the interval: a change, or a state that differs from the last
     * one notified (its change was held back). */
    if (!changed && (!s->suppressed || want == s->sent))
        return ALERT_NONE;
    if (want == ALERT_RESOLVED && s->sent != ALERT_FIRING)
        return ALERT_NONE; /* nothing announced to resolve */
    /* A held-back change sent now is not counted as suppressed. */
    *suppressed = changed ? s->suppressed : s->suppressed - 1;
    s->suppressed = 0;
    s->sent = want;
    s->sent_ms = now_ms;
    return want;
}
