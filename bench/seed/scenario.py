"""bench/seed/scenario.py - the `seed` scenario of bench/run: the article's kafkajs consumers
(bench/seed/payments.mjs, bench/seed/batch.mjs) side by side with ballast, on the same broker,
topic of payment records and PostgreSQL database. Loaded by bench/run, which passes itself as
`B` (its helpers: psql, compare_rounds, ballast_common, ...). See bench/README.md."""

import filecmp
import os
import shutil
import signal
import subprocess
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PAYMENTS_COLS = "idempotency_key text PRIMARY KEY, customer_id text NOT NULL, " \
                "amount numeric(12,2) NOT NULL, status text NOT NULL"
EVENTS_COLS = "id text PRIMARY KEY, data jsonb NOT NULL"
BATCH_MAX = 1000


def seed_peers(B, ctx):
    """kafkajs and pg at the versions of bench/seed/package-lock.json (npm ci), installed
    once into a cache outside the clone, next to the exec-async peers."""
    base = os.path.join(os.path.expanduser("~"), ".cache", "ballast", "bench-peers", "seed")
    os.makedirs(base, exist_ok=True)
    fresh = os.path.isdir(os.path.join(base, "node_modules", "pg"))
    for f in ("package.json", "package-lock.json"):
        dst = os.path.join(base, f)
        if not os.path.exists(dst) or not filecmp.cmp(os.path.join(HERE, f), dst, shallow=False):
            shutil.copyfile(os.path.join(HERE, f), dst)
            fresh = False
    if not fresh:
        B.sh(["npm", "ci", "--no-audit", "--no-fund"], cwd=base, timeout=900)
    return base


def pg_url(dsn):
    """node-postgres wants a URL: the test environment's libpq key=value string as one."""
    from urllib.parse import quote
    kv = dict(f.split("=", 1) for f in dsn.split())
    auth = quote(kv.get("user", ""), safe="")
    if kv.get("password"):
        auth += ":" + quote(kv["password"], safe="")
    return (f"postgresql://{auth}{'@' if auth else ''}{kv.get('host', 'localhost')}:"
            f"{kv.get('port', '5432')}/{quote(kv.get('dbname', ''), safe='')}")


def ref_select(kind, messages):
    """The rows both sides must write, computed in SQL from bench_kafka produce -j 1's
    formula (record i: id pay-i, idempotencyKey idem-i, customerId cust-(i % 1000), amount
    (100 + i * 7919 % 99900) / 100)."""
    cents = "(100 + i * 7919 % 99900)"
    if kind == "payments":
        return (f"SELECT 'idem-' || lpad(i::text, 12, '0'), 'cust-' || lpad((i % 1000)::text, 4, "
                f"'0'), ({cents} / 100.0)::numeric(12,2), 'completed' "
                f"FROM generate_series(0::bigint, {messages - 1}) i")
    return (f"SELECT 'pay-' || lpad(i::text, 12, '0'), jsonb_build_object('id', 'pay-' || "
            f"lpad(i::text, 12, '0'), 'idempotencyKey', 'idem-' || lpad(i::text, 12, '0'), "
            f"'customerId', 'cust-' || lpad((i % 1000)::text, 4, '0'), 'amount', "
            f"({cents} / 100.0)::numeric(12,2)) FROM generate_series(0::bigint, {messages - 1}) i")


def verify_rows(B, ctx, table, ref, messages, what):
    """count(*) = N and the table equals the reference, row for row (EXCEPT both ways)."""
    got = B.psql(ctx, f"SELECT (SELECT count(*) FROM {table}), (SELECT count(*) FROM "
                      f"((TABLE {table} EXCEPT TABLE {ref}) UNION ALL "
                      f"(TABLE {ref} EXCEPT TABLE {table})) d)")
    rows, differ = (int(x) for x in got.split("|"))
    if rows != messages or differ != 0:
        raise B.BenchError(f"{what}: {table} holds {rows} rows for {messages} messages, "
                           f"{differ} differing from the expected rows")
    return f"{messages} rows equal to the expected rows, lag 0"


def ballast_sql(kind, table, processing=None):
    if kind == "payments":
        v = "(:value::jsonb)"
        return (f"INSERT INTO {table} (idempotency_key, customer_id, amount, status) VALUES "
                f"({v}->>'idempotencyKey', {v}->>'customerId', ({v}->>'amount')::numeric, "
                f"'completed') ON CONFLICT (idempotency_key) DO NOTHING")
    if processing == "batch-do-nothing":
        return (f"INSERT INTO {table} (id, data) VALUES (:key, :value::jsonb) "
                f"ON CONFLICT (id) DO NOTHING")
    return (f"INSERT INTO {table} (id, data) VALUES (:key, :value::jsonb) "
            f"ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data")


def ballast_settings(kind, concurrency=1, processing=None):
    s = ["handler=postgres", "semantics=at-least-once", "ordering=partition",
         f"concurrency={concurrency}", "kafka.auto.commit.interval.ms=100"]
    if (processing or ("message" if kind == "payments" else "batch")) == "message":
        return s + ["processing=message"]
    return s + ["processing=batch", f"batch.max.messages={BATCH_MAX}"]


def command(B, ctx, system, kind, topic, group, table, conf, concurrency=1, processing=None):
    """The command line of one system (seed-kafkajs or ballast) for `kind` (payments: the
    message pair, events: the batch pair)."""
    if system == "seed-kafkajs":
        script = "payments.mjs" if kind == "payments" else "batch.mjs"
        return [ "node", os.path.join(HERE, script), seed_peers(B, ctx), ctx.bootstrap, topic,
                 group, pg_url(ctx.pg), table]
    lines = B.ballast_common(ctx, topic, group, f"the seed side by side ({kind})")
    lines += [f"handler.postgres.dsn = {ctx.pg}",
              f"handler.postgres.sql = {ballast_sql(kind, table, processing)}"]
    lines += B.extra_lines(ctx, ballast_settings(kind, concurrency, processing))
    B.write_conf(conf, lines)
    return [ctx.ballast_bin(), "run", conf]


def wal_syncs(B, ctx):
    """PostgreSQL's WAL flushes so far (pg_stat_wal.wal_sync, the whole server: the test
    environment's own, which nothing else writes to during a run)."""
    return int(B.psql(ctx, "SELECT wal_sync FROM pg_stat_wal"))


def make_system(B, system, kind, table, ref, stats, concurrency=1, processing=None):
    """A bench/run system: a fresh group and a truncated table per run; done when the
    group's commits reach the topic's end (bench_kafka watch), then SIGTERM. Verified: exit 0,
    lag 0, the table equals the expected rows. Appends each run's WAL flushes per message to
    `stats`."""
    def run(ctx, topic, messages, workdir, tag):
        B.psql(ctx, f"TRUNCATE {table}")
        group = ctx.unique("bench-" + system)
        marker = os.path.join(workdir, f"{tag}.done")
        cmd = command(B, ctx, system, kind, topic, group, table,
                      os.path.join(workdir, f"{tag}.conf"), concurrency, processing)
        syncs = wal_syncs(B, ctx)
        watch = B.watch_group(ctx, topic, group, marker)

        def verify(r):
            B.marker_seen(marker, r, system)
            B.ballast_exit_ok(r, f"{system} (after SIGTERM)")
            B.check_no_lag(ctx, topic, group, system)
            stats.append((wal_syncs(B, ctx) - syncs) / messages)
            r["verified"] = verify_rows(B, ctx, table, ref, messages, system)
            if system == "ballast":
                r["settings"] = ballast_settings(kind, concurrency, processing)
        return cmd, marker, verify, watch
    return run


# ---------------------------------------------------------------- kill -9 once

def rows_by_partition(B, ctx, table, partitions):
    """The offsets whose payment row exists, per partition (record i: partition i % P,
    offset i // P)."""
    out = B.psql(ctx, f"SELECT substr(idempotency_key, 6)::bigint FROM {table}", timeout=120)
    parts = [set() for _ in range(partitions)]
    for line in out.split():
        i = int(line)
        parts[i % partitions].add(i // partitions)
    return parts


def kill9_once(B, ctx, system, topic, messages, table, ref, workdir):
    """Starts `system` (message pair) with a fresh group, SIGKILLs it once about half of the
    rows are written, then compares rows with the group's committed offsets: an offset
    committed without its row is lost; a row at or past its partition's committed offset is
    handled again after the restart (a duplicate the idempotency key absorbs). Restarts it
    with the same group until the commits reach the end and checks the table."""
    B.psql(ctx, f"TRUNCATE {table}")
    group = ctx.unique(f"bench-kill9-{system}")
    conf = os.path.join(workdir, f"kill9-{system}.conf")
    cmd = command(B, ctx, system, "payments", topic, group, table, conf)
    with open(os.path.join(workdir, f"kill9-{system}-1.log"), "w") as err:
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + ctx.timeout
    while int(B.psql(ctx, f"SELECT count(*) FROM {table}")) < messages // 2:
        if p.poll() is not None or time.monotonic() > deadline:
            p.kill()
            raise B.BenchError(f"kill9 {system}: exited or too slow before half the rows")
        time.sleep(0.05)
    p.send_signal(signal.SIGKILL)
    p.wait()
    rows = rows_by_partition(B, ctx, table, ctx.partitions)
    committed = B.kafka_util(ctx, "committed", "-t", topic, "-g", group)["partitions"]
    lost = sum(1 for part, c in enumerate(committed) for off in range(c)
               if off not in rows[part])
    again = sum(1 for part, c in enumerate(committed) for off in rows[part] if off >= c)
    marker = os.path.join(workdir, f"kill9-{system}.done")
    watch = B.watch_group(ctx, topic, group, marker)
    r = B.measure(cmd, log_path=os.path.join(workdir, f"kill9-{system}-2.log"),
                  timeout=ctx.timeout, marker=marker, watch=watch)
    B.marker_seen(marker, r, f"kill9 {system} (restarted)")
    B.ballast_exit_ok(r, f"kill9 {system} (restarted, after SIGTERM)")
    verify_rows(B, ctx, table, ref, messages, f"kill9 {system}")
    return {"rows_at_kill": sum(len(s) for s in rows), "committed_at_kill": sum(committed),
            "lost": lost, "handled_again": again,
            "after_restart": f"{messages} rows equal to the expected rows, lag 0"}


# ---------------------------------------------------------------- the scenario

# system: (what runs, table kind, ballast's concurrency, ballast's processing if not the
# kind's own). ballast-payments-as-batch runs the payments statement with processing = batch:
# one transaction per batch of up to 1000 messages, a failing message taken out and the rest
# run again, offsets committed after the transaction (docs/benchmarks.md, The seed side by side).
# ballast-batch-do-nothing writes the events with ON CONFLICT (id) DO NOTHING, which ballast
# runs as many-row statements (DO UPDATE runs one statement a message): the same rows here,
# where every id is new, to measure what many-row statements would give the upsert.
SYSTEMS = {"seed-kafkajs-message": ("seed-kafkajs", "payments", 1, None),
           "ballast-message": ("ballast", "payments", 1, None),
           "ballast-message-concurrency-4": ("ballast", "payments", 4, None),
           "ballast-payments-as-batch": ("ballast", "payments", 1, "batch"),
           "seed-kafkajs-batch": ("seed-kafkajs", "events", 1, None),
           "ballast-batch": ("ballast", "events", 1, None),
           "ballast-batch-do-nothing": ("ballast", "events", 1, "batch-do-nothing")}


def by_drain(B, row, stats):
    """msgs/s from the start to the group's commits at the end (`drain_seconds`), not to
    the process's exit: kafkajs's disconnect waits out its fetch (maxWaitTime, 5 s), which
    would otherwise dominate the seed's short runs. `seconds_to_exit` keeps the other."""
    if row.get("drain_seconds"):
        row["seconds_to_exit"] = row["seconds"]
        row["seconds"] = row["drain_seconds"]
        row["msgs_per_sec"] = round(row["messages"] / row["drain_seconds"], 1)
        row["rate_from"] = "start to the group's commits at the end"
    if stats:
        row["wal_flushes_per_message"] = round(B.statistics.median(stats), 4)
    return row


def scenario(B, ctx):
    n_msg = B.env_int("BENCH_SEED_MESSAGES", 5_000 if ctx.quick else 20_000)
    n_batch = B.env_int("BENCH_SEED_BATCH_MESSAGES", 50_000 if ctx.quick else 200_000)
    runs = B.env_int("BENCH_SEED_RUNS", 3)
    stem = "seed_" + B.re.sub(r"\W", "_", ctx.run_id)
    tables = {k: (f"{stem}_{k}", f"{stem}_{k}_ref") for k in ("payments", "events")}
    workdir = os.path.join(ctx.work, "seed")
    os.makedirs(workdir, exist_ok=True)
    rows = []
    try:
        for kind, n, names in (("payments", n_msg, ["seed-kafkajs-message", "ballast-message",
                                                     "ballast-message-concurrency-4",
                                                     "ballast-payments-as-batch"]),
                               ("events", n_batch, ["seed-kafkajs-batch", "ballast-batch",
                                                    "ballast-batch-do-nothing"])):
            systems = B.selected(ctx, names)
            if not systems:
                continue
            table, ref = tables[kind]
            cols = PAYMENTS_COLS if kind == "payments" else EVENTS_COLS
            B.psql(ctx, f"CREATE TABLE {table} ({cols}); CREATE TABLE {ref} ({cols}); "
                        f"INSERT INTO {ref} {ref_select(kind, n)}")
            topic = B.make_topic(ctx, "bench-seed", n, ctx.partitions, payments=True)
            stats = {s: [] for s in systems}
            funcs = {s: make_system(B, SYSTEMS[s][0], kind, table, ref, stats[s],
                                    *SYSTEMS[s][2:]) for s in systems}
            got = [by_drain(B, r, stats[r["system"]])
                   for r in B.compare_rounds(ctx, "seed", systems, topic, n, funcs, runs=runs)]
            if kind == "payments" and os.environ.get("BENCH_SEED_KILL9", "1") != "0":
                for r in got:
                    if SYSTEMS[r["system"]][2:] != (1, None):
                        continue
                    try:
                        r["kill9"] = kill9_once(B, ctx, SYSTEMS[r["system"]][0], topic, n,
                                                table, ref, workdir)
                        B.log(f"seed/{r['system']} kill -9: {r['kill9']}")
                    except B.BenchError as e:
                        ctx.failures.append(f"seed/{r['system']} kill9: {e}")
                        B.log(f"seed/{r['system']} kill -9: FAILED: {e}")
            rows += got
    finally:
        for table, ref in tables.values():
            try:
                B.psql(ctx, f"DROP TABLE IF EXISTS {table}, {ref}")
            except B.BenchError as e:
                B.log(f"could not drop {table}: {e}")
    return rows
