"""The migration config: one YAML file, every key declared once here (type, default, doc).

Each key can be overridden by an environment variable `REPLICATOR_<SECTION>__<KEY>` (double
underscore between levels, e.g. `REPLICATOR_SOURCE__PASSWORD`, `REPLICATOR_KAFKA__BOOTSTRAP_SERVERS`).
The file and the overrides are validated together at load; any problem becomes a `ConfigError`
whose one line names the key, what was wrong and the expected form. Passwords are `SecretStr`: they
print as `**********` and are revealed only where a driver needs them (`Endpoint.secret()`).
"""

from __future__ import annotations

import difflib
import fnmatch
import os
import re
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from replicator.errors import ConfigError
from replicator.model import TableId

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Port = Annotated[int, Field(ge=1, le=65535, description="a TCP port, 1-65535")]


class Endpoint(_Section):
    """One database server and database, as the source or the target."""

    engine: Engine = Field(description="postgres, or mysql (also for MariaDB)")
    host: str = Field(min_length=1, description="a host name or IP address")
    port: Port
    database: str = Field(min_length=1, description="the database name")
    user: str = Field(min_length=1, description="the user name")
    password: SecretStr | None = Field(default=None, description="the password (or use password_file)")
    password_file: Path | None = Field(
        default=None, description="a file whose first line is the password (instead of password)"
    )

    @field_validator("engine", mode="before")
    @classmethod
    def _engine_alias(cls, value: object) -> object:
        if isinstance(value, str):
            found = _ENGINE_ALIASES.get(value.strip().lower())
            if found is None:
                raise ValueError(f"unknown engine {value!r}")
            return found
        return value

    @model_validator(mode="after")
    def _one_password_source(self) -> Endpoint:
        if self.password is not None and self.password_file is not None:
            raise ValueError("give either password or password_file, not both")
        return self

    def secret(self) -> str:
        """The password, read from password_file when that is set. Never log the result."""
        if self.password_file is not None:
            try:
                text = self.password_file.read_text(encoding="utf-8")
            except OSError as exc:
                raise ConfigError(
                    f"cannot read password_file {self.password_file}: {exc.strerror}",
                    hint="point it at a readable file whose first line is the password",
                ) from None
            return text.splitlines()[0] if text else ""
        return self.password.get_secret_value() if self.password is not None else ""

    def describe(self) -> str:
        """`engine://user@host:port/database`, safe for logs: no password."""
        return f"{self.engine.value}://{self.user}@{self.host}:{self.port}/{self.database}"


class KafkaSettings(_Section):
    bootstrap_servers: str = Field(min_length=1, description="host:port[,host:port...] of the brokers")
    topic_prefix: str = Field(
        default="replicator",
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Debezium topic.prefix: letters, digits, '.', '_' or '-'",
    )
    replication_factor: int = Field(
        default=-1, ge=-1, le=32767, description="replication factor of topics we create (-1: broker default)"
    )
    options: dict[str, str | int | float | bool] = Field(
        default_factory=dict,
        description="librdkafka client options passed through, e.g. security.protocol, sasl.*, ssl.*",
    )

    def client_options(self) -> dict[str, str | int | float | bool]:
        """Options for a confluent-kafka client: the pass-through options plus the brokers."""
        return {**self.options, "bootstrap.servers": self.bootstrap_servers}


class ConnectSettings(_Section):
    url: str = Field(pattern=r"^https?://\S+$", description="the Kafka Connect REST URL, http(s)://host:port")
    request_timeout_s: float = Field(default=10.0, gt=0, description="seconds for one REST call")
    ready_timeout_s: float = Field(
        default=120.0, gt=0, description="seconds to wait for a connector and its tasks to be RUNNING"
    )


class TableSelection(_Section):
    include: list[str] = Field(
        default_factory=lambda: ["*"],
        description="glob patterns over schema.table (a pattern without a dot matches table names)",
    )
    exclude: list[str] = Field(default_factory=list, description="glob patterns to leave out")
    rename: dict[str, str] = Field(
        default_factory=dict, description="source schema.table -> target schema.table"
    )
    target_schema: str | None = Field(
        default=None,
        description="target schema (PostgreSQL) or database (MySQL) for every table (default: the source's name)",
    )

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


class ConnectorSettings(_Section):
    name: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="the Kafka Connect connector name (default: <topic_prefix>-source)",
    )
    slot_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,63}$",
        description="PostgreSQL replication slot: lower-case letters, digits, '_' (default: from topic_prefix)",
    )
    publication_name: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9_]{1,63}$",
        description="PostgreSQL publication name (default: from topic_prefix)",
    )
    server_id: int = Field(
        default=5400, ge=1, le=4294967295, description="MySQL/MariaDB replica server id, unique on the server"
    )
    heartbeat_interval_ms: int = Field(default=2000, ge=100, description="Debezium heartbeat interval")
    keep_alive_interval_ms: int = Field(
        default=5000, ge=100, description="MySQL connector keep-alive (idle heartbeats follow it)"
    )
    history_file: str | None = Field(
        default=None, description="MySQL schema history file on the Connect worker (default: Kafka topic)"
    )
    overrides: dict[str, str] = Field(
        default_factory=dict, description="extra Debezium settings, applied last"
    )


class ErrorPolicy(StrEnum):
    HALT = "halt"
    DEAD_LETTER = "dead-letter"


class SchemaEvolution(StrEnum):
    ADD = "add"
    FAIL = "fail"


class ApplySettings(_Section):
    group_id: str | None = Field(default=None, description="consumer group (default: <topic_prefix>-apply)")
    batch_max_events: int = Field(default=5000, ge=1, description="events per target transaction, at most")
    batch_max_wait_ms: int = Field(default=200, ge=0, description="longest wait to fill a batch")
    error_policy: ErrorPolicy = Field(default=ErrorPolicy.HALT, description="halt or dead-letter")
    dead_letter_topic: str | None = Field(
        default=None, pattern=r"^[A-Za-z0-9_.-]+$",
        description="topic for events that failed for good (default: replicator-dlq.<topic_prefix>)",
    )
    schema_evolution: SchemaEvolution = Field(
        default=SchemaEvolution.ADD, description="a column new in the events: add it to the target, or fail"
    )
    session_timeout_ms: int = Field(default=10000, ge=1000, description="consumer group session timeout")
    max_poll_interval_ms: int = Field(
        default=300000, ge=1000, description="longest time between polls before the group evicts an instance"
    )


class ForeignKeyTiming(StrEnum):
    AFTER_LOAD = "after-load"
    CUTOVER = "cutover"


class SnapshotSettings(_Section):
    workers: int = Field(default=2, ge=1, le=64, description="parallel copy workers")
    chunk_rows: int = Field(default=100_000, ge=1, description="rows per chunk, about")
    max_mb_per_s: float | None = Field(
        default=None, gt=0, description="throttle: at most this many MB/s read from the source (default: no limit)"
    )
    index_memory_mb: int = Field(
        default=256, ge=1, le=2_000_000,
        description="PostgreSQL targets: maintenance_work_mem (MB) of each primary key and index built after "
                    "the load (one build per worker may run at once; the server's default, 64 MB, sorts 2M keys "
                    "on disk)",
    )
    foreign_keys: ForeignKeyTiming = Field(
        default=ForeignKeyTiming.AFTER_LOAD,
        description="when target foreign keys are created: after-load (once the snapshot is loaded) or cutover",
    )
    column_types: dict[str, str] = Field(
        default_factory=dict,
        description="source schema.table.column -> target column type, instead of the translated one "
                    "(e.g. json for a PostgreSQL array going to MySQL)",
    )


class ReconcileSettings(_Section):
    workers: int = Field(default=1, ge=1, le=32,
                         description="chunks hashed at once (each hashes its source and target side at once)")
    chunk_rows: int = Field(default=100_000, ge=100, description="rows per chunk to start with (then adapted)")
    chunk_seconds: float = Field(default=0.5, gt=0, description="integer keys: chunks sized to take about this long")
    leaf_rows: int = Field(default=2000, ge=1, description="a differing range this small is compared row by row")
    max_reported: int = Field(default=1000, ge=1, description="differing rows listed per table (all are counted)")
    rechecks: int = Field(default=5, ge=1, description="anchored rechecks of a changing chunk before it is "
                          "reported as unsettled")
    interval_s: float = Field(default=300.0, gt=0, description="serve --reconcile: seconds between the end of "
                              "a pass and the start of the next")


class MetricsSettings(_Section):
    address: str = Field(
        default="127.0.0.1:9102",
        pattern=r"^[^:\s]*:\d{1,5}$",
        description="host:port where /metrics is served",
    )


class MigrationConfig(_Section):
    source: Endpoint
    target: Endpoint
    kafka: KafkaSettings
    connect: ConnectSettings
    tables: TableSelection = Field(default_factory=TableSelection)
    connector: ConnectorSettings = Field(default_factory=ConnectorSettings)
    apply: ApplySettings = Field(default_factory=ApplySettings)
    snapshot: SnapshotSettings = Field(default_factory=SnapshotSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    state_schema: str = Field(
        default="replicator",
        pattern=r"^[a-z_][a-z0-9_]{0,62}$",
        description="our state schema in the target: lower-case letters, digits, '_'",
    )

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
        return MigrationConfig.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(_describe_validation_error(exc, origin)) from None


def _apply_env_overrides(raw: dict[str, Any], environ: Mapping[str, str]) -> dict[str, Any]:
    """`REPLICATOR_A__B=v` sets key a.b. Only names whose first part is a top-level key count, so
    other variables of ours (REPLICATOR_CONFIG, REPLICATOR_STACK_DIR) are never taken for keys."""
    merged: dict[str, Any] = _deep_copy(raw)
    for name, value in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX):].split("__")]
        if path[0] not in MigrationConfig.model_fields:
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


def _describe_validation_error(exc: ValidationError, origin: str) -> str:
    first = exc.errors()[0]
    loc = [str(p) for p in first["loc"]]
    key = ".".join(loc) or "(top level)"
    kind = first["type"]
    more = f" (and {exc.error_count() - 1} more problem(s))" if exc.error_count() > 1 else ""
    env_name = ENV_PREFIX + "__".join(p.upper() for p in loc)
    if kind == "extra_forbidden":
        known = _known_keys(loc[:-1])
        close = difflib.get_close_matches(loc[-1], known, n=1)
        suggestion = f"did you mean {close[0]!r}?" if close else f"known keys here: {', '.join(known)}"
        return f"{origin}: unknown key {key!r}; {suggestion}{more}"
    expected = _expected_form(loc)
    if kind == "missing":
        return f"{origin}: missing key {key!r}; expected {expected} (or set {env_name}){more}"
    got = first.get("input")
    shown = "<hidden>" if _is_secret(loc) else repr(got)
    message = first["msg"].removeprefix("Value error, ")
    return f"{origin}: {key}: {message} (got {shown}); expected {expected}{more}"


def _is_secret(loc: list[str]) -> bool:
    return any("password" in p or "secret" in p or "sasl" in p for p in loc)


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    model: type[BaseModel] = MigrationConfig
    for part in loc:
        field = model.model_fields.get(part)
        if field is None:
            return None
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            model = annotation
        else:
            return None
    return model


def _known_keys(loc: list[str]) -> list[str]:
    model = _model_at(loc)
    return sorted(model.model_fields) if model is not None else []


def _expected_form(loc: list[str]) -> str:
    if not loc:
        return "a mapping"
    parent = _model_at(loc[:-1])
    if parent is None:
        return "a valid value"
    field = parent.model_fields.get(loc[-1])
    if field is None:
        return "a valid value"
    if field.description:
        return field.description
    annotation = field.annotation
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        keys = ", ".join(sorted(annotation.model_fields))
        return f"a section with keys {keys}"
    return "a valid value"


def redacted(config: MigrationConfig) -> dict[str, Any]:
    """The config as plain data with every secret replaced: safe to print or serve."""
    data = config.model_dump(mode="json")
    for section in ("source", "target"):
        if data[section].get("password") is not None:
            data[section]["password"] = "**********"  # noqa: S105 - the mask, not a password
    options = data["kafka"]["options"]
    for name in list(options):
        if any(word in name.lower() for word in ("password", "secret", "key", "token", "jaas")):
            options[name] = "**********"
    return data
