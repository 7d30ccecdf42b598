"""``hub sandbox kis``: the local Kingdee KIS cloud gateway (ERP-APIS §5.2) in the foreground.

IT points a ``kingdee_kis`` template at the printed base URL and credentials to try it before touching
production. Fault knobs set here can be changed while it runs with ``PUT /__admin__/faults``.
"""

from __future__ import annotations

import os
from pathlib import Path

import typer
from rich.console import Console

from hub.cli.main import EXIT_CONFIG
from hub.cli.sandbox import app

console = Console()


@app.command("kis")
def kis(
    port: int = typer.Option(8765, help="Port to listen on (0 = any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; keep loopback unless you know why."),
    state: Path = typer.Option(
        Path(".hub/kis_sandbox.sqlite"), help="SQLite file keeping the sandbox's data."
    ),
    seed: int = typer.Option(0, help="Seed of every random fault decision (same seed, same faults)."),
    token_ttl_scale: float = typer.Option(1.0, help="Multiply token lifetimes (0.001: 3 h session -> 11 s)."),
    fault_5xx: float = typer.Option(0.0, help="Probability of an HTTP 5xx before a call is processed."),
    latency_ms: float = typer.Option(0.0, help="Latency added to every call, in milliseconds."),
    throttle: str = typer.Option(
        "", help="RATE[:BURST[:MODE]] requests/s; MODE http429 (default) or errcode."
    ),
    drop: float = typer.Option(0.0, help="Probability of dropping the connection before processing."),
    lost_reply: float = typer.Option(0.0, help="Probability a committed write loses its reply."),
    page_count_key: str = typer.Option(
        "TotalPages", help="Page-count key in list replies: TotalPages|TotalPage."
    ),
    allow_duplicate_bill_no: bool = typer.Option(
        False, help="Accept a second bill with an existing FBillNo."
    ),
    client_id: str = typer.Option("", help="Accepted client_id (default 205022 or KIS_SANDBOX_CLIENT_ID)."),
    client_secret: str = typer.Option("", help="Accepted client_secret (or KIS_SANDBOX_CLIENT_SECRET)."),
    auth_code: str = typer.Option("", help="Accepted koas OAuth code (or KIS_SANDBOX_AUTH_CODE)."),
    account_number: str = typer.Option(
        "", help="Account set (账套) offered (or KIS_SANDBOX_ACCOUNT_NUMBER)."
    ),
    app_key: str = typer.Option("", help="Open-platform app key (or KIS_SANDBOX_APP_KEY)."),
    app_secret: str = typer.Option("", help="Open-platform app secret (or KIS_SANDBOX_APP_SECRET)."),
    outer_instance_id: str = typer.Option(
        "", help="Open-platform outerInstanceId (or KIS_SANDBOX_OUTER_INSTANCE_ID)."
    ),
    tls_cert: Path | None = typer.Option(None, help="PEM certificate (chain): serve HTTPS."),
    tls_key: Path | None = typer.Option(None, help="PEM private key of --tls-cert."),
) -> None:
    """Run a KIS cloud sandbox on loopback: both auth flows, bill rules, ledger, fault injection."""
    from connectors.kingdee.kis_sandbox.run import build_faults, serve
    from connectors.kingdee.kis_sandbox.seed import SandboxCredentials

    try:
        faults = build_faults(
            seed=seed,
            fault_5xx=fault_5xx,
            latency_ms=latency_ms,
            throttle=throttle or None,
            drop=drop,
            lost_reply=lost_reply,
            token_ttl_scale=token_ttl_scale,
            page_count_key=page_count_key,
            refuse_duplicates=not allow_duplicate_bill_no,
        )
    except ValueError as exc:
        console.print(f"[red]hub sandbox kis: {exc}[/red]")
        raise typer.Exit(EXIT_CONFIG) from None
    credentials = SandboxCredentials.from_env(
        client_id=client_id,
        client_secret=client_secret,
        auth_code=auth_code,
        account_number=account_number,
        app_key=app_key,
        app_secret=app_secret,
        outer_instance_id=outer_instance_id,
    )
    _check_tls_files(tls_cert, tls_key)
    try:
        serve(
            host=host,
            port=port,
            state=state,
            faults=faults,
            credentials=credentials,
            echo=_echo,
            certfile=tls_cert,
            keyfile=tls_key,
        )
    except ValueError as exc:  # an unusable TLS certificate or key (the message names the file)
        console.print(f"hub sandbox kis: {exc}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG) from None
    except OSError as exc:
        console.print(
            f"[red]hub sandbox kis: cannot listen on {host}:{port} ({exc}). Choose another --port.[/red]"
        )
        raise typer.Exit(EXIT_CONFIG) from None


def _check_tls_files(cert: Path | None, key: Path | None) -> None:
    """A missing or unreadable --tls-cert/--tls-key is named as such before anything listens."""
    problems: list[str] = []
    if key is not None and cert is None:
        problems.append("--tls-key needs --tls-cert (the certificate it belongs to).")
    for option, path in (("--tls-cert", cert), ("--tls-key", key)):
        if path is None:
            continue
        if not path.is_file():
            what = "is a directory" if path.is_dir() else "does not exist"
            problems.append(f"{option} {path} {what}: give a PEM file.")
        elif not os.access(path, os.R_OK):
            problems.append(f"{option} {path} is not readable by this user: fix its permissions.")
    if problems:
        for problem in problems:
            console.print(f"hub sandbox kis: {problem}", style="red", markup=False, soft_wrap=True)
        raise typer.Exit(EXIT_CONFIG)


def _echo(text: str) -> None:
    print(text, flush=True)
