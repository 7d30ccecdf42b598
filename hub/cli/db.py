"""``hub db``: the canonical store's schema."""

from __future__ import annotations

import typer
from rich.console import Console

app: typer.Typer = typer.Typer(help="Canonical store: migrations.", no_args_is_help=True)
console = Console()


@app.command("upgrade")
def upgrade(revision: str = typer.Argument("head", help="Alembic revision to upgrade to.")) -> None:
    """Create or migrate the canonical store (SQLite under HUB_HOME, or HUB_DATABASE_URL)."""
    from crm_core.db import database_url, display_url
    from crm_core.migrate import upgrade as run_upgrade

    url = database_url()
    run_upgrade(url, revision)
    console.print(f"[green]Store at {display_url(url)} is at revision {revision}.[/green]")
