"""`replicator stack up | down | status`: the whole local stack under one run directory.

Layout of RUN (default ./.stack, or $REPLICATOR_STACK_DIR, or --run-dir):
    stack.json            the connection file: every address, user, password (mode 0600) and PID
    secrets/*.password    one password file per database, referenced by the example configs
    configs/*.yaml        ready-to-use migration configs: pg-to-pg, mariadb-to-pg, pg-to-mariadb, ...
    pg-source/ pg-target/ my-source/ my-target/ broker/ moto/ connect/   data and logs

`up` on a run directory whose stack is already running reuses it, and restarts only the parts that
have stopped (same ports, same data). `down` stops only the processes whose PID *and* start time it
recorded, then removes the run directory. A lock file serialises concurrent `up`/`down` calls.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import signal
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from replicator.errors import StackError
from replicator.stack import components as comp
from replicator.stack.processes import ProcessRecord
from replicator.stack.system import Binaries, ensure_binaries

DEFAULT_RUN_DIR = ".stack"
ENV_RUN_DIR = "REPLICATOR_STACK_DIR"
STACK_FILE = "stack.json"

DATABASES = ("pg-source", "pg-target", "my-source", "my-target")
SERVER_IDS = {"my-source": 1, "my-target": 2}


def default_run_dir() -> Path:
    return Path(os.environ.get(ENV_RUN_DIR, DEFAULT_RUN_DIR)).absolute()


@dataclass(frozen=True)
class Database:
    name: str
    engine: str  # "postgres" or "mysql"
    host: str
    port: int
    user: str
    password: str
    database: str

    def describe(self) -> str:
        return f"{self.engine}://{self.user}@{self.host}:{self.port}/{self.database}"


@dataclass
class StackInfo:
    """The contents of stack.json: what tests and other commands read."""

    run_dir: Path
    durable: bool
    ports: dict[str, int]
    passwords: dict[str, str]
    processes: dict[str, ProcessRecord] = field(default_factory=dict)

    @property
    def bootstrap_servers(self) -> str:
        return f"{comp.HOST}:{self.ports['broker']}"

    @property
    def connect_url(self) -> str:
        return f"http://{comp.HOST}:{self.ports['connect']}"

    def database(self, name: str) -> Database:
        engine = "postgres" if name.startswith("pg-") else "mysql"
        return Database(
            name=name,
            engine=engine,
            host=comp.HOST,
            port=self.ports[name],
            user="postgres" if engine == "postgres" else comp.MARIADB_USER,
            password=self.passwords[name],
            database="app",
        )

    def components(self) -> list[str]:
        return (["moto"] if self.durable else []) + ["broker", "connect", *DATABASES]

    def to_json(self) -> dict[str, Any]:
        return {
            "run_dir": str(self.run_dir),
            "durable": self.durable,
            "ports": self.ports,
            "passwords": self.passwords,
            "processes": {name: rec.to_json() for name, rec in self.processes.items()},
            "bootstrap_servers": self.bootstrap_servers,
            "connect_url": self.connect_url,
            "databases": {name: self.database(name).__dict__ for name in DATABASES},
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> StackInfo:
        return StackInfo(
            run_dir=Path(data["run_dir"]),
            durable=bool(data["durable"]),
            ports={k: int(v) for k, v in data["ports"].items()},
            passwords=dict(data["passwords"]),
            processes={k: ProcessRecord.from_json(v) for k, v in data["processes"].items()},
        )


class LocalStack:
    def __init__(self, run_dir: Path | None = None) -> None:
        self.run_dir = (run_dir or default_run_dir()).absolute()
        self._bins: Binaries | None = None

    # --- reading ---------------------------------------------------------------------------------

    def load(self) -> StackInfo | None:
        path = self.run_dir / STACK_FILE
        if not path.exists():
            return None
        try:
            return StackInfo.from_json(json.loads(path.read_text()))
        except (ValueError, KeyError) as exc:
            raise StackError(f"{path} is damaged ({exc})", hint="run `replicator stack down` and up again") from None

    def info(self) -> StackInfo:
        info = self.load()
        if info is None:
            raise StackError(f"no local stack at {self.run_dir}", hint="start one with `replicator stack up`")
        return info

    def status(self) -> list[tuple[str, str, bool]]:
        info = self.info()
        rows = []
        for name in info.components():
            record = info.processes.get(name)
            rows.append((name, self._address(info, name), record is not None and record.alive()))
        return rows

    @staticmethod
    def _address(info: StackInfo, name: str) -> str:
        if name in DATABASES:
            return info.database(name).describe()
        if name == "connect":
            return info.connect_url
        if name == "broker":
            return info.bootstrap_servers
        return f"http://{comp.HOST}:{info.ports[name]}"

    # --- starting --------------------------------------------------------------------------------

    def up(self, durable: bool = False) -> StackInfo:
        with self._locked():
            info = self.load()
            if info is None:
                info = self._new_info(durable)
            elif info.durable != durable:
                mode = "durable (s3)" if info.durable else "memory"
                raise StackError(
                    f"the stack at {self.run_dir} is running with {mode} broker storage",
                    hint="run `replicator stack down` first to change it",
                )
            self._start_missing(info)
            self._write_configs(info)
            return info

    def start(self, name: str) -> StackInfo:
        """Start one stopped component again (same port, same data)."""
        with self._locked():
            info = self.info()
            self._start_missing(info, only=name)
            return info

    def stop(self, name: str, *, kill: bool = False) -> None:
        """Stop one component; kill=True is kill -9, as a crash."""
        with self._locked():
            info = self.info()
            record = info.processes.get(name)
            if record is None:
                raise StackError(f"the stack has no component {name!r}")
            if kill:
                record.kill()
            else:
                record.stop(signal.SIGINT if name.startswith("pg-") else signal.SIGTERM)

    def down(self) -> bool:
        """Stop what we started and remove the run directory. False when there was nothing."""
        if not (self.run_dir / STACK_FILE).exists():
            return False
        with self._locked():
            info = self.info()
            for name in reversed(info.components()):
                record = info.processes.get(name)
                if record is not None:
                    record.stop(signal.SIGINT if name.startswith("pg-") else signal.SIGTERM)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        return True

    # --- internals -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with (self.run_dir / ".lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _new_info(self, durable: bool) -> StackInfo:
        self.run_dir.chmod(0o755)
        names = (["moto"] if durable else []) + ["broker", "connect", *DATABASES]
        ports = {name: comp.free_port() for name in names}
        passwords = {name: secrets.token_urlsafe(18) for name in DATABASES}
        info = StackInfo(run_dir=self.run_dir, durable=durable, ports=ports, passwords=passwords)
        self._save(info)
        return info

    def _save(self, info: StackInfo) -> None:
        path = self.run_dir / STACK_FILE
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(info.to_json(), indent=2))
        tmp.chmod(0o600)
        tmp.replace(path)

    def _starter(self, info: StackInfo, name: str) -> Callable[[], ProcessRecord]:
        bins = self._bins
        assert bins is not None
        where = self.run_dir / name
        port = info.ports[name]
        if name == "moto":
            return lambda: comp.start_moto(where, port)
        if name == "broker":
            moto = info.ports.get("moto") if info.durable else None
            return lambda: comp.start_broker(bins, where, port, moto)
        if name == "connect":
            return lambda: comp.start_connect(bins, where, port, info.ports["broker"])
        password = info.passwords[name]
        if name.startswith("pg-"):
            return lambda: comp.start_postgres(bins, where, port, password, logical=name == "pg-source")
        return lambda: comp.start_mariadb(bins, where, port, password, server_id=SERVER_IDS[name])

    def _start_missing(self, info: StackInfo, only: str | None = None) -> None:
        wanted = [
            n for n in info.components()
            if (only is None or n == only) and not (n in info.processes and info.processes[n].alive())
        ]
        if not wanted:
            return
        self._bins = ensure_binaries()
        # The broker (and its S3 store) first: Connect needs it; the rest start side by side.
        for first in ("moto", "broker"):
            if first in wanted:
                info.processes[first] = self._starter(info, first)()
                self._save(info)
                wanted.remove(first)
        errors: list[StackError] = []
        with ThreadPoolExecutor(max_workers=len(wanted) or 1) as pool:
            futures = {name: pool.submit(self._starter(info, name)) for name in wanted}
            for name, future in futures.items():
                try:
                    info.processes[name] = future.result()
                except StackError as exc:
                    errors.append(exc)
        self._save(info)
        if errors:
            raise StackError(
                f"{len(errors)} part(s) of the stack failed to start: {errors[0].line()}",
                hint="fix it, then `replicator stack up` again (or `stack down` to clean up)",
            )

    def _write_configs(self, info: StackInfo) -> None:
        secrets_dir = self.run_dir / "secrets"
        secrets_dir.mkdir(exist_ok=True)
        secrets_dir.chmod(0o700)
        for name in DATABASES:
            path = secrets_dir / f"{name}.password"
            path.write_text(info.passwords[name] + "\n")
            path.chmod(0o600)
        configs = self.run_dir / "configs"
        configs.mkdir(exist_ok=True)
        pairs = {
            "pg-to-pg": ("pg-source", "pg-target", "pgpg", 5401),
            "mariadb-to-pg": ("my-source", "pg-target", "mypg", 5402),
            "pg-to-mariadb": ("pg-source", "my-target", "pgmy", 5403),
            "mariadb-to-mariadb": ("my-source", "my-target", "mymy", 5404),
        }
        for file_name, (source, target, prefix, server_id) in pairs.items():
            config = example_config(info, source, target, prefix, server_id)
            (configs / f"{file_name}.yaml").write_text(
                f"# A ready-to-use migration config for the local stack at {self.run_dir}.\n"
                + yaml.safe_dump(config, sort_keys=False)
            )


def example_config(info: StackInfo, source: str, target: str, prefix: str, server_id: int) -> dict[str, Any]:
    def endpoint(name: str) -> dict[str, Any]:
        db = info.database(name)
        return {
            "engine": db.engine,
            "host": db.host,
            "port": db.port,
            "database": db.database,
            "user": db.user,
            "password_file": str(info.run_dir / "secrets" / f"{name}.password"),
        }

    connector: dict[str, Any] = {"heartbeat_interval_ms": 2000, "keep_alive_interval_ms": 5000}
    if source.startswith("my-"):
        connector["server_id"] = server_id
        connector["history_file"] = str(info.run_dir / "connect" / f"history-{prefix}.dat")
    return {
        "source": endpoint(source),
        "target": endpoint(target),
        "kafka": {"bootstrap_servers": info.bootstrap_servers, "topic_prefix": prefix},
        "connect": {"url": info.connect_url},
        "tables": {"include": ["public.*"] if source.startswith("pg-") else ["app.*"]},
        "connector": connector,
        "metrics": {"address": "127.0.0.1:9102"},
    }
