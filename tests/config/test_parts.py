"""Pieces of the config layer: cron, safe YAML positions, secrets, paths, the KIS settings bridge."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.config import kis_settings, load_template, parse_yaml
from hub.config.cron import cron_problem
from hub.errors import ConfigError
from hub.secrets import redact


@pytest.mark.parametrize(
    "cron", ["0 2 * * *", "*/15 * * * *", "0 8-18/2 * * MON-FRI", "0 0 1 JAN,JUL *", "@daily"]
)
def test_valid_cron(cron: str) -> None:
    assert cron_problem(cron) is None


@pytest.mark.parametrize(
    ("cron", "words"),
    [
        ("0 2 * *", "has 4 fields"),
        ("60 * * * *", "minute field '60' has 60, outside 0-59"),
        ("0 2 * * FOO", "neither a number nor a known name"),
        ("*/0 * * * *", "step"),
        ("0 5-2 * * *", "end is before its start"),
        ("@sometimes", "has 1 fields"),
    ],
)
def test_bad_cron(cron: str, words: str) -> None:
    problem = cron_problem(cron)
    assert problem is not None and words in problem


def test_positions_of_keys_and_items() -> None:
    doc = parse_yaml("a:\n  b: 1\n  c:\n    - x\n    - y\n", file="f.yaml")
    assert doc.data == {"a": {"b": 1, "c": ["x", "y"]}}
    assert doc.positions[("a", "b")].line == 2
    assert doc.positions[("a", "c", 1)].line == 5
    assert doc.position(("a", "c", 1, "missing")).line == 5  # nearest ancestor


def test_safe_loader_refuses_python_tags_and_bad_yaml() -> None:
    with pytest.raises(ConfigError, match=r"f.yaml:2: a: unsafe or unknown YAML tag"):
        parse_yaml("ok: 1\na: !!python/object/apply:os.system ['true']\n", file="f.yaml")
    with pytest.raises(ConfigError, match=r"f.yaml:2: .*not valid YAML"):
        parse_yaml("ok: 1\na: b: c\n", file="f.yaml")


def test_kis_settings_bridge_resolves_and_registers_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KIS_CLIENT_SECRET", "client-secret-value-1")
    monkeypatch.setenv("KIS_APP_SECRET", "app-secret-value-2")
    model = load_template("kingdee_kis").model
    settings = kis_settings("erp", model)
    settings.validate()
    assert settings.name == "erp"
    assert settings.client_secret == "client-secret-value-1"
    assert settings.retry.max_attempts == model.retry.max_attempts
    assert (settings.connect_timeout, settings.read_timeout) == (5.0, 60.0)
    assert redact("x app-secret-value-2 y") == "x *** y"


def test_kis_settings_bridge_unset_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KIS_CLIENT_SECRET", raising=False)
    with pytest.raises(ConfigError, match=r"connections.erp.connection.client_secret: environment variable"):
        kis_settings("erp", load_template("kingdee_kis").model)


def test_koas_flow_needs_auth_code(tmp_path: Path) -> None:
    text = (Path(load_template("kingdee_kis").path)).read_text(encoding="utf-8")
    broken = tmp_path / "koas.yaml"
    broken.write_text(text.replace("auth_flow: open_platform", "auth_flow: koas"), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"koas.yaml:\d+: connection: auth_flow koas needs auth_code"):
        load_template(broken)
