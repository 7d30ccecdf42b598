"""``hub import customers FILE``: import customer sheets (xlsx/csv) with a row-level report.

Exit codes: 0 every row was created or merged; 1 some rows were refused (see the report); 2 the file or
the layout is wrong (nothing imported); 3 the store could not be reached.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hub.cli.main import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEMS, EXIT_UNREACHABLE
from hub.cli.templates import print_error
from hub.config.models.files import CustomerSheet
from hub.errors import ConfigError, HubError

app: typer.Typer = typer.Typer(help="Import the sheets teams keep today.", no_args_is_help=True)
console = Console()


def _sheet_layout(template: str, connection: str | None, config: Path | None) -> CustomerSheet:
    """The CustomerSheet layout: from a hub.yaml connection, else from a template (name or file)."""
    from hub.config.models import ExcelCustomersTemplate
    from hub.config.project import load_project
    from hub.config.templates import load_template

    if connection:
        model = load_project(config, check_env=False).connection(connection)
    else:
        model = load_template(template).model
    if not isinstance(model, ExcelCustomersTemplate):
        raise ConfigError(
            f"{connection or template}: is a {model.kind} template; use an excel_customers one."
        )
    return model.streams.customers


@app.command("customers")
def customers(
    file: Path = typer.Argument(..., help="The sheet: .xlsx or .csv", exists=False),
    template: str = typer.Option(
        "excel_customers", "--template", "-t", help="Template name or file (layout)."
    ),
    connection: str = typer.Option(
        None, "--connection", help="Use this excel_customers connection of hub.yaml."
    ),
    config: Path = typer.Option(None, "--config", "-c", help="Project config (with --connection)."),
    report: Path = typer.Option(None, "--report", "-r", help="Row-level report (CSV); default reports/…csv"),
    database_url: str = typer.Option(
        None, "--database-url", help="Store URL (default: HUB_DATABASE_URL / SQLite)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Create or merge customers (dedupe by credit code, then normalised name); refuse bad rows."""
    from crm_core.db import make_engine
    from hub.importers import import_customers

    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    report_path = report or Path("reports") / f"import-customers-{file.stem}-{stamp}.csv"
    try:
        sheet = _sheet_layout(template, connection, config)
        engine = make_engine(database_url)
    except ConfigError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None
    try:
        if as_json:
            result = import_customers(engine, file, sheet, report_path=report_path)
        else:
            with Progress(
                TextColumn("[bold]Importing[/bold] {task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=console,
            ) as bar:
                task = bar.add_task(escape(file.name), total=None)
                result = import_customers(
                    engine,
                    file,
                    sheet,
                    report_path=report_path,
                    progress=lambda done, total: bar.update(task, completed=done, total=total),
                )
    except ConfigError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None
    except HubError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    except Exception as exc:  # the store could not be reached or written (driver errors are not HubErrors)
        import sqlalchemy as sa

        if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
            raise
        from crm_core.db import display_url

        err = HubError(f"store at {display_url(str(engine.url))} cannot be reached: {exc.orig}")
        print_error(err, as_json=as_json)
        raise typer.Exit(EXIT_UNREACHABLE) from None
    finally:
        engine.dispose()

    counts = result.counts
    code = EXIT_PROBLEMS if counts["refused"] else EXIT_OK
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "file": str(file),
                    "counts": counts,
                    "report": result.report_path,
                    "ignored": result.ignored_columns,
                },
                ensure_ascii=False,
            )
        )
        raise typer.Exit(code)
    table = Table(title=f"Customers from {escape(file.name)}")
    for column in ("created", "merged", "refused", "total"):
        table.add_column(column, justify="right")
    table.add_row(
        f"[green]{counts['created']}[/green]",
        f"[cyan]{counts['merged']}[/cyan]",
        f"[red]{counts['refused']}[/red]" if counts["refused"] else "0",
        str(counts["total"]),
    )
    console.print(table)
    if result.ignored_columns:
        console.print(f"[yellow]Ignored columns:[/yellow] {escape(', '.join(result.ignored_columns))}")
    console.print(f"Row-level report: {escape(str(result.report_path))}")
    raise typer.Exit(code)
