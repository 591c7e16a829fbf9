#!/bin/sh
# lag-alert.sh - an alert hook for `ballast lag --on-change`.
#
# `ballast lag` watches a consumer group from outside (admin API and
# watermarks; it never joins the group, so it cannot cause the rebalances it
# would then report) and judges each partition over a sliding window of
# evaluations: OK, WARN, STALL, STOP, REWIND or ERR. Whenever the group's
# status changes - and on the first evaluation unless it is OK - it runs
# this script, without a shell in between, with:
#
#   BALLAST_LAG_GROUP            the group
#   BALLAST_LAG_STATUS           the new status
#   BALLAST_LAG_PREVIOUS_STATUS  the one before (empty on the first evaluation)
#   BALLAST_LAG_TOPIC            the topics, comma-separated
#   BALLAST_LAG_TOTAL_LAG        messages behind, summed over the partitions
#   BALLAST_LAG_MAX_LAG_SECONDS  age of the oldest unconsumed message (may be empty)
#   BALLAST_LAG_PARTITIONS       topic:partition of the partitions in that status
#
# Use it like this (a window of 10 evaluations 30 s apart: a consumer whose
# committed offsets stand still for 5 minutes while it has lag is STOP,
# however small the lag; one that falls further behind at every evaluation
# is WARN):
#
#   ballast lag -b "$BOOTSTRAP" -g order-processor-group \
#       --watch 30 --window 10 --warn-lag-seconds 300 \
#       --on-change examples/lag-alert.sh
#
# It writes one line to stderr (ballast lag passes it on) and, when
# ALERT_WEBHOOK_URL is set, posts {"text": "..."} to it - the format of
# Slack's and Mattermost's incoming webhooks. Recoveries (back to OK) are
# posted too, so that an alert is never left open.
#
# `ballast demo --scenario lag` shows the statuses and alerts on a stopped
# and restarted consumer, and runs `ballast lag --on-change` once.

set -u

group=${BALLAST_LAG_GROUP:-?}
status=${BALLAST_LAG_STATUS:-?}
previous=${BALLAST_LAG_PREVIOUS_STATUS:-}
lag=${BALLAST_LAG_TOTAL_LAG:-?}
seconds=${BALLAST_LAG_MAX_LAG_SECONDS:-}
partitions=${BALLAST_LAG_PARTITIONS:-}

case $status in
OK) what="recovered" ;;
WARN) what="is falling behind" ;;
STALL) what="has stopped committing" ;;
STOP) what="has made no progress for the whole window" ;;
REWIND) what="moved its committed offsets backwards" ;;
*) what="cannot be measured ($status)" ;;
esac

text="consumer group $group $what: ${previous:-start} -> $status, lag $lag messages"
if [ -n "$seconds" ]; then
    text="$text, oldest unconsumed ${seconds}s"
fi
if [ -n "$partitions" ] && [ "$status" != OK ]; then
    text="$text, partitions $partitions"
fi

echo "lag-alert: $text" >&2

if [ -n "${ALERT_WEBHOOK_URL:-}" ]; then
    # JSON string escaping for the two characters that need it here.
    json=$(printf '%s' "$text" | sed 's/\\/\\\\/g; s/"/\\"/g')
    if ! curl -fsS -m 10 -H 'Content-Type: application/json' \
        -d "{\"text\": \"$json\"}" "$ALERT_WEBHOOK_URL" >/dev/null; then
        echo "lag-alert: could not post to ALERT_WEBHOOK_URL" >&2
        exit 1
    fi
fi
