"""Through real Debezium: `connectors apply` registers the connector, and changes on the sources
arrive in Kafka as Debezium events with the right keys and ops (asserted on decoded messages)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from replicator.config import load_config
from replicator.kafka.admin import TopicAdmin
from replicator.kafka.tail import EventTail, RawEvent
from tests.integration.conftest import Scenario, pg_connect, run_cli

pytestmark = pytest.mark.integration


def consume(scenario: Scenario, topics: list[str], expected: int, timeout_s: float = 60) -> list[RawEvent]:
    config = load_config(scenario.config_path)
    tail = EventTail(config.kafka, topics, from_beginning=True)
    events: list[RawEvent] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(events) < expected and time.monotonic() < deadline:
            events.extend(tail.events(idle_timeout_s=1.0, limit=expected - len(events)))
    finally:
        tail.close()
    return events


def shape(events: list[RawEvent]) -> list[tuple[str | None, Any]]:
    """(op, key) per message; a tombstone is (None, key)."""
    return [(e.op, e.key_payload) for e in events]


def test_postgres_changes_arrive_with_keys_and_ops(pg_scenario: Scenario) -> None:
    s = pg_scenario
    ns = s.namespace
    s.source_sql(
        f"CREATE TABLE {ns}.items (id int PRIMARY KEY, name text, qty int NOT NULL DEFAULT 0)",
        f"CREATE TABLE {ns}.nopk (a int, b text)",
    )
    config = str(s.write_config())

    refused = run_cli("-c", config, "connectors", "apply", check=False)
    assert refused.returncode != 0
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert f"{ns}.nopk" in lines[0] and "--fix-replica-identity" in lines[0]
    assert "Traceback" not in refused.stderr

    run_cli("-c", config, "connectors", "apply", "--fix-replica-identity")
    with pg_connect(s.source) as conn:
        ident = conn.execute(f"SELECT relreplident::text FROM pg_class WHERE oid = '{ns}.nopk'::regclass").fetchone()
        assert ident == ("f",)

    s.source_sql(
        f"INSERT INTO {ns}.items VALUES (1, 'a', 1), (2, 'b', 2)",
        f"UPDATE {ns}.items SET qty = 10 WHERE id = 1",
        f"UPDATE {ns}.items SET id = 20 WHERE id = 2",
        f"DELETE FROM {ns}.items WHERE id = 1",
        f"TRUNCATE {ns}.items",
        f"INSERT INTO {ns}.nopk VALUES (1, 'x'), (1, 'x')",
        f"UPDATE {ns}.nopk SET b = 'y' WHERE ctid = (SELECT min(ctid) FROM {ns}.nopk)",
        f"DELETE FROM {ns}.nopk WHERE b = 'y'",
    )
    items_topic, nopk_topic = f"{s.prefix}.{ns}.items", f"{s.prefix}.{ns}.nopk"
    items = consume(s, [items_topic], expected=9)
    assert shape(items) == [
        ("c", {"id": 1}), ("c", {"id": 2}), ("u", {"id": 1}),
        ("d", {"id": 2}), (None, {"id": 2}), ("c", {"id": 20}),   # primary-key change
        ("d", {"id": 1}), (None, {"id": 1}),
        ("t", None),
    ]
    assert items[2].payload is not None and items[2].payload["after"] == {"id": 1, "name": "a", "qty": 10}
    assert items[3].headers["__debezium.newkey"] == b'{"id":20}'
    assert items[5].headers["__debezium.oldkey"] == b'{"id":2}'
    assert all(e.partition == 0 for e in items)

    nopk = consume(s, [nopk_topic], expected=5)
    assert shape(nopk) == [("c", None), ("c", None), ("u", None), ("d", None), (None, None)]  # null keys
    update = nopk[2].payload
    assert update is not None and update["before"] == {"a": 1, "b": "x"} and update["after"] == {"a": 1, "b": "y"}

    counts = TopicAdmin(load_config(config).kafka).partition_counts()
    assert counts[items_topic] == 1 and counts[nopk_topic] == 1

    status = run_cli("-c", config, "connectors", "status")
    assert "RUNNING" in status.stdout

    run_cli("-c", config, "connectors", "delete", "--drop-slot")
    with pg_connect(s.source) as conn:
        slot = load_config(config).slot_name
        assert conn.execute("SELECT 1 FROM pg_replication_slots WHERE slot_name = %s", (slot,)).fetchone() is None
        assert conn.execute("SELECT 1 FROM pg_publication WHERE pubname = %s", (slot,)).fetchone() is None
    gone = run_cli("-c", config, "connectors", "status", check=False)
    assert gone.returncode == 1 and "ABSENT" in gone.stdout


def test_mariadb_changes_arrive_with_keys_and_ops(my_scenario: Scenario) -> None:
    s = my_scenario
    s.source_sql(
        "CREATE TABLE orders (id int PRIMARY KEY, qty int, note varchar(20)) ENGINE=InnoDB",
        "CREATE TABLE log (msg varchar(20)) ENGINE=InnoDB",
    )
    config = str(s.write_config())
    run_cli("-c", config, "connectors", "apply")
    s.source_sql(
        "INSERT INTO orders VALUES (1, 5, 'a'), (2, 6, 'b')",
        "UPDATE orders SET qty = qty + 1",
        "UPDATE orders SET id = 30 WHERE id = 2",
        "DELETE FROM orders WHERE id = 1",
        "INSERT INTO log VALUES ('hello')",
    )
    orders = consume(s, [f"{s.prefix}.{s.namespace}.orders"], expected=9)
    assert shape(orders) == [
        ("c", {"id": 1}), ("c", {"id": 2}), ("u", {"id": 1}), ("u", {"id": 2}),
        ("d", {"id": 2}), (None, {"id": 2}), ("c", {"id": 30}),
        ("d", {"id": 1}), (None, {"id": 1}),
    ]
    update = orders[2].payload
    assert update is not None
    assert update["before"] == {"id": 1, "qty": 5, "note": "a"} and update["after"] == {"id": 1, "qty": 6, "note": "a"}
    assert update["source"]["connector"] == "mysql" and update["source"]["file"].startswith("binlog.")
    log = consume(s, [f"{s.prefix}.{s.namespace}.log"], expected=1)
    assert shape(log) == [("c", None)]


def test_table_topic_with_several_partitions_is_refused(pg_scenario: Scenario) -> None:
    s = pg_scenario
    s.source_sql(f"CREATE TABLE {s.namespace}.wide (id int PRIMARY KEY)")
    config = str(s.write_config())
    topic = f"{s.prefix}.{s.namespace}.wide"
    admin = AdminClient({"bootstrap.servers": s.stack.bootstrap_servers})
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    refused = run_cli("-c", config, "connectors", "apply", check=False)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    assert topic in refused.stderr and "3 partitions" in refused.stderr
    assert run_cli("-c", config, "connectors", "status", check=False).returncode == 1  # nothing registered


def test_a_second_binlog_reader_with_the_same_server_id_is_refused(my_scenario: Scenario, tmp_path: Any) -> None:
    """Two connectors reading one MariaDB's binlog with one replica server id disconnect each other
    every few seconds; the second is refused before anything is created, and `check` names it."""
    import yaml

    s = my_scenario
    s.source_sql("CREATE TABLE items (id int PRIMARY KEY) ENGINE=InnoDB")
    first = s.write_config()
    run_cli("-c", str(first), "connectors", "apply")
    data = yaml.safe_load(first.read_text())
    data["kafka"]["topic_prefix"] = f"{s.prefix}b"  # another migration of the same server: another connector
    data["connector"]["history_file"] = str(tmp_path / "history-second.dat")
    second = tmp_path / "second.yaml"
    second.write_text(yaml.safe_dump(data))
    refused = run_cli("-c", str(second), "connectors", "apply", check=False)
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1, refused.stderr
    assert f"connector {s.connector} on Kafka Connect already reads the binlog" in refused.stderr
    assert f"server id {s.server_id}" in refused.stderr and "connector.server_id" in refused.stderr
    assert run_cli("-c", str(second), "connectors", "status", check=False).returncode == 1  # nothing registered
    checked = run_cli("-c", str(second), "check", check=False)
    assert checked.returncode == 1 and f"connector {s.connector} on Kafka Connect" in checked.stdout, checked.stdout
    ours = run_cli("-c", str(first), "check", check=False)  # the first one's own registration is no clash
    assert "already reads the binlog" not in ours.stdout, ours.stdout
