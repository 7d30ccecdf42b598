"""``hub pull inventory``, ``hub pull supply`` and ``hub promise``: stock and incoming supply into the
store, and delivery promises out of it.

Exit codes: 0 done; 1 a snapshot or supply file was refused (the previous one stays in force) or rows
were quarantined; 2 configuration; 3 the ERP, SFTP server or store could not be reached.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.main import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEMS, EXIT_UNREACHABLE
from hub.errors import AuthError, ConfigError, HubError, InfrastructureError, TransientError

if TYPE_CHECKING:
    from hub.inventory.pull import FileResult, PullReport

console = Console()
err_console = Console(stderr=True)
pull_app: typer.Typer = typer.Typer(
    help="Pull data from ERPs and file drops into the store.", no_args_is_help=True
)

SHANGHAI = "Asia/Shanghai"


def _exit_code(exc: HubError) -> int:
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG
    if isinstance(exc, TransientError | AuthError | InfrastructureError):
        return EXIT_UNREACHABLE
    return EXIT_PROBLEMS


def _fail(exc: HubError, as_json: bool) -> typer.Exit:
    if as_json:
        typer.echo(
            json.dumps({"ok": False, "error": str(exc), "type": type(exc).__name__}, ensure_ascii=False)
        )
    else:
        err_console.print(f"[red]{escape(str(exc))}[/red]")
    return typer.Exit(_exit_code(exc))


def _today() -> dt.date:
    from zoneinfo import ZoneInfo

    return dt.datetime.now(ZoneInfo(SHANGHAI)).date()


# ------------------------------------------------------------------------------------------ pull (shared)

_STATUS_STYLES = {"refused": "red", "loaded": "green", "waiting": "yellow"}


def _connection_option(stream: str) -> Any:
    return typer.Option(
        None,
        "--connection",
        "-c",
        help=f"Connection in hub.yaml (default: every one with an {stream} stream).",
    )


def _max_shrink_option(help_text: str) -> Any:
    return typer.Option(None, min=0, max=1, help=help_text)


def _json_option() -> Any:
    return typer.Option(False, "--json", help="Machine-readable output.")


def _pull_sources(
    find_sources: Callable[[Any], Sequence[Any]],
    pull_one: Callable[..., PullReport[Any]],
    *,
    none_enabled: str,
    doing: str,
    as_json: bool,
) -> list[PullReport[Any]]:
    """Pull every source ``find_sources(project)`` returns with ``pull_one``, a spinner per source.

    A ``HubError`` exits with its code (see ``_fail``); ``none_enabled`` explains an empty source list.
    """
    from crm_core.db import hub_home, make_engine
    from hub.config.project import load_project

    reports: list[PullReport[Any]] = []
    try:
        project = load_project()
        sources = find_sources(project)
        if not sources:
            raise ConfigError(f"{project.path}: {none_enabled}")
        engine = make_engine()
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=err_console,
            disable=as_json,
            transient=True,
        ) as progress:
            for source in sources:
                task = progress.add_task(f"{source.name}: {doing}", total=None)

                def on_file(result: FileResult[Any], task: Any = task, name: str = source.name) -> None:
                    progress.update(task, description=f"{name}: {result.path} {result.status}")

                reports.append(
                    pull_one(
                        engine,
                        source,
                        local_dir=hub_home() / "downloads",
                        where=str(project.path),
                        on_file=on_file,
                    )
                )
                progress.remove_task(task)
    except HubError as exc:
        raise _fail(exc, as_json) from exc
    return reports


def _report_pulls(
    reports: list[PullReport[Any]],
    *,
    as_json: bool,
    outcome_fields: Callable[[Any], dict[str, Any]],
    title: str,
    path_column: str,
    outcome_columns: Sequence[str],
    outcome_cells: Callable[[Any], Sequence[str]],
    refused_alert: str,
) -> NoReturn:
    """Print the files of ``reports`` (one JSON document or a table) and exit: 1 when any was refused or had
    rows quarantined, else 0.

    A file's outcome, when it has one, adds ``outcome_fields`` to its JSON object and ``outcome_cells``
    (under ``outcome_columns``) to its table row; ``refused_alert`` follows the count of refused files.
    """
    refused = [o for r in reports for o in r.refused]
    rejected = sum(o.rows_rejected for r in reports for o in r.loaded)
    if as_json:
        out = [
            {
                "source": r.source,
                "path": f.path,
                "status": f.status,
                "message": f.message,
                **(outcome_fields(f.outcome) if f.outcome else {}),
            }
            for r in reports
            for f in r.files
        ]
        typer.echo(json.dumps({"ok": not refused, "files": out}, ensure_ascii=False))
    else:
        table = Table(title=title)
        for column in ("source", path_column, "status", *outcome_columns, "note"):
            table.add_column(column)
        for r in reports:
            for f in r.files:
                style = _STATUS_STYLES.get(f.status, "")
                table.add_row(
                    r.source,
                    escape(f.path),
                    f"[{style}]{f.status}[/{style}]" if style else f.status,
                    *(outcome_cells(f.outcome) if f.outcome else [""] * len(outcome_columns)),
                    escape(f.message[:120]),
                )
        console.print(table)
        if refused:
            err_console.print(f"[red]{len(refused)} {refused_alert} Alert ops.[/red]")
        elif rejected:
            err_console.print(f"[yellow]{rejected} row(s) quarantined; see the quarantine table.[/yellow]")
    raise typer.Exit(EXIT_PROBLEMS if refused or rejected else EXIT_OK)


# ------------------------------------------------------------------------------------------ pull inventory


@pull_app.command("inventory")
def pull_inventory(
    connection: str | None = _connection_option("inventory"),
    max_shrink: float | None = _max_shrink_option(
        "Refuse a snapshot whose row count fell by more than this share (default 0.5)."
    ),
    as_json: bool = _json_option(),
) -> None:
    """Pull inventory snapshots (KIS ICInventory/List or SFTP CSV drops) into the store."""
    from hub.inventory.pull import policy_for, pull_source
    from hub.inventory.sources import inventory_sources

    reports = _pull_sources(
        lambda project: inventory_sources(project, connection),
        lambda engine, source, **pull_args: pull_source(
            engine, source, policy=policy_for(source, max_shrink=max_shrink), **pull_args
        ),
        none_enabled="no connection has an enabled inventory stream.",
        doing="pulling",
        as_json=as_json,
    )
    _report_pulls(
        reports,
        as_json=as_json,
        outcome_fields=lambda o: {
            "snapshot_id": o.snapshot_id,
            "rows_read": o.rows_read,
            "rows_loaded": o.rows_loaded,
            "rows_rejected": o.rows_rejected,
            "disappeared": o.diff.disappeared_count if o.diff else None,
        },
        title="Inventory pull",
        path_column="file / listing",
        outcome_columns=("loaded", "rejected", "disappeared"),
        outcome_cells=lambda o: (
            str(o.rows_loaded),
            str(o.rows_rejected),
            str(o.diff.disappeared_count) if o.diff else "",
        ),
        refused_alert="snapshot(s) refused; the previous snapshot stays in force.",
    )


# ------------------------------------------------------------------------------------------- pull supply


@pull_app.command("supply")
def pull_supply(
    connection: str | None = _connection_option("incoming_supply"),
    max_shrink: float | None = _max_shrink_option(
        "Refuse a file that shrinks the open supply by more than this share (default: the stream's)."
    ),
    as_json: bool = _json_option(),
) -> None:
    """Pull incoming supply (open purchase / production orders with ETA) from SFTP CSV drops."""
    from hub.inventory import supply

    reports = _pull_sources(
        lambda project: supply.supply_sources(project, connection),
        lambda engine, source, **pull_args: supply.pull_supply(
            engine, source, policy=supply.policy_for(source, max_shrink=max_shrink), **pull_args
        ),
        none_enabled="no connection has an enabled incoming_supply stream (the erp_sftp_csv "
        "template ships it commented out).",
        doing="pulling supply",
        as_json=as_json,
    )
    fields = ("rows_read", "rows_loaded", "rows_rejected", "rows_closed", "previous_rows")
    _report_pulls(
        reports,
        as_json=as_json,
        outcome_fields=lambda o: {k: getattr(o, k) for k in fields},
        title="Incoming supply pull",
        path_column="file",
        outcome_columns=("loaded", "was", "rejected", "closed"),
        outcome_cells=lambda o: (
            str(o.rows_loaded),
            str(o.previous_rows),
            str(o.rows_rejected),
            str(o.rows_closed),
        ),
        refused_alert="supply file(s) refused; the previous supply stays in force.",
    )


# ------------------------------------------------------------------------------------------------ promise


def _load_settings(path: Path | None, today: dt.date) -> Any:
    from hub.promises import PromiseConfig
    from hub.promises.store import promise_config_from_mapping

    if path is None:
        return PromiseConfig(today=today)
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the promise settings ({exc}).") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the promise settings must be a mapping of keys to values.")
    return promise_config_from_mapping(data, today=today, where=str(path))


def _at_risk_rows(frame: Any) -> list[dict[str, Any]]:
    """At-risk lines as plain records: dates as YYYY-MM-DD (None when absent), numbers as numbers."""
    import pandas as pd

    out = frame.copy()
    for column in out.columns:
        if pd.api.types.is_datetime64_any_dtype(out[column]):
            out[column] = (
                out[column].dt.strftime("%Y-%m-%d").astype("object").where(out[column].notna(), None)
            )
    return [
        {str(k): (v.item() if hasattr(v, "item") else v) for k, v in r.items()}
        for r in out.to_dict("records")
    ]


def promise(
    today: str | None = typer.Option(
        None, help="Promise as of this day (YYYY-MM-DD; default: today in Shanghai)."
    ),
    settings: Path | None = typer.Option(
        None, "--settings", help="YAML with handling/shipping days, lead time, split and calendar overrides."
    ),
    top: int = typer.Option(20, min=1, help="At-risk lines to list."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Compute and report, write nothing."),
    as_json: bool = _json_option(),
) -> None:
    """Promise a delivery date to every open order and quote line, store them and queue CRM events."""
    from crm_core.db import make_engine
    from hub.promises.store import run_promises

    try:
        try:
            day = dt.date.fromisoformat(today) if today else _today()
        except ValueError:
            raise ConfigError(f"--today {today!r} is not a date; write YYYY-MM-DD.") from None
        config = _load_settings(settings, day)
        with Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            console=err_console,
            disable=as_json,
            transient=True,
        ) as progress:
            progress.add_task(f"promising open lines as of {day}", total=None)
            run = run_promises(make_engine(), config, top=top, dry_run=dry_run)
    except HubError as exc:
        raise _fail(exc, as_json) from exc
    s = run.summary
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "ok": True,
                    "today": day.isoformat(),
                    "lines_promised": s.lines_promised,
                    "lines_late": s.lines_late,
                    "made_to_order": s.made_to_order,
                    "split": s.split,
                    "written": run.written,
                    "removed": run.removed,
                    "events": run.events,
                    "seconds": round(run.seconds, 3),
                    "at_risk": _at_risk_rows(s.at_risk),
                },
                ensure_ascii=False,
                default=str,
            )
        )
        raise typer.Exit(EXIT_OK)
    console.print(
        f"Promised {s.lines_promised} line(s) as of {day}: [red]{s.lines_late} late[/red], "
        f"{s.made_to_order} made to order, {s.split} split; {run.written} written, {run.removed} removed, "
        f"{run.events} CRM event(s){' (dry run)' if dry_run else ''} in {run.seconds:.2f} s."
    )
    if not s.at_risk.empty:
        table = Table(title="Most at-risk lines")
        for column in s.at_risk.columns:
            table.add_column(str(column))
        for record in _at_risk_rows(s.at_risk):
            table.add_row(*(escape(str(v)) for v in record.values()))
        console.print(table)
    raise typer.Exit(EXIT_OK)
