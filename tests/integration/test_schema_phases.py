"""Schema translation phases, names and the command line: keys with the table, secondary indexes only
after the load, foreign keys only in their phase, hostile identifiers quoted everywhere, idempotent
runs, an incompatible existing table, an unmappable type, and `replicator schema --dry-run`."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from replicator.schema import Phase, apply_schema, translate
from replicator.stack.launcher import StackInfo
from tests.integration.conftest import run_cli
from tests.integration.schema_support import SchemaScenario

pytestmark = pytest.mark.integration

# Quotes, backticks, a semicolon, a percent sign, a space and non-ASCII letters.
PARENT = 'pa"re`nt; ü%'
CHILD = "chïld`; DROP TABLE x"
KEY = 'ké"y'
COLUMN = "va`l; ü"


@pytest.fixture(params=[("pg-source", "my-target"), ("my-source", "pg-target")], ids=["pg-to-mariadb",
                                                                                     "mariadb-to-pg"])
def cross(request: pytest.FixtureRequest, stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    source, target = request.param
    s = SchemaScenario(stack, source, target, tmp_path)
    yield s
    s.drop()


def pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def my_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def create_source(s: SchemaScenario) -> None:
    if s.source.engine == "postgres":
        q, ns = pg_ident, pg_ident(s.namespace) + "."
        s.source_sql(
            f"CREATE TABLE {ns}{q(PARENT)} ({q(KEY)} text, n int, {q(COLUMN)} varchar(30) NOT NULL DEFAULT 'd''f',"
            f" email text, PRIMARY KEY ({q(KEY)}, n), CONSTRAINT {q('u; ' + COLUMN)} UNIQUE (email))",
            f"CREATE TABLE {ns}{q(CHILD)} (id int PRIMARY KEY, pk text, pn int, note text,"
            f" CONSTRAINT {q('fk`; ü')} FOREIGN KEY (pk, pn) REFERENCES {ns}{q(PARENT)} ON DELETE CASCADE)",
            f"CREATE INDEX {q('ix`; ü')} ON {ns}{q(CHILD)} (note, pn DESC)")
    else:
        q = my_ident
        s.source_sql(
            f"CREATE TABLE {q(PARENT)} ({q(KEY)} VARCHAR(100), n INT, {q(COLUMN)} VARCHAR(30) NOT NULL DEFAULT"
            f" 'd''f', email VARCHAR(200), PRIMARY KEY ({q(KEY)}, n), UNIQUE KEY {q('u; ' + COLUMN)} (email))",
            f"CREATE TABLE {q(CHILD)} (id INT PRIMARY KEY, pk VARCHAR(100), pn INT, note VARCHAR(50),"
            f" KEY {q('ix`; ü')} (note, pn DESC), CONSTRAINT {q('fk`; ü')} FOREIGN KEY (pk, pn)"
            f" REFERENCES {q(PARENT)} ({q(KEY)}, n) ON DELETE CASCADE)")


def target_objects(s: SchemaScenario) -> dict[str, set[str]]:
    """Table → its index and constraint names on the target (the primary key left out)."""
    if s.target.engine == "postgres":
        rows = s.target_rows(
            "SELECT c.relname, i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class c"
            " ON c.oid = x.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
            " AND NOT x.indisprimary UNION ALL SELECT c.relname, k.conname FROM pg_constraint k JOIN pg_class c"
            " ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s"
            " AND k.contype = 'f'", (s.namespace, s.namespace))
    else:
        rows = s.target_rows(
            "SELECT TABLE_NAME, INDEX_NAME FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = %s"
            " AND INDEX_NAME <> 'PRIMARY' UNION SELECT TABLE_NAME, CONSTRAINT_NAME FROM"
            " information_schema.TABLE_CONSTRAINTS WHERE TABLE_SCHEMA = %s AND CONSTRAINT_TYPE = 'FOREIGN KEY'",
            (s.namespace, s.namespace))
    found: dict[str, set[str]] = {}
    for table, name in rows:
        found.setdefault(table, set()).add(name)
    return found


def test_phases_keys_hostile_names_and_idempotence(cross: SchemaScenario) -> None:
    s = cross
    create_source(s)
    config = s.config()
    plan = translate(config)
    assert not plan.blocking, plan.blocking
    unique = f"{PARENT}_u; {COLUMN}" if s.target.engine == "postgres" else f"u; {COLUMN}"
    index = f"{CHILD}_ix`; ü" if s.target.engine == "postgres" else "ix`; ü"
    foreign_key = "fk`; ü"

    apply_schema(config.target, plan, Phase.CREATE)
    objects = target_objects(s)
    assert objects.get(PARENT) == {unique} and CHILD not in objects  # unique with the table; no index, no FK
    apply_schema(config.target, plan, Phase.POST_LOAD)
    # a MySQL source has an index of its own for each foreign key: it is carried like any other
    implicit = {f"{CHILD}_{foreign_key}"} if s.source.engine == "mysql" else set()
    assert target_objects(s).get(CHILD) == {index, *implicit}
    applied = apply_schema(config.target, plan, Phase.FOREIGN_KEYS)
    assert [a.created for a in applied] == [True]
    assert foreign_key in target_objects(s)[CHILD]
    again = apply_schema(config.target, plan, Phase.ALL)
    assert again and not any(a.created for a in again)  # a second run finds everything and creates nothing

    # rows in the hostile columns, written as the apply stage writes them; NOT NULL, defaults and FK honoured
    s.write_row(PARENT, {KEY: "A", "n": 1, COLUMN: "x", "email": "a@x"})
    s.write_row(PARENT, {KEY: "a", "n": 1, "email": "A@x"})  # differs only in case: a separate key
    s.write_row(CHILD, {"id": 1, "pk": "a", "pn": 1, "note": "n"})
    if s.target.engine == "postgres":
        q, table = pg_ident, f"{pg_ident(s.namespace)}.{pg_ident(PARENT)}"
        child = f"{pg_ident(s.namespace)}.{pg_ident(CHILD)}"
    else:
        q, table = my_ident, f"{my_ident(s.namespace)}.{my_ident(PARENT)}"
        child = f"{my_ident(s.namespace)}.{my_ident(CHILD)}"
    assert s.target_rows(f"SELECT {q(KEY)}, {q(COLUMN)} FROM {table} ORDER BY {q(KEY)}") == [("A", "x"), ("a", "d'f")]
    with pytest.raises(Exception, match=r"(?i)null"):
        s.target_sql(f"INSERT INTO {table} ({q(KEY)}, n, {q(COLUMN)}) VALUES ('b', 1, NULL)")
    with pytest.raises(Exception, match=r"(?i)duplicate|unique"):
        s.target_sql(f"INSERT INTO {table} ({q(KEY)}, n, email) VALUES ('c', 1, 'a@x')")
    with pytest.raises(Exception, match=r"(?i)foreign key"):
        s.target_sql(f"INSERT INTO {child} (id, pk, pn) VALUES (2, 'zz', 9)")
    s.target_sql(f"DELETE FROM {table} WHERE {q(KEY)} = 'a'")
    assert s.target_rows(f"SELECT id FROM {child}") == []  # ON DELETE CASCADE


@pytest.fixture
def pg_to_my(stack: StackInfo, tmp_path: Path) -> Iterator[SchemaScenario]:
    s = SchemaScenario(stack, "pg-source", "my-target", tmp_path)
    yield s
    s.drop()


def test_cli_dry_run_run_again_and_problems(pg_to_my: SchemaScenario) -> None:
    s = pg_to_my
    ns = s.namespace
    s.source_sql(f"CREATE TABLE {ns}.{pg_ident(PARENT)} (id int PRIMARY KEY, {pg_ident(COLUMN)} text)",
                 f"CREATE INDEX ix ON {ns}.{pg_ident(PARENT)} ({pg_ident(COLUMN)})")
    config = str(s.write_config())
    exists = "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s"

    dry = run_cli("-c", config, "schema", "--dry-run")
    assert f"CREATE TABLE `{ns}`.`pa\"re``nt; ü%` (\n  `id` int NOT NULL,\n  `va``l; ü` longtext" in dry.stdout
    assert "-- phase post-load" in dry.stdout and "CREATE INDEX `ix`" in dry.stdout
    assert s.target_rows(exists, (ns,)) == [(0,)]  # nothing created

    first = run_cli("-c", config, "schema")
    assert f"created table {PARENT} ({ns}.{PARENT})" in first.stdout
    second = run_cli("-c", config, "schema")
    assert "created" not in second.stdout and f"exists  table {PARENT}" in second.stdout

    # an existing table the rows cannot go into: one line naming the difference, exit 1
    s.target_sql(f"ALTER TABLE `{ns}`.`pa\"re``nt; ü%` MODIFY `va``l; ü` INT")
    bad = run_cli("-c", config, "schema", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith(
        f"replicator: error: target table {ns}.{PARENT} exists and differs from the translation: column va`l; ü"
        " is int"), bad.stderr
    assert "Traceback" not in bad.stderr

    # an unmappable type: a problem line naming table and column, exit 1, nothing created
    s.source_sql(f"CREATE TABLE {ns}.arr (id int PRIMARY KEY, tags text[])")
    blocked = run_cli("-c", config, "schema", check=False)
    assert blocked.returncode == 1
    assert (f"replicator: problem: {ns}.arr.tags: an array has no safe MySQL mapping; map it explicitly with "
            "snapshot.column_types (e.g. json), or exclude the table") in blocked.stderr
    assert s.target_rows("SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s"
                         " AND TABLE_NAME = 'arr'", (ns,)) == [(0,)]
