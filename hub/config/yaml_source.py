"""Safe YAML loading that remembers where every key and value came from.

Only ``yaml.SafeLoader`` is used (no ``yaml.load`` with a full loader anywhere): a tag such as
``!!python/object/apply`` is refused before anything is constructed. Besides the plain data, the loader
returns a table from each path (``("connections", "erp", "client_secret")``) to the file, line and column
of that key, so that a validation error can say exactly where to look.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hub.errors import ConfigError

PathKey = tuple[str | int, ...]
# Guard against "billion laughs" style documents and accidental binary files.
MAX_YAML_BYTES = 2_000_000


@dataclass(frozen=True)
class Position:
    """Where a key or value sits in a source file (1-based line and column)."""

    file: str
    line: int
    column: int

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


@dataclass
class YamlDocument:
    """A parsed YAML file: plain data plus the position of every mapping key and sequence item."""

    file: str
    data: Any
    positions: dict[PathKey, Position] = field(default_factory=dict)

    def position(self, path: PathKey) -> Position | None:
        """The position of ``path``, or of its nearest ancestor that has one."""
        for end in range(len(path), -1, -1):
            found = self.positions.get(path[:end])
            if found is not None:
                return found
        return None


class _HubSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (a silent last-one-wins hides typos in configs)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found an unhashable key",
                    key_node.start_mark,
                )
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first defined on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _pos(file: str, node: yaml.Node) -> Position:
    return Position(file, node.start_mark.line + 1, node.start_mark.column + 1)


def _record(node: yaml.Node, path: PathKey, file: str, out: dict[PathKey, Position]) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            child = (*path, _scalar_key(key_node))
            # The key's line is what a person looks for; the value may start on the next line.
            out[child] = _pos(file, key_node)
            _record(value_node, child, file, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            child = (*path, index)
            out[child] = _pos(file, item)
            _record(item, child, file, out)


def _scalar_key(node: yaml.ScalarNode) -> str | int:
    # Integer-looking keys (VAT rate tables: ``13: ...``) are looked up by their text as well.
    return str(node.value)


def _yaml_error(file: str, exc: yaml.YAMLError, positions: dict[PathKey, Position]) -> ConfigError:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line_no = mark.line + 1 if mark is not None else None
    where = f"{file}:{line_no}" if line_no else file
    path = _path_at(positions, line_no) if line_no else None
    field = ".".join(str(p) for p in path) if path else None
    if field:
        where += f": {field}"
    context = {"file": file, "line": line_no, "field": field}
    problem = str(getattr(exc, "problem", None) or exc)
    if "could not determine a constructor for the tag" in problem:
        tag = problem.split("tag", 1)[-1].strip(" '")
        return ConfigError(
            f"{where}: unsafe or unknown YAML tag {tag!r}; tags are never executed. Configs are plain data: "
            "remove the tag and write the value as a string, number, list or mapping.",
            context=context,
        )
    return ConfigError(
        f"{where}: this is not valid YAML ({problem}). Check indentation and quoting around this line.",
        context=context,
    )


def parse_yaml(text: str, *, file: str) -> YamlDocument:
    """Parse ``text`` safely; ``file`` names it in positions and errors."""
    if len(text) > MAX_YAML_BYTES:
        raise ConfigError(
            f"{file}: file is larger than {MAX_YAML_BYTES} bytes; a config should be far smaller."
        )
    loader = _HubSafeLoader(text)
    positions: dict[PathKey, Position] = {}
    try:
        # Compose first (no objects are built, tags are not acted on) so positions exist for errors.
        node = loader.get_single_node()
        if node is not None:
            positions[()] = _pos(file, node)
            _record(node, (), file, positions)
        data = loader.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        raise _yaml_error(file, exc, positions) from None
    finally:
        loader.dispose()
    return YamlDocument(file=file, data=data, positions=positions)


def _path_at(positions: dict[PathKey, Position], line: int) -> PathKey | None:
    """The deepest path whose key sits on ``line`` (1-based)."""
    on_line = [
        path for path, pos in positions.items() if pos.line == line and path and isinstance(path[-1], str)
    ]
    return max(on_line, key=len) if on_line else None


def load_yaml(path: str | Path) -> YamlDocument:
    """Read and parse the YAML file at ``path`` (UTF-8)."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(f"{p}: file not found. Check the path (or HUB_CONFIG).") from None
    except OSError as exc:
        raise ConfigError(f"{p}: cannot be read ({exc.strerror}).") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{p}: is not UTF-8 text (byte {exc.start}). Save it as UTF-8.") from None
    return parse_yaml(text, file=str(p))
