/*
 * latency_head.h - the head of the latency scenario's values, written by
 * bench_kafka latency-produce and read back by bench_kafka latency-read and
 * the no-op plugin (latency_file): "%012llu %019lld", the record's index and
 * its produce time (CLOCK_REALTIME, ns), LATENCY_HEAD_LEN bytes.
 */
#ifndef BENCH_LATENCY_HEAD_H
#define BENCH_LATENCY_HEAD_H

#include <stdlib.h>
#include <string.h>

#define LATENCY_HEAD_FMT "%012llu %019lld"
#define LATENCY_HEAD_LEN 32

/* Parses the head of @p value (@p len bytes): 0 with the index in @p i and
 * the produce time in @p ns, or -1 when the value does not start with one. */
static inline int latency_head_parse(const void *value, size_t len, unsigned long long *i,
                                     long long *ns)
{
    char head[LATENCY_HEAD_LEN + 1], *end;

    if (!value || len < LATENCY_HEAD_LEN)
        return -1;
    memcpy(head, value, LATENCY_HEAD_LEN);
    head[LATENCY_HEAD_LEN] = 0;
    if (head[12] != ' ')
        return -1;
    head[12] = 0;
    *i = strtoull(head, &end, 10);
    if (*end)
        return -1;
    *ns = strtoll(head + 13, &end, 10);
    return *end ? -1 : 0;
}

#endif
