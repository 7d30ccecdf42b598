"""``hub demo``: one night of the real jobs on SQLite against the local KIS sandbox, with a summary."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.panel import Panel
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.main import EXIT_OK, EXIT_PROBLEMS
from hub.demo import NightReport, NightSummary

TONIGHT = "ERP writes tonight"

console = Console()


def demo(
    home: Path = typer.Option(
        Path(".hub/demo"), "--home", help="HUB_HOME of the demo (store, sandbox, reports)."
    ),
    fresh: bool = typer.Option(False, "--fresh", help="Start over instead of playing the next day."),
    faults: bool = typer.Option(False, "--faults", help="Sandbox injects 5xx errors and lost replies."),
    invoices: int = typer.Option(2000, help="Invoices in the demo data set (first night)."),
    seed: int = typer.Option(7, help="Seed of the demo data set."),
) -> None:
    """Run one night: push invoiced states -> reconcile -> pull inventory -> promise dates."""
    from connectors.kingdee.kis_sandbox import FaultConfig, KisSandbox, SandboxAdmin
    from crm_core.demo.load import load_demo_data
    from hub import demo as night

    started = time.perf_counter()
    home = home.resolve()
    first = night.prepare_home(home, fresh=fresh)
    engine = night.ensure_store(home)
    fault_config = FaultConfig(seed=seed, p_5xx=0.2, p_lost_reply=0.05) if faults else FaultConfig(seed=seed)
    # No default seed: the sandbox holds exactly the demo company's base data and stock.
    sandbox = KisSandbox(home / "kis_sandbox.sqlite", seed=seed, faults=fault_config, seed_defaults=False)
    base_url = sandbox.start()
    report = night.NightReport(home=home, first_night=first)
    ok = True
    try:
        with Progress(
            SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console
        ) as bar:
            if first:
                task = bar.add_task(f"Loading the demo data set ({invoices:,} invoices)", total=None)
                summary = load_demo_data(engine, seed=seed, invoices=invoices, anchor=night.today())
                report.loaded = {
                    "customers": summary.customers,
                    "products": summary.products,
                    "opportunities": summary.opportunities,
                    "orders": summary.orders,
                    "invoices": summary.invoices,
                }
                bar.update(task, description="Demo data set loaded")
                bar.stop_task(task)
            else:
                report.changes = night.next_day_changes(engine, seed)
            SandboxAdmin(base_url).set_faults(p_5xx=0.0, p_lost_reply=0.0)
            night.seed_sandbox_from_store(engine, SandboxAdmin(base_url))
            if faults:
                SandboxAdmin(base_url).set_faults(p_5xx=0.2, p_lost_reply=0.05)
            config = home / "hub.yaml"
            config.write_text(
                night.HUB_YAML.format(name=night.CONNECTION, base_url=base_url, stock="CK01"),
                encoding="utf-8",
            )
            env = night.job_environment(home, config)
            writes_before = len(sandbox.state.ledger())
            push_job, inventory_job = f"{night.CONNECTION}_nightly_push", f"{night.CONNECTION}_inventory"
            ok = _run(bar, report, push_job, env, home)
            # What the retry sensor does between nightly runs, played at once: retries due now, run again.
            for _round in range(night.MAX_RETRY_ROUNDS):
                if not ok or not night.retries_pending(engine, night.CONNECTION):
                    break
                night.make_retries_due(engine, night.CONNECTION)
                ok = _run(bar, report, push_job, env, home, label=f"{push_job} (retries)")
            ok = _run(bar, report, inventory_job, env, home) and ok
            report.changes[TONIGHT] = len(sandbox.state.ledger()) - writes_before
        ledger = len(sandbox.state.ledger())
    finally:
        sandbox.stop()
    _print(report, night.store_summary(engine), sandbox_ledger=ledger, seconds=time.perf_counter() - started)
    raise typer.Exit(EXIT_OK if ok else EXIT_PROBLEMS)


def _run(
    bar: Progress, report: NightReport, job: str, env: dict[str, str], home: Path, label: str = ""
) -> bool:
    """One Dagster job through Dagster's CLI, shown as a progress line."""
    from hub import demo as night

    name = label or job
    task = bar.add_task(f"Dagster job {name}", total=None)
    log = home / f"{name.replace(' ', '_').replace('(', '').replace(')', '')}.log"
    success = night.run_job(job, env, log)
    report.jobs[name] = success
    report.job_logs[name] = str(log)
    bar.update(task, description=f"Dagster job {name}: {'ok' if success else 'FAILED'}")
    bar.stop_task(task)
    return success


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items()))


def _print(report: NightReport, summary: NightSummary, *, sandbox_ledger: int, seconds: float) -> None:
    table = Table(title="Night summary", show_header=False)
    if report.first_night:
        table.add_row("Loaded", ", ".join(f"{v:,} {k}" for k, v in report.loaded.items()))
    else:
        changes = {k: v for k, v in report.changes.items() if k != TONIGHT}
        table.add_row("Changes since last night", ", ".join(f"{v} {k}" for k, v in changes.items()))
    for job, success in report.jobs.items():
        table.add_row(
            f"Job {job}",
            "[green]succeeded[/green]" if success else f"[red]FAILED[/red] (log: {report.job_logs[job]})",
        )
    table.add_row("Queue", _counts(summary.queue) or "empty")
    table.add_row("ERP writes tonight (sandbox ledger)", str(report.changes.get(TONIGHT, 0)))
    table.add_row("ERP writes, all nights", str(sandbox_ledger))
    table.add_row("Reconciliation", _counts(summary.reconciliation) or "not run")
    table.add_row(
        "Delivery promises",
        f"{_counts(summary.promises)}; late against the requested date: {summary.late}"
        if summary.promises
        else "not computed",
    )
    table.add_row("Reports", str(report.home / "reports"))
    table.add_row("Took", f"{seconds:.0f} s")
    console.print(table)
    console.print(
        Panel(
            f"Open the Dagster UI on this night's runs:\n  HUB_HOME={report.home} make ui\n"
            "Run `hub demo` again to play the next day (only the changes are pushed).",
            title="Next",
        )
    )
