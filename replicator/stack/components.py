"""How each part of the local stack is initialised, started and probed.

Every component is a function of (its directory, its port, the binaries) and leaves a
`ProcessRecord`. Initialisation happens once per directory; a restart of a stopped component reuses
its data (databases) or starts empty (the broker on memory storage: that is the point of --durable).
"""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import psycopg
import pymysql

from replicator.errors import StackError
from replicator.stack.processes import ProcessRecord, spawn
from replicator.stack.system import Binaries, connect_classpath

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(probe: Callable[[], bool], what: str, log: Path, timeout_s: float, proc: ProcessRecord) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if probe():
            return
        if not proc.alive():
            raise StackError(f"{what} exited during start-up", hint=f"see {log}: {_last_line(log)}")
        time.sleep(0.1)
    raise StackError(f"{what} did not answer within {timeout_s:.0f} s", hint=f"see {log}: {_last_line(log)}")


def _last_line(log: Path) -> str:
    try:
        lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "(no log)"
    return lines[-1][:300] if lines else "(empty log)"


def _run(argv: list[str], what: str, log: Path, *, user: str | None = None) -> None:
    """Run an init step; its whole output goes to `log`, the first error line into the exception."""
    result = subprocess.run(argv, capture_output=True, text=True, user=user, check=False)
    output = (result.stdout or "") + (result.stderr or "")
    with log.open("a") as handle:
        handle.write(f"$ {' '.join(argv)}\n{output}\n")
    if result.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()]
        errors = [line for line in lines if "ERROR" in line and "Aborting" not in line]
        detail = (errors or lines or [f"exit {result.returncode}"])[0]
        raise StackError(f"{what} failed: {detail.strip()[:300]}", hint=f"full output in {log}")


def _service_user(name: str) -> str | None:
    """Database servers refuse to run as root: run them as their Debian system user then."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(name)
    except KeyError:
        raise StackError(f"running as root but the system user {name!r} does not exist") from None
    return name


def _hand_to(user: str | None, path: Path) -> None:
    if user is None:
        return
    entry = pwd.getpwnam(user)
    for parent in [path, *path.parents]:
        if parent == Path("/"):
            break
        if parent == path:
            os.chown(parent, entry.pw_uid, entry.pw_gid)
        elif not os.stat(parent).st_mode & 0o001:
            raise StackError(
                f"{user} cannot reach {path}: {parent} is not traversable by other users",
                hint="choose a run directory under a world-traversable path with --run-dir",
            )


# --- PostgreSQL ----------------------------------------------------------------------------------


def start_postgres(
    bins: Binaries, directory: Path, port: int, password: str, *, logical: bool
) -> ProcessRecord:
    user = _service_user("postgres")
    data = directory / "data"
    log = directory / "postgres.log"
    if not (data / "PG_VERSION").exists():
        directory.mkdir(parents=True, exist_ok=True)
        _hand_to(user, directory)
        pwfile = directory / "pwfile"
        pwfile.write_text(password + "\n")
        pwfile.chmod(0o600)
        if user:
            shutil.chown(pwfile, user)
        _run(
            [str(bins.pg_bin / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8", "--locale=C",
             "--auth-local=trust", "--auth-host=scram-sha-256", f"--pwfile={pwfile}"],
            "initdb",
            directory / "init.log",
            user=user,
        )
        pwfile.unlink()
    settings = {
        "listen_addresses": HOST,
        "port": str(port),
        "unix_socket_directories": "",
        "max_connections": "200",
        "shared_buffers": "256MB",
        "fsync": "off",  # a development stack: speed over crash safety of the database itself
        "max_wal_senders": "30",
        "max_replication_slots": "30",
        "wal_level": "logical" if logical else "replica",
    }
    argv = [str(bins.pg_bin / "postgres"), "-D", str(data)]
    for key, value in settings.items():
        argv += ["-c", f"{key}={value}"]
    proc = spawn(argv, log, user=user)

    def ready() -> bool:
        try:
            with psycopg.connect(host=HOST, port=port, user="postgres", password=password,
                                 dbname="postgres", connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    wait_until(ready, f"PostgreSQL on port {port}", log, 30, proc)
    with psycopg.connect(host=HOST, port=port, user="postgres", password=password,
                         dbname="postgres", autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'app'").fetchone() is None:
            conn.execute("CREATE DATABASE app")
    return proc


def stop_postgres(proc: ProcessRecord) -> None:
    proc.stop(signal.SIGINT)  # "fast" shutdown; SIGTERM would wait for every client to leave


# --- MariaDB -------------------------------------------------------------------------------------


MARIADB_USER = "replicator"


def _mariadb_socket(directory: Path) -> Path:
    path = directory / "sock"
    if len(str(path)) > 100:  # unix socket paths are limited to 108 bytes
        digest = hashlib.sha1(str(directory).encode()).hexdigest()[:12]  # noqa: S324 - a name, not security
        path = Path("/tmp") / f"replicator-{digest}.sock"  # noqa: S108
    return path


def start_mariadb(bins: Binaries, directory: Path, port: int, password: str, *, server_id: int,
                  tls: tuple[Path, Path] | None = None) -> ProcessRecord:
    """A MariaDB server with row binlog; `tls` (certificate, key files) makes it offer TLS."""
    user = _service_user("mysql")
    data = directory / "data"
    log = directory / "mariadb.log"
    fresh = not (data / "mysql").exists()
    # A tmpdir of its own: a starting mariadbd deletes every `#sql*` file in its tmpdir, so servers
    # sharing /tmp remove each other's temporary tables mid-query (seen: bootstrap aborting on
    # "Unknown table 'mysql.tmp_proxies_priv'", GROUP BY failing on "Error on delete of /tmp/#sql…").
    tmp = directory / "tmp"
    directory.mkdir(parents=True, exist_ok=True)
    tmp.mkdir(exist_ok=True)
    if user:
        entry = pwd.getpwnam(user)
        os.chown(tmp, entry.pw_uid, entry.pw_gid)
    if fresh:
        _hand_to(user, directory)
        argv = [str(bins.mariadb_install_db), "--no-defaults", f"--datadir={data}",
                "--auth-root-authentication-method=normal", "--skip-test-db", f"--tmpdir={tmp}"]
        if user:
            argv.insert(2, f"--user={user}")
        try:
            _run(argv, "mariadb-install-db", directory / "init.log")
        except StackError:
            # Seen once in many runs: bootstrap aborts. A second try on a clean directory succeeds.
            shutil.rmtree(data, ignore_errors=True)
            _run(argv, "mariadb-install-db", directory / "init.log")
    sock = _mariadb_socket(directory)
    argv = [
        str(bins.mariadbd), "--no-defaults", f"--datadir={data}", f"--tmpdir={tmp}", f"--port={port}",
        f"--bind-address={HOST}",
        f"--socket={sock}", f"--pid-file={directory / 'mariadb.pid'}", f"--log-bin={directory / 'binlog'}",
        "--binlog-format=ROW", "--binlog-row-image=FULL", f"--server-id={server_id}",
        "--character-set-server=utf8mb4", "--skip-name-resolve", "--local-infile=1",
        "--innodb-buffer-pool-size=256M", "--innodb-flush-log-at-trx-commit=2", "--max-connections=300",
    ]
    if tls is not None:
        argv += [f"--ssl-cert={tls[0]}", f"--ssl-key={tls[1]}"]
    if user:
        argv.insert(2, f"--user={user}")
    proc = spawn(argv, log)

    def ready() -> bool:
        try:
            pymysql.connect(unix_socket=str(sock), user="root", connect_timeout=2).close()
            return True
        except pymysql.MySQLError:
            return False

    wait_until(ready, f"MariaDB on port {port}", log, 30, proc)
    if fresh:
        _mariadb_setup(sock, password)
    return proc


def _mariadb_setup(sock: Path, password: str) -> None:
    conn = pymysql.connect(unix_socket=str(sock), user="root", autocommit=True)
    try:
        with conn.cursor() as cur:
            # mariadb-install-db creates anonymous users; they shadow 'x'@'%' from 127.0.0.1.
            cur.execute("SELECT User, Host FROM mysql.user WHERE User = ''")
            for name, host in cur.fetchall():
                cur.execute("DROP USER %s@%s", (name, host))
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (MARIADB_USER, password))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (MARIADB_USER,))
            cur.execute("CREATE DATABASE IF NOT EXISTS app CHARACTER SET utf8mb4")
    finally:
        conn.close()


# --- broker --------------------------------------------------------------------------------------


def start_moto(directory: Path, port: int) -> ProcessRecord:
    log = directory / "moto.log"
    directory.mkdir(parents=True, exist_ok=True)
    proc = spawn([sys.executable, "-m", "moto.server", "-H", HOST, "-p", str(port)], log)

    def ready() -> bool:
        try:
            return httpx.put(f"http://{HOST}:{port}/tansu", timeout=2).status_code in (200, 409)
        except httpx.HTTPError:
            return False

    wait_until(ready, f"the S3 server (moto) on port {port}", log, 30, proc)
    return proc


def start_broker(bins: Binaries, directory: Path, port: int, moto_port: int | None) -> ProcessRecord:
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "tansu.log"
    env = dict(os.environ)
    storage = "memory://tansu/"
    if moto_port is not None:
        storage = "s3://tansu/"
        env.update(
            AWS_ENDPOINT=f"http://{HOST}:{moto_port}", AWS_ALLOW_HTTP="true", AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",  # noqa: S106 - local moto only
        )
    url = f"tcp://{HOST}:{port}"
    proc = spawn(
        [str(bins.tansu), "broker", "--listener-url", url, "--advertised-listener-url", url,
         "--storage-engine", storage],
        log,
        env=env,
    )
    wait_until(lambda: _tcp_open(port), f"the broker on port {port}", log, 20, proc)
    return proc


def _tcp_open(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1):
            return True
    except OSError:
        return False


# --- Kafka Connect -------------------------------------------------------------------------------


LOG4J = """\
status = error
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c{1})%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
logger.reflections.name = org.reflections
logger.reflections.level = ERROR
"""


def start_connect(bins: Binaries, directory: Path, port: int, broker_port: int) -> ProcessRecord:
    directory.mkdir(parents=True, exist_ok=True)
    log = directory / "connect.log"
    (directory / "log4j2.properties").write_text(LOG4J)
    worker = {
        "bootstrap.servers": f"{HOST}:{broker_port}",
        "key.converter": "org.apache.kafka.connect.json.JsonConverter",
        "value.converter": "org.apache.kafka.connect.json.JsonConverter",
        "key.converter.schemas.enable": "true",
        "value.converter.schemas.enable": "true",
        "offset.storage.file.filename": str(directory / "offsets.dat"),
        "offset.flush.interval.ms": "1000",
        "listeners": f"http://{HOST}:{port}",
        "plugin.discovery": "service_load",
    }
    (directory / "worker.properties").write_text("".join(f"{k}={v}\n" for k, v in worker.items()))
    proc = spawn(
        # UTF-8 explicitly: Java 17 falls back to ASCII without a locale, and Debezium then garbles
        # non-ASCII table names read from pgoutput (and stops matching them to the include list).
        [str(bins.java), "-Xmx1g", "-Dfile.encoding=UTF-8",
         f"-Dlog4j2.configurationFile={directory / 'log4j2.properties'}",
         "-cp", connect_classpath(bins.connect_libs), "org.apache.kafka.connect.cli.ConnectStandalone",
         str(directory / "worker.properties")],
        log,
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://{HOST}:{port}/connectors", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    # Jetty answers 404 for a few seconds before the REST resources are up: wait for a 200.
    wait_until(ready, f"Kafka Connect on port {port}", log, 90, proc)
    return proc
