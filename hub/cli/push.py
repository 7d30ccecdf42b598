"""``hub push``, ``hub reconcile`` and ``hub queue``: the nightly push by hand, and its morning-after tools.

Exit codes: 0 done; 1 the run finished with problems (blocked, quarantined, dead letters, mismatches);
2 configuration; 3 the ERP or the store could not be reached; 4 another push is running (skipped).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.main import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEMS, EXIT_UNREACHABLE
from hub.cli.templates import print_error
from hub.errors import ConfigError, HubError, InfrastructureError, TransientError

EXIT_SKIPPED = 4
console = Console()
queue_app: typer.Typer = typer.Typer(
    help="The retrying delivery queue: list, show, retry, replay, discard.", no_args_is_help=True
)

ConnectionOpt = typer.Option(
    None, "--connection", "-c", help="ERP connection in hub.yaml (default: the only one)."
)
JsonOpt = typer.Option(False, "--json", help="Machine-readable output.")


@contextmanager
def _context(connection: str | None, as_json: bool) -> Iterator[tuple[Any, Any, Any]]:
    """(engine, sink, target) for the connection, with errors turned into exit codes."""
    from crm_core.db import make_engine
    from hub.config.project import load_project
    from hub.push.lock import LockBusy
    from hub.runtime import open_sink, push_target, push_targets

    try:
        project = load_project()
        if connection is None:
            targets = push_targets(project)
            if len(targets) != 1:
                names = ", ".join(t.name for t in targets) or "none"
                raise ConfigError(
                    f"{project.path}: name the ERP connection with --connection (push targets: {names})"
                )
            connection = targets[0].name
        target = push_target(project, connection)
        engine = make_engine()
        with open_sink(project, connection) as sink:
            yield engine, sink, target
    except LockBusy as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_SKIPPED) from None
    except ConfigError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None
    except (TransientError, InfrastructureError, sa.exc.OperationalError) as exc:
        print_error(
            exc if isinstance(exc, HubError) else InfrastructureError(str(exc).splitlines()[0]),
            as_json=as_json,
        )
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except HubError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_PROBLEMS) from None


def push(
    connection: str | None = ConnectionOpt,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show what would be created, updated, skipped, blocked."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Push invoiced states to the ERP now (what the nightly schedule runs)."""
    from hub.push.engine import run_push

    with (
        _context(connection, as_json) as (engine, sink, target),
        Progress(
            TextColumn("[bold]push {task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
            disable=as_json,
        ) as progress,
    ):
        task = progress.add_task(target.name, total=None)
        result = run_push(
            engine,
            sink,
            target.settings,
            dry_run=dry_run,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        typer.echo(json.dumps({**result.as_metadata(), "plan": result.plan}, ensure_ascii=False))
    elif dry_run:
        table = Table(
            "invoice", "bill no", "action", "amount", title=f"Dry run: {target.name} (nothing sent)"
        )
        for row in result.plan:
            table.add_row(row["invoice"], row["bill_no"], row["action"], row["amount"])
        console.print(table)
    else:
        print_push_summary(result)
    problems = result.blocked or result.quarantined or result.dead_lettered
    raise typer.Exit(EXIT_PROBLEMS if problems else EXIT_OK)


def print_push_summary(result: Any) -> None:
    table = Table(
        "pushed",
        "updated",
        "unchanged",
        "quarantined",
        "retry",
        "dead",
        "amount pushed",
        title=f"Push to {result.system}",
    )
    table.add_row(
        str(result.pushed),
        str(result.updated),
        str(result.unchanged),
        str(result.quarantined),
        str(result.retry_scheduled),
        str(result.dead_lettered),
        f"{result.pushed_amount:,.2f}",
    )
    console.print(table)
    if result.blocked:
        console.print(
            f"[red]Blocked: {result.failing_share:.0%} of the due invoices failed validation; nothing was "
            "sent. See `hub queue list --state pending` and fix the data.[/red]"
        )


def reconcile(
    day: str = typer.Option(..., "--date", help="Business date YYYY-MM-DD (issue date of the invoices)."),
    until: str | None = typer.Option(None, "--to", help="Last date of a range (default: --date)."),
    out: Path = typer.Option(Path("reports"), "--out", help="Directory for the CSV and XLSX reports."),
    connection: str | None = ConnectionOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Compare the store with the ERP document by document; write CSV + XLSX for finance."""
    from hub.reconcile import reconcile as run_reconcile

    try:
        first, last = date.fromisoformat(day), date.fromisoformat(until or day)
    except ValueError:
        print_error(ConfigError(f"--date/--to: use YYYY-MM-DD (got {day!r}, {until!r})"), as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None
    with _context(connection, as_json) as (engine, sink, target):
        recon = run_reconcile(engine, sink, first, last, mapping=target.settings.mapping, out_dir=out)
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "counts": recon.counts,
                    "mismatches": recon.mismatches,
                    "run_id": recon.run_id,
                    "csv": str(recon.csv_path),
                    "xlsx": str(recon.xlsx_path),
                },
                ensure_ascii=False,
            )
        )
    else:
        table = Table("status", "documents", title=f"Reconciliation {first}..{last} ({target.name})")
        for status, count in sorted(recon.counts.items()):
            table.add_row(status, str(count))
        console.print(table)
        console.print(f"Reports: {recon.csv_path}\n         {recon.xlsx_path}")
    raise typer.Exit(EXIT_PROBLEMS if recon.mismatches else EXIT_OK)


@queue_app.command("list")
def queue_list(
    state: str | None = typer.Option(None, help="Only this state (pending, retry, dead, quarantined ...)."),
    connection: str | None = ConnectionOpt,
    limit: int = typer.Option(50, help="At most this many rows."),
    as_json: bool = JsonOpt,
) -> None:
    """Queue items with their state, attempts and last error."""
    from crm_core.db import session_scope
    from crm_core.models import DeliveryQueueItem, Invoice

    with _context(connection, as_json) as (engine, sink, _target), session_scope(engine) as session:
        query = (
            sa.select(DeliveryQueueItem, Invoice.number)
            .join(Invoice, Invoice.id == DeliveryQueueItem.canonical_id, isouter=True)
            .where(DeliveryQueueItem.system == sink.system)
            .order_by(DeliveryQueueItem.id)
            .limit(limit)
        )
        if state:
            query = query.where(DeliveryQueueItem.state == state)
        rows: list[dict[str, Any]] = [
            {
                "id": item.id,
                "invoice": number,
                "state": item.state,
                "attempts": item.attempts,
                "next_attempt_at": item.next_attempt_at.isoformat() if item.next_attempt_at else None,
                "last_error": item.last_error,
            }
            for item, number in session.execute(query)
        ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False))
        return
    table = Table(
        "id", "invoice", "state", "attempts", "next attempt", "last error", title=f"Queue of {sink.system}"
    )
    for r in rows:
        table.add_row(
            str(r["id"]),
            r["invoice"] or "?",
            r["state"],
            str(r["attempts"]),
            r["next_attempt_at"] or "",
            (r["last_error"] or "")[:80],
        )
    console.print(table)


@queue_app.command("show")
def queue_show(item_id: int, connection: str | None = ConnectionOpt) -> None:
    """One item with its quarantine reasons and dead letters."""
    from crm_core.db import session_scope
    from crm_core.models import DeadLetter, DeliveryQueueItem, QuarantinedRecord

    with _context(connection, False) as (engine, sink, _target), session_scope(engine) as session:
        item = session.get(DeliveryQueueItem, item_id)
        if item is None or item.system != sink.system:
            print_error(ConfigError(f"no queue item {item_id} for connection {sink.system!r}"))
            raise typer.Exit(EXIT_CONFIG)
        console.print(
            {
                c: getattr(item, c)
                for c in ("id", "kind", "canonical_id", "state", "attempts", "next_attempt_at", "last_error")
            }
        )
        for record in session.scalars(
            sa.select(QuarantinedRecord).where(QuarantinedRecord.canonical_id == item.canonical_id)
        ):
            console.print(f"[yellow]quarantined {record.created_at:%Y-%m-%d %H:%M}[/yellow] {record.reasons}")
        for letter in session.scalars(sa.select(DeadLetter).where(DeadLetter.queue_item_id == item.id)):
            console.print(
                f"[red]dead letter {letter.created_at:%Y-%m-%d %H:%M}[/red] {letter.error_type}: "
                f"{letter.error_message} {letter.context}"
            )


def _queue_action(action: str, ids: list[int] | None, connection: str | None) -> None:
    from crm_core.db import session_scope
    from hub.push import queue

    with _context(connection, False) as (engine, sink, _target), session_scope(engine) as session:
        if action == "retry":
            count = queue.retry_now(session, sink.system, ids or None)
        elif action == "replay":
            count = queue.replay(session, sink.system, ids or None)
        else:
            count = queue.discard(session, sink.system, ids or [])
    console.print(f"{action}: {count} item(s). Run `hub push` (or wait for the retry sensor) to send them.")


@queue_app.command("retry")
def queue_retry(ids: list[int] = typer.Argument(None), connection: str | None = ConnectionOpt) -> None:
    """Make retrying items due now (all, or the ids given)."""
    _queue_action("retry", ids, connection)


@queue_app.command("replay")
def queue_replay(ids: list[int] = typer.Argument(None), connection: str | None = ConnectionOpt) -> None:
    """Re-validate and resend quarantined or dead items after the data was fixed (all, or the ids given)."""
    _queue_action("replay", ids, connection)


@queue_app.command("discard")
def queue_discard(ids: list[int] = typer.Argument(...), connection: str | None = ConnectionOpt) -> None:
    """Stop trying these items."""
    _queue_action("discard", ids, connection)
