"""``hub ui``: the Dagster webserver and daemon on the project definitions (``make ui``).

Runs ``dagster dev -m jobs.definitions`` with a persistent ``DAGSTER_HOME`` under ``HUB_HOME``, so run
history, schedule ticks and sensor cursors survive restarts and ``hub demo`` nights show up. The project
config is ``HUB_CONFIG``, else ``$HUB_HOME/hub.yaml`` when it exists. Telemetry is off. The laptop store
(SQLite under ``HUB_HOME``) is created or migrated first; a PostgreSQL store (``HUB_DATABASE_URL``) is left
to ``hub db upgrade``.

The command replaces itself with ``dagster dev`` (``os.execve``) instead of wrapping it: Ctrl-C and a
service manager's SIGTERM then reach Dagster's own shutdown, which stops the webserver, the daemon and the
code server together, and no extra parent process is left to forward signals. This module only names
``jobs.definitions``; it never imports ``jobs`` (layer 4), Dagster's code server does.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import sys
from pathlib import Path

import typer
from rich.console import Console

from hub.cli.main import EXIT_CONFIG

console = Console(stderr=True)

DEFINITIONS_MODULE = "jobs.definitions"
# Local-instance settings for a laptop or a single host (production: deploy/dagster.yaml).
DAGSTER_YAML = """# Written by `hub ui` for a single-host instance; edit freely, it is never overwritten.
# Production (PostgreSQL storage, queued runs, run monitoring): see deploy/dagster.yaml.
telemetry:
  enabled: false
run_retries:
  enabled: true
  max_retries: 3
  retry_on_asset_or_op_failure: false   # retry crashed workers only, never a failed push
concurrency:
  pools:
    default_limit: 1                    # each erp:<connection> pool runs one push at a time
    granularity: run                    # a second push run waits queued instead of meeting the push lock
run_monitoring:
  enabled: true
  max_runtime_seconds: 7200
"""


def ensure_dagster_home(home: Path) -> Path:
    """``$HUB_HOME/dagster`` with a ``dagster.yaml`` (written only when missing); returns the directory."""
    dagster_home = home / "dagster"
    dagster_home.mkdir(parents=True, exist_ok=True)
    config = dagster_home / "dagster.yaml"
    if not config.exists():
        config.write_text(DAGSTER_YAML, encoding="utf-8")
    return dagster_home


def ui_environment(home: Path, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment ``dagster dev`` runs with: homes, project config and telemetry switched off."""
    env = dict(os.environ if base is None else base)
    env["HUB_HOME"] = str(home)
    env["DAGSTER_HOME"] = str(ensure_dagster_home(home))
    if not env.get("HUB_CONFIG") and (home / "hub.yaml").exists():
        env["HUB_CONFIG"] = str(home / "hub.yaml")
    env["DAGSTER_DISABLE_TELEMETRY"] = "1"
    env["GX_ANALYTICS_ENABLED"] = "false"
    return env


def dagster_dev_argv(host: str, port: int) -> list[str]:
    """``python -m dagster dev`` on the project definitions, with this interpreter (the hub's venv)."""
    return [
        sys.executable,
        "-m",
        "dagster",
        "dev",
        "-m",
        DEFINITIONS_MODULE,
        "--host",
        host,
        "--port",
        str(port),
    ]


def _port_problem(host: str, port: int) -> str | None:
    """Why the webserver could not listen on ``host:port``, or ``None`` when it can."""
    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            return f"port {port} on {host} is already in use; pick another with --port"
        return f"cannot listen on {host}:{port} ({exc.strerror}); check --host and --port"
    return None


def ui(
    port: int = typer.Option(3000, "--port", "-p", min=1, max=65535, help="Webserver port."),
    host: str = typer.Option("127.0.0.1", "--host", help="Webserver address (loopback by default)."),
    home: Path = typer.Option(
        Path(".hub"), "--home", envvar="HUB_HOME", help="HUB_HOME: store, reports and the Dagster home."
    ),
) -> None:
    """Start the Dagster UI (webserver + daemon) on the project definitions; Ctrl-C stops both."""
    home = home.resolve()
    problem = _port_problem(host, port)
    if problem:
        console.print(f"[red]hub ui: {problem}.[/red]")
        raise typer.Exit(EXIT_CONFIG)
    home.mkdir(parents=True, exist_ok=True)
    env = ui_environment(home)
    config = env.get("HUB_CONFIG")
    if config and not Path(config).exists():
        console.print(
            f"[yellow]HUB_CONFIG={config} does not exist: only the process-health assets will load. "
            "Create it with `hub init` or unset HUB_CONFIG.[/yellow]"
        )
    if not env.get("HUB_DATABASE_URL"):
        # The laptop store: create or migrate it, so the sensors and the health asset find their tables.
        # A PostgreSQL store is migrated deliberately (`hub db upgrade`), never as a side effect of the UI.
        from crm_core.migrate import upgrade

        upgrade(f"sqlite:///{home / 'hub.db'}")
    console.print(
        f"Dagster UI on http://{host}:{port}  (DAGSTER_HOME={env['DAGSTER_HOME']}, "
        f"project config: {config or 'none; only the process-health assets will load'})"
    )
    sys.stdout.flush()
    sys.stderr.flush()
    # Started from a non-interactive shell (`&`) or some CI runners, SIGINT/SIGTERM arrive ignored and the
    # ignore survives exec, leaving a webserver nobody can stop; Dagster's shutdown needs the defaults.
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_DFL)
    os.execve(sys.executable, dagster_dev_argv(host, port), env)  # noqa: S606 - fixed argv, no shell
