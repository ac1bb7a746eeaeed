"""Static checks of the production topology: docker-compose.yml and everything under deploy/.

No Docker is needed: the files are parsed and checked for pinned images, KRaft, health checks,
healthy-only dependencies, declared volumes, no literal secrets, and configs the project accepts.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from replicator.config import Engine, parse_config

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "deploy" / "Dockerfile"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
RULES = ROOT / "deploy" / "prometheus" / "rules.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "replicator.json"
ENV_EXAMPLE = ROOT / "deploy" / "compose" / ".env.example"

SERVICES = {
    "kafka",
    "connect",
    "source-postgres",
    "source-mysql",
    "target-postgres",
    "replicator",
    "prometheus",
    "grafana",
}
INTERPOLATION = re.compile(r"^\$\{([A-Z][A-Z0-9_]*)(:?[?-][^}]*)?\}$")
REQUIRED_INTERPOLATION = re.compile(r"\$\{([A-Z][A-Z0-9_]*):\?[^}]+\}")
PROMQL_NAME = re.compile(r"[A-Za-z_:][A-Za-z0-9_:]*")


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data = load_yaml(COMPOSE_FILE)
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = compose["services"]
    assert isinstance(found, dict)
    return found


def environment_of(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as a mapping, whether written as a mapping or a KEY=VALUE list."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, "") for item in env)
        return {key: value for key, value in pairs}
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def command_text(service: dict[str, Any]) -> str:
    command = service.get("command", "")
    return " ".join(command) if isinstance(command, list) else str(command)


def image_parts(image: str) -> tuple[str, str]:
    """(repository, tag) of an image reference; the tag is "" when none is given."""
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)[-1]
    if ":" not in last:
        return name, ""
    repository, tag = name.rsplit(":", 1)
    return repository, tag


def volume_entries(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(type, source) of each volume of a service: type is "bind" or "volume"."""
    entries: list[tuple[str, str]] = []
    for item in service.get("volumes", []):
        if isinstance(item, dict):
            source = str(item.get("source", ""))
            kind = str(item.get("type", "volume"))
        else:
            parts = str(item).split(":")
            source = parts[0] if len(parts) > 1 else ""
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
        if source:
            entries.append((kind, source))
    return entries


# --- services and images ---------------------------------------------------------------------------


def test_all_services_are_defined(services: dict[str, dict[str, Any]]) -> None:
    assert set(services) >= SERVICES, f"missing services: {sorted(SERVICES - set(services))}"


def test_every_image_is_pinned(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        image = service.get("image")
        assert image, f"{name}: no image"
        repository, tag = image_parts(str(image))
        assert tag, f"{name}: image {image} has no tag"
        assert tag != "latest", f"{name}: image {image} uses latest"
        assert repository, f"{name}: image {image} has no repository"


def test_kafka_and_connect_images_are_pinned_versions(services: dict[str, dict[str, Any]]) -> None:
    assert re.fullmatch(r"apache/kafka:\d+\.\d+\.\d+", services["kafka"]["image"])
    assert re.fullmatch(r"quay\.io/debezium/connect:3\.\d+\.\d+(\.Final)?", services["connect"]["image"])


def test_no_latest_anywhere() -> None:
    assert ":latest" not in COMPOSE_FILE.read_text(encoding="utf-8")
    assert ":latest" not in DOCKERFILE.read_text(encoding="utf-8")


def test_kafka_runs_kraft_without_zookeeper(services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services["kafka"])
    roles = {role.strip() for role in env["KAFKA_PROCESS_ROLES"].split(",")}
    assert roles == {"broker", "controller"}
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"].startswith(f"{env['KAFKA_NODE_ID']}@")
    assert "CONTROLLER" in env["KAFKA_CONTROLLER_LISTENER_NAMES"]
    assert "CONTROLLER://" in env["KAFKA_LISTENERS"]
    assert env["KAFKA_ADVERTISED_LISTENERS"] == "PLAINTEXT://kafka:9092"
    assert "CONTROLLER:PLAINTEXT" in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"]
    assert env["KAFKA_LOG_DIRS"] == "/var/lib/kafka/data"
    assert any(target == "/var/lib/kafka/data" for target in _volume_targets(services["kafka"]))
    assert "zookeeper" not in COMPOSE_FILE.read_text(encoding="utf-8").lower()


def _volume_targets(service: dict[str, Any]) -> list[str]:
    targets = []
    for item in service.get("volumes", []):
        if isinstance(item, dict):
            targets.append(str(item.get("target", "")))
        else:
            targets.append(str(item).split(":")[1])
    return targets


def test_connect_uses_kafka_and_json_converters_with_schemas(services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services["connect"])
    assert env["BOOTSTRAP_SERVERS"] == "kafka:9092"
    for key in ("GROUP_ID", "CONFIG_STORAGE_TOPIC", "OFFSET_STORAGE_TOPIC", "STATUS_STORAGE_TOPIC"):
        assert env[key], key
    for key in ("CONFIG", "OFFSET", "STATUS"):
        assert env[f"{key}_STORAGE_REPLICATION_FACTOR"] == "1"
    assert env["KEY_CONVERTER"] == env["VALUE_CONVERTER"] == "org.apache.kafka.connect.json.JsonConverter"
    assert env["CONNECT_KEY_CONVERTER_SCHEMAS_ENABLE"] == "true"
    assert env["CONNECT_VALUE_CONVERTER_SCHEMAS_ENABLE"] == "true"


def test_postgres_source_has_logical_wal(services: dict[str, dict[str, Any]]) -> None:
    assert "wal_level=logical" in command_text(services["source-postgres"])


def test_mysql_source_is_mysql8_with_full_row_binlog(services: dict[str, dict[str, Any]]) -> None:
    service = services["source-mysql"]
    repository, tag = image_parts(service["image"])
    assert repository == "mysql"
    assert tag.startswith("8.")
    command = command_text(service)
    assert "--binlog-format=ROW" in command
    assert "--binlog-row-image=FULL" in command


def test_replicator_builds_from_deploy_dockerfile(services: dict[str, dict[str, Any]]) -> None:
    service = services["replicator"]
    build = service["build"]
    assert isinstance(build, dict)
    assert (ROOT / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE.resolve()
    assert DOCKERFILE.is_file()
    assert service["command"][:3] == ["replicator", "--config", "/etc/replicator/config.yaml"]


# --- health and start order ------------------------------------------------------------------------


def test_every_service_has_a_healthcheck(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        check = service.get("healthcheck")
        assert isinstance(check, dict), f"{name}: no healthcheck"
        assert not check.get("disable", False), f"{name}: healthcheck disabled"
        assert check.get("test"), f"{name}: healthcheck has no test"


def test_depends_on_waits_for_healthy_defined_services(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must be a mapping with conditions"
        for other, spec in depends.items():
            assert other in services, f"{name}: depends on undefined service {other}"
            assert other != name, f"{name}: depends on itself"
            assert isinstance(spec, dict), f"{name}: depends_on {other} has no condition"
            assert spec.get("condition") == "service_healthy", f"{name}: depends_on {other} not service_healthy"


def test_replicator_waits_for_its_dependencies(services: dict[str, dict[str, Any]]) -> None:
    depends = services["replicator"]["depends_on"]
    assert set(depends) >= {"kafka", "connect", "source-postgres", "target-postgres"}


# --- volumes and mounted files ---------------------------------------------------------------------


def test_named_volumes_are_declared_and_used(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {source for service in services.values() for kind, source in volume_entries(service) if kind == "volume"}
    assert used, "no named volumes"
    assert used <= declared, f"used but not declared: {sorted(used - declared)}"
    assert declared <= used, f"declared but not used: {sorted(declared - used)}"


def test_bind_mounted_files_exist(services: dict[str, dict[str, Any]]) -> None:
    binds = [(name, source) for name, service in services.items() for kind, source in volume_entries(service)
             if kind == "bind"]
    assert binds
    for name, source in binds:
        assert source.startswith("./"), f"{name}: bind mount {source} is not relative to the repo"
        assert (ROOT / source).exists(), f"{name}: {source} does not exist"


def test_configs_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("configs") or {})
    for name, service in services.items():
        for item in service.get("configs", []):
            source = item["source"] if isinstance(item, dict) else item
            assert source in declared, f"{name}: config {source} not declared"


# --- secrets ---------------------------------------------------------------------------------------


def test_passwords_are_required_interpolations(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for key, value in environment_of(service).items():
            if "PASSWORD" in key or "SECRET" in key:
                match = INTERPOLATION.fullmatch(value)
                assert match, f"{name}: {key} must be a ${{VAR:?message}} interpolation, not a literal"
                assert (match.group(2) or "").startswith(":?"), f"{name}: {key} must use ${{VAR:?message}}"


def _strings(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else []


def test_env_example_lists_every_required_variable(compose: dict[str, Any]) -> None:
    needed = {name for text in _strings(compose) for name in REQUIRED_INTERPOLATION.findall(text)}
    assert needed
    text = ENV_EXAMPLE.read_text(encoding="utf-8")
    given = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            given[key.strip()] = value.strip()
    assert needed <= set(given), f"missing in .env.example: {sorted(needed - set(given))}"
    assert all(value.startswith("change-me") for value in given.values())
    assert "cp deploy/compose/.env.example .env" in text


def test_dockerfile_has_no_secrets_and_runs_as_non_root() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text(encoding="utf-8").splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    for line in instructions:
        word = line.split(None, 1)[0].upper()
        if word in {"ENV", "ARG"}:
            assert not re.search(r"PASSWORD|SECRET", line, re.IGNORECASE), line
    users = [line.split(None, 1)[1] for line in instructions if line.split(None, 1)[0].upper() == "USER"]
    assert users, "no USER line"
    user = users[-1].split(":", 1)[0]
    assert user not in {"root", "0"}
    assert not any(line.upper().startswith("ENTRYPOINT") for line in instructions)
    assert "EXPOSE 9102" in instructions


def test_dockerignore_keeps_local_state_out() -> None:
    ignored = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".venv", ".stack", ".stack-test", ".git", ".env"} <= ignored


# --- prometheus and grafana ------------------------------------------------------------------------


def test_prometheus_scrapes_replicator() -> None:
    config = load_yaml(PROMETHEUS)
    targets = [
        target
        for job in config["scrape_configs"]
        for static in job.get("static_configs", [])
        for target in static.get("targets", [])
    ]
    assert "replicator:9102" in targets
    assert "/etc/prometheus/rules.yml" in config["rule_files"]


def test_alert_rules_parse() -> None:
    rules = [rule for group in load_yaml(RULES)["groups"] for rule in group["rules"]]
    assert rules
    for rule in rules:
        assert rule.get("alert"), rule
        assert rule.get("expr"), rule
    names = {rule["alert"] for rule in rules}
    assert names >= {"ReplicatorLagHigh", "ReplicatorConnectorDown", "ReplicatorDown", "ReplicatorDeadLetters"}


def _panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    found = []
    for panel in dashboard.get("panels", []):
        found.append(panel)
        found.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return [panel for panel in found if panel.get("type") != "row"]


def test_grafana_dashboard_queries_replicator_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert dashboard["uid"] == "replicator"
    panels = _panels(dashboard)
    assert panels
    prometheus = {"type": "prometheus", "uid": "prometheus"}
    for panel in panels:
        assert panel["datasource"] == prometheus, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = PROMQL_NAME.findall(target["expr"])
            assert any(name.startswith("replicator_") or name == "up" for name in names), target["expr"]


def test_grafana_datasource_matches_dashboard_uid() -> None:
    datasources = load_yaml(ROOT / "deploy" / "grafana" / "provisioning" / "datasources" / "prometheus.yml")
    [source] = datasources["datasources"]
    assert source["uid"] == "prometheus"
    assert source["url"] == "http://prometheus:9090"


# --- the replicator configs used inside compose ----------------------------------------------------


@pytest.mark.parametrize(("name", "engine"), [("replicator.yaml", Engine.POSTGRES),
                                              ("replicator-mysql.yaml", Engine.MYSQL)])
def test_compose_replicator_config_is_valid(name: str, engine: Engine) -> None:
    text = (ROOT / "deploy" / "compose" / name).read_text(encoding="utf-8")
    assert "password" not in yaml.safe_load(text)["source"]
    config = parse_config(text, {"REPLICATOR_SOURCE__PASSWORD": "x", "REPLICATOR_TARGET__PASSWORD": "y"}, origin=name)
    assert config.source.engine is engine
    assert config.source.secret() == "x"
    assert config.target.secret() == "y"
    assert config.kafka.bootstrap_servers == "kafka:9092"
    assert config.metrics.address.endswith(":9102")


def test_replicator_env_sets_config_passwords(services: dict[str, dict[str, Any]]) -> None:
    env = environment_of(services["replicator"])
    assert {"REPLICATOR_SOURCE__PASSWORD", "REPLICATOR_TARGET__PASSWORD"} <= set(env)
