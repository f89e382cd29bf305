"""The relay's pod (StatefulSet or Deployment) and the sqlite StatefulSet: security, probes,
ports, storage, shutdown and roll-outs."""

from __future__ import annotations

import helm_python as helm
import pytest

from tests.chart.helpers import ALL_VALUES, FULLNAME, Rendered, is_sqlite, load_values, render

SQLITE_VALUES = [name for name in ALL_VALUES if is_sqlite(name)]


@pytest.mark.parametrize("name", ALL_VALUES)
def test_pod_security(rendered: dict[str, Rendered], name: str) -> None:
    pod = rendered[name].pod["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["runAsGroup"] == 10001
    assert pod["securityContext"]["fsGroup"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod["automountServiceAccountToken"] is False
    assert pod.get("hostNetwork") is None
    assert pod.get("hostPID") is None

    container = rendered[name].container["securityContext"]
    assert container["allowPrivilegeEscalation"] is False
    assert container["readOnlyRootFilesystem"] is True
    assert container["runAsNonRoot"] is True
    assert container["capabilities"] == {"drop": ["ALL"]}
    assert container.get("privileged") in (None, False)


@pytest.mark.parametrize("name", ALL_VALUES)
def test_probes_and_ports(rendered: dict[str, Rendered], name: str) -> None:
    container = rendered[name].container
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    env = rendered[name].env
    assert env["RELAY_HOST"]["value"] == "0.0.0.0"
    assert env["RELAY_PORT"]["value"] == "8080"


def test_container_port_follows_the_value(chart: helm.Chart) -> None:
    result = render(chart, {"containerPort": 9090})
    assert result.container["ports"][0] == {
        "name": "http",
        "containerPort": 9090,
        "protocol": "TCP",
    }
    assert result.env["RELAY_PORT"]["value"] == "9090"
    assert result.one("Service")["spec"]["ports"][0]["targetPort"] == "http"


def test_image_defaults_to_the_app_version(rendered: dict[str, Rendered]) -> None:
    container = rendered["default"].container
    assert container["image"] == "opsgenie-dx-relay:0.1.0"
    assert container["imagePullPolicy"] == "IfNotPresent"
    # The image's ENTRYPOINT is `opsgenie-dx-relay serve`; the chart must not override it.
    assert "command" not in container
    assert "args" not in container
    all_values = rendered["all-values.yaml"]
    assert all_values.container["image"] == "registry.example.com/opsgenie-dx-relay:0.1.0-ci"
    assert all_values.pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]


def test_default_resources(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].container["resources"] == {
        "requests": {"cpu": "50m", "memory": "128Mi"},
        "limits": {"memory": "256Mi"},
    }


@pytest.mark.parametrize("name", ALL_VALUES)
def test_tmp_is_an_empty_dir(rendered: dict[str, Rendered], name: str) -> None:
    mounts = {m["mountPath"]: m["name"] for m in rendered[name].container["volumeMounts"]}
    volumes = {v["name"]: v for v in rendered[name].pod["spec"]["volumes"]}
    assert "emptyDir" in volumes[mounts["/tmp"]]


@pytest.mark.parametrize("name", SQLITE_VALUES)
def test_sqlite_mode_is_one_replica_with_a_claim(rendered: dict[str, Rendered], name: str) -> None:
    sts = rendered[name].one("StatefulSet")
    assert sts["spec"]["replicas"] == 1
    assert sts["spec"]["serviceName"] == FULLNAME
    [claim] = sts["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["accessModes"] == ["ReadWriteOnce"]
    mounts = {m["name"]: m["mountPath"] for m in rendered[name].container["volumeMounts"]}
    assert mounts[claim["metadata"]["name"]] == "/data"
    assert rendered[name].env["RELAY_DATABASE_URL"] == {
        "name": "RELAY_DATABASE_URL",
        "value": "sqlite:////data/relay.db",
    }


def test_claim_size_and_storage_class(rendered: dict[str, Rendered]) -> None:
    [default] = rendered["default"].one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert default["spec"]["resources"]["requests"]["storage"] == "1Gi"
    assert "storageClassName" not in default["spec"]
    [custom] = rendered["all-values.yaml"].one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert custom["spec"]["resources"]["requests"]["storage"] == "5Gi"
    assert custom["spec"]["storageClassName"] == "local-ssd"


def test_storage_class_dash_means_none(chart: helm.Chart) -> None:
    result = render(chart, {"persistence": {"storageClassName": "-"}})
    [claim] = result.one("StatefulSet")["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["storageClassName"] == ""


def test_mount_path_moves_the_database(chart: helm.Chart) -> None:
    result = render(chart, {"persistence": {"mountPath": "/var/lib/relay/"}})
    assert result.env["RELAY_DATABASE_URL"]["value"] == "sqlite:////var/lib/relay/relay.db"


@pytest.mark.parametrize(("drain", "grace"), [(20, 30), (30, 40), (1, 11), (120, 130)])
def test_grace_period_is_the_drain_deadline_plus_ten(
    chart: helm.Chart, drain: int, grace: int
) -> None:
    result = render(chart, {"shutdownDrainSeconds": drain})
    assert result.pod["spec"]["terminationGracePeriodSeconds"] == grace
    assert result.env["RELAY_SHUTDOWN_DEADLINE"]["value"] == str(drain)


def test_default_drain_deadline(rendered: dict[str, Rendered]) -> None:
    assert rendered["default"].pod["spec"]["terminationGracePeriodSeconds"] == 30
    assert rendered["default"].env["RELAY_SHUTDOWN_DEADLINE"]["value"] == "20"


def test_non_secret_environment(rendered: dict[str, Rendered]) -> None:
    default = {k: v.get("value") for k, v in rendered["default"].env.items()}
    assert default["RELAY_LOG_FORMAT"] == "json"
    assert default["RELAY_DX_BASE_URL"] == ""
    assert default["RELAY_OPSGENIE_WEB_URL"] == "https://app.opsgenie.com"
    assert "RELAY_CONFIG" not in default
    custom = {k: v.get("value") for k, v in rendered["all-values.yaml"].env.items()}
    assert custom["RELAY_LOG_FORMAT"] == "text"
    assert custom["RELAY_DX_BASE_URL"] == "https://acme.getdx.net"
    assert custom["RELAY_OPSGENIE_WEB_URL"] == "https://acme.app.eu.opsgenie.com"
    assert custom["RELAY_DX_RATE_LIMIT"] == "5"  # extraEnv


def test_scheduling_values_reach_the_pod(rendered: dict[str, Rendered]) -> None:
    pod = rendered["all-values.yaml"].pod
    assert pod["spec"]["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["spec"]["tolerations"][0]["key"] == "dedicated"
    assert "nodeAffinity" in pod["spec"]["affinity"]
    assert pod["spec"]["priorityClassName"] == "high"
    assert pod["metadata"]["annotations"]["example.com/scrape"] == "false"
    assert pod["metadata"]["labels"]["tier"] == "backend"


# --- roll-outs ------------------------------------------------------------------------------


def _checksums(result: Rendered) -> tuple[str, str]:
    annotations = result.pod["metadata"]["annotations"]
    return annotations["checksum/config"], annotations["checksum/secret"]


def test_secret_change_rolls_the_pod(chart: helm.Chart) -> None:
    config, secret = _checksums(render(chart, {"secrets": {"dxToken": "one"}}))
    config2, secret2 = _checksums(render(chart, {"secrets": {"dxToken": "two"}}))
    assert secret != secret2
    assert config == config2
    _, secret3 = _checksums(
        render(chart, {"secrets": {"webhookTokens": ["token-a-0123456789", "token-b-0123456789"]}})
    )
    assert secret3 not in (secret, secret2)


def test_rules_change_rolls_the_pod(chart: helm.Chart) -> None:
    rules = {"filter": {"priorities": ["P1"]}}
    config, secret = _checksums(render(chart, {"rules": rules}))
    config2, secret2 = _checksums(render(chart, {"rules": {"filter": {"priorities": ["P2"]}}}))
    assert config != config2
    assert secret == secret2
    assert config != _checksums(render(chart, {}))[0]


def test_same_values_same_checksums(chart: helm.Chart) -> None:
    values = load_values("all-values.yaml")
    assert _checksums(render(chart, values)) == _checksums(render(chart, values))


def test_checksums_are_sha256(rendered: dict[str, Rendered]) -> None:
    for value in _checksums(rendered["default"]):
        assert len(value) == 64
        int(value, 16)
