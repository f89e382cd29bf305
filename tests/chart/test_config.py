"""Mapping rules and environment, as the relay itself reads them.

These tests hand the chart's output to the service's own parsers, so a rename on either
side shows up here rather than as a crash-looping pod.
"""

from __future__ import annotations

import pytest
import yaml

from service.mapping import parse_rules
from service.settings import Settings
from tests.chart.helpers import ALL_VALUES, FULLNAME, Rendered, is_sqlite, load_values


def test_no_config_map_without_rules(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].maybe("ConfigMap") is None
    mounts = {m["mountPath"] for m in rendered["default"].container["volumeMounts"]}
    assert "/etc/opsgenie-dx-relay" not in mounts


@pytest.mark.parametrize("name", ["rules-values.yaml", "all-values.yaml"])
def test_rules_become_the_mounted_config_file(rendered: dict[str, Rendered], name: str) -> None:
    result = rendered[name]
    config_map = result.one("ConfigMap", FULLNAME)
    assert set(config_map["data"]) == {"rules.yaml"}
    assert yaml.safe_load(config_map["data"]["rules.yaml"]) == load_values(name)["rules"]
    assert result.env["RELAY_CONFIG"]["value"] == "/etc/opsgenie-dx-relay/rules.yaml"
    [mount] = [m for m in result.container["volumeMounts"] if m["name"] == "rules"]
    assert mount == {"name": "rules", "mountPath": "/etc/opsgenie-dx-relay", "readOnly": True}
    volumes = {v["name"]: v for v in result.pod["spec"]["volumes"]}
    assert volumes["rules"]["configMap"]["name"] == FULLNAME


@pytest.mark.parametrize("name", ["rules-values.yaml", "all-values.yaml"])
def test_the_relay_accepts_the_rendered_rules(rendered: dict[str, Rendered], name: str) -> None:
    document = yaml.safe_load(rendered[name].one("ConfigMap", FULLNAME)["data"]["rules.yaml"])
    parse_rules(document)  # raises ValueError naming the key on any mismatch


@pytest.mark.parametrize("name", [name for name in ALL_VALUES if is_sqlite(name)])
def test_the_relay_accepts_the_rendered_environment(
    rendered: dict[str, Rendered], name: str
) -> None:
    """Settings.from_environ, fed the pod's env (secrets filled in), starts without error."""
    environ: dict[str, str] = {}
    for entry in rendered[name].env.values():
        if "value" in entry:
            environ[entry["name"]] = entry["value"]
        else:
            environ[entry["name"]] = f"ci-{entry['name'].lower()}"
    environ["RELAY_WEBHOOK_TOKENS"] = "ci-webhook-token-a,ci-webhook-token-b"
    environ.pop("RELAY_SECRET_KEY")  # must be a Fernet key; generated on the volume when unset
    settings = Settings.from_environ(environ)
    assert settings.host == "0.0.0.0"
    assert settings.port == 8080
    assert str(settings.database_path) == "/data/relay.db"
    assert settings.shutdown_deadline_seconds == float(environ["RELAY_SHUTDOWN_DEADLINE"])
