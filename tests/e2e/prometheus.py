"""A real Prometheus server (Debian's ``prometheus`` package) scraping a relay on loopback.

It labels the relay's series as the chart's ServiceMonitor has the Prometheus Operator label
them (``job`` is the Service's name, ``namespace`` the release's), so the dashboard's queries
and the PrometheusRule's expressions run unchanged. Data lives in the test's temporary
directory; the server is stopped when the test ends.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.fakes.polling import wait_for
from tests.fakes.servers import free_port


class PrometheusServer:
    def __init__(
        self, binary: str, workdir: Path, *, target: str, labels: dict[str, str], rules: Path
    ) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "prometheus.log"
        config = {
            # As short as Prometheus allows in practice: a scrape and a rule evaluation a second.
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(rules)],
            "scrape_configs": [
                {
                    "job_name": labels["job"],
                    "static_configs": [
                        {
                            "targets": [target],
                            "labels": {k: v for k, v in labels.items() if k != "job"},
                        }
                    ],
                }
            ],
        }
        config_path = workdir / "prometheus.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        self.command = [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={workdir / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--log.level=warn",
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(base_url=self.url, timeout=10.0)

    def start(self) -> PrometheusServer:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(self.command, stdout=log, stderr=log)
        wait_for(self._ready, timeout=30.0, message=f"prometheus ready at {self.url}")
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"prometheus exited with {self.proc.returncode}:\n{self.logs()}")
        try:
            return self.client.get("/-/ready").status_code == 200
        except httpx.TransportError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.client.close()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def api(self, path: str, **params: str) -> Any:
        """``data`` of a Prometheus HTTP API answer; an error answer fails the test."""
        response = self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", (path, params, body)
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query's series: ``[{"metric": {labels}, "value": [time, "value"]}]``."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", (expr, data["resultType"])
        result: list[dict[str, Any]] = data["result"]
        return result
