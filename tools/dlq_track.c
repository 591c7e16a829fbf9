/*
 * dlq_track.c - the bookkeeping of `ballast dlq` (see dlq_track.h): an
 * open-addressing index of byte strings, the originals a DLQ holds copies
 * of, and the commit positions of a replay.
 */
#include "dlq_track.h"

#include "util.h"

#include <stdlib.h>
#include <string.h>

/* ---- distinct byte strings ------------------------------------------------ */

typedef struct slot {
    size_t number; /* the key's number + 1; 0: empty */
    uint64_t hash;
} slot_t;

struct dlq_index {
    slot_t *slots; /* a power of two of them, at most half full */
    size_t cap;
    char **keys;
    size_t *lens;
    size_t count, keys_cap;
};

dlq_index_t *dlq_index_new(void)
{
    return calloc(1, sizeof(dlq_index_t));
}

void dlq_index_free(dlq_index_t *ix)
{
    if (!ix)
        return;
    for (size_t i = 0; i < ix->count; i++)
        free(ix->keys[i]);
    free(ix->keys);
    free(ix->lens);
    free(ix->slots);
    free(ix);
}

/* The slot of @p key: where it is, or the empty one where it would go. */
static size_t probe(const dlq_index_t *ix, const void *key, size_t len, uint64_t hash)
{
    size_t j = hash & (ix->cap - 1);

    for (;; j = (j + 1) & (ix->cap - 1)) {
        const slot_t *s = &ix->slots[j];
        size_t n = s->number - 1;
        if (!s->number ||
            (s->hash == hash && ix->lens[n] == len && !memcmp(ix->keys[n], key, len)))
            return j;
    }
}

static bool grow_slots(dlq_index_t *ix)
{
    size_t cap = ix->cap ? ix->cap * 2 : 64;
    slot_t *slots = calloc(cap, sizeof(*slots));

    if (!slots)
        return false;
    for (size_t i = 0; i < ix->cap; i++) {
        size_t j;
        if (!ix->slots[i].number)
            continue;
        for (j = ix->slots[i].hash & (cap - 1); slots[j].number; j = (j + 1) & (cap - 1))
            ;
        slots[j] = ix->slots[i];
    }
    free(ix->slots);
    ix->slots = slots;
    ix->cap = cap;
    return true;
}

static bool grow_keys(dlq_index_t *ix)
{
    size_t cap = ix->keys_cap ? ix->keys_cap * 2 : 64;
    char **keys = realloc(ix->keys, cap * sizeof(*keys));
    size_t *lens;

    if (!keys)
        return false;
    ix->keys = keys;
    if (!(lens = realloc(ix->lens, cap * sizeof(*lens))))
        return false;
    ix->lens = lens;
    ix->keys_cap = cap;
    return true;
}

size_t dlq_index_add(dlq_index_t *ix, const void *key, size_t len, bool *added)
{
    uint64_t hash = bl_fnv1a(key, len, BL_FNV1A_SEED);
    size_t j;
    char *copy;

    *added = false;
    if ((ix->count + 1) * 2 > ix->cap && !grow_slots(ix))
        return SIZE_MAX;
    j = probe(ix, key, len, hash);
    if (ix->slots[j].number)
        return ix->slots[j].number - 1;
    if (ix->count == ix->keys_cap && !grow_keys(ix))
        return SIZE_MAX;
    if (!(copy = malloc(len + 1)))
        return SIZE_MAX;
    memcpy(copy, key, len);
    copy[len] = '\0';
    ix->keys[ix->count] = copy;
    ix->lens[ix->count] = len;
    ix->slots[j].number = ++ix->count;
    ix->slots[j].hash = hash;
    *added = true;
    return ix->count - 1;
}

size_t dlq_index_find(const dlq_index_t *ix, const void *key, size_t len)
{
    size_t j;

    if (!ix->cap)
        return SIZE_MAX;
    j = probe(ix, key, len, bl_fnv1a(key, len, BL_FNV1A_SEED));
    return ix->slots[j].number ? ix->slots[j].number - 1 : SIZE_MAX;
}

const char *dlq_index_key(const dlq_index_t *ix, size_t n, size_t *len)
{
    *len = ix->lens[n];
    return ix->keys[n];
}

size_t dlq_index_count(const dlq_index_t *ix)
{
    return ix->count;
}

/* ---- originals and their copies ------------------------------------------ */

struct dlq_origins {
    dlq_index_t *ix;
    dlq_origin_t *entries; /* by the index's numbers */
    size_t cap;
};

dlq_origins_t *dlq_origins_new(void)
{
    dlq_origins_t *o = calloc(1, sizeof(*o));

    if (o && !(o->ix = dlq_index_new())) {
        free(o);
        return NULL;
    }
    return o;
}

void dlq_origins_free(dlq_origins_t *o)
{
    if (!o)
        return;
    dlq_index_free(o->ix);
    free(o->entries);
    free(o);
}

/* The key of an original: the topic, a NUL, then partition and offset. */
static size_t origin_key(char *buf, size_t size, const char *topic, int32_t partition,
                         int64_t offset)
{
    size_t tlen = strlen(topic);

    if (tlen + 1 + sizeof(partition) + sizeof(offset) > size)
        return 0;
    memcpy(buf, topic, tlen + 1);
    memcpy(buf + tlen + 1, &partition, sizeof(partition));
    memcpy(buf + tlen + 1 + sizeof(partition), &offset, sizeof(offset));
    return tlen + 1 + sizeof(partition) + sizeof(offset);
}

/* Whether copy @p a is newer than @p b (see dlq_origins_add()). */
static bool newer(const dlq_copy_t *a, const dlq_copy_t *b)
{
    if (a->replays != b->replays)
        return a->replays > b->replays;
    if (a->failed_at_ms != b->failed_at_ms)
        return a->failed_at_ms > b->failed_at_ms;
    if (a->partition != b->partition)
        return a->partition > b->partition;
    return a->offset > b->offset;
}

bool dlq_origins_add(dlq_origins_t *o, const char *topic, int32_t partition,
                     int64_t offset, const dlq_copy_t *copy, bool selected)
{
    char key[512];
    size_t len = origin_key(key, sizeof(key), topic, partition, offset), n;
    dlq_origin_t *e;
    bool added;

    if (!len)
        return true; /* no topic is that long: nothing to match it with */
    if ((n = dlq_index_add(o->ix, key, len, &added)) == SIZE_MAX)
        return false;
    if (n >= o->cap) {
        dlq_origin_t *grown = bl_grow(o->entries, &o->cap, n, sizeof(*grown), 64);
        if (!grown)
            return false;
        o->entries = grown;
    }
    e = &o->entries[n];
    if (added)
        memset(e, 0, sizeof(*e));
    if (!e->copies++ || copy->replays > e->max_replays)
        e->max_replays = copy->replays;
    if (selected && (!e->chosen_set || newer(copy, &e->chosen))) {
        e->chosen = *copy;
        e->chosen_set = true;
    }
    return true;
}

const dlq_origin_t *dlq_origins_find(const dlq_origins_t *o, const char *topic,
                                     int32_t partition, int64_t offset)
{
    char key[512];
    size_t len = origin_key(key, sizeof(key), topic, partition, offset), n;

    if (!len || (n = dlq_index_find(o->ix, key, len)) == SIZE_MAX)
        return NULL;
    return &o->entries[n];
}

/* ---- commit positions ----------------------------------------------------- */

enum { P_WAITING, P_DONE, P_FAILED };

typedef struct pending {
    int64_t offset;
    int state;
} pending_t;

/* One partition: the records sent (or held) and not yet settled, in offset
 * order from q[head]; next is the offset after the last one noted. */
typedef struct part {
    bool started;
    int64_t next, held_at;
    pending_t *q;
    size_t head, n, cap;
} part_t;

struct dlq_progress {
    int32_t nparts;
    part_t *parts;
};

dlq_progress_t *dlq_progress_new(int32_t partitions)
{
    dlq_progress_t *p = calloc(1, sizeof(*p));

    if (!p || !(p->parts = calloc(partitions > 0 ? (size_t)partitions : 1,
                                  sizeof(*p->parts)))) {
        free(p);
        return NULL;
    }
    p->nparts = partitions;
    for (int32_t i = 0; i < partitions; i++)
        p->parts[i].held_at = -1;
    return p;
}

void dlq_progress_free(dlq_progress_t *p)
{
    if (!p)
        return;
    for (int32_t i = 0; i < p->nparts; i++)
        free(p->parts[i].q);
    free(p->parts);
    free(p);
}

static part_t *part_of(const dlq_progress_t *p, int32_t partition)
{
    return partition >= 0 && partition < p->nparts ? &p->parts[partition] : NULL;
}

void dlq_progress_start(dlq_progress_t *p, int32_t partition, int64_t offset)
{
    part_t *pt = part_of(p, partition);

    if (pt) {
        pt->started = true;
        pt->next = offset;
    }
}

static void note(part_t *pt, int64_t offset)
{
    if (offset + 1 > pt->next)
        pt->next = offset + 1;
}

void dlq_progress_settled(dlq_progress_t *p, int32_t partition, int64_t offset)
{
    part_t *pt = part_of(p, partition);

    if (pt)
        note(pt, offset);
}

static bool push(part_t *pt, int64_t offset, int state)
{
    if (pt->n == pt->cap) {
        /* Reuse the settled front before growing. */
        if (pt->head > 0 && pt->head >= pt->n / 2) {
            memmove(pt->q, pt->q + pt->head, (pt->n - pt->head) * sizeof(*pt->q));
            pt->n -= pt->head;
            pt->head = 0;
        } else {
            pending_t *grown = bl_grow(pt->q, &pt->cap, pt->n, sizeof(*grown), 64);
            if (!grown)
                return false;
            pt->q = grown;
        }
    }
    pt->q[pt->n].offset = offset;
    pt->q[pt->n].state = state;
    pt->n++;
    note(pt, offset);
    if (state == P_FAILED && (pt->held_at < 0 || offset < pt->held_at))
        pt->held_at = offset;
    return true;
}

bool dlq_progress_sent(dlq_progress_t *p, int32_t partition, int64_t offset)
{
    part_t *pt = part_of(p, partition);

    return !pt || push(pt, offset, P_WAITING);
}

bool dlq_progress_hold(dlq_progress_t *p, int32_t partition, int64_t offset)
{
    part_t *pt = part_of(p, partition);

    return !pt || push(pt, offset, P_FAILED);
}

void dlq_progress_acked(dlq_progress_t *p, int32_t partition, int64_t offset, bool ok)
{
    part_t *pt = part_of(p, partition);
    size_t lo, hi;

    if (!pt)
        return;
    /* Binary search: the queue is in offset order. */
    for (lo = pt->head, hi = pt->n; lo < hi;) {
        size_t mid = lo + (hi - lo) / 2;
        if (pt->q[mid].offset < offset)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == pt->n || pt->q[lo].offset != offset || pt->q[lo].state != P_WAITING)
        return;
    pt->q[lo].state = ok ? P_DONE : P_FAILED;
    if (!ok && (pt->held_at < 0 || offset < pt->held_at))
        pt->held_at = offset;
    while (pt->head < pt->n && pt->q[pt->head].state == P_DONE)
        pt->head++;
    if (pt->head == pt->n)
        pt->head = pt->n = 0;
}

void dlq_progress_end(dlq_progress_t *p, int32_t partition, int64_t end)
{
    part_t *pt = part_of(p, partition);

    if (pt && end > pt->next)
        pt->next = end;
}

int64_t dlq_progress_position(const dlq_progress_t *p, int32_t partition)
{
    const part_t *pt = part_of(p, partition);

    if (!pt || !pt->started)
        return -1;
    return pt->head < pt->n ? pt->q[pt->head].offset : pt->next;
}

int64_t dlq_progress_held_at(const dlq_progress_t *p, int32_t partition)
{
    const part_t *pt = part_of(p, partition);

    return pt ? pt->held_at : -1;
}
