"""`replicator stack demo` (what `make demo` runs): the pipeline so far, live, on the local stack.

Brings the stack up (or reuses it), creates a few demo tables on the PostgreSQL and MariaDB sources
and on the PostgreSQL target, registers both Debezium connectors with the example configs, starts
the change appliers (PostgreSQL → PostgreSQL and MariaDB → PostgreSQL), then writes to both sources
for a few seconds while printing every change event as it arrives from Kafka, and ends by comparing
every demo table on the target with its source. It grows into a whole migration as snapshot and
reconcile land.
"""

from __future__ import annotations

import datetime as dt
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg
import pymysql

from connectors import manager
from replicator.config import MigrationConfig, load_config
from replicator.errors import ReplicatorError
from replicator.kafka.tail import EventTail, RawEvent
from replicator.model import TableId, topic_for
from replicator.stack.launcher import LocalStack, StackInfo

PG_TABLES = {
    "demo_customers": "CREATE TABLE IF NOT EXISTS public.demo_customers (id serial PRIMARY KEY, name text NOT NULL, "
                      "email text, balance_cents bigint NOT NULL DEFAULT 0, updated_at timestamptz DEFAULT now())",
    "demo_audit_log": "CREATE TABLE IF NOT EXISTS public.demo_audit_log (at timestamptz DEFAULT now(), message text)",
}
TARGET_TABLES = [
    "CREATE TABLE IF NOT EXISTS public.demo_customers (id int PRIMARY KEY, name text NOT NULL, email text, "
    "balance_cents bigint NOT NULL DEFAULT 0, updated_at timestamptz)",
    "CREATE TABLE IF NOT EXISTS public.demo_audit_log (at timestamptz, message text)",
    "CREATE SCHEMA IF NOT EXISTS app",
    "CREATE TABLE IF NOT EXISTS app.demo_orders (id int PRIMARY KEY, customer varchar(40), qty int NOT NULL, "
    "price_cents int, placed_at timestamp(6))",
]
COMPARED = {  # the same rows, read from the source and from the target
    "public.demo_customers": ("pg-source", "SELECT id, name, email, balance_cents, updated_at FROM "
                              "public.demo_customers ORDER BY id", "SELECT id, name, email, balance_cents, "
                              "updated_at FROM public.demo_customers ORDER BY id"),
    "public.demo_audit_log": ("pg-source", "SELECT at, message, count(*) FROM public.demo_audit_log GROUP BY 1, 2 "
                              "ORDER BY 1, 2", "SELECT at, message, count(*) FROM public.demo_audit_log GROUP BY 1, 2 "
                              "ORDER BY 1, 2"),
    "app.demo_orders": ("my-source", "SELECT id, customer, qty, price_cents, placed_at FROM demo_orders ORDER BY id",
                        "SELECT id, customer, qty, price_cents, placed_at FROM app.demo_orders ORDER BY id"),
}
MY_TABLES = {
    "demo_orders": "CREATE TABLE IF NOT EXISTS demo_orders (id int AUTO_INCREMENT PRIMARY KEY, customer varchar(40), "
                   "qty int NOT NULL, price_cents int, placed_at datetime(6) DEFAULT CURRENT_TIMESTAMP(6))",
}


def run_demo(run_dir: str | None, seconds: float, say: Callable[[str], None]) -> Counter[str]:
    local = LocalStack(None if run_dir is None else Path(run_dir))
    say("1/4 starting the local stack (reused when it runs already)...")
    info = local.up()
    say(f"    ready: broker {info.bootstrap_servers}, Kafka Connect {info.connect_url}")
    say("2/4 creating demo tables on both sources")
    _create_tables(info)
    pg_config = load_config(info.run_dir / "configs" / "pg-to-pg.yaml", {})
    my_config = load_config(info.run_dir / "configs" / "mariadb-to-pg.yaml", {})
    say("3/4 registering the Debezium connectors and starting the change appliers")
    for config in (pg_config, my_config):
        # demo_audit_log has no primary key: PostgreSQL needs REPLICA IDENTITY FULL before publishing it.
        manager.apply(config, fix_replica_identity=True, progress=lambda line: say(f"    {line}"))
    # Earlier runs left rows behind; truncating them on the sources clears the target too, through
    # the change stream itself (the snapshot stage will seed targets from existing rows).
    topics = {topic_for(pg_config.kafka.topic_prefix, TableId("public", t)): "postgres" for t in PG_TABLES}
    topics |= {topic_for(my_config.kafka.topic_prefix, TableId("app", t)): "mariadb" for t in MY_TABLES}
    tail = EventTail(pg_config.kafka, sorted(topics), from_beginning=False)
    list(tail.events(idle_timeout_s=1.0, limit=1))  # settle the assignment at the log end
    _truncate_until_seen(info, tail, set(topics))
    appliers = [_start_applier(config) for config in (pg_config, my_config)]
    say(f"4/4 writing to both sources for {seconds:.0f} s; change events as they arrive from Kafka:")
    stop = threading.Event()
    failures: list[str] = []
    writer = threading.Thread(target=_write_load, args=(info, stop, seconds, failures), daemon=True)
    writer.start()
    seen: Counter[str] = Counter()
    try:
        for event in tail.events(idle_timeout_s=6.0):
            if event.value is None:
                continue  # tombstone after a delete
            source = topics.get(event.topic, "?")
            seen[f"{source} {event.op}"] += 1
            say(_describe(source, event))
            if not writer.is_alive() and stop.is_set():
                break
    finally:
        stop.set()
        tail.close()
    if failures:
        for halt, thread, _ in appliers:
            halt.set()
            thread.join(30)
        raise ReplicatorError(f"the demo's writer failed: {failures[0]}")
    _compare(info, appliers, say)
    if not any(k.startswith("postgres") for k in seen) or not any(k.startswith("mariadb") for k in seen):
        raise ReplicatorError(f"the demo saw events from only one source: {dict(seen)}",
                              hint="see `replicator stack status` and the Connect log under the run directory")
    return seen


def _describe(source: str, event: RawEvent) -> str:
    payload = event.payload or {}
    row = payload.get("after") if event.op != "d" else payload.get("before")
    table = event.topic.split(".", 1)[1]
    return f"  [{source:8}] {table:18} op={event.op}  key={event.key_payload}  row={row}"


def _create_tables(info: StackInfo) -> None:
    target = info.database("pg-target")
    with psycopg.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                         dbname=target.database, autocommit=True) as conn:
        for ddl in TARGET_TABLES:
            conn.execute(ddl)
    pg = info.database("pg-source")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database,
                         autocommit=True) as conn:
        for ddl in PG_TABLES.values():
            conn.execute(ddl)
    my = info.database("my-source")
    conn2 = pymysql.connect(host=my.host, port=my.port, user=my.user, password=my.password, database=my.database,
                            autocommit=True)
    try:
        with conn2.cursor() as cur:
            for ddl in MY_TABLES.values():
                cur.execute(ddl)
    finally:
        conn2.close()


def _write_load(info: StackInfo, stop: threading.Event, seconds: float, failures: list[str]) -> None:
    try:
        _write_until(info, stop, seconds)
    except (psycopg.Error, pymysql.MySQLError) as exc:
        failures.append(" ".join(str(exc).split()))
        stop.set()


def _write_until(info: StackInfo, stop: threading.Event, seconds: float) -> None:
    rng = random.Random()  # noqa: S311 - demo data, not security
    pg, my = info.database("pg-source"), info.database("my-source")
    pg_conn = psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password,
                              dbname=pg.database, autocommit=True)
    my_conn = pymysql.connect(host=my.host, port=my.port, user=my.user, password=my.password,
                              database=my.database, autocommit=True)
    names = ["ada", "grace", "edsger", "barbara", "ken", "frances"]
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and not stop.is_set():
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


def _truncate_until_seen(info: StackInfo, tail: EventTail, topics: set[str]) -> None:
    """Truncate the demo tables until the truncates show up in Kafka: a connector that was just
    registered may not stream yet, and a truncate it misses would leave old rows on the target."""
    for _ in range(10):
        _truncate_sources(info)
        seen = {e.topic for e in tail.events(idle_timeout_s=3.0) if e.op == "t"}
        if seen >= topics:
            return
    raise ReplicatorError("the demo connectors did not stream the demo tables' truncates within 30 s",
                          hint="see `replicator stack status` and the Connect log under the run directory")


def _truncate_sources(info: StackInfo) -> None:
    pg = info.database("pg-source")
    with psycopg.connect(host=pg.host, port=pg.port, user=pg.user, password=pg.password, dbname=pg.database,
                         autocommit=True) as conn:
        conn.execute("TRUNCATE public.demo_customers, public.demo_audit_log")
    my = info.database("my-source")
    conn2 = pymysql.connect(host=my.host, port=my.port, user=my.user, password=my.password, database=my.database,
                            autocommit=True)
    try:
        with conn2.cursor() as cur:
            cur.execute("TRUNCATE demo_orders")
    finally:
        conn2.close()


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


def _rows(info: StackInfo, name: str, query: str) -> list[tuple[object, ...]]:
    db = info.database(name)
    if db.engine == "postgres":
        with psycopg.connect(host=db.host, port=db.port, user=db.user, password=db.password, dbname=db.database,
                             autocommit=True) as conn:
            return [tuple(r) for r in conn.execute(query).fetchall()]
    conn2 = pymysql.connect(host=db.host, port=db.port, user=db.user, password=db.password, database=db.database)
    try:
        with conn2.cursor() as cur:
            cur.execute("SET time_zone = '+00:00'")
            cur.execute(query)
            return [tuple(r) for r in cur.fetchall()]
    finally:
        conn2.close()


def _same(left: list[tuple[object, ...]], right: list[tuple[object, ...]]) -> bool:
    def norm(value: object) -> object:
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value.astimezone(dt.UTC).replace(tzinfo=None)
        return value

    return [tuple(map(norm, r)) for r in left] == [tuple(map(norm, r)) for r in right]


def _compare(info: StackInfo, appliers: list[tuple[threading.Event, threading.Thread, list[BaseException]]],
             say: Callable[[str], None]) -> None:
    say("    waiting for the appliers to catch up, then comparing every demo table (source vs target):")
    deadline = time.monotonic() + 60
    try:
        for table, (source, source_query, target_query) in COMPARED.items():
            while True:
                errors = [e for _, _, errs in appliers for e in errs]
                if errors:
                    raise errors[0]
                source_rows = _rows(info, source, source_query)
                if _same(source_rows, _rows(info, "pg-target", target_query)):
                    say(f"    {table:24} {len(source_rows):5} rows   target equals source")
                    break
                if time.monotonic() > deadline:
                    raise ReplicatorError(f"the demo target table {table} did not catch up with its source in 60 s")
                time.sleep(0.5)
    finally:
        for halt, thread, _ in appliers:
            halt.set()
            thread.join(30)
