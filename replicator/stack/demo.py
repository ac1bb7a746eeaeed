"""`replicator stack demo` (what `make demo` runs): a whole live migration, on the local stack.

Brings the stack up (or reuses it), creates demo tables on the PostgreSQL and MariaDB sources and
fills them with rows that exist before any connector (so only the snapshot can bring them over),
and registers both Debezium connectors with the example configs. Then, while a writer keeps
inserting, updating and deleting on both sources, the snapshot copier creates the target tables
(schema translation), copies the existing rows and hands each table to its change stream; the
change appliers (PostgreSQL → PostgreSQL and MariaDB → PostgreSQL) start and apply what the copies
lack, while the change events are printed as they arrive from Kafka. Finally the writes stop and
the reconciler compares every demo table, source against target, with row hashes computed in the
databases: the demo fails unless every table is equal. Each run starts the demo tables over
(`snapshot --restart`; the target tables are dropped first and created again by translation).
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql
from psycopg import sql

from connectors import manager
from replicator.config import MigrationConfig, load_config
from replicator.dialects.mysql import open_connection
from replicator.errors import ReplicatorError
from replicator.kafka.tail import EventTail, RawEvent
from replicator.model import TableId, topic_for
from replicator.stack.launcher import LocalStack, StackInfo

PG_TABLES = {
    "demo_customers": "CREATE TABLE IF NOT EXISTS public.demo_customers (id serial PRIMARY KEY, name text NOT NULL, "
                      "email text, balance_cents bigint NOT NULL DEFAULT 0, updated_at timestamptz DEFAULT now())",
    "demo_audit_log": "CREATE TABLE IF NOT EXISTS public.demo_audit_log (at timestamptz DEFAULT now(), message text)",
}
MY_TABLES = {
    "demo_orders": "CREATE TABLE IF NOT EXISTS demo_orders (id int AUTO_INCREMENT PRIMARY KEY, customer varchar(40), "
                   "qty int NOT NULL, price_cents int, placed_at datetime(6) DEFAULT CURRENT_TIMESTAMP(6))",
}
# the rows that exist before the connectors: only the snapshot copies them
PG_SEED = [
    "INSERT INTO public.demo_customers (name, email, balance_cents, updated_at) SELECT 'customer ' || g,"
    " 'c' || g || '@example.org', g * 7 % 100000, now() - g * interval '1 minute' FROM generate_series(1, 5000) g",
    "INSERT INTO public.demo_audit_log (at, message) SELECT now() - g * interval '1 hour', 'seeded ' || g"
    " FROM generate_series(1, 200) g",
]
MY_SEED = ("INSERT INTO demo_orders (customer, qty, price_cents, placed_at) SELECT CONCAT('customer ', seq),"
           " 1 + seq % 9, seq * 13 % 100000, NOW(6) - INTERVAL seq SECOND FROM seq_1_to_3000")
DEMO_TABLES = {"pg-to-pg": [f"public.{t}" for t in PG_TABLES], "mariadb-to-pg": [f"app.{t}" for t in MY_TABLES]}
TARGET_TABLES = ["public.demo_customers", "public.demo_audit_log", "app.demo_orders"]
# change events printed at most, per source: a backlog of one source (e.g. a rerun's seeding, streamed by
# the connector of the run before while the tail starts) must not hide the other's events
_SHOWN_PER_SOURCE = 30


def run_demo(run_dir: str | None, seconds: float, say: Callable[[str], None]) -> Counter[str]:
    local = LocalStack(None if run_dir is None else Path(run_dir))
    say("1/5 starting the local stack (reused when it runs already)...")
    info = local.up()
    say(f"    ready: broker {info.bootstrap_servers}, Kafka Connect {info.connect_url}")
    say("2/5 creating the demo tables on both sources, with rows that exist before any connector")
    _create_tables(info)
    seeded = _seed_sources(info)
    say(f"    {seeded['public.demo_customers']:,} customers and {seeded['public.demo_audit_log']:,} audit rows"
        f" on PostgreSQL, {seeded['app.demo_orders']:,} orders on MariaDB")
    configs = {name: load_config(info.run_dir / "configs" / f"{name}.yaml", {}) for name in DEMO_TABLES}
    say("3/5 registering the Debezium connectors")
    for config in configs.values():
        # demo_audit_log has no primary key: PostgreSQL needs REPLICA IDENTITY FULL before publishing it.
        manager.apply(config, fix_replica_identity=True, progress=lambda line: say(f"    {line}"))
    pg_config, my_config = configs["pg-to-pg"], configs["mariadb-to-pg"]
    topics = {topic_for(pg_config.kafka.topic_prefix, TableId("public", t)): "postgres" for t in PG_TABLES}
    topics |= {topic_for(my_config.kafka.topic_prefix, TableId("app", t)): "mariadb" for t in MY_TABLES}
    tail = EventTail(pg_config.kafka, sorted(topics), from_beginning=False)
    list(tail.events(idle_timeout_s=1.0, limit=1))  # settle the assignment at the log end
    appliers: list[tuple[threading.Event, threading.Thread, list[BaseException]]] = []
    stop = threading.Event()
    failures: list[str] = []
    deadline = [float("inf")]  # when the writer stops: set once the snapshots are done
    writer = threading.Thread(target=_write_load, args=(info, stop, deadline, failures), daemon=True)
    try:
        say("4/5 writing to both sources the whole time; meanwhile the snapshot copies the existing rows:")
        writer.start()
        for name, config in configs.items():
            _snapshot(config, DEMO_TABLES[name], say)
        # the appliers start once the target tables exist (the snapshot creates them): they apply
        # what the copies lack, from the events Kafka kept meanwhile
        appliers.extend(_start_applier(config) for config in configs.values())
        say(f"    change appliers started; writing for {seconds:.0f} s more; change events as they arrive"
            " from Kafka:")
        deadline[0] = time.monotonic() + seconds
        seen = _show_events(tail, topics, deadline[0], stop, say)
        stop.set()
        writer.join(30)
        if failures:
            raise ReplicatorError(f"the demo's writer failed: {failures[0]}")
        say("5/5 writes stopped; reconciling every demo table (row hashes in both databases, anchored to the"
            " stream):")
        for name, config in configs.items():
            _reconcile(config, DEMO_TABLES[name], appliers, say)
    finally:
        stop.set()
        tail.close()
        for halt, thread, _ in appliers:
            halt.set()
            thread.join(30)
    if not any(k.startswith("postgres") for k in seen) or not any(k.startswith("mariadb") for k in seen):
        raise ReplicatorError(f"the demo saw events from only one source: {dict(seen)}",
                              hint="see `replicator stack status` and the Connect log under the run directory")
    return seen


def _show_events(tail: EventTail, topics: dict[str, str], until: float, stop: threading.Event,
                 say: Callable[[str], None]) -> Counter[str]:
    """The first change events of each source as they arrive, until the writer is done; counts by
    source and op."""
    seen: Counter[str] = Counter()
    shown: Counter[str] = Counter()
    for event in tail.events(idle_timeout_s=6.0):
        if event.value is None:
            continue  # tombstone after a delete
        source = topics.get(event.topic, "?")
        seen[f"{source} {event.op}"] += 1
        if shown[source] < _SHOWN_PER_SOURCE:
            shown[source] += 1
            say(_describe(source, event))
        if time.monotonic() > until or stop.is_set():
            break
    return seen


def _snapshot(config: MigrationConfig, tables: list[str], say: Callable[[str], None]) -> None:
    from replicator.sensor import NullSensor
    from replicator.snapshot.copier import SnapshotCopier

    SnapshotCopier(config, NullSensor(), say=lambda line: say(f"    [snapshot] {line}")).run(tables, restart=True)


def _reconcile(config: MigrationConfig, tables: list[str],
               appliers: list[tuple[threading.Event, threading.Thread, list[BaseException]]],
               say: Callable[[str], None]) -> None:
    from replicator.reconcile.checker import Reconciler
    from replicator.reconcile.report import TableState
    from replicator.sensor import NullSensor

    errors = [e for _, _, errs in appliers for e in errs]
    if errors:
        raise errors[0]
    report = Reconciler(config, NullSensor(), say=lambda line: None).run(tables)
    for table in report.tables:
        verdict = "target equals source" if table.state is TableState.EQUAL else \
            f"{table.state.value}: {table.differences} difference(s) {table.notes}"
        say(f"    {table.table:24} {table.source_rows:7,} rows, {table.chunks} chunk(s) hashed   {verdict}")
        for difference in table.rows[:5]:
            say(f"      {difference.line()}")
    if not report.ok:
        raise ReplicatorError("the reconciler found differences between a demo table and its source",
                              hint="run `replicator -c <config> reconcile` for the rows that differ")


def _describe(source: str, event: RawEvent) -> str:
    payload = event.payload or {}
    row = payload.get("after") if event.op != "d" else payload.get("before")
    table = event.topic.split(".", 1)[1]
    return f"  [{source:8}] {table:18} op={event.op}  key={event.key_payload}  row={row}"


def _create_tables(info: StackInfo) -> None:
    target = info.database("pg-target")
    with psycopg.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                         dbname=target.database, autocommit=True) as conn:
        for table in TARGET_TABLES:  # the snapshot creates them again, by schema translation
            schema, name = table.split(".")
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(schema, name)))
    pg = info.database("pg-source")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database,
                         autocommit=True) as conn:
        for ddl in PG_TABLES.values():
            conn.execute(ddl)
    my = info.database("my-source")
    conn2 = open_connection(host=my.host, port=my.port, user=my.user, password=my.password, database=my.database,
                            autocommit=True)
    try:
        with conn2.cursor() as cur:
            for ddl in MY_TABLES.values():
                cur.execute(ddl)
    finally:
        conn2.close()


def _seed_sources(info: StackInfo) -> dict[str, int]:
    """The demo tables emptied and filled again on the sources; their row counts."""
    counts: dict[str, int] = {}
    pg = info.database("pg-source")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database,
                         autocommit=True) as conn:
        conn.execute("TRUNCATE public.demo_customers, public.demo_audit_log RESTART IDENTITY")
        for statement in PG_SEED:
            conn.execute(statement)
        for table in PG_TABLES:
            row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier("public", table))).fetchone()
            counts[f"public.{table}"] = int(row[0]) if row else 0
    my = info.database("my-source")
    conn2 = open_connection(host=my.host, port=my.port, user=my.user, password=my.password, database=my.database,
                            autocommit=True)
    try:
        with conn2.cursor() as cur:
            cur.execute("TRUNCATE demo_orders")
            cur.execute(MY_SEED)
            cur.execute("SELECT count(*) FROM demo_orders")
            row2 = cur.fetchone()
            counts["app.demo_orders"] = int(row2[0]) if row2 else 0
    finally:
        conn2.close()
    return counts


def _write_load(info: StackInfo, stop: threading.Event, deadline: list[float], failures: list[str]) -> None:
    try:
        _write_until(info, stop, deadline)
    except (psycopg.Error, pymysql.MySQLError) as exc:
        failures.append(" ".join(str(exc).split()))
        stop.set()


def _write_until(info: StackInfo, stop: threading.Event, deadline: list[float]) -> None:
    """Writes to both sources until `stop`, or the time in `deadline[0]` (moved while it runs)."""
    rng = random.Random()  # noqa: S311 - demo data, not security
    pg, my = info.database("pg-source"), info.database("my-source")
    pg_conn = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                              dbname=pg.database, autocommit=True)
    my_conn = open_connection(host=my.host, port=my.port, user=my.user, password=my.password,
                              database=my.database, autocommit=True)
    names = ["ada", "grace", "edsger", "barbara", "ken", "frances"]
    try:
        while time.monotonic() < deadline[0] and not stop.is_set():
            choice = rng.random()
            if choice < 0.5:
                pg_conn.execute("INSERT INTO public.demo_customers (name, email, balance_cents) VALUES (%s, %s, %s)",
                                (rng.choice(names), f"{rng.choice(names)}@example.org", rng.randint(0, 99999)))
            elif choice < 0.8:
                pg_conn.execute("UPDATE public.demo_customers SET balance_cents = balance_cents + 100, "
                                "updated_at = now() WHERE id = (SELECT max(id) FROM public.demo_customers)")
            else:
                pg_conn.execute("INSERT INTO public.demo_audit_log (message) VALUES (%s)", ("demo write",))
            with my_conn.cursor() as cur:
                if choice < 0.6:
                    cur.execute("INSERT INTO demo_orders (customer, qty, price_cents) VALUES (%s, %s, %s)",
                                (rng.choice(names), rng.randint(1, 9), rng.randint(100, 99999)))
                elif choice < 0.85:
                    cur.execute("UPDATE demo_orders SET qty = qty + 1 ORDER BY id DESC LIMIT 1")
                else:
                    cur.execute("DELETE FROM demo_orders ORDER BY id LIMIT 1")
            stop.wait(0.4)
    finally:
        stop.set()
        pg_conn.close()
        my_conn.close()


def _start_applier(config: MigrationConfig) -> tuple[threading.Event, threading.Thread, list[BaseException]]:
    from replicator.apply.applier import ChangeApplier
    from replicator.dialects import target_writer_for
    from replicator.sensor import NullSensor

    halt = threading.Event()
    errors: list[BaseException] = []
    applier = ChangeApplier(config, lambda: target_writer_for(config.target, config.state_schema), NullSensor(),
                            halt)

    def run() -> None:
        try:
            applier.run()
        except BaseException as exc:  # reported by _compare, in the main thread
            errors.append(exc)

    thread = threading.Thread(target=run, name=f"apply-{config.kafka.topic_prefix}", daemon=True)
    thread.start()
    return halt, thread, errors
