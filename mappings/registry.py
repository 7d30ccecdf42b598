"""Cross-checks between configs and mappings: every stream's mapping exists, fits, and covers.

``hub.config`` (layer 0) cannot know the mappings (layer 2), so these checks live here and are called by
the CLI and the engines after :func:`hub.config.load_project` / :func:`hub.config.load_template`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from hub.config.diagnostics import dotted
from hub.config.models import AnyTemplate, MappingRef
from hub.config.project import Project
from hub.config.templates import LoadedTemplate
from hub.config.yaml_source import PathKey, Position
from hub.errors import ConfigError
from mappings.coverage import check_coverage
from mappings.loader import LoadedMapping, load_mapping

Locate = Callable[[PathKey], Position | None]


def stream_mappings(model: AnyTemplate) -> list[tuple[str, Any, MappingRef, str]]:
    """(stream name, stream, mapping reference, canonical entity) for every stream naming a mapping."""
    streams: Any = getattr(model, "streams", None)
    if streams is None:
        return []
    if isinstance(streams, dict):
        items = list(streams.items())
    else:
        items = [(key, getattr(streams, key)) for key in type(streams).model_fields]
    out = []
    for name, stream in items:
        ref = getattr(stream, "mapping", None)
        if stream is None or ref is None:
            continue
        entity = getattr(stream, "reads", None) if getattr(stream, "direction", "") == "push" else None
        entity = entity or getattr(stream, "writes", "")
        out.append((name, stream, ref, str(entity)))
    return out


def _where(locate: Locate, path: PathKey, fallback: str) -> str:
    position = locate(path)
    return f"{position.file}:{position.line}: {dotted(path)}" if position else f"{fallback}: {dotted(path)}"


def check_model_mappings(
    model: AnyTemplate,
    *,
    locate: Locate,
    file: str,
    prefix: PathKey = (),
    extra_dirs: list[Path] | None = None,
    values_in_use: dict[str, dict[str, set[str]]] | None = None,
) -> dict[str, LoadedMapping]:
    """Check every mapping a template's streams name; returns stream name -> loaded mapping.

    ``values_in_use`` is stream name -> table -> canonical values currently in the store.
    """
    loaded: dict[str, LoadedMapping] = {}
    for stream, stream_model, ref, entity in stream_mappings(model):
        path = (*prefix, "streams", stream, "mapping")
        where = _where(locate, path, file)
        position = locate(path)
        here = {
            "file": position.file if position else file,
            "line": position.line if position else None,
            "field": dotted(path),
        }
        try:
            found = load_mapping(ref.name, ref.version, extra_dirs)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", context={**exc.context, **here}) from None
        mapping = found.mapping
        stream_direction = getattr(stream_model, "direction", mapping.direction)
        if mapping.direction != stream_direction or (entity and mapping.entity != entity):
            raise ConfigError(
                f"{where}: mapping {mapping.key} is a {mapping.direction} mapping of {mapping.entity}, "
                f"but stream {stream!r} is a {stream_direction} of {entity}; "
                "pick a mapping made for this stream.",
                context={**here, "mapping": mapping.key},
            )
        try:
            check_coverage(mapping, (values_in_use or {}).get(stream), where=found.where("tables"))
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc.message}", context={**exc.context, **here}) from None
        loaded[stream] = found
    return loaded


def local_mapping_dirs(base: Path, configured: str | None = None) -> list[Path]:
    """A project's own mapping directories: the configured one, else ``mappings/`` beside the file."""
    if configured:
        directory = Path(configured)
        return [directory if directory.is_absolute() else base / directory]
    default = base / "mappings"
    return [default] if default.is_dir() else []


def check_template_mappings(template: LoadedTemplate) -> dict[str, LoadedMapping]:
    """Mappings of a template file (looking also in a ``mappings/`` directory beside it)."""
    return check_model_mappings(
        template.model,
        locate=template.locate,
        file=str(template.path),
        extra_dirs=local_mapping_dirs(template.path.parent),
    )


def check_project_mappings(
    project: Project, values_in_use: dict[str, dict[str, dict[str, set[str]]]] | None = None
) -> dict[str, dict[str, LoadedMapping]]:
    """Mappings of every connection; ``values_in_use`` is connection -> stream -> table -> values."""
    extra = local_mapping_dirs(project.path.parent, project.config.mappings_dir)
    return {
        name: check_model_mappings(
            model,
            locate=project.locate,
            file=str(project.path),
            prefix=("connections", name),
            extra_dirs=extra,
            values_in_use=(values_in_use or {}).get(name),
        )
        for name, model in project.connections.items()
    }
