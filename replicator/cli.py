"""The `replicator` command line. It parses arguments, loads the config, calls one stage, and turns
every `ReplicatorError` into one line on stderr and a non-zero exit (no traceback).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from replicator import __version__
from replicator.config import MigrationConfig, load_config, redacted
from replicator.errors import ConfigError, ReplicatorError


class _Console:
    """rich's Console, imported when first used: the stage commands (snapshot, reconcile, apply)
    print plain lines and tables and start without it (0.06 s). Emoji codes stay text: a table
    named `a:smile:b` is printed as it is named."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False, emoji=False, **self._options)
        return getattr(self._console, name)


out = _Console(soft_wrap=True)
err = _Console(stderr=True)


def say(line: str) -> None:
    """One progress or error line on stderr, as it is (no markup, no wrapping)."""
    print(line, file=sys.stderr, flush=True)


def plain_table(header: list[str], rows: list[list[str]]) -> str:
    """Columns padded to their widest cell, nothing cut (the output is often a log, not a terminal)."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]
    return "\n".join(" " + "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
                     for line in [header, *rows])


class _Context:
    def __init__(self, config_path: str | None) -> None:
        self.config_path = config_path
        self._config: MigrationConfig | None = None

    def config(self) -> MigrationConfig:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-c", "--config", "config_path", metavar="FILE", envvar="REPLICATOR_CONFIG",
    help="The migration config (YAML). Also $REPLICATOR_CONFIG.",
)
@click.version_option(__version__, prog_name="replicator")
@click.pass_context
def cli(ctx: click.Context, config_path: str | None) -> None:
    """Move a live PostgreSQL or MySQL/MariaDB database to another server or engine, through
    Debezium and Kafka, with near-zero downtime."""
    ctx.obj = _Context(config_path)


@cli.command("config")
@click.pass_obj
def show_config(obj: _Context) -> None:
    """Validate the config and print it, with secrets hidden."""
    import yaml

    out.print(yaml.safe_dump(redacted(obj.config()), sort_keys=False).rstrip())


# --- local stack -----------------------------------------------------------------------------------


run_dir_option = click.option(
    "--run-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="The stack's run directory (default ./.stack, or $REPLICATOR_STACK_DIR).",
)


@cli.group()
def stack() -> None:
    """The embedded local stack: PostgreSQL, MariaDB, a Kafka broker and Kafka Connect with Debezium."""


@stack.command("up")
@run_dir_option
@click.option("--durable", is_flag=True, help="Keep broker data in a local S3 store (survives a broker restart).")
def stack_up(run_dir: Path | None, durable: bool) -> None:
    """Start the stack, or reuse the one running; print where everything is."""
    from replicator.stack import LocalStack

    local = LocalStack(run_dir)
    started = time.monotonic()
    with err.status("starting the local stack..."):
        info = local.up(durable=durable)
    _print_stack(local)
    out.print(f"ready in {time.monotonic() - started:.1f} s; connection file: {info.run_dir / 'stack.json'}")
    names = "{pg-to-pg,mariadb-to-pg,pg-to-mariadb,mariadb-to-mariadb}"
    out.print(f"example configs: {info.run_dir / 'configs'}/{names}.yaml")


@stack.command("status")
@run_dir_option
def stack_status(run_dir: Path | None) -> None:
    """Show each part of the stack and whether it runs. Exit 1 when a part is down."""
    from replicator.stack import LocalStack

    local = LocalStack(run_dir)
    if not _print_stack(local):
        sys.exit(1)


@stack.command("down")
@run_dir_option
def stack_down(run_dir: Path | None) -> None:
    """Stop the processes the stack started and remove its run directory."""
    from replicator.stack import LocalStack

    local = LocalStack(run_dir)
    if local.down():
        out.print(f"stopped; removed {local.run_dir}")
    else:
        out.print(f"no stack at {local.run_dir}")


@stack.command("demo")
@run_dir_option
@click.option("--seconds", type=click.FloatRange(1, 3600), default=10, show_default=True,
              help="How long to write to the sources.")
def stack_demo(run_dir: Path | None, seconds: float) -> None:
    """Up the stack, register both connectors, write to both sources and show the change events."""
    from replicator.stack.demo import run_demo

    seen = run_demo(None if run_dir is None else str(run_dir), seconds,
                    say=lambda line: out.print(line, markup=False))
    summary = ", ".join(f"{key}: {count}" for key, count in sorted(seen.items()))
    out.print(f"events seen by source and op: {summary}")
    out.print("the stack keeps running: `replicator stack status`, `replicator stack down` (or `make down`)")


def _print_stack(local: Any) -> bool:
    from rich.table import Table

    table = Table(title=f"local stack at {local.run_dir}")
    table.add_column("part")
    table.add_column("address")
    table.add_column("state")
    healthy = True
    for name, address, alive in local.status():
        healthy &= alive
        table.add_row(name, address, "[green]running[/]" if alive else "[red]stopped[/]")
    out.print(table)
    return healthy


# --- preflight ------------------------------------------------------------------------------------

_LEVEL_STYLE = {"ok": "green", "warning": "yellow", "error": "red"}


@cli.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for machines).")
@click.pass_obj
def check(obj: _Context, as_json: bool) -> None:
    """Preflight: connect to the source, target, Kafka and Kafka Connect and report what is not ready,
    one line per problem with its fix. Exit 0 only when there is no error (warnings allowed)."""
    from rich.text import Text

    from replicator.preflight import run_preflight

    config = obj.config()
    report = run_preflight(config)
    if as_json:
        click.echo(report.to_json())
    else:
        out.print(f"preflight: {config.source.describe()} → {config.target.describe()}", markup=False)
        for level, line in report.lines():
            out.print(Text(line, style=_LEVEL_STYLE[level.value] if level.value != "ok" else ""))
        out.print(report.summary(), markup=False)
    sys.exit(report.exit_code)


# --- connectors -----------------------------------------------------------------------------------


@cli.group()
def connectors() -> None:
    """The Debezium source connector on Kafka Connect."""


@connectors.command("apply")
@click.option("--fix-replica-identity", is_flag=True,
              help="Set REPLICA IDENTITY FULL on PostgreSQL tables without a primary key.")
@click.pass_obj
def connectors_apply(obj: _Context, fix_replica_identity: bool) -> None:
    """Create or update the connector (idempotent) and wait until it runs."""
    from connectors import manager

    manager.apply(obj.config(), fix_replica_identity=fix_replica_identity, progress=out.print)


@connectors.command("status")
@click.option("--show-config", is_flag=True, help="Also print the connector config (secrets hidden).")
@click.pass_obj
def connectors_status(obj: _Context, show_config: bool) -> None:
    """Show the connector and its tasks. Exit 1 unless all are RUNNING."""
    from connectors import manager

    current = manager.status(obj.config())
    tasks = ", ".join(f"task {i} {s}" for i, s in current.tasks) or "no tasks"
    out.print(f"{current.name}: {current.state} ({tasks})")
    if current.failure:
        out.print(f"{current.name} {current.failure}", markup=False)
    if show_config and current.config:
        for key, value in sorted(current.config.items()):
            out.print(f"  {key} = {value}", markup=False)
    if not current.healthy:
        sys.exit(1)


@connectors.command("delete")
@click.option("--drop-slot", is_flag=True,
              help="Also drop the PostgreSQL replication slot and publication (else the source keeps WAL).")
@click.pass_obj
def connectors_delete(obj: _Context, drop_slot: bool) -> None:
    """Remove the connector from Kafka Connect."""
    from connectors import manager

    manager.delete(obj.config(), drop_slot=drop_slot, progress=out.print)


# --- schema translation ---------------------------------------------------------------------------


def rendered(config: MigrationConfig, plan: Any, phase: Any) -> list[str]:
    """The plan's statements of `phase` as the target would run them (--dry-run)."""
    from replicator.dialects import schema_target_for
    from replicator.schema import unique_statements

    target = schema_target_for(config.target)
    try:
        return [target.render(statement) for statement in unique_statements(plan, phase)]
    finally:
        target.close()


@cli.command("schema")
@click.option("--dry-run", is_flag=True, help="Print the DDL that would run; create nothing.")
@click.option("--phase", type=click.Choice(["create", "post-load", "foreign-keys", "all"]), default="all",
              show_default=True,
              help="create: schemas and tables; post-load: secondary indexes; foreign-keys: foreign keys; "
                   "all: create and post-load, and foreign keys unless snapshot.foreign_keys is cutover.")
@click.pass_obj
def schema(obj: _Context, dry_run: bool, phase: str) -> None:
    """Translate the source tables' schema and create it on the target (idempotent)."""
    from replicator.config import ForeignKeyTiming
    from replicator.schema import AppliedStatement, Phase, apply_schema, refuse_blocking, translate

    config = obj.config()
    plan = translate(config)
    for problem in plan.problems:
        say(f"replicator: {problem.line()}")
    phases = [Phase(phase)]
    if phases[0] is Phase.ALL:
        phases = [Phase.CREATE, Phase.POST_LOAD]
        if config.snapshot.foreign_keys is ForeignKeyTiming.AFTER_LOAD:
            phases.append(Phase.FOREIGN_KEYS)
    if dry_run:
        for chosen in phases:
            out.print(f"-- phase {chosen.value}", markup=False)
            for text in rendered(config, plan, chosen):
                out.print(f"{text};", markup=False, soft_wrap=True)
        refuse_blocking(plan)
        return

    def report(applied: AppliedStatement) -> None:
        state = "created" if applied.created else "exists "
        statement = applied.statement
        out.print(f"{state} {statement.kind.value} {statement.name} ({statement.table})", markup=False)

    refuse_blocking(plan)
    for chosen in phases:
        apply_schema(config.target, plan, chosen, progress=report, index_memory_mb=config.snapshot.index_memory_mb)
    out.print(f"schema: {len(plan.tables)} table(s) translated ({', '.join(p.value for p in phases)})")


# --- service --------------------------------------------------------------------------------------


@cli.command("serve")
@click.option("--apply-connectors", is_flag=True, help="Register the connector first (idempotent; retried).")
@click.option("--no-apply", is_flag=True, help="Only watch the connector; do not apply change events.")
@click.option("--snapshot", "with_snapshot", is_flag=True,
              help="Also copy the tables not copied yet (as `replicator snapshot`), beside the applier.")
@click.option("--reconcile", "with_reconcile", is_flag=True,
              help="Also compare source and target in rolling passes (reconcile.interval_s apart), on /metrics.")
@click.pass_obj
def serve(obj: _Context, apply_connectors: bool, no_apply: bool, with_snapshot: bool, with_reconcile: bool) -> None:
    """Run the long-lived service: connector, change applier, /metrics and /healthz, until SIGTERM."""
    from replicator.service import serve_forever

    serve_forever(obj.config(), apply_connectors=apply_connectors, apply_changes=not no_apply,
                  say=say, snapshot=with_snapshot,
                  reconcile=with_reconcile)


@cli.command("snapshot")
@click.argument("tables", nargs=-1)
@click.option("--restart", is_flag=True, help="copy the named (or all) tables again from the start")
@click.option("--dry-run", is_flag=True, help="print the DDL it would run and the tables it would copy")
@click.pass_obj
def snapshot(obj: _Context, tables: tuple[str, ...], restart: bool, dry_run: bool) -> None:
    """Create the target tables (schema translation), copy the source's rows (all selected tables, or
    TABLES as schema.table), resumable, hand each table to the change stream, then create secondary
    indexes and foreign keys. Idempotent: a released table is not copied again."""
    from replicator.config import ForeignKeyTiming
    from replicator.schema import Phase
    from replicator.sensor import NullSensor
    from replicator.snapshot.copier import SnapshotCopier

    config = obj.config()
    _ONE_SHOT.append(True)
    copier = SnapshotCopier(config, NullSensor(), say=say)
    if dry_run:
        plan = copier.schema_plan(copier.resolve(list(tables) or None))
        phases = [Phase.CREATE, Phase.POST_LOAD]
        if config.snapshot.foreign_keys is ForeignKeyTiming.AFTER_LOAD:
            phases.append(Phase.FOREIGN_KEYS)
        for phase in phases:
            out.print(f"-- phase {phase.value}{' (after the copy)' if phase is not Phase.CREATE else ''}",
                      markup=False)
            for text in rendered(config, plan, phase):
                out.print(f"{text};", markup=False, soft_wrap=True)
        out.print(f"-- would copy {len(plan.tables)} table(s): "
                  + ", ".join(p.source.table.qualified for p in plan.tables), markup=False, soft_wrap=True)
        return
    results = copier.run(list(tables) or None, restart=restart)
    print(plain_table(["table", "state", "chunks", "rows", "in target", "in source snapshot"],
                      [[r.table, r.state, str(r.chunks), f"{r.rows:,}",
                        "" if r.target_rows is None else f"{r.target_rows:,}",
                        "" if r.source_rows is None else f"{r.source_rows:,}"] for r in results]))


@cli.command("reconcile")
@click.argument("tables", nargs=-1)
@click.option("--json", "json_file", type=click.Path(dir_okay=False, path_type=Path),
              help="also write the full report (every table, every differing row listed) as JSON to this file")
@click.option("--no-anchor", is_flag=True,
              help="do not recheck differing rows at a common stream position (for tables without a change "
                   "stream): exact only when neither side changes during the pass")
@click.option("--repair", is_flag=True,
              help="re-copy confirmed differing rows from the source at the position they were read, through the "
                   "applier's write path, then verify them again")
@click.option("--changed", is_flag=True,
              help="recheck only the key ranges the applier changed since each table's last clean pass (the "
                   "final check at cutover); a table without a recorded clean pass is compared whole")
@click.pass_obj
def reconcile(obj: _Context, tables: tuple[str, ...], json_file: Path | None, *, no_anchor: bool, repair: bool,
              changed: bool) -> None:
    """Compare the rows of the source and the target (all selected tables, or TABLES as schema.table):
    chunk checksums computed in both databases, differing chunks bisected down to the rows. Exit code 0
    only when no difference is confirmed."""
    from replicator.reconcile.checker import Reconciler
    from replicator.sensor import NullSensor

    if changed and no_anchor:
        raise click.UsageError("--changed reads what the applier recorded: it cannot go with --no-anchor")
    config = obj.config()
    _ONE_SHOT.append(True)
    reconciler = Reconciler(config, NullSensor(), say=say,
                            anchored=not no_anchor, repair=repair, changed=changed)
    report = reconciler.run(list(tables) or None)
    if json_file is not None:
        try:
            json_file.write_bytes(report.to_json())
        except OSError as exc:
            raise ConfigError(f"cannot write the report to {json_file}: {exc.strerror}",
                              hint="choose a writable path for --json") from None
    print(plain_table(["table", "state", "source rows", "target rows", "chunks", "missing", "extra", "different",
                       "repaired", "seconds"],
                      [[t.table, t.state.value, f"{t.source_rows:,}", f"{t.target_rows:,}", str(t.chunks),
                        str(t.counts["missing"]), str(t.counts["extra"]), str(t.counts["different"]),
                        str(t.repaired), f"{t.seconds:.1f}"] for t in report.tables]))
    for t in report.tables:
        for note in t.notes:
            print(f"{t.table}: {note}")
        for row in t.rows[:20]:
            print(f"{t.table}: {row.line()}")
        if len(t.rows) > 20 or t.differences > len(t.rows):
            print(f"{t.table}: … {t.differences} differing row(s) in all"
                  + (f" (see {json_file})" if json_file else " (--json FILE lists them)"))
    if not report.ok:
        raise SystemExit(1)


@cli.command("apply")
@click.pass_obj
def apply_changes(obj: _Context) -> None:
    """Apply the change events from Kafka to the target until SIGTERM/SIGINT (exactly-once effect)."""
    from replicator.service import apply_forever

    apply_forever(obj.config(), say=say)


# --- entry point ----------------------------------------------------------------------------------


def _setup_logging() -> None:
    # REPLICATOR_LOG_LEVEL=INFO|DEBUG for more detail (DEBUG: every batch's offsets and fencing decisions).
    level = os.environ.get("REPLICATOR_LOG_LEVEL", "WARNING").upper()
    logging.basicConfig(level=level if level in ("DEBUG", "INFO", "WARNING", "ERROR") else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # librdkafka's own connection chatter: the error it leads to is reported once, as one line.
    logging.getLogger("replicator.librdkafka").setLevel(logging.CRITICAL)


# Set by the commands that run one stage to its end and close everything they opened (snapshot,
# reconcile): their process ends without the interpreter's teardown (freeing every module and
# object: ~0.1 s, a tenth of a reconcile's time outside its pass).
_ONE_SHOT: list[bool] = []


def main(argv: list[str] | None = None) -> None:
    _setup_logging()
    code = _run(argv)
    if _ONE_SHOT:
        sys.stdout.flush()
        sys.stderr.flush()
        logging.shutdown()
        os._exit(code)
    sys.exit(code)


def _run(argv: list[str] | None) -> int:
    """The command's exit code; every ReplicatorError becomes one line."""
    try:
        cli.main(args=argv, prog_name="replicator", standalone_mode=False)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except ReplicatorError as exc:
        say(f"replicator: error: {exc.line()}")
        return exc.exit_code
    except click.exceptions.Abort:
        say("replicator: aborted")
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("REPLICATOR_DEBUG"):
            raise
        say(f"replicator: internal error: {type(exc).__name__}: {exc} "
            "(a bug: please report it; REPLICATOR_DEBUG=1 shows the traceback)")
        return 70


if __name__ == "__main__":
    main()
