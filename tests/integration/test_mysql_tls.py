"""A MySQL/MariaDB server that offers TLS: our connections take it without any TLS option (pymysql's
"preferred" mode), through the context built once per process and only when a server asks for it
(dialects/mysql.py). A private MariaDB started with a self-signed certificate; the stack's servers
offer no TLS, so every other test covers the path where the context is never built."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from replicator.config import Endpoint, Engine
from replicator.dialects.mysql import _Connection, connect
from replicator.stack.components import free_port
from replicator.stack.processes import ProcessRecord
from tests.integration.conftest import RUN_DIR

pytestmark = pytest.mark.integration


@pytest.fixture
def tls_server() -> Iterator[Endpoint]:
    directory = RUN_DIR / f"tls-{uuid.uuid4().hex[:8]}"
    directory.mkdir(parents=True)
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"], check=True, capture_output=True)
    cert.chmod(0o644)
    key.chmod(0o644)  # read by the server's own user
    port, password = free_port(), uuid.uuid4().hex
    # started as the stack starts its servers, from a process of its own (which leaves it running)
    started = subprocess.run(
        [sys.executable, "-c", "import json, sys; from pathlib import Path;"
         " from replicator.stack.components import start_mariadb; from replicator.stack.system import ensure_binaries;"
         " d = Path(sys.argv[1]); print(json.dumps(start_mariadb(ensure_binaries(), d, int(sys.argv[2]), sys.argv[3],"
         " server_id=9901, tls=(d / 'cert.pem', d / 'key.pem')).to_json()))", str(directory), str(port), password],
        check=True, capture_output=True, text=True, timeout=120)
    proc = ProcessRecord.from_json(json.loads(started.stdout.splitlines()[-1]))
    try:
        yield Endpoint(engine=Engine.MYSQL, host="127.0.0.1", port=port, database="app", user="replicator",
                       password=password)
    finally:
        proc.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _cipher(endpoint: Endpoint) -> str:
    conn = connect(endpoint, "source")
    try:
        with conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            return str(cur.fetchone()[1])
    finally:
        conn.close()


def test_a_server_offering_tls_gets_tls_connections_from_one_shared_context(tls_server: Endpoint) -> None:
    first = _cipher(tls_server)
    assert first, "the connection did not use TLS"
    shared = _Connection._preferred
    assert shared is not None  # built when the server asked for TLS
    assert _cipher(tls_server) == first
    assert _Connection._preferred is shared  # and not built again
