"""The migration config: one YAML file, every key declared once here (parser, default, doc).

Each key can be overridden by an environment variable `REPLICATOR_<SECTION>__<KEY>` (double
underscore between levels, e.g. `REPLICATOR_SOURCE__PASSWORD`, `REPLICATOR_KAFKA__BOOTSTRAP_SERVERS`).
The file and the overrides are validated together at load (`replicator.sections`); any problem
becomes a `ConfigError` whose one line names the key, what was wrong and the expected form.
Passwords are `Secret`s: they print as `**********` and are revealed only where a driver needs them
(`Endpoint.secret()`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from replicator.errors import ConfigError
from replicator.model import TableId
from replicator.sections import (
    Key,
    Problem,
    Problems,
    Section,
    choice,
    integer,
    mapping,
    number,
    optional,
    path,
    scalar,
    scalar_text,
    secret,
    section,
    text,
    texts,
)

ENV_PREFIX = "REPLICATOR_"
ENV_CONFIG_FILE = "REPLICATOR_CONFIG"


class Engine(StrEnum):
    POSTGRES = "postgres"
    MYSQL = "mysql"  # MySQL and MariaDB: one wire protocol, one Debezium connector


_ENGINE_ALIASES = {
    "postgres": Engine.POSTGRES,
    "postgresql": Engine.POSTGRES,
    "pg": Engine.POSTGRES,
    "mysql": Engine.MYSQL,
    "mariadb": Engine.MYSQL,
}

_NAME = r"^[A-Za-z0-9_.-]+$"
_PG_NAME = r"^[a-z0-9_]{1,63}$"


class Endpoint(Section):
    """One database server and database, as the source or the target."""

    engine = Key(choice(Engine, _ENGINE_ALIASES, what="engine"), "postgres, or mysql (also for MariaDB)")
    host = Key(text(min_length=1), "a host name or IP address")
    port = Key(integer(ge=1, le=65535), "a TCP port, 1-65535")
    database = Key(text(min_length=1), "the database name")
    user = Key(text(min_length=1), "the user name")
    password = Key(optional(secret), "the password (or use password_file)", default=None)
    password_file = Key(optional(path), "a file whose first line is the password (instead of password)",
                        default=None)

    def check(self) -> None:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")

    def secret(self) -> str:
        """The password, read from password_file when that is set. Never log the result."""
        if self.password_file is not None:
            try:
                found = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read password_file {self.password_file}: {exc.strerror}",
                    hint="point it at a readable file whose first line is the password",
                ) from None
            return found.splitlines()[0] if found else ""
        return self.password.get_secret_value() if self.password is not None else ""

    def describe(self) -> str:
        """`engine://user@host:port/database`, safe for logs: no password."""
        return f"{self.engine.value}://{self.user}@{self.host}:{self.port}/{self.database}"


class KafkaSettings(Section):
    bootstrap_servers = Key(text(min_length=1), "host:port[,host:port...] of the brokers")
    topic_prefix = Key(text(pattern=_NAME), "Debezium topic.prefix: letters, digits, '.', '_' or '-'",
                       default="replicator")
    replication_factor = Key(integer(ge=-1, le=32767),
                             "replication factor of topics we create (-1: broker default)", default=-1)
    options = Key(mapping(scalar),
                  "librdkafka client options passed through, e.g. security.protocol, sasl.*, ssl.*",
                  factory=dict[str, str | int | float | bool])

    def client_options(self) -> dict[str, str | int | float | bool]:
        """Options for a confluent-kafka client: the pass-through options plus the brokers."""
        return {**self.options, "bootstrap.servers": self.bootstrap_servers}


class ConnectSettings(Section):
    url = Key(text(pattern=r"^https?://\S+$"), "the Kafka Connect REST URL, http(s)://host:port")
    request_timeout_s = Key(number(gt=0), "seconds for one REST call", default=10.0)
    ready_timeout_s = Key(number(gt=0), "seconds to wait for a connector and its tasks to be RUNNING",
                          default=120.0)


class TableSelection(Section):
    include = Key(texts, "glob patterns over schema.table (a pattern without a dot matches table names)",
                  factory=lambda: ["*"])
    exclude = Key(texts, "glob patterns to leave out", factory=list[str])
    rename = Key(mapping(scalar_text), "source schema.table -> target schema.table", factory=dict[str, str])
    target_schema = Key(optional(text(min_length=1)),
                        "target schema (PostgreSQL) or database (MySQL) for every table (default: the source's name)",
                        default=None)

    def target_for(self, schema: str, table: str) -> tuple[str, str]:
        """Where a source table's rows go: a rename, else the same name (in target_schema if set)."""
        renamed = self.rename.get(f"{schema}.{table}")
        if renamed is not None:
            target_schema, _, target_table = renamed.rpartition(".")
            return (target_schema or self.target_schema or schema, target_table)
        return (self.target_schema or schema, table)

    def selects(self, schema: str, table: str) -> bool:
        qualified = f"{schema}.{table}"
        return any(_glob(p, qualified) for p in self.include) and not any(
            _glob(p, qualified) for p in self.exclude
        )


def _glob(pattern: str, qualified: str) -> bool:
    full = pattern if "." in pattern else f"*.{pattern}"
    return fnmatch.fnmatchcase(qualified, full)


class ConnectorSettings(Section):
    name = Key(optional(text(pattern=_NAME)),
               "the Kafka Connect connector name (default: <topic_prefix>-source)", default=None)
    slot_name = Key(optional(text(pattern=_PG_NAME)),
                    "PostgreSQL replication slot: lower-case letters, digits, '_' (default: from topic_prefix)",
                    default=None)
    publication_name = Key(optional(text(pattern=_PG_NAME)),
                           "PostgreSQL publication name (default: from topic_prefix)", default=None)
    server_id = Key(integer(ge=1, le=4294967295),
                    "MySQL/MariaDB replica server id, unique on the server", default=5400)
    heartbeat_interval_ms = Key(integer(ge=100), "Debezium heartbeat interval", default=2000)
    keep_alive_interval_ms = Key(integer(ge=100), "MySQL connector keep-alive (idle heartbeats follow it)",
                                 default=5000)
    history_file = Key(optional(text(min_length=1)),
                       "MySQL schema history file on the Connect worker (default: Kafka topic)", default=None)
    overrides = Key(mapping(scalar_text), "extra Debezium settings, applied last", factory=dict[str, str])


class ErrorPolicy(StrEnum):
    HALT = "halt"
    DEAD_LETTER = "dead-letter"


class SchemaEvolution(StrEnum):
    ADD = "add"
    FAIL = "fail"


class ApplySettings(Section):
    group_id = Key(optional(text(min_length=1)), "consumer group (default: <topic_prefix>-apply)", default=None)
    batch_max_events = Key(integer(ge=1), "events per target transaction, at most", default=5000)
    batch_max_wait_ms = Key(integer(ge=0), "longest wait to fill a batch", default=200)
    error_policy = Key(choice(ErrorPolicy), "halt or dead-letter", default=ErrorPolicy.HALT)
    dead_letter_topic = Key(optional(text(pattern=_NAME)),
                            "topic for events that failed for good (default: replicator-dlq.<topic_prefix>)",
                            default=None)
    schema_evolution = Key(choice(SchemaEvolution),
                           "a column new in the events: add it to the target, or fail", default=SchemaEvolution.ADD)
    session_timeout_ms = Key(integer(ge=1000), "consumer group session timeout", default=10000)
    max_poll_interval_ms = Key(integer(ge=1000),
                               "longest time between polls before the group evicts an instance", default=300000)


class ForeignKeyTiming(StrEnum):
    AFTER_LOAD = "after-load"
    CUTOVER = "cutover"


class SnapshotSettings(Section):
    workers = Key(integer(ge=1, le=64), "parallel copy workers", default=2)
    chunk_rows = Key(integer(ge=1), "rows per chunk, about", default=100_000)
    max_mb_per_s = Key(optional(number(gt=0)),
                       "throttle: at most this many MB/s read from the source (default: no limit)", default=None)
    index_memory_mb = Key(
        integer(ge=1, le=2_000_000),
        "PostgreSQL targets: maintenance_work_mem (MB) of each primary key and index built after the load "
        "(one build per worker may run at once; the server's default, 64 MB, sorts 2M keys on disk)",
        default=256,
    )
    foreign_keys = Key(
        choice(ForeignKeyTiming),
        "when target foreign keys are created: after-load (once the snapshot is loaded) or cutover",
        default=ForeignKeyTiming.AFTER_LOAD,
    )
    column_types = Key(
        mapping(scalar_text),
        "source schema.table.column -> target column type, instead of the translated one "
        "(e.g. json for a PostgreSQL array going to MySQL)",
        factory=dict[str, str],
    )


class ReconcileSettings(Section):
    workers = Key(integer(ge=1, le=32),
                  "chunks hashed at once (each hashes its source and target side at once)", default=1)
    chunk_rows = Key(integer(ge=100), "rows per chunk to start with (then adapted)", default=100_000)
    chunk_seconds = Key(number(gt=0), "integer keys: chunks sized to take about this long", default=0.5)
    leaf_rows = Key(integer(ge=1), "a differing range this small is compared row by row", default=2000)
    max_reported = Key(integer(ge=1), "differing rows listed per table (all are counted)", default=1000)
    rechecks = Key(integer(ge=1),
                   "anchored rechecks of a changing chunk before it is reported as unsettled", default=5)
    interval_s = Key(number(gt=0),
                     "serve --reconcile: seconds between the end of a pass and the start of the next",
                     default=300.0)


class MetricsSettings(Section):
    address = Key(text(pattern=r"^[^:\s]*:\d{1,5}$"), "host:port where /metrics is served",
                  default="127.0.0.1:9102")


class MigrationConfig(Section):
    source = Key(section(Endpoint))
    target = Key(section(Endpoint))
    kafka = Key(section(KafkaSettings))
    connect = Key(section(ConnectSettings))
    tables = Key(section(TableSelection), factory=TableSelection)
    connector = Key(section(ConnectorSettings), factory=ConnectorSettings)
    apply = Key(section(ApplySettings), factory=ApplySettings)
    snapshot = Key(section(SnapshotSettings), factory=SnapshotSettings)
    reconcile = Key(section(ReconcileSettings), factory=ReconcileSettings)
    metrics = Key(section(MetricsSettings), factory=MetricsSettings)
    state_schema = Key(text(pattern=r"^[a-z_][a-z0-9_]{0,62}$"),
                       "our state schema in the target: lower-case letters, digits, '_'", default="replicator")

    @property
    def watermark_table(self) -> TableId:
        """Our small table on the source whose rows, seen arriving in Kafka, prove the connector streams
        (replicator.snapshot): in our schema on PostgreSQL, beside the tables on MySQL (the connector
        reads one database)."""
        if self.source.engine is Engine.POSTGRES:
            return TableId(self.state_schema, "watermark")
        return TableId(self.source.database, f"{self.state_schema}_watermark")

    def selects(self, table: TableId) -> bool:
        """A source table is migrated: selected by `tables`, and not our watermark table."""
        return table != self.watermark_table and self.tables.selects(table.schema, table.name)

    @property
    def connector_name(self) -> str:
        return self.connector.name or f"{self.kafka.topic_prefix}-source"

    @property
    def slot_name(self) -> str:
        return self.connector.slot_name or _pg_name(f"replicator_{self.kafka.topic_prefix}")

    @property
    def apply_group_id(self) -> str:
        return self.apply.group_id or f"{self.kafka.topic_prefix}-apply"

    @property
    def dead_letter_topic(self) -> str:
        return self.apply.dead_letter_topic or f"replicator-dlq.{self.kafka.topic_prefix}"

    @property
    def publication_name(self) -> str:
        return self.connector.publication_name or _pg_name(f"replicator_{self.kafka.topic_prefix}")


def _pg_name(text: str) -> str:
    return re.sub(r"[^a-z0-9_]", "_", text.lower())[:63]


# --- loading -------------------------------------------------------------------------------------


def load_config(path: str | Path | None, environ: Mapping[str, str] | None = None) -> MigrationConfig:
    """Read, override from the environment and validate. Raises ConfigError with one line."""
    env = os.environ if environ is None else environ
    if path is None:
        path = env.get(ENV_CONFIG_FILE)
    if path is None:
        raise ConfigError(
            "no config file given", hint=f"pass --config FILE or set {ENV_CONFIG_FILE}=FILE"
        )
    where = Path(path)
    try:
        text = where.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file {where} not found", hint="check the path given to --config") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {where}: {exc.strerror}") from None
    return parse_config(text, env, origin=str(where))


def parse_config(text: str, environ: Mapping[str, str], origin: str = "config") -> MigrationConfig:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{origin}: not valid YAML{at}: {problem}", hint="fix the YAML syntax") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{origin}: the top level must be a mapping of sections (source, target, ...)")
    merged = _apply_env_overrides(raw, environ)
    try:
        return MigrationConfig(**{str(name): value for name, value in merged.items()})
    except Problems as exc:
        raise ConfigError(_describe(exc.problems, origin)) from None


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`REPLICATOR_A__B=v` sets key a.b. Only names whose first part is a top-level key count, so
    other variables of ours (REPLICATOR_CONFIG, REPLICATOR_STACK_DIR) are never taken for keys."""
    merged: dict[str, Any] = _deep_copy(raw)
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if path[0] not in MigrationConfig.keys:
            continue
        node = merged
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = _env_value(value)
    return merged


def _deep_copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _deep_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    return value


def _env_value(text: str) -> Any:
    """Lists and mappings may be given as YAML flow text; everything else stays a string."""
    stripped = text.strip()
    if stripped.startswith(("[", "{")):
        try:
            return yaml.safe_load(stripped)
        except yaml.YAMLError:
            return text
    return text


def _describe(problems: list[Problem], origin: str) -> str:
    first = problems[0]
    loc = list(first.loc)
    key = ".".join(loc) or "(top level)"
    more = f" (and {len(problems) - 1} more problem(s))" if len(problems) > 1 else ""
    env_name = ENV_PREFIX + "__".join(p.upper() for p in loc)
    if first.kind == "unknown":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        suggestion = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
        return f"{origin}: unknown key {key!r}; {suggestion}{more}"
    expected = _expected_form(loc)
    if first.kind == "missing":
        return f"{origin}: missing key {key!r}; expected {expected} (or set {env_name}){more}"
    if first.kind == "rule":
        return f"{origin}: {key}: {first.message}{more}"
    shown = "<hidden>" if _is_secret(loc) else repr(first.value)
    return f"{origin}: {key}: {first.message} (got {shown}); expected {expected}{more}"


def _is_secret(loc: list[str]) -> bool:
    return any("password" in p or "secret" in p or "sasl" in p for p in loc)


def _section_at(loc: list[str]) -> type[Section] | None:
    found: type[Section] | None = MigrationConfig
    for part in loc:
        key = found.keys.get(part) if found is not None else None
        found = key.section if key is not None else None
    return found


def _known_keys(loc: list[str]) -> list[str]:
    found = _section_at(loc)
    return sorted(found.keys) if found is not None else []


def _expected_form(loc: list[str]) -> str:
    """The doc of the key at `loc`, or of the mapping key that holds it (e.g. kafka.options.x)."""
    section: type[Section] | None = MigrationConfig
    key: Key[Any] | None = None
    for part in loc:
        if section is None:
            break
        key = section.keys.get(part)
        if key is None:
            return "a valid value"
        section = key.section
    if key is None:
        return "a mapping"
    if key.doc:
        return key.doc
    if key.section is not None:
        return f"a section with keys {', '.join(sorted(key.section.keys))}"
    return "a valid value"


def redacted(config: MigrationConfig) -> dict[str, Any]:
    """The config as plain data with every secret replaced: safe to print or serve."""
    data = config.dump()
    options = data["kafka"]["options"]
    for name in list(options):
        if any(word in name.lower() for word in ("password", "secret", "key", "token", "jaas")):
            options[name] = "**********"
    return data
