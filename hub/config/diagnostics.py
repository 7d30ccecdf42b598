"""Turn pydantic validation errors into one ``ConfigError`` that names file, line and field.

Pydantic reports a location as a tuple such as ``("connections", "erp", "kingdee_kis", "client_secret")``
(the discriminator value is inserted for tagged unions). Walking that tuple against the raw data gives the
real path in the file, which the position table of :mod:`hub.config.yaml_source` turns into a line.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import BaseModel, ValidationError

from hub.config.yaml_source import PathKey, Position
from hub.errors import ConfigError
from hub.secrets import is_secret_key, redact

Locator = Callable[[PathKey], Position | None]


def dotted(path: Sequence[str | int]) -> str:
    """``("connections", "erp", "streams", 0)`` -> ``connections.erp.streams[0]``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out or "(top level)"


def data_path(data: Any, loc: Sequence[str | int]) -> PathKey:
    """Map a pydantic ``loc`` onto the path of keys/indices that really exist in ``data``."""
    path: list[str | int] = []
    current = data
    for element in loc:
        if isinstance(current, dict):
            key = _dict_key(current, element)
            if key is not None:
                path.append(str(key))
                current = current[key]
                continue
            if _is_discriminator_tag(current, element):
                continue
            # A missing field: name it even though the data has no such key.
            path.append(str(element))
            current = None
        elif isinstance(current, list) and isinstance(element, int) and 0 <= element < len(current):
            path.append(element)
            current = current[element]
        elif current is None:
            path.append(element if isinstance(element, int) else str(element))
        # Anything else is a union-member label (e.g. "function-after[...]"): not part of the path.
    return tuple(path)


def _dict_key(mapping: dict[Any, Any], element: str | int) -> Any:
    if element in mapping:
        return element
    for key in mapping:
        if str(key) == str(element):
            return key
    return None


def _is_discriminator_tag(mapping: dict[Any, Any], element: str | int) -> bool:
    return any(mapping.get(tag) == element for tag in ("kind", "type", "mode"))


def _friendly(error: dict[str, Any], path: PathKey, root_type: Any, data: Any) -> str:
    kind = error["type"]
    field = str(path[-1]) if path else ""
    if kind == "extra_forbidden":
        allowed = allowed_keys(root_type, path[:-1], data)
        hint = ""
        if allowed:
            close = difflib.get_close_matches(field, allowed, n=1)
            hint = (
                f" Did you mean {close[0]!r}?" if close else f" Allowed here: {', '.join(sorted(allowed))}."
            )
        return f"unknown key {field!r}; remove it or correct its spelling.{hint}"
    if kind == "missing":
        return f"required key {field!r} is missing; add it."
    if kind == "union_tag_invalid":
        ctx = error.get("ctx", {})
        expected = [t.strip(" '") for t in str(ctx.get("expected_tags", "")).split(",")]
        close = difflib.get_close_matches(str(ctx.get("tag")), expected, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        return f"{ctx.get('tag')!r} is not known.{hint} Use one of: {', '.join(expected)}."
    if kind == "union_tag_not_found":
        return "is missing; add it."
    message = str(error["msg"])
    if message.startswith("Value error, "):
        message = message[len("Value error, ") :]
    elif message.startswith("Assertion failed, "):
        message = message[len("Assertion failed, ") :]
    # Show what was written, unless the field may hold a secret or the input is a whole block.
    value = error.get("input")
    shown = kind not in ("value_error", "assertion_error") and isinstance(value, str | int | float | bool)
    if shown and not (field and is_secret_key(field)):
        message += f" (got {value!r})"
    return message


def config_error_from_validation(
    exc: ValidationError,
    *,
    data: Any,
    locate: Locator,
    file: str,
    prefix: PathKey = (),
    root_type: Any = None,
) -> ConfigError:
    """One ``ConfigError`` for all problems in ``exc``; the first is the headline, others follow."""
    lines: list[str] = []
    first: dict[str, Any] = {}
    for error in exc.errors(include_url=False):
        path = data_path(data, error["loc"])
        problem = error.get("ctx", {}).get("error")
        sub_path = getattr(problem, "path", None)
        if isinstance(sub_path, tuple) and sub_path and path[-len(sub_path) :] != sub_path:
            path = (*path, *sub_path)
        if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
            # The location is the tagged mapping itself; point at its discriminator key instead.
            path = (*path, str(error.get("ctx", {}).get("discriminator", "kind")).strip("'"))
        position = locate((*prefix, *path))
        where = f"{position.file}:{position.line}" if position else file
        text = f"{where}: {dotted((*prefix, *path))}: {_friendly(dict(error), path, root_type, data)}"
        if text not in lines:
            lines.append(text)
        if not first:
            first = {
                "file": position.file if position else file,
                "line": position.line if position else None,
                "field": dotted((*prefix, *path)),
            }
    message = lines[0]
    if len(lines) > 1:
        message += "\n" + "\n".join(f"  also {line}" for line in lines[1:20])
        if len(lines) > 20:
            message += f"\n  ... and {len(lines) - 20} more"
    return ConfigError(redact(message), context=first)


def allowed_keys(root_type: Any, path: PathKey, data: Any) -> list[str]:
    """Best effort: the field names allowed at ``path`` (used for "did you mean" hints)."""
    current_type = root_type
    current_data = data
    try:
        for element in path:
            current_type = _resolve(current_type, current_data)
            if isinstance(current_type, type) and issubclass(current_type, BaseModel):
                field = current_type.model_fields.get(str(element))
                if field is None:
                    return []
                current_type = field.annotation
            else:
                origin = typing.get_origin(current_type)
                if origin in (dict, list):
                    current_type = typing.get_args(current_type)[-1]
                else:
                    return []
            current_data = current_data.get(element) if isinstance(current_data, dict) else None
        current_type = _resolve(current_type, current_data)
    except (AttributeError, TypeError, IndexError):
        return []
    if isinstance(current_type, type) and issubclass(current_type, BaseModel):
        return list(current_type.model_fields)
    return []


def _resolve(annotation: Any, data: Any) -> Any:
    """Strip Annotated/Optional and pick the union member whose tag matches ``data``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
            for member in members:
                if isinstance(member, type) and issubclass(member, BaseModel) and isinstance(data, dict):
                    for tag in ("kind", "type", "mode"):
                        field = member.model_fields.get(tag)
                        if field is not None and data.get(tag) in typing.get_args(field.annotation):
                            return member
            return annotation
        return annotation
