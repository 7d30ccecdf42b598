"""`hub templates validate` passes on every shipped template and fails precisely on each broken fixture.

Every bad-input case of the issue has one fixture under tests/fixtures/: the command must exit 2 and the
message must name the file, the line and the field, and say what to do. Nothing may run: the unsafe-tag
fixture would create a file if its tag were ever executed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hub.cli import app

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
BROKEN = FIXTURES / "broken"
runner = CliRunner()

# fixture -> (line, field, words the message must contain)
TEMPLATE_CASES = {
    "unknown_key.yaml": (29, "connection.page_sise", ["unknown key", "Did you mean 'page_size'"]),
    "wrong_type.yaml": (28, "connection.read_timeout", ["valid number", "one minute"]),
    "literal_secret.yaml": (24, "connection.app_secret", ["given literally", "${KIS_APP_SECRET}"]),
    "bad_cron.yaml": (43, "schedule.cron", ["has 4 fields", "needs 5"]),
    "unknown_mapping.yaml": (55, "streams.invoiced_states.mapping", ["unknown mapping 'kis_sales_outbund'"]),
    "mapping_gap.yaml": (
        43,
        "streams.invoiced_states.mapping",
        ["does not cover", "tax_rate", "'6'", "new version"],
    ),
    "unsafe_tag.yaml": (29, "connection.page_size", ["unsafe or unknown YAML tag", "python/object/apply"]),
    "path_escape.yaml": (38, "streams.inventory.path", ["escapes the connection's root"]),
    "unknown_column.yaml": (
        55,
        "streams.inventory.columns.库存数量",
        ["'stock_qty' is not a known inventory column"],
    ),
}


def test_every_shipped_template_validates() -> None:
    result = runner.invoke(app, ["templates", "validate", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    names = {Path(r["file"]).stem for r in rows}
    assert {
        "kingdee_kis",
        "erp_sftp_csv",
        "excel_customers",
        "rest_source",
        "notify_wecom",
        "notify_dingtalk",
        "notify_email",
        "kingdee_k3cloud",
    } <= names
    assert all(r["ok"] for r in rows)


def test_every_fixture_is_covered() -> None:
    assert {p.name for p in BROKEN.glob("*.yaml")} == set(TEMPLATE_CASES)


@pytest.mark.parametrize("fixture", sorted(TEMPLATE_CASES))
def test_broken_template_fails_with_file_line_and_field(fixture: str, tmp_path: Path) -> None:
    line, field, words = TEMPLATE_CASES[fixture]
    result = runner.invoke(app, ["templates", "validate", "--json", str(BROKEN / fixture)])
    assert result.exit_code == 2, result.output
    [row] = json.loads(result.output)
    assert row["ok"] is False
    message = row["error"]
    assert message.startswith(f"{BROKEN / fixture}:{line}: {field}: "), message
    for word in words:
        assert word in message, message
    assert (row["line"], row["field"]) == (line, field)


def test_unsafe_tag_is_never_executed() -> None:
    marker = Path("/tmp/hub-pwned")
    marker.unlink(missing_ok=True)
    runner.invoke(app, ["templates", "validate", str(BROKEN / "unsafe_tag.yaml")])
    assert not marker.exists()


def test_literal_secret_is_not_echoed() -> None:
    result = runner.invoke(app, ["templates", "validate", str(BROKEN / "literal_secret.yaml")])
    assert result.exit_code == 2
    assert "Sup3rS3cretAppValue" not in result.output


def test_validate_directory_reports_each_file_and_fails() -> None:
    result = runner.invoke(app, ["templates", "validate", str(BROKEN)])
    assert result.exit_code == 2
    assert result.output.count("FAIL") == len(TEMPLATE_CASES)
    assert f"0 valid, {len(TEMPLATE_CASES)} invalid." in result.output


@pytest.mark.parametrize(
    ("project", "line", "field", "words"),
    [
        (
            "env_unset",
            7,
            "connections.erp.connection.client_secret",
            ["environment variable HUB_FIXTURE_UNSET_SECRET is not set", "Export it"],
        ),
        (
            "unknown_template",
            5,
            "connections.erp.template",
            ["unknown template 'kingdee_kiss'", "'kingdee_kis'"],
        ),
    ],
)
def test_broken_project_fails_before_contacting_anything(
    project: str, line: int, field: str, words: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HUB_FIXTURE_UNSET_SECRET", raising=False)
    path = FIXTURES / "projects" / project / "hub.yaml"
    result = runner.invoke(app, ["check", "--json", "-c", str(path)])
    assert result.exit_code == 2, result.output
    payload = json.loads(result.output)
    assert payload["error"].startswith(f"{path}:{line}: {field}: "), payload["error"]
    for word in words:
        assert word in payload["error"]
