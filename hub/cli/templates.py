"""``hub templates list|show|validate``: the connector presets, and checking template files.

Exit codes: 0 every template is valid, 2 at least one is not (see ``hub.cli.main``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.syntax import Syntax
from rich.table import Table

from hub.cli.main import EXIT_CONFIG, EXIT_OK
from hub.errors import ConfigError, HubError

app: typer.Typer = typer.Typer(help="Connector templates: list, show and validate.", no_args_is_help=True)
console = Console()
err_console = Console(stderr=True, soft_wrap=True)


def print_error(exc: HubError, *, as_json: bool = False) -> None:
    """Print a hub error for a person (red, to stderr) or as JSON (to stdout)."""
    if as_json:
        typer.echo(json.dumps({"ok": False, "error": str(exc), **_jsonable(exc.context)}, ensure_ascii=False))
    else:
        err_console.print(f"[red]{escape(str(exc))}[/red]")


def _jsonable(context: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in context.items() if isinstance(v, str | int | float | bool | type(None))}


def _streams(model: Any) -> list[str]:
    streams = getattr(model, "streams", None)
    if streams is None:
        return []
    if isinstance(streams, dict):
        return list(streams)
    return [name for name in type(streams).model_fields if getattr(streams, name) is not None]


@app.command("list")
def list_templates(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")) -> None:
    """List the shipped templates."""
    from hub.config.templates import load_template, template_paths

    rows: list[dict[str, Any]] = []
    for name, path in template_paths().items():
        try:
            model = load_template(path).model
            rows.append({"name": name, "kind": model.kind, "title": model.title, "streams": _streams(model)})
        except ConfigError as exc:
            rows.append({"name": name, "kind": "?", "title": f"INVALID: {exc}", "streams": []})
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="Connector templates")
    for column in ("name", "kind", "title", "streams"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["name"], row["kind"], escape(row["title"]), ", ".join(row["streams"]))
    console.print(table)


@app.command("show")
def show(
    name: str = typer.Argument(..., help="Template name (see `hub templates list`) or a file path."),
    as_json: bool = typer.Option(False, "--json", help="The validated template with defaults filled in."),
) -> None:
    """Print a template: the commented YAML, or the validated model as JSON."""
    from hub.config.templates import load_template

    try:
        loaded = load_template(name)
    except ConfigError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None
    if as_json:
        typer.echo(json.dumps(loaded.model.model_dump(mode="json"), ensure_ascii=False, indent=2))
        return
    console.print(Syntax(loaded.path.read_text(encoding="utf-8"), "yaml", theme="ansi_dark", word_wrap=True))


def _expand(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        else:
            out.append(path)
    return out


def validate_one(path: Path) -> dict[str, Any]:
    """Validate one template file (models, then its mappings); a result row for the report."""
    from hub.config.templates import load_template
    from mappings.registry import check_template_mappings

    try:
        loaded = load_template(path)
        mappings = check_template_mappings(loaded)
    except ConfigError as exc:
        return {"file": str(path), "ok": False, "error": str(exc), **_jsonable(exc.context)}
    return {
        "file": str(path),
        "ok": True,
        "template": loaded.name,
        "kind": loaded.model.kind,
        "mappings": {stream: m.mapping.key for stream, m in mappings.items()},
    }


@app.command("validate")
def validate(
    paths: list[Path] = typer.Argument(
        None, help="Template files or directories; default: every shipped template."
    ),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate templates: keys, types, secrets as ${ENV} references, cron, paths, columns and mappings."""
    from hub.config.templates import template_paths

    files = _expand(paths) if paths else list(template_paths().values())
    results = [validate_one(path) for path in files]
    if as_json:
        typer.echo(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for result in results:
            if result["ok"]:
                console.print(f"[green]OK[/green]   {escape(result['file'])} ({result['kind']})")
            else:
                console.print(f"[red]FAIL[/red] {escape(result['error'])}")
        bad = sum(not r["ok"] for r in results)
        console.print(f"{len(results) - bad} valid, {bad} invalid.")
    raise typer.Exit(EXIT_CONFIG if any(not r["ok"] for r in results) else EXIT_OK)
