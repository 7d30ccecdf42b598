"""Finding and validating templates: the presets shipped in the ``templates`` package, or any YAML file."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from hub.config.diagnostics import config_error_from_validation, dotted
from hub.config.models import TEMPLATE_ADAPTER, AnyTemplate, TemplateSpec
from hub.config.yaml_source import PathKey, Position, YamlDocument, load_yaml
from hub.errors import ConfigError


@dataclass
class LoadedTemplate:
    """A validated template with the file it came from and the position of every key."""

    name: str
    path: Path
    model: AnyTemplate
    document: YamlDocument

    @property
    def data(self) -> dict[str, Any]:
        """The raw mapping as written in the file."""
        return dict(self.document.data)

    def locate(self, path: PathKey) -> Position | None:
        """Position of ``path`` (or its nearest ancestor) in the template file."""
        return self.document.position(path)

    def where(self, path: PathKey) -> str:
        """``file:line: dotted.path`` for messages."""
        position = self.locate(path)
        return f"{position or self.path}: {dotted(path)}"


def shipped_dir() -> Path:
    """Directory of the preset templates (the ``templates`` package)."""
    return Path(str(resources.files("templates")))


def template_paths(extra_dirs: list[Path] | None = None) -> dict[str, Path]:
    """Template name -> file; templates in ``extra_dirs`` shadow the shipped presets of the same name."""
    found: dict[str, Path] = {}
    for directory in [shipped_dir(), *(extra_dirs or [])]:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            found[path.stem] = path
    return found


def find_template(name: str, extra_dirs: list[Path] | None = None) -> Path:
    """The file of template ``name``; ``ConfigError`` listing the known ones when there is none."""
    paths = template_paths(extra_dirs)
    if name in paths:
        return paths[name]
    close = difflib.get_close_matches(name, list(paths), n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ConfigError(
        f"unknown template {name!r}.{hint} Known templates: {', '.join(sorted(paths))} "
        "(see `hub templates list`).",
        context={"template": name},
    )


def read_template_document(path: Path) -> YamlDocument:
    """Parse a template file and check that it is a mapping."""
    document = load_yaml(path)
    if not isinstance(document.data, dict):
        raise ConfigError(
            f"{path}:1: a template must be a mapping with kind, template, connection and streams keys.",
            context={"file": str(path), "line": 1},
        )
    return document


def validate_template_data(
    data: dict[str, Any], document: YamlDocument, *, prefix: PathKey = ()
) -> AnyTemplate:
    """Validate ``data`` against the template models; errors point into ``document``."""
    try:
        model: AnyTemplate = TEMPLATE_ADAPTER.validate_python(data)
    except ValidationError as exc:
        raise config_error_from_validation(
            exc,
            data=data,
            locate=document.position,
            file=document.file,
            prefix=prefix,
            root_type=TemplateSpec,
        ) from None
    return model


def load_template(path_or_name: str | Path, extra_dirs: list[Path] | None = None) -> LoadedTemplate:
    """Load a template by file path, or by preset name (``kingdee_kis``)."""
    candidate = Path(path_or_name)
    if candidate.suffix in (".yaml", ".yml") or candidate.exists():
        path = candidate
    else:
        path = find_template(str(path_or_name), extra_dirs)
    document = read_template_document(path)
    model = validate_template_data(document.data, document)
    return LoadedTemplate(name=model.template, path=path, model=model, document=document)
