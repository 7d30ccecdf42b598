"""``hub init``: write a commented hub.yaml that instantiates a template as a named connection.

The connection block is the template itself (comments kept), so IT sees every setting with its
explanation and changes what differs. The file starts with a ``yaml-language-server`` line pointing at
the schema ``hub schema`` writes (written alongside), so editors complete and check keys. An existing
hub.yaml gets the new connection appended; nothing is written unless the result validates.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import typer
from rich.console import Console

from hub.cli.main import EXIT_CONFIG
from hub.cli.templates import print_error
from hub.config.project import SCHEMA_FILE
from hub.errors import ConfigError

console = Console()
_METADATA_KEYS = re.compile(r"^(kind|template|title|description|version):")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")

HEADER = """\
# yaml-language-server: $schema=./{schema}
#
# Project config of the CRM <-> ERP sync hub (written by `hub init` on {date}).
# Each connection names a template (`hub templates list`, `hub templates show <name>`) and may change
# any of its settings; what is left out keeps the template's value.
# Secrets are never written here: use environment references such as ${{KIS_CLIENT_SECRET}}.
# Check it with `hub check`; `hub schema` regenerates {schema} after an upgrade.
version: 1
timezone: Asia/Shanghai
connections:
"""


def connection_block(template_text: str, *, template: str, kind: str, name: str) -> str:
    """The template's body (comments kept) as the connection ``name``, indented under ``connections``."""
    lines = [f"  {name}:", f"    template: {template}", f"    kind: {kind}"]
    for line in template_text.splitlines():
        if _METADATA_KEYS.match(line):
            continue
        lines.append(f"    {line}" if line.strip() else "")
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"


def _appendable(existing: str, out: Path, name: str) -> None:
    from hub.config.yaml_source import parse_yaml

    document = parse_yaml(existing, file=str(out))
    data = document.data if isinstance(document.data, dict) else {}
    if name in (data.get("connections") or {}):
        raise ConfigError(f"{out}: already has a connection named {name!r}; choose another --name.")
    top_lines = {key: pos.line for key, pos in document.positions.items() if len(key) == 1}
    if ("connections",) not in top_lines or max(top_lines.values()) != top_lines[("connections",)]:
        raise ConfigError(
            f"{out}: `connections:` must be the last top-level key to append to it; move it to the end, "
            "or write a new file with --out / replace it with --force."
        )
    if data.get("connections") is None and not existing.rstrip().endswith("connections:"):
        raise ConfigError(f"{out}: `connections:` is not a block mapping; fix it or use --force.")


def init(
    template: str = typer.Option(
        ..., "--template", "-t", help="Template to start from (see `hub templates list`)."
    ),
    name: str = typer.Option(..., "--name", "-n", help="Connection name, e.g. erp."),
    out: Path = typer.Option(Path("hub.yaml"), "--out", "-o", help="Config file to write (or append to)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing file instead of appending."),
) -> None:
    """Write a commented hub.yaml (and hub.schema.json beside it) with one connection from a template."""
    from hub.config.project import load_project
    from hub.config.schema import write_schema
    from hub.config.templates import load_template

    try:
        if not _NAME.match(name):
            raise ConfigError(f"--name {name!r}: use lower-case letters, digits and underscores, e.g. erp.")
        loaded = load_template(template)
        block = connection_block(
            loaded.path.read_text(encoding="utf-8"), template=loaded.name, kind=loaded.model.kind, name=name
        )
        if out.exists() and not force:
            existing = out.read_text(encoding="utf-8")
            _appendable(existing, out, name)
            text = existing.rstrip("\n") + "\n\n" + block
        else:
            text = HEADER.format(schema=SCHEMA_FILE, date=dt.date.today().isoformat()) + block
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        tmp.write_text(text, encoding="utf-8")
        try:
            load_project(tmp, check_env=False)  # never leave an invalid file behind
        except ConfigError:
            tmp.unlink(missing_ok=True)
            raise
        tmp.replace(out)
        schema_path = write_schema(out.parent / SCHEMA_FILE)
    except ConfigError as exc:
        print_error(exc)
        raise typer.Exit(EXIT_CONFIG) from None
    console.print(f"[green]Wrote connection {name!r} ({loaded.name}) to {out}[/green] and {schema_path}.")
    console.print("Next: set the environment variables it references, edit the values, then run `hub check`.")
