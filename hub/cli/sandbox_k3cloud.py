"""``hub sandbox k3cloud``: run the Kingdee K/3 Cloud (云星空) WebAPI sandbox on loopback."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from hub.cli.sandbox import app


@app.command("k3cloud")
def k3cloud(
    port: int = typer.Option(8090, "--port", help="TCP port (0 picks a free one)."),
    host: str = typer.Option(
        "127.0.0.1", "--host", help="Address to bind; admin endpoints are unauthenticated."
    ),
    state: Path = typer.Option(Path("k3cloud-sandbox.sqlite"), "--state", help="SQLite state file (reused)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the fixture data and of random faults."),
    base_path: str = typer.Option("/K3Cloud/", "--base-path", help="URL prefix of the WebAPI."),
    idle_ttl: float | None = typer.Option(
        None, "--idle-ttl", help="Session idle timeout, seconds (default 1200)."
    ),
    strings_mode: bool = typer.Option(False, "--strings-mode", help="Emit IsSuccess etc. as strings."),
    settings: str = typer.Option(
        "", "--settings", help="JSON object of further knobs (see the sandbox config)."
    ),
) -> None:
    """Serve a K/3 Cloud WebAPI sandbox (four encodings, sessions, signed headers, faults) until Ctrl-C."""
    from connectors.kingdee.k3cloud_sandbox import K3CloudSandbox

    try:
        knobs = json.loads(settings) if settings else {}
    except ValueError as exc:
        typer.echo(f"--settings is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if idle_ttl is not None:
        knobs["idle_ttl"] = idle_ttl
    if strings_mode:
        knobs["strings_mode"] = True
    sandbox = K3CloudSandbox(state, seed, host=host, port=port, base_path=base_path, settings=knobs or None)
    creds = sandbox.credentials
    base_url = sandbox.start()
    typer.echo(f"K/3 Cloud sandbox: {base_url}  (state {state}, seed {seed})")
    typer.echo(f"  acct_id={creds.acct_id}  username={creds.username}  app_id={creds.app_id}")
    typer.echo(f"  password and app_secret: GET {sandbox.admin_url}credentials   (Ctrl-C to stop)")
    try:
        sandbox.serve_forever()
    finally:
        sandbox.stop()
