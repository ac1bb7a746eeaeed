from pathlib import Path

import pytest

from replicator.config import Engine, load_config, parse_config, redacted
from replicator.errors import ConfigError

VALID = """
source: {engine: postgres, host: db1, port: 5432, database: app, user: u, password: s3cret-src}
target: {engine: mariadb, host: db2, port: 3306, database: app, user: u, password: s3cret-dst}
kafka: {bootstrap_servers: "k:9092", topic_prefix: shop}
connect: {url: "http://connect:8083"}
tables: {include: ["public.*"], exclude: ["public.tmp_*"], rename: {public.a: public.b}}
"""


def parse(text: str, **env: str):
    return parse_config(text, env, origin="cfg.yaml")


def error_of(text: str, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        parse(text, **env)
    line = info.value.line()
    assert "\n" not in line
    return line


def test_valid_config_loads_with_defaults() -> None:
    config = parse(VALID)
    assert config.source.engine is Engine.POSTGRES
    assert config.target.engine is Engine.MYSQL  # mariadb is an alias
    assert config.connector_name == "shop-source"
    assert config.slot_name == "replicator_shop"
    assert config.apply.error_policy.value == "halt"
    assert config.source.secret() == "s3cret-src"


def test_environment_overrides_any_key() -> None:
    config = parse(
        VALID,
        REPLICATOR_SOURCE__PORT="6543",
        REPLICATOR_KAFKA__BOOTSTRAP_SERVERS="a:1,b:2",
        REPLICATOR_TABLES__INCLUDE="[app.x, app.y]",
        REPLICATOR_STATE_SCHEMA="mystate",
        REPLICATOR_STACK_DIR="/not/a/config/key",
    )
    assert config.source.port == 6543
    assert config.kafka.bootstrap_servers == "a:1,b:2"
    assert config.tables.include == ["app.x", "app.y"]
    assert config.state_schema == "mystate"


def test_unknown_key_is_named_with_a_suggestion() -> None:
    line = error_of(VALID.replace("topic_prefix", "topic_prefx"))
    assert "unknown key 'kafka.topic_prefx'" in line
    assert "did you mean 'topic_prefix'" in line


def test_unknown_top_level_section() -> None:
    assert "unknown key 'sorce'" in error_of(VALID + "sorce: {}\n")


def test_missing_key_names_expected_form_and_env_var() -> None:
    line = error_of(VALID.replace("host: db1, ", ""))
    assert "missing key 'source.host'" in line
    assert "host name or IP address" in line
    assert "REPLICATOR_SOURCE__HOST" in line


@pytest.mark.parametrize("port", ["70000", "0", "abc"])
def test_wrong_port(port: str) -> None:
    line = error_of(VALID.replace("port: 5432", f"port: {port}"))
    assert line.startswith("cfg.yaml: source.port:")
    assert "TCP port, 1-65535" in line


def test_wrong_port_from_environment() -> None:
    assert "source.port" in error_of(VALID, REPLICATOR_SOURCE__PORT="http")


def test_unknown_engine() -> None:
    assert "unknown engine 'oracle'" in error_of(VALID.replace("engine: postgres", "engine: oracle"))


def test_password_never_appears_in_errors() -> None:
    line = error_of(VALID.replace("password: s3cret-src", "password: [s3cret-src]"))
    assert "source.password" in line
    assert "s3cret-src" not in line


def test_password_and_password_file_are_exclusive(tmp_path: Path) -> None:
    text = VALID.replace("password: s3cret-src", f"password: x, password_file: {tmp_path}/p")
    assert "either password or password_file" in error_of(text)


def test_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("from-file\nignored\n")
    config = parse(VALID.replace("password: s3cret-src", f"password_file: {secret}"))
    assert config.source.secret() == "from-file"


def test_unreadable_password_file(tmp_path: Path) -> None:
    config = parse(VALID.replace("password: s3cret-src", f"password_file: {tmp_path}/missing"))
    with pytest.raises(ConfigError, match="cannot read password_file"):
        config.source.secret()


def test_invalid_yaml_names_the_line() -> None:
    line = error_of("source: [unclosed\n")
    assert "not valid YAML at line" in line


def test_missing_file_and_no_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml", {})
    with pytest.raises(ConfigError, match="REPLICATOR_CONFIG"):
        load_config(None, {})


def test_redacted_hides_every_secret() -> None:
    options = "options: {sasl.password: pw1, ssl.key.password: pw2}"
    text = VALID.replace("topic_prefix: shop}", f"topic_prefix: shop, {options}}}")
    shown = str(redacted(parse(text)))
    for secret in ("s3cret-src", "s3cret-dst", "pw1", "pw2"):
        assert secret not in shown
    assert repr(parse(VALID).source).count("s3cret") == 0


def test_table_selection_globs() -> None:
    tables = parse(VALID).tables
    assert tables.selects("public", "orders")
    assert not tables.selects("public", "tmp_x")
    assert not tables.selects("other", "orders")
    bare = parse(VALID.replace('include: ["public.*"]', "include: [orders]")).tables
    assert bare.selects("any", "orders") and not bare.selects("any", "order")


def test_target_names_follow_renames_then_target_schema() -> None:
    from replicator.config import TableSelection

    same = TableSelection()
    assert same.target_for("shop", "orders") == ("shop", "orders")
    moved = TableSelection(rename={"shop.orders": "sales.orders_v2", "shop.users": "people"},
                           target_schema="app")
    assert moved.target_for("shop", "orders") == ("sales", "orders_v2")
    assert moved.target_for("shop", "users") == ("app", "people")
    assert moved.target_for("shop", "items") == ("app", "items")


def test_snapshot_foreign_keys_and_column_types() -> None:
    config = parse(VALID)
    assert config.snapshot.foreign_keys.value == "after-load" and config.snapshot.column_types == {}
    config = parse(VALID + 'snapshot: {foreign_keys: cutover, column_types: {"public.t.tags": json}}')
    assert config.snapshot.foreign_keys.value == "cutover"
    assert config.snapshot.column_types == {"public.t.tags": "json"}
    line = error_of(VALID + "snapshot: {foreign_keys: later}")
    assert "snapshot.foreign_keys" in line and "after-load" in line


def test_secret_in_a_pass_through_option_is_hidden_in_errors() -> None:
    options = "options: {sasl.password: [pw9], linger.ms: 5}"
    line = error_of(VALID.replace("topic_prefix: shop}", f"topic_prefix: shop, {options}}}"))
    assert line.startswith("cfg.yaml: kafka.options.sasl.password:")
    assert "pw9" not in line


def test_password_and_password_file_rule_shows_no_password(tmp_path: Path) -> None:
    text = VALID.replace("password: s3cret-src", f"password: s3cret-src, password_file: {tmp_path}/p")
    assert "s3cret-src" not in error_of(text)


@pytest.mark.parametrize(("text", "expected"), [
    ("port: true", "should be an integer, not true/false"),
    ("password: 1.50", "should be text (quote it in YAML)"),
])
def test_booleans_are_not_numbers_and_numbers_are_not_passwords(text: str, expected: str) -> None:
    line = error_of(VALID.replace("port: 5432" if "port" in text else "password: s3cret-src", text))
    assert expected in line


def test_a_section_that_is_not_a_mapping() -> None:
    line = error_of(VALID + "snapshot: 3\n")
    assert line.startswith("cfg.yaml: snapshot: should be a section")
    assert "workers" in line


def test_every_problem_is_counted() -> None:
    line = error_of(VALID.replace("connect:", "conect:"))
    assert "unknown key 'conect'; did you mean 'connect'?" in line
    assert "(and 1 more problem(s))" in line  # connect itself is missing


def test_environment_values_are_parsed_as_their_keys_expect() -> None:
    config = parse(VALID, REPLICATOR_SNAPSHOT__WORKERS="4", REPLICATOR_RECONCILE__CHUNK_SECONDS="0.25",
                   REPLICATOR_TABLES__INCLUDE="app.x", REPLICATOR_APPLY__ERROR_POLICY="Dead-Letter")
    assert config.snapshot.workers == 4
    assert config.reconcile.chunk_seconds == 0.25
    assert config.tables.include == ["app.x"]
    assert config.apply.error_policy.value == "dead-letter"


def test_a_loaded_config_is_read_only() -> None:
    config = parse(VALID)
    with pytest.raises(AttributeError, match="read-only"):
        config.snapshot.workers = 3  # type: ignore[misc]
    assert config == parse(VALID)


def test_a_pattern_matches_the_whole_value() -> None:
    line = error_of(VALID, REPLICATOR_KAFKA__TOPIC_PREFIX="shop\n")
    assert line.startswith("cfg.yaml: kafka.topic_prefix: does not match")
