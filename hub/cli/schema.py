"""``hub schema``: write the JSON Schema of hub.yaml (or of a template) for editors."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console

from hub.config.project import SCHEMA_FILE

console = Console()


def schema(
    out: Path = typer.Option(Path(SCHEMA_FILE), "--out", "-o", help="File to write; '-' prints to stdout."),
    template: bool = typer.Option(False, "--template", help="Schema of a template file instead of hub.yaml."),
) -> None:
    """Generate the JSON Schema from the config models (editors validate hub.yaml with it)."""
    from hub.config.schema import project_schema, template_schema, write_schema

    document = template_schema() if template else project_schema()
    if str(out) == "-":
        typer.echo(json.dumps(document, ensure_ascii=False, indent=2))
        return
    write_schema(out, document)
    console.print(f"[green]Wrote {out}[/green]")
