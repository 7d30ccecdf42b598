"""Loading ``hub.yaml``: templates instantiated as named connections, with overrides.

A connection entry names its template and gives only what differs::

    connections:
      erp:
        template: kingdee_kis
        connection:
          auth_flow: open_platform
          client_secret: ${KIS_CLIENT_SECRET}

The template's mapping is deep-merged with the entry (mappings merge key by key, anything else is
replaced) and the result is validated against the template's model. Every error names the file and line
the offending value came from: ``hub.yaml`` for overrides, the template file for inherited values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.config.diagnostics import config_error_from_validation, dotted
from hub.config.models import AnyTemplate, ProjectConfig
from hub.config.templates import LoadedTemplate, find_template, read_template_document, validate_template_data
from hub.config.yaml_source import PathKey, Position, YamlDocument, load_yaml
from hub.errors import ConfigError
from hub.secrets import ENV_REFERENCE

DEFAULT_CONFIG = "hub.yaml"
SCHEMA_FILE = "hub.schema.json"


def config_path(path: str | Path | None = None) -> Path:
    """The project config: ``path`` if given, else ``$HUB_CONFIG``, else ``./hub.yaml``."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("HUB_CONFIG") or DEFAULT_CONFIG)


@dataclass
class Project:
    """A loaded and validated ``hub.yaml``."""

    path: Path
    config: ProjectConfig
    positions: dict[PathKey, Position]
    templates: dict[str, LoadedTemplate] = field(default_factory=dict)

    @property
    def connections(self) -> dict[str, AnyTemplate]:
        """Connection name -> complete, validated template model."""
        return dict(self.config.connections)

    def connection(self, name: str) -> AnyTemplate:
        """The connection called ``name``; ``ConfigError`` naming the known ones otherwise."""
        try:
            return self.config.connections[name]
        except KeyError:
            known = ", ".join(sorted(self.config.connections)) or "(none)"
            raise ConfigError(
                f"{self.path}: no connection named {name!r}; configured connections: {known}.",
                context={"file": str(self.path), "connection": name},
            ) from None

    def locate(self, path: PathKey) -> Position | None:
        """Position of ``path`` (or its nearest ancestor), in hub.yaml or in the template it came from."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return None

    def where(self, path: PathKey) -> str:
        """``file:line: dotted.path`` for messages."""
        position = self.locate(path)
        return f"{position or self.path}: {dotted(path)}"

    def resolve_dir(self, value: str | None) -> Path | None:
        """A directory named in hub.yaml, relative to the file."""
        if not value:
            return None
        directory = Path(value)
        return directory if directory.is_absolute() else self.path.parent / directory


def deep_merge(base: Any, override: Any) -> Any:
    """Mappings merge key by key (override wins); any other value is replaced by the override."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = deep_merge(base[key], value) if key in base else value
        return merged
    return override


def _walk_paths(data: Any, path: PathKey = ()) -> list[PathKey]:
    out = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            out.extend(_walk_paths(value, (*path, str(key))))
    elif isinstance(data, list):
        for index, value in enumerate(data):
            out.extend(_walk_paths(value, (*path, index)))
    return out


def _references(data: Any, path: PathKey = ()) -> list[tuple[PathKey, str]]:
    """Every ``${NAME}`` environment reference in ``data`` with its path."""
    if isinstance(data, dict):
        return [ref for key, value in data.items() for ref in _references(value, (*path, str(key)))]
    if isinstance(data, list):
        return [ref for index, value in enumerate(data) for ref in _references(value, (*path, index))]
    if isinstance(data, str):
        match = ENV_REFERENCE.match(data.strip())
        if match:
            return [(path, match.group(1))]
    return []


def _error_at(document: YamlDocument, path: PathKey, message: str) -> ConfigError:
    position = document.position(path)
    where = f"{position.file}:{position.line}" if position else document.file
    return ConfigError(
        f"{where}: {dotted(path)}: {message}",
        context={
            "file": position.file if position else document.file,
            "line": position.line if position else None,
            "field": dotted(path),
        },
    )


def load_project(path: str | Path | None = None, *, check_env: bool = True) -> Project:
    """Load, merge and validate the project config.

    ``check_env`` also requires every ``${NAME}`` referenced by a configured connection to be set
    (commands that talk to systems need it; ``hub templates validate`` does not).
    """
    file = config_path(path)
    document = load_yaml(file)
    data = document.data
    if data is None:
        raise ConfigError(
            f"{file}:1: the file is empty. Create one with `hub init --template <name> --name <name>`."
        )
    if not isinstance(data, dict):
        raise _error_at(document, (), "the project config must be a mapping (version, connections, ...).")

    top = {key: value for key, value in data.items() if key != "connections"}
    try:
        ProjectConfig.model_validate(top)
    except ValidationError as exc:
        raise config_error_from_validation(
            exc, data=top, locate=document.position, file=document.file, root_type=ProjectConfig
        ) from None

    raw_connections = data.get("connections") or {}
    if not isinstance(raw_connections, dict):
        raise _error_at(document, ("connections",), "must be a mapping of connection name -> settings.")
    extra_dirs = [d for d in [_relative(file, top.get("templates_dir"))] if d is not None]

    positions: dict[PathKey, Position] = dict(document.positions)
    connections: dict[str, AnyTemplate] = {}
    used: dict[str, LoadedTemplate] = {}
    for name, entry in raw_connections.items():
        prefix: PathKey = ("connections", str(name))
        if not isinstance(entry, dict):
            raise _error_at(document, prefix, "must be a mapping with at least `template: <name>`.")
        template_name = entry.get("template")
        if not isinstance(template_name, str) or not template_name:
            raise _error_at(
                document, prefix, "names no template; add `template: <name>` (see `hub templates list`)."
            )
        try:
            template_path = find_template(template_name, extra_dirs)
        except ConfigError as exc:
            raise _error_at(document, (*prefix, "template"), exc.message) from None
        template_doc = read_template_document(template_path)
        template_kind = template_doc.data.get("kind")
        if "kind" in entry and entry["kind"] != template_kind:
            raise _error_at(
                document,
                (*prefix, "kind"),
                f"is {entry['kind']!r} but template {template_name!r} is of kind {template_kind!r}; "
                "remove the kind line or pick a template of that kind.",
            )
        merged = deep_merge(template_doc.data, entry)
        for sub in _walk_paths(merged):
            own = document.positions.get((*prefix, *sub))
            inherited = template_doc.positions.get(sub)
            chosen = own or inherited
            if chosen is not None and sub:
                positions[(*prefix, *sub)] = chosen
        # Positions are keyed by the full path (connections.<name>...); errors are reported with the prefix.
        merged_doc = YamlDocument(file=document.file, data=merged, positions=positions)
        model = validate_template_data(merged, merged_doc, prefix=prefix)
        connections[str(name)] = model
        used[str(name)] = LoadedTemplate(
            name=template_name, path=template_path, model=model, document=template_doc
        )

    config = ProjectConfig.model_validate({**top, "connections": connections})
    project = Project(path=file, config=config, positions=positions, templates=used)
    if check_env:
        dumped = {n: m.model_dump(mode="python", exclude_none=True) for n, m in connections.items()}
        check_environment(project, {**top, "connections": dumped})
    return project


def _relative(file: Path, value: Any) -> Path | None:
    if not isinstance(value, str) or not value:
        return None
    directory = Path(value)
    return directory if directory.is_absolute() else file.parent / directory


def check_environment(project: Project, data: dict[str, Any]) -> None:
    """``ConfigError`` naming every referenced environment variable that is not set, with its line."""
    problems = []
    first: dict[str, Any] = {}
    for path, variable in _references(data):
        if os.environ.get(variable):
            continue
        position = project.locate(path)
        where = f"{position.file}:{position.line}" if position else str(project.path)
        problems.append(f"{where}: {dotted(path)}: environment variable {variable} is not set.")
        if not first:
            first = {
                "file": position.file if position else str(project.path),
                "line": position.line if position else None,
                "field": dotted(path),
                "variable": variable,
            }
    if problems:
        message = problems[0] + " Export it (or add it to the service's environment) before running."
        if len(problems) > 1:
            message += "\n" + "\n".join(f"  also {p}" for p in problems[1:])
        raise ConfigError(message, context=first)
