"""hub.yaml: templates instantiated with overrides, positions that point at the right file, hub init."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml
from typer.testing import CliRunner

from hub.cli import app
from hub.config import load_project, project_schema
from hub.config.models import KingdeeKisTemplate
from hub.errors import ConfigError

runner = CliRunner()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_overrides_merge_onto_the_template(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ERP2_SECRET", "x" * 12)
    monkeypatch.setenv("KIS_APP_SECRET", "y" * 12)
    config = write(
        tmp_path / "hub.yaml",
        """
version: 1
connections:
  erp:
    template: kingdee_kis
    connection:
      client_secret: ${ERP2_SECRET}
      page_size: 50
    schedule:
      cron: "30 1 * * *"
""",
    )
    project = load_project(config)
    erp = project.connection("erp")
    assert isinstance(erp, KingdeeKisTemplate)
    assert erp.connection.page_size == 50
    assert erp.connection.client_secret == "${ERP2_SECRET}"
    assert erp.connection.read_timeout == 60.0  # inherited
    assert erp.schedule is not None and erp.schedule.cron == "30 1 * * *"
    assert erp.schedule.timezone == "Asia/Shanghai"  # merged key by key
    assert erp.streams.invoiced_states is not None
    assert erp.streams.invoiced_states.validation.blocking_threshold == 0.2
    # An override points at hub.yaml; an inherited value at the template file.
    assert project.locate(("connections", "erp", "connection", "page_size")).file == str(config)
    inherited = project.locate(("connections", "erp", "connection", "read_timeout"))
    assert inherited is not None and inherited.file.endswith("templates/kingdee_kis.yaml")


def test_error_in_inherited_value_names_hub_yaml_override_line(tmp_path: Path) -> None:
    config = write(
        tmp_path / "hub.yaml",
        "version: 1\nconnections:\n  erp:\n    template: kingdee_kis\n    connection:\n      page_size: 0\n",
    )
    with pytest.raises(ConfigError) as info:
        load_project(config, check_env=False)
    assert str(info.value).startswith(f"{config}:6: connections.erp.connection.page_size: ")
    assert info.value.context["line"] == 6


def test_kind_must_match_the_template(tmp_path: Path) -> None:
    config = write(
        tmp_path / "hub.yaml",
        "version: 1\nconnections:\n  erp:\n    template: kingdee_kis\n    kind: rest_source\n",
    )
    with pytest.raises(ConfigError, match=r"hub.yaml:5: connections.erp.kind: is 'rest_source'"):
        load_project(config, check_env=False)


def test_unknown_top_level_key_and_duplicate_key(tmp_path: Path) -> None:
    config = write(tmp_path / "hub.yaml", "version: 1\ntimezon: Asia/Shanghai\nconnections: {}\n")
    with pytest.raises(
        ConfigError, match=r"hub.yaml:2: timezon: unknown key 'timezon'.*Did you mean 'timezone'"
    ):
        load_project(config)
    config = write(tmp_path / "hub.yaml", "version: 1\nconnections: {}\nversion: 1\n")
    with pytest.raises(ConfigError, match=r"hub.yaml:3: version: .*duplicate key 'version'.*line 1"):
        load_project(config)


def test_hub_config_env_names_the_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = write(tmp_path / "custom.yaml", "version: 1\nconnections: {}\n")
    monkeypatch.setenv("HUB_CONFIG", str(config))
    assert load_project().path == config
    monkeypatch.setenv("HUB_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match="missing.yaml: file not found"):
        load_project()


def test_init_writes_a_valid_commented_config_with_schema_pointer(tmp_path: Path) -> None:
    out = tmp_path / "hub.yaml"
    result = runner.invoke(app, ["init", "--template", "kingdee_kis", "--name", "erp", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text(encoding="utf-8")
    assert text.splitlines()[0] == "# yaml-language-server: $schema=./hub.schema.json"
    assert "# open_platform: the app is authorised on open.jdy.com" in text  # template comments kept
    schema = json.loads((tmp_path / "hub.schema.json").read_text(encoding="utf-8"))
    jsonschema.validate(yaml.safe_load(text), schema)
    assert load_project(out, check_env=False).connection("erp").kind == "kingdee_kis"

    # A second connection is appended; a duplicate name is refused and the file is left alone.
    result = runner.invoke(app, ["init", "-t", "notify_wecom", "-n", "alerts", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert set(load_project(out, check_env=False).connections) == {"erp", "alerts"}
    before = out.read_text(encoding="utf-8")
    result = runner.invoke(app, ["init", "-t", "notify_wecom", "-n", "alerts", "-o", str(out)])
    assert result.exit_code == 2
    assert "already has a connection named 'alerts'" in result.output
    assert out.read_text(encoding="utf-8") == before


def test_init_unknown_template(tmp_path: Path) -> None:
    result = runner.invoke(app, ["init", "-t", "kingdee_kiss", "-n", "erp", "-o", str(tmp_path / "hub.yaml")])
    assert result.exit_code == 2
    assert "unknown template 'kingdee_kiss'" in result.output
    assert not (tmp_path / "hub.yaml").exists()


def test_schema_command_and_schema_rejects_unknown_keys(tmp_path: Path) -> None:
    out = tmp_path / "s.json"
    result = runner.invoke(app, ["schema", "--out", str(out)])
    assert result.exit_code == 0, result.output
    schema = json.loads(out.read_text(encoding="utf-8"))
    assert schema == json.loads(json.dumps(project_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    good = {
        "version": 1,
        "connections": {"erp": {"template": "kingdee_kis", "connection": {"page_size": 10}}},
    }
    jsonschema.validate(good, schema)
    bad = {"version": 1, "connections": {"erp": {"template": "kingdee_kis", "connection": {"page_sise": 10}}}}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    result = runner.invoke(app, ["schema", "--template", "--out", "-"])
    assert result.exit_code == 0
    assert "kingdee_kis" in json.loads(result.output)["discriminator"]["mapping"]
