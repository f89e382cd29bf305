"""The rules file: read from disk and parsed; every failure names RELAY_CONFIG and the file."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import ConfigError
from service.mapping import Filter, Rules, ServiceRef
from service.rules_file import load_rules


def test_load_rules_without_a_file_is_the_defaults() -> None:
    assert load_rules(None) == Rules()


def test_load_rules_from_a_real_file(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(
        """\
# Relay rules
reference_prefix: og-
priorities:
  P1: SEV1
filter:
  priorities: [P1, P2]
  tags:
    - prod
services:
  tag_prefix: "svc:"
  teams:
    payments-team: payments
  map:
    payments:
      identifier: payments-svc
      name: Payments
  fallback: [unknown]
delete_incidents: true
""",
        encoding="utf-8",
    )
    rules = load_rules(path)
    assert rules.reference_prefix == "og-"
    assert rules.priority_map == {"P1": "SEV1"}
    assert rules.filter == Filter(priorities=frozenset({"P1", "P2"}), tags=frozenset({"prod"}))
    assert rules.tag_prefix == "svc:"
    assert rules.team_services == {"payments-team": ("payments",)}
    assert rules.service_map == {"payments": ServiceRef(identifier="payments-svc", name="Payments")}
    assert rules.fallback == (ServiceRef(identifier="unknown"),)
    assert rules.delete_incidents is True


@pytest.mark.parametrize("text", ["", "# only a comment\n", "---\n"])
def test_load_rules_from_an_empty_file_is_the_defaults(tmp_path: Path, text: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_rules(path) == Rules()


def test_load_rules_invalid_yaml(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("filter: [unclosed\n  tags: {\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert "RELAY_CONFIG" in caught.value.message
    assert str(path) in caught.value.message
    assert "YAML" in caught.value.message


def test_load_rules_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "absent.yaml"
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert "RELAY_CONFIG" in caught.value.message
    assert str(path) in caught.value.message


def test_load_rules_a_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="RELAY_CONFIG"):
        load_rules(tmp_path)


def test_load_rules_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_bytes(b"reference_prefix: \xff\xfe-\n")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    assert "RELAY_CONFIG" in caught.value.message
    assert str(path) in caught.value.message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("colour: red\n", "colour"),
        ("- a\n- b\n", "the file"),
        ("filter:\n  priorities: P1\n", "filter.priorities"),
        ("delete_incidents: maybe\n", "delete_incidents"),
        ("services:\n  map:\n    pay:\n      identifier: ''\n", "services.map.pay.identifier"),
        ("filter:\n  teams: [on]\n", "filter.teams"),  # YAML 1.1: on is true
    ],
)
def test_load_rules_invalid_rules_name_file_and_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_rules(path)
    message = caught.value.message
    assert message.startswith("RELAY_CONFIG")
    assert str(path) in message
    assert named in message
