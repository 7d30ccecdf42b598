"""``hub sandbox``: run a local ERP sandbox that speaks the vendor's wire format.

Each sandbox registers its own command from a sibling module (``sandbox_<name>.py``) imported at the
bottom of this file, so that the two Kingdee sandboxes can change independently.
"""

from __future__ import annotations

import typer

app: typer.Typer = typer.Typer(
    help="Local ERP sandboxes (real HTTP on loopback, fault injection).", no_args_is_help=True
)

# Command modules (each does `from hub.cli.sandbox import app` and `@app.command(...)`):
from hub.cli import sandbox_k3cloud, sandbox_kis  # noqa: E402,F401  (register their commands)
