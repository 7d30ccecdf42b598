"""Reading mapping specs: ``<name>.v<version>.yaml`` in the package's ``specs/`` or a project directory.

Kept apart from :mod:`mappings.apply` so that applying a mapping stays free of I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from pydantic import ValidationError

from hub.config.diagnostics import config_error_from_validation
from hub.config.yaml_source import YamlDocument, load_yaml
from hub.errors import ConfigError
from mappings.spec import Mapping

_FILE = re.compile(r"^(?P<name>[a-z][a-z0-9_]*)\.v(?P<version>[0-9]+)\.ya?ml$")


@dataclass(frozen=True)
class LoadedMapping:
    """A validated mapping and the file (with positions) it came from."""

    mapping: Mapping
    path: Path
    document: YamlDocument

    def where(self, *path: str) -> str:
        """``file:line`` of a key in the spec, for messages."""
        position = self.document.position(tuple(path))
        return str(position) if position else str(self.path)


def shipped_dir() -> Path:
    """The package's own specs."""
    return Path(str(resources.files("mappings"))) / "specs"


def available(extra_dirs: list[Path] | None = None) -> dict[tuple[str, int], Path]:
    """(name, version) -> file; project directories shadow shipped specs of the same name and version."""
    found: dict[tuple[str, int], Path] = {}
    for directory in [shipped_dir(), *(extra_dirs or [])]:
        if not directory.is_dir():
            continue
        for path in sorted(directory.iterdir()):
            match = _FILE.match(path.name)
            if match:
                found[(match["name"], int(match["version"]))] = path
    return found


def load_mapping_file(path: Path) -> LoadedMapping:
    """Parse and validate one spec file; its name and version must match the file name."""
    document = load_yaml(path)
    if not isinstance(document.data, dict):
        raise ConfigError(f"{path}:1: a mapping spec must be a mapping (name, version, header, tables ...).")
    try:
        mapping = Mapping.model_validate(document.data)
    except ValidationError as exc:
        raise config_error_from_validation(
            exc, data=document.data, locate=document.position, file=str(path), root_type=Mapping
        ) from None
    match = _FILE.match(path.name)
    if match and (match["name"], int(match["version"])) != (mapping.name, mapping.version):
        raise ConfigError(
            f"{document.position(('name',)) or path}: the file {path.name} holds {mapping.key}; "
            f"name it {mapping.name}.v{mapping.version}.yaml (or fix name/version).",
            context={"file": str(path)},
        )
    return LoadedMapping(mapping=mapping, path=path, document=document)


def load_mapping(name: str, version: int, extra_dirs: list[Path] | None = None) -> LoadedMapping:
    """The spec ``name`` at ``version``; ``ConfigError`` listing the known versions when there is none."""
    specs = available(extra_dirs)
    path = specs.get((name, version))
    if path is None:
        versions = sorted(v for (n, v) in specs if n == name)
        if versions:
            known = f"known versions of {name}: {', '.join(map(str, versions))}"
        else:
            known = f"known mappings: {', '.join(sorted({n for n, _ in specs})) or 'none'}"
        raise ConfigError(
            f"unknown mapping {name!r} version {version}; {known}. Fix the name/version, or add "
            f"{name}.v{version}.yaml to the project's mappings directory.",
            context={"mapping": name, "version": version},
        )
    return load_mapping_file(path)
