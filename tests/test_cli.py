"""The command line: ``translate`` (dry run) here; commands that need a running relay in e2e."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.cli import main
from tests.conftest import SAMPLES


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        main(list(args))
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    else:
        code = 0
    out, err = capsys.readouterr()
    return code, out, err


def test_translate_prints_the_dx_request(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 0
    result = json.loads(out)
    assert result["method"] == "incidents.upsert"
    body = result["body"]
    assert body["reference_id"] == "opsgenie-7ec331d7-f5f3-4f78-a49c-2ad886df69fe-1593475564295"
    assert body["priority"] == "P3"
    assert body["resolved_at"] is None
    assert body["metadata"]["teams"] == ["operations"]


def test_translate_folds_files_in_order_and_reports_ignored(
    capsys: pytest.CaptureFixture[str],
) -> None:
    files = ["Acknowledge", "CustomAction.TestAction", "Close", "Delete"]
    code, out, _ = run(capsys, "translate", *(str(SAMPLES / f"{name}.json") for name in files))
    assert code == 0
    result = json.loads(out)
    assert result["body"]["resolved_at"] == "2015-01-05T10:06:14.669Z"
    assert result["body"]["metadata"]["acknowledged"] is True
    assert len(result["ignored"]) == 2  # the custom action and Delete (not configured)


def test_translate_uses_the_rules_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text("reference_prefix: og-\npriorities: {P3: SEV3}\n")
    monkeypatch.setenv("RELAY_CONFIG", str(rules))
    code, out, _ = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 0
    body = json.loads(out)["body"]
    assert body["reference_id"].startswith("og-")
    assert body["priority"] == "SEV3"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"action": "Create", "alert": {}}', "alert.alertId is required"),
        (b'{"action": "Create", "alert": {"alertId": "a", "priority": true}}', "alert.priority"),
    ],
)
def test_translate_names_the_problem_and_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    code, out, err = run(capsys, "translate", str(path))
    assert code == 2
    assert out == ""
    assert message in err
    assert "Traceback" not in err


def test_translate_refuses_files_about_different_alerts(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = run(
        capsys, "translate", str(SAMPLES / "Create.json"), str(SAMPLES / "Close.json")
    )
    assert code == 2
    assert "different alert" in err


def test_invalid_environment_stops_with_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RELAY_PORT", "eighty")
    code, _, err = run(capsys, "translate", str(SAMPLES / "Create.json"))
    assert code == 2
    assert err.count("\n") == 1
    assert err.startswith("opsgenie-dx-relay: configuration error: RELAY_PORT")
