"""bench/bench_curves.py - the curve and latency scenarios of bench/run.

Loaded by bench/run, which hands over its own namespace (`register`): the
helpers (make_topic, compare_rounds, measure, ...) are bench/run's. See
bench/README.md ("Curves" and "Scenario latency").

  curve-size        message size 10 B .. 100 KB: msgs/s and MB/s, ballast and
                    raw-librdkafka
  curve-partitions  1 .. 1,200 partitions of one topic: msgs/s and peak RSS
  curve-workers     concurrency 1 .. 32 with a 1 ms handler, ordering = key,
                    against the ideal concurrency x 1000 msgs/s
  latency           produce time to handler return (and to visibility) at a
                    fixed rate, at-least-once and exactly-once
"""

import os
import statistics
import subprocess
import time

R = None  # bench/run's namespace (register)

SIZES = (10, 1000, 10_000, 100_000)
PARTITION_COUNTS = (1, 12, 120, 1200)
WORKER_COUNTS = (1, 2, 4, 8, 32)
WORKER_SLEEP_US = 1000
WORKER_KEYS = 1000
LATENCY_RATES = (5000, 50_000)
LATENCY_PARTITIONS = 4
LATENCY_VALUE_BYTES = 100
# The paced producer's linger.ms: 1 ms, so that at 50,000 msgs/s a request
# carries ~50 records; with 0 every record is a request of its own, and on a
# loaded 2-core machine the broker fell seconds behind on those (measured:
# 2.5 s from produce to append at 5,000 msgs/s, 1 ms from append to handler).
LATENCY_LINGER_MS = 1
ALO_P99_GOAL_MS = 10       # at-least-once, handler return, at 5,000 msgs/s
EOS_VISIBLE_SLACK_MS = 50  # exactly-once visible p99 <= transaction.interval.ms + this


def register(ns):
    """Called by bench/run with its namespace; returns the scenarios."""
    global R
    R = ns
    return {"curve-size": scenario_curve_size,
            "curve-partitions": scenario_curve_partitions,
            "curve-workers": scenario_curve_workers,
            "latency": scenario_latency}


def curve_runs(ctx):
    return R.env_int("BENCH_CURVE_RUNS", 3)


def curve_point(ctx, scenario, point_key, point, systems, topic, n, table):
    """Runs one point of a curve (its own work dir, so that markers and logs
    of different points do not meet) and labels its rows."""
    rows = R.compare_rounds(ctx, f"{scenario}-{point}", systems, topic, n, table,
                            runs=curve_runs(ctx))
    for r in rows:
        r["scenario"] = scenario
        r[point_key] = point
    by = {r["system"]: r for r in rows}
    raw = by.get("raw-librdkafka")
    for r in rows:
        if raw and r is not raw:
            r["ratio_to_raw"] = round(r["msgs_per_sec"] / raw["msgs_per_sec"], 3)
            if raw.get("cpu_seconds_per_million"):
                r["cpu_ratio_to_raw"] = round(r["cpu_seconds_per_million"] /
                                              raw["cpu_seconds_per_million"], 3)
    return rows


def curve_systems(ctx):
    return R.selected(ctx, ["ballast", "raw-librdkafka"])


# ---------------------------------------------------------------- curve-size

def size_messages(ctx, size):
    """Message count of a size point: the drain count, fewer for big values
    so that a topic holds at most BENCH_CURVE_BYTES (500 MB; 40 MB quick)."""
    budget = R.env_int("BENCH_CURVE_BYTES", 40_000_000 if ctx.quick else 500_000_000)
    most = R.env_int("BENCH_CURVE_MESSAGES", 200_000 if ctx.quick else 2_000_000)
    return max(100, min(most, budget // size))


def scenario_curve_size(ctx):
    systems = curve_systems(ctx)
    rows = []
    if not systems:
        return rows
    saved = ctx.value_bytes
    try:
        for size in SIZES:
            n = size_messages(ctx, size)
            ctx.value_bytes = size
            topic = R.make_topic(ctx, f"bench-size{size}", n, ctx.partitions)
            if "ballast" in systems:
                R.check_ballast_via(ctx, topic)
            for r in curve_point(ctx, "curve-size", "value_bytes", size, systems, topic, n,
                                 R.SYSTEMS):
                r["mb_per_sec"] = round(r["msgs_per_sec"] * size / 1e6, 2)
                rows.append(r)
            R.drop_topic(ctx, topic)
    finally:
        ctx.value_bytes = saved
    return rows


# ---------------------------------------------------------------- curve-partitions

def scenario_curve_partitions(ctx):
    systems = curve_systems(ctx)
    n = R.env_int("BENCH_CURVE_PARTITION_MESSAGES", 120_000 if ctx.quick else 600_000)
    rows = []
    for parts in PARTITION_COUNTS if systems else ():
        # bench_kafka create-topic: no JVM start-up, and up to 60 s for the
        # leaders of 1,200 partitions.
        topic = R.fill_topic(ctx, R.create_topic(ctx, f"bench-parts{parts}", parts), n)
        if "ballast" in systems:
            R.check_ballast_via(ctx, topic)
        rows += curve_point(ctx, "curve-partitions", "topic_partitions", parts, systems,
                            topic, n, R.SYSTEMS)
        R.drop_topic(ctx, topic)
    add_rss_slopes(rows)
    return rows


def slope_kib(pts):
    """The least-squares slope of (partitions, MiB) points, in KiB per
    partition (bench/plots draws it too)."""
    mx = sum(x for x, _ in pts) / len(pts)
    my = sum(y for _, y in pts) / len(pts)
    return 1024 * (sum((x - mx) * (y - my) for x, y in pts) /
                   sum((x - mx) ** 2 for x, _ in pts))


def add_rss_slopes(rows):
    """Peak RSS per assigned partition: the least-squares slope of peak RSS
    over the partition count, per system, in KiB (the same data in every
    topic, so what grows is what each partition costs)."""
    for system in {r["system"] for r in rows}:
        pts = [(r["topic_partitions"], r["peak_rss_mb"]) for r in rows
               if r["system"] == system]
        if len(pts) < 2:
            continue
        kib = round(slope_kib(pts), 1)
        for r in rows:
            if r["system"] == system:
                r["rss_kib_per_partition"] = kib


# ---------------------------------------------------------------- curve-workers

def worker_systems(c):
    return {"ballast": R.make_sys_noop(f"workers{c}", [f"sleep_us={WORKER_SLEEP_US}"],
                                       ["ordering=key", f"concurrency={c}"])}


def one_core_cap(ctx):
    for r in ctx.rows_so_far:
        if r["scenario"] == "drain" and r["system"] == "ballast":
            return r["msgs_per_sec"], "drain's ballast"
    return None, None


def sleep_ms(target_s=0.001, n=300):
    """What a 1 ms sleep takes on this machine now (the handler's nanosleep
    overshoots by the timer slack and the wake-up): the mean of n sleeps."""
    t0 = time.monotonic()
    for _ in range(n):
        time.sleep(target_s)
    return (time.monotonic() - t0) / n * 1000


def scenario_curve_workers(ctx):
    per_worker = R.env_int("BENCH_CURVE_WORKER_MESSAGES", 1000 if ctx.quick else 2000)
    cap, cap_from = one_core_cap(ctx)
    slept = round(sleep_ms(), 3)
    R.log(f"curve-workers: a 1 ms sleep takes {slept} ms here")
    rows = []
    for c in WORKER_COUNTS:
        n = per_worker * c
        point = []
        if ctx.systems is None or "ballast" in ctx.systems:
            topic = R.make_topic(ctx, f"bench-workers{c}", n, ctx.partitions, keys=WORKER_KEYS)
            R.check_ballast_via(ctx, topic)
            point = curve_point(ctx, "curve-workers", "concurrency", c, ["ballast"], topic, n,
                                worker_systems(c))
            R.drop_topic(ctx, topic)
        ideal = c * 1e6 / WORKER_SLEEP_US
        rate = min(ideal, cap) if cap else ideal
        for r in point:
            r["ratio_to_ideal"] = round(r["msgs_per_sec"] / rate, 3)
            # against what the sleeps themselves allow
            r["ratio_to_measured_sleep"] = round(r["msgs_per_sec"] / (c * 1000 / slept), 3)
        point.append({"scenario": "curve-workers", "system": "ideal", "concurrency": c,
                      "messages": n, "seconds": round(n / rate, 4),
                      "msgs_per_sec": round(rate, 1), "cpu_seconds_per_million": None,
                      "peak_rss_mb": None, "runs": 0,
                      "computed": f"{c} workers / {WORKER_SLEEP_US / 1000:g} ms"
                                  + (f", capped by {cap_from} {cap:,.0f} msgs/s" if cap
                                     else " (drain not measured in this run: uncapped)")})
        for r in point:
            r.update({"keys": WORKER_KEYS, "handler_sleep_ms": WORKER_SLEEP_US / 1000,
                      "sleep_1ms_takes_ms": slept})
        rows += point
    return rows


# ---------------------------------------------------------------- latency

def latency_seconds(ctx):
    """(warm-up, measured) seconds of each latency run."""
    warm = R.env_int("BENCH_LATENCY_WARMUP", 3)
    return warm, R.env_int("BENCH_LATENCY_SECONDS", 4 if ctx.quick else 8)


def bench_kafka(ctx, *args):
    return [ctx.helper("bench_kafka"), *args, "-b", ctx.bootstrap]


def txn_interval_ms(ctx):
    for kv in ctx.ballast_x:
        k, v = kv.split("=", 1)
        if k.strip() == "transaction.interval.ms":
            return int(v)
    return 100  # ballast's default


# name -> (semantics, handler, what the latency is measured to)
LATENCY_SYSTEMS = {
    "at-least-once": ("at-least-once", "plugin", "handler return"),
    "exactly-once": ("exactly-once", "plugin", "handler return"),
    "exactly-once-visible": ("exactly-once", "forward", "visible to read_committed"),
    "at-least-once-forward-visible": ("at-least-once", "forward", "visible (forward output)"),
}
# Not run alone: a plain librdkafka consumer (bench_kafka latency-read, defaults)
# reading the at-least-once run's input beside ballast, under the same load.
LATENCY_BASELINE = {"raw-librdkafka": ("-", "librdkafka reader", "seen by a plain consumer")}


def latency_conf(ctx, system, topic, out_topic, n, marker, samples, path):
    semantics, handler, _ = LATENCY_SYSTEMS[system]
    lines = R.ballast_common(ctx, topic, ctx.unique("bench-lat"), f"latency, {system}")
    lines.append(f"semantics = {semantics}")
    if handler == "plugin":
        lines += ["handler = plugin", f"handler.plugin.path = {ctx.helper('noop_plugin.so')}",
                  f"handler.plugin.param.expect = {n}",
                  f"handler.plugin.param.done_file = {marker}",
                  f"handler.plugin.param.latency_file = {samples}"]
    else:
        lines += ["handler = forward", f"output.topic = {out_topic}"]
    lines += R.extra_lines(ctx, [])
    R.write_conf(path, lines)


def percentiles(samples_ms):
    s = sorted(samples_ms)

    def pct(p):
        return round(s[min(len(s) - 1, int(p / 100 * len(s)))], 2)
    return {"p50": pct(50), "p99": pct(99), "p99.9": pct(99.9), "max": round(s[-1], 2)}


def read_samples(path, first, n):
    """The samples of indexes first..n-1: (e2e ms, from-append ms) lists."""
    e2e, app = [], []
    with open(path) as f:
        for line in f:
            i, a, b = (int(x) for x in line.split())
            if first <= i < n:
                e2e.append(a / 1000)
                app.append(b / 1000)
    return e2e, app


def wait_for(cond, deadline, what):
    while not cond():
        if time.monotonic() > deadline:
            raise R.BenchError(f"latency: timed out waiting for {what}")
        time.sleep(0.01)


def start_reader(ctx, topic, n, path, isolation, log):
    return subprocess.Popen(
        bench_kafka(ctx, "latency-read", "-t", topic, "-n", str(n), "-o", path,
                    "-I", isolation, "-T", str(ctx.timeout)),
        stdout=subprocess.DEVNULL, stderr=log, stdin=subprocess.DEVNULL)


def latency_topic(ctx, prefix):
    """A fresh topic whose records carry the broker's append time."""
    return R.create_topic(ctx, prefix, LATENCY_PARTITIONS,
                          "message.timestamp.type=LogAppendTime")


def broker_gc():
    """The test broker's stop-the-world GC so far (jstat -gc: young and full
    collections, count and seconds), or None without jstat or the broker's
    pid. The broker's pauses hold up appends and fetches alike."""
    try:
        out = subprocess.run(["jstat", "-gc", R.broker_pid()], capture_output=True, text=True,
                             timeout=30).stdout.split("\n")
        f = dict(zip(out[0].split(), out[1].split()))
        return (int(f["YGC"]) + int(f["FGC"]), float(f["YGCT"]) + float(f["FGCT"]))
    except (OSError, IndexError, KeyError, ValueError, subprocess.SubprocessError):
        return None


def gc_delta(before, after):
    if not before or not after:
        return None
    n, secs = after[0] - before[0], after[1] - before[1]
    return {"pauses": n, "total_ms": round(secs * 1000, 1),
            "mean_ms": round(secs * 1000 / n, 1) if n else None}


def latency_once(ctx, system, rate, workdir):
    """One run: ballast on a fresh topic under the paced load. Returns
    {row system: samples}; at-least-once also has a plain librdkafka reader
    (`raw-librdkafka`) on the same input at the same time, the baseline."""
    warm, secs = latency_seconds(ctx)
    n = rate * (warm + secs)
    tag = f"{system}-{rate}"
    semantics, handler, _ = LATENCY_SYSTEMS[system]
    topic = latency_topic(ctx, "bench-lat")
    out_topic = latency_topic(ctx, "bench-lat-out") if handler == "forward" else None
    marker = os.path.join(workdir, f"{tag}.done")
    files = {system: os.path.join(workdir, f"{tag}.samples")}
    conf = os.path.join(workdir, f"{tag}.conf")
    latency_conf(ctx, system, topic, out_topic, n, marker, files[system], conf)
    log = open(os.path.join(workdir, f"{tag}.log"), "w")
    proc = subprocess.Popen(R.ballast_cmd(ctx, conf), stdout=log, stderr=log,
                            stdin=subprocess.DEVNULL)
    readers = []
    try:
        if out_topic:
            iso = "committed" if semantics == "exactly-once" else "uncommitted"
            readers.append(start_reader(ctx, out_topic, n, files[system], iso, log))
        if system == "at-least-once":
            files["raw-librdkafka"] = os.path.join(workdir, f"raw-librdkafka-{rate}.samples")
            readers.append(start_reader(ctx, topic, n, files["raw-librdkafka"], "uncommitted",
                                        log))
        gc0 = broker_gc()
        producer = R.kafka_util(ctx, "latency-produce", "-t", topic, "-n", str(n),
                                "-r", str(rate), "-s", str(LATENCY_VALUE_BYTES),
                                "-l", str(LATENCY_LINGER_MS), timeout=ctx.timeout)
        gc = gc_delta(gc0, broker_gc())
        deadline = time.monotonic() + 60
        for rd in readers:
            wait_for(lambda: rd.poll() is not None, deadline, "the reader")
            if rd.returncode != 0:
                raise R.BenchError(f"latency {tag}: reader exited {rd.returncode}")
        if handler == "plugin":
            wait_for(lambda: os.path.exists(marker) or proc.poll() is not None, deadline,
                     "the plugin's marker")
    finally:
        rc = R.stop_process(proc)
        for rd in readers:
            R.stop_process(rd)
        log.close()
    if rc != 0:
        raise R.BenchError(f"latency {tag}: ballast exited {rc}: {R.tail(log.name)}")
    first = rate * warm
    out = {}
    for name, path in files.items():
        e2e, app = read_samples(path, first, n)
        if len(e2e) != n - first:
            raise R.BenchError(f"latency {tag}: {name} has {len(e2e)} samples for "
                               f"{n - first} messages")
        out[name] = {"e2e": e2e, "app": app, "producer": producer, "broker_gc": gc,
                     "loadavg": [round(x, 2) for x in os.getloadavg()]}
    R.drop_topic(ctx, topic)
    if out_topic:
        R.drop_topic(ctx, out_topic)
    return out


def stalls(rate, first, e2e_ms, over_ms=5.0):
    """Pauses in the stream of arrivals (handler returns, or records seen):
    arrival i is about i / rate (the paced produce time) + its latency. With
    records every 1/rate s, a gap of over `over_ms` is a stall of the
    pipeline, not of the load. Returns how often they come and how long
    they last (the commit cadence shows as their period)."""
    t = sorted((first + k) / rate * 1000 + lat for k, lat in enumerate(e2e_ms))
    gaps = [(a, b - a) for a, b in zip(t, t[1:]) if b - a > over_ms]
    span_s = (t[-1] - t[0]) / 1000 if len(t) > 1 else 0
    if not gaps or not span_s:
        return {"over_ms": over_ms, "per_second": 0}
    starts = [a for a, _ in gaps]
    periods = [b - a for a, b in zip(starts, starts[1:])]
    return {"over_ms": over_ms, "per_second": round(len(gaps) / span_s, 1),
            "median_ms": round(statistics.median(g for _, g in gaps), 1),
            "max_ms": round(max(g for _, g in gaps), 1),
            "median_period_ms": round(statistics.median(periods), 1) if periods else None}


def latency_row(ctx, system, rate, res):
    warm, secs = latency_seconds(ctx)
    e2e = percentiles(res["e2e"])
    from_append = percentiles(res["app"])
    before_append = percentiles([a - b for a, b in zip(res["e2e"], res["app"])])
    semantics, handler, to = {**LATENCY_SYSTEMS, **LATENCY_BASELINE}[system]
    row = {"scenario": "latency", "system": system, "rate": rate, "semantics": semantics,
           "handler": handler, "measured_to": to, "messages": len(res["e2e"]),
           "warmup_seconds": warm, "seconds": secs, "msgs_per_sec": rate,
           "cpu_seconds_per_million": None, "peak_rss_mb": None, "runs": 1,
           "latency_ms": e2e,
           "latency_from_broker_append_ms": from_append,
           "latency_to_broker_append_ms": before_append,
           "producer": res["producer"],
           "stalls": stalls(rate, rate * warm, res["e2e"]),
           # over the whole load (warm-up included), and the load average after it
           "broker_gc": res["broker_gc"], "loadavg_after": res["loadavg"],
           "producer_linger_ms": LATENCY_LINGER_MS}
    if semantics == "exactly-once":
        row["transaction_interval_ms"] = txn_interval_ms(ctx)
    goal = None
    if system == "at-least-once" and rate == 5000:
        goal = ALO_P99_GOAL_MS
    elif system == "exactly-once-visible":
        goal = txn_interval_ms(ctx) + EOS_VISIBLE_SLACK_MS
    if goal is not None:
        row["goal"] = {"p99_ms_at_most": goal, "p99_ms": e2e["p99"], "met": e2e["p99"] <= goal}
    return row


def scenario_latency(ctx):
    workdir = os.path.join(ctx.work, "latency")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    systems = R.selected(ctx, list(LATENCY_SYSTEMS))
    for rate in LATENCY_RATES:
        for system in systems:
            try:
                res = latency_once(ctx, system, rate, workdir)
            except R.BenchError as e:
                R.log(f"latency/{system} at {rate}/s: FAILED: {e}")
                ctx.failures.append(f"latency/{system}@{rate}: {e}")
                continue
            for name, samples in res.items():
                row = latency_row(ctx, name, rate, samples)
                R.log(f"latency/{name} at {rate:,}/s: p50 {row['latency_ms']['p50']} ms, "
                      f"p99 {row['latency_ms']['p99']} ms, "
                      f"p99.9 {row['latency_ms']['p99.9']} ms")
                rows.append(row)
    return rows


# ---------------------------------------------------------------- output

def print_tables(rows):
    """The curves and the latency table (bench/run prints the rest)."""
    curves = [("curve-size", "value_bytes", "bytes"),
              ("curve-partitions", "topic_partitions", "partitions"),
              ("curve-workers", "concurrency", "workers")]
    for scen, key, label in curves:
        sel = [r for r in rows if r["scenario"] == scen]
        if not sel:
            continue
        print()
        print(f"{scen}:")
        print(f"  {label:>10}  {'system':<16} {'messages':>10} {'msgs/s':>11} {'MB/s':>8} "
              f"{'x raw/ideal':>11} {'CPU s/M':>8} {'RSS MiB':>8}")
        for r in sorted(sel, key=lambda r: (r[key], r["system"])):
            ratio = r.get("ratio_to_raw", r.get("ratio_to_ideal"))
            mb = r.get("mb_per_sec")
            cpu = r.get("cpu_seconds_per_million")
            rss = r.get("peak_rss_mb")
            print(f"  {r[key]:>10,}  {r['system']:<16} {r['messages']:>10,} "
                  f"{r['msgs_per_sec']:>11,.0f} {(f'{mb:.1f}' if mb else '-'):>8} "
                  f"{(f'{ratio:.2f}' if ratio else '-'):>11} "
                  f"{(f'{cpu:.2f}' if cpu else '-'):>8} {(f'{rss:.0f}' if rss else '-'):>8}")
        slopes = {r["system"]: r["rss_kib_per_partition"] for r in sel
                  if "rss_kib_per_partition" in r}
        for s, kib in sorted(slopes.items()):
            print(f"  peak RSS per assigned partition, {s}: {kib:,.1f} KiB")
    lat = [r for r in rows if r["scenario"] == "latency"]
    if lat:
        print()
        print(f"latency, produce time to the point named (ms; producer linger.ms "
              f"{LATENCY_LINGER_MS}):")
        print(f"  {'system':<30} {'rate':>7} {'p50':>8} {'p99':>8} {'p99.9':>8} {'max':>8}  "
              f"{'append->p99':>11}  goal")
        for r in lat:
            m = r["latency_ms"]
            g = r.get("goal")
            goal = (f"p99 <= {g['p99_ms_at_most']} ms {'met' if g['met'] else 'MISSED'}"
                    if g else "")
            print(f"  {r['system']:<30} {r['rate']:>7,} {m['p50']:>8.2f} {m['p99']:>8.2f} "
                  f"{m['p99.9']:>8.2f} {m['max']:>8.2f}  "
                  f"{r['latency_from_broker_append_ms']['p99']:>11.2f}  {goal}")


CURVE_SCENARIOS = ("curve-size", "curve-partitions", "curve-workers", "latency")


def is_curve(row):
    return row.get("scenario") in CURVE_SCENARIOS
