"""``hub check``: load hub.yaml strictly, then authenticate and read once per connection.

Exit codes: 0 every checked connection works; 1 a system answered but refused (credentials, rights);
2 the configuration is wrong (nothing was contacted); 3 a system could not be reached.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hub.cli.main import EXIT_CONFIG, EXIT_OK, EXIT_PROBLEMS, EXIT_UNREACHABLE
from hub.cli.templates import print_error
from hub.errors import ConfigError, HubError, InfrastructureError, TransientError

console = Console()

Checker = Callable[[str, Any, str], dict[str, Any]]


def _check_kis(name: str, model: Any, where: str) -> dict[str, Any]:
    from connectors.kingdee.kis.client import KisClient
    from hub.config.kis import kis_settings

    client = KisClient(kis_settings(name, model, where=where))
    try:
        return dataclasses.asdict(client.check())
    finally:
        client.session.close()


def _check_k3cloud(name: str, model: Any, where: str) -> dict[str, Any]:
    from connectors.kingdee.k3cloud.client import K3CloudClient
    from hub.config.k3cloud import k3cloud_settings

    return dataclasses.asdict(K3CloudClient(k3cloud_settings(name, model, where=where)).check())


# One checker per connector kind; kinds without a client yet are reported as skipped.
CHECKERS: dict[str, Checker] = {"kingdee_kis": _check_kis, "kingdee_k3cloud": _check_k3cloud}


def classify(exc: BaseException) -> str:
    """``unreachable`` (network, 5xx, timeouts), ``config`` or ``failed`` (refused by the system)."""
    import requests

    if isinstance(exc, TransientError | InfrastructureError | requests.RequestException | OSError):
        return "unreachable"
    if isinstance(exc, ConfigError):
        return "config"
    return "failed"


def quick_retry(model: Any) -> Any:
    """The model with at most 2 attempts and short waits, so a stopped system is reported in seconds."""
    retry = model.retry.model_copy(
        update={
            "max_attempts": min(model.retry.max_attempts, 2),
            "max_wait": min(model.retry.max_wait, 2.0),
            "initial_wait": min(model.retry.initial_wait, 0.5),
            "max_elapsed": min(model.retry.max_elapsed, 30.0),
        }
    )
    return model.model_copy(update={"retry": retry})


def check_connection(name: str, model: Any, where: str) -> dict[str, Any]:
    """Check one connection; never raises for a failing system, it reports it."""
    checker = CHECKERS.get(model.kind)
    if checker is None:
        return {
            "connection": name,
            "kind": model.kind,
            "status": "skipped",
            "detail": "no check for this kind yet",
        }
    model = quick_retry(model)
    try:
        details = checker(name, model, where)
    except Exception as exc:  # report every failure per connection, then go on
        from hub.secrets import redact

        status = classify(exc)
        message = str(exc) if isinstance(exc, HubError) else redact(f"{type(exc).__name__}: {exc}")
        return {"connection": name, "kind": model.kind, "status": status, "detail": message}
    return {"connection": name, "kind": model.kind, "status": "ok", "detail": details}


def exit_code(results: list[dict[str, Any]]) -> int:
    """The most serious outcome wins: unreachable, then config, then failed."""
    statuses = {r["status"] for r in results}
    if "unreachable" in statuses:
        return EXIT_UNREACHABLE
    if "config" in statuses:
        return EXIT_CONFIG
    if "failed" in statuses:
        return EXIT_PROBLEMS
    return EXIT_OK


def _summary(detail: Any) -> str:
    if isinstance(detail, dict):
        return ", ".join(f"{k}={v}" for k, v in detail.items() if k not in ("connection",))
    return str(detail)


def check(
    config: Path = typer.Option(
        None, "--config", "-c", help="Project config (default: $HUB_CONFIG or ./hub.yaml)."
    ),
    connection: list[str] = typer.Option(None, "--connection", help="Check only these connections."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Validate hub.yaml, then authenticate and read once per connection; prints a per-connection report."""
    from hub.config.project import load_project
    from mappings.registry import check_project_mappings

    try:
        project = load_project(config, check_env=True)
        check_project_mappings(project)
        names = list(connection or project.connections)
        models = {n: project.connection(n) for n in names}
    except ConfigError as exc:
        print_error(exc, as_json=as_json)
        raise typer.Exit(EXIT_CONFIG) from None

    results = []
    for name, model in models.items():
        if as_json:
            results.append(check_connection(name, model, str(project.path)))
        else:
            with console.status(f"Checking {name} ({model.kind}) ..."):
                results.append(check_connection(name, model, str(project.path)))
    code = exit_code(results)
    if as_json:
        typer.echo(
            json.dumps({"ok": code == EXIT_OK, "connections": results}, ensure_ascii=False, default=str)
        )
        raise typer.Exit(code)
    table = Table(title=f"hub check ({project.path})")
    for column in ("connection", "kind", "status", "detail"):
        table.add_column(column)
    colours = {"ok": "green", "skipped": "yellow"}
    for r in results:
        colour = colours.get(r["status"], "red")
        table.add_row(
            r["connection"], r["kind"], f"[{colour}]{r['status']}[/{colour}]", escape(_summary(r["detail"]))
        )
    console.print(table)
    raise typer.Exit(code)
