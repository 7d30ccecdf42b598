"""B.4 cases 19, 20, 21: hostile configuration is refused before any SQL, I/O or code runs."""

from __future__ import annotations

import re
from pathlib import Path

import pydantic
import pytest

from hub.config.types import Identifier, RelativeRemotePath
from hub.config.yaml_source import parse_yaml
from hub.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
IDENTIFIERS = pydantic.TypeAdapter(Identifier)
REMOTE_PATHS = pydantic.TypeAdapter(RelativeRemotePath)


@pytest.mark.parametrize(
    "name",
    ['rec"; DROP TABLE x; --', "rec\u201d; DROP TABLE x", "Invoices", "a b", "x--", "\u0440ec", "", "1abc"],
)
def test_case19_identifier_injection_is_rejected_by_the_allowlist(name: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="not a valid identifier"):
        IDENTIFIERS.validate_python(name)


def test_case19_a_plain_identifier_passes() -> None:
    assert IDENTIFIERS.validate_python("updated_at") == "updated_at"


@pytest.mark.parametrize("path", ["../../etc/passwd", "in/../../x.csv", "..", "a/../../b"])
def test_case20_remote_path_escaping_the_root_is_rejected(path: str) -> None:
    with pytest.raises(pydantic.ValidationError, match="escapes"):
        REMOTE_PATHS.validate_python(path)


def test_case21_unsafe_yaml_tag_is_refused_and_never_executed(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    text = f"connections:\n  x: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(ConfigError):
        parse_yaml(text, file="hub.yaml")
    assert not marker.exists()


def test_case21_no_unsafe_yaml_loader_anywhere_in_the_tree() -> None:
    unsafe = re.compile(r"yaml\.(load|load_all|unsafe_load)\(|Full" + r"Loader|Unsafe" + r"Loader")
    offenders = []
    for path in ROOT.rglob("*.py"):
        if {".venv", "node_modules", ".git"} & set(path.parts):
            continue
        for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if unsafe.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []
