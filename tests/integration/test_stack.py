"""The local stack itself: settings CDC needs, reuse, restart of a killed part, durable broker, down."""

from __future__ import annotations

import stat
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from replicator.config import load_config
from replicator.stack.launcher import LocalStack, StackInfo
from tests.integration.conftest import RUN_DIR, my_connect, pg_connect, run_cli

pytestmark = pytest.mark.integration


def test_databases_have_the_settings_cdc_needs(stack: StackInfo) -> None:
    with pg_connect(stack.database("pg-source")) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("logical",)
    with pg_connect(stack.database("pg-target")) as conn:
        assert conn.execute("SHOW wal_level").fetchone() == ("replica",)
    conn = my_connect(stack.database("my-source"))
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT @@log_bin, @@binlog_format, @@binlog_row_image")
            assert cur.fetchone() == (1, "ROW", "FULL")
            cur.execute("SELECT COUNT(*) FROM mysql.user WHERE User = ''")
            assert cur.fetchone() == (0,)  # anonymous users would shadow 'replicator'@'%'
    finally:
        conn.close()


def test_connection_file_and_example_configs(stack: StackInfo) -> None:
    assert stat.S_IMODE((stack.run_dir / "stack.json").stat().st_mode) == 0o600
    for name in ("pg-to-pg", "mariadb-to-pg", "pg-to-mariadb", "mariadb-to-mariadb"):
        config = load_config(stack.run_dir / "configs" / f"{name}.yaml", {})
        assert config.kafka.bootstrap_servers == stack.bootstrap_servers
        assert config.source.secret() == stack.passwords[
            "pg-source" if name.startswith("pg") else "my-source"]
        assert stat.S_IMODE(config.source.password_file.stat().st_mode) == 0o600  # type: ignore[union-attr]


def test_second_up_reuses_the_running_stack(stack: StackInfo) -> None:
    before = LocalStack(RUN_DIR).info().processes
    started = time.monotonic()
    result = run_cli("stack", "up", "--run-dir", str(RUN_DIR))
    assert time.monotonic() - started < 10
    assert LocalStack(RUN_DIR).info().processes == before
    assert "running" in result.stdout
    assert run_cli("stack", "status", "--run-dir", str(RUN_DIR)).returncode == 0


def test_durable_broker_survives_a_kill_and_down_stops_only_its_processes() -> None:
    # Not under pytest's tmp_path: that is mode 0700, and the databases run as their own users.
    run_dir = RUN_DIR.with_name(".stack-test-durable")
    run_cli("stack", "down", "--run-dir", str(run_dir))
    local = LocalStack(run_dir)
    try:
        run_cli("stack", "up", "--durable", "--run-dir", str(run_dir))
        info = local.info()
        assert info.durable and "moto" in info.processes
        admin = AdminClient({"bootstrap.servers": info.bootstrap_servers})
        topic = NewTopic("durable.check", num_partitions=1, replication_factor=1)
        admin.create_topics([topic])["durable.check"].result()
        producer = Producer({"bootstrap.servers": info.bootstrap_servers})
        for i in range(10):
            producer.produce("durable.check", key=str(i), value=f"v{i}")
        assert producer.flush(15) == 0
        group = {"bootstrap.servers": info.bootstrap_servers, "group.id": "g1", "enable.auto.commit": False,
                 "session.timeout.ms": 6000}
        consumer = Consumer(group)
        consumer.commit(offsets=[TopicPartition("durable.check", 0, 7)], asynchronous=False)
        consumer.close()

        local.stop("broker", kill=True)
        status = run_cli("stack", "status", "--run-dir", str(run_dir), check=False)
        assert status.returncode == 1 and "stopped" in status.stdout
        run_cli("stack", "up", "--durable", "--run-dir", str(run_dir))  # restarts only the broker
        after = local.info()
        assert after.processes["broker"] != info.processes["broker"]
        assert after.processes["connect"] == info.processes["connect"]

        consumer = Consumer({**group, "auto.offset.reset": "earliest"})
        assert consumer.committed([TopicPartition("durable.check", 0)], timeout=15)[0].offset == 7
        consumer.assign([TopicPartition("durable.check", 0, 0)])
        values = []
        deadline = time.monotonic() + 20
        while len(values) < 10 and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                values.append(message.value())
        consumer.close()
        assert values == [f"v{i}".encode() for i in range(10)]
    finally:
        records = list(local.info().processes.values()) if local.load() else []
        run_cli("stack", "down", "--run-dir", str(run_dir))
    assert not run_dir.exists()
    assert not any(record.alive() for record in records)
