"""Root of the ``hub`` CLI: each topic is a Typer sub-app in its own module, registered here.

Exit codes: 0 success, 1 the work ran and found problems (failed checks, refused rows), 2 bad
configuration or usage, 3 an external system (ERP, SFTP, database) could not be reached.
"""

from __future__ import annotations

import typer

EXIT_OK = 0
EXIT_PROBLEMS = 1
EXIT_CONFIG = 2
EXIT_UNREACHABLE = 3

app = typer.Typer(
    name="hub",
    help="CRM <-> ERP sync hub: canonical store, connectors, nightly push, inventory and delivery promises.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold secrets
)

# Sub-apps (one line each; keep alphabetical).
from hub.cli import check as _check  # noqa: E402
from hub.cli import db as _db  # noqa: E402
from hub.cli import demo as _demo  # noqa: E402
from hub.cli import importing as _importing  # noqa: E402
from hub.cli import init as _init  # noqa: E402
from hub.cli import inventory as _inventory  # noqa: E402
from hub.cli import push as _push  # noqa: E402
from hub.cli import sandbox as _sandbox  # noqa: E402
from hub.cli import schema as _schema  # noqa: E402
from hub.cli import templates as _templates  # noqa: E402
from hub.cli import ui as _ui  # noqa: E402

app.command("check")(_check.check)
app.add_typer(_db.app, name="db")
app.command("demo")(_demo.demo)
app.add_typer(_importing.app, name="import")
app.command("init")(_init.init)
app.command("promise")(_inventory.promise)
app.add_typer(_inventory.pull_app, name="pull")
app.command("push")(_push.push)
app.add_typer(_push.queue_app, name="queue")
app.command("reconcile")(_push.reconcile)
app.add_typer(_sandbox.app, name="sandbox")
app.command("schema")(_schema.schema)
app.add_typer(_templates.app, name="templates")
app.command("ui")(_ui.ui)
