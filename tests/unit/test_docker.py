"""The docker/ files are for users (no Docker engine here): validated statically."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.core.config import load_config

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"


def test_every_copied_path_in_the_dockerfile_exists() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    sources = [
        part
        for line in text.splitlines()
        if line.startswith("COPY ") and "--from=" not in line
        for part in line.split()[1:-1]
    ]
    assert sources
    for src in sources:
        assert (ROOT / src).exists(), src


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck() -> None:
    text = (DOCKER / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root|0\b)\S+", text, re.MULTILINE)
    assert "HEALTHCHECK" in text
    assert "/healthz" in text


def test_compose_mounts_and_builds_only_files_that_exist() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    services = compose["services"]
    assert {"kafka", "burnrate", "prometheus", "alertmanager", "grafana"} <= set(services)
    build = services["burnrate"]["build"]
    assert (DOCKER / build["context"] / build["dockerfile"]).is_file()
    for name, svc in services.items():
        for volume in svc.get("volumes", []):
            host = volume.split(":", 1)[0]
            assert (DOCKER / host).exists(), f"{name}: {host}"


def test_the_compose_engine_config_is_valid() -> None:
    cfg = load_config(DOCKER / "burnrate.yaml")
    assert cfg.http.listen.startswith("0.0.0.0:")


def test_the_compose_prometheus_config_is_valid() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: install Debian's `prometheus` (scripts/test.sh does)")
    out = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(DOCKER / "prometheus.yml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> host path (relative to docker/) of a compose service's volumes."""
    out = {}
    for volume in service.get("volumes", []):
        host, container = volume.split(":")[:2]
        out[container] = host
    return out


def test_compose_grafana_is_provisioned_with_prometheus_and_the_dashboards() -> None:
    """Grafana's data source has the uid the dashboards name by default and points at
    the compose Prometheus; the dashboard provider reads the mounted dashboards, and the
    home dashboard is one of them. (docker/grafana/dashboards equals what `burnrate
    dashboards` writes now: tests/unit/commands/test_dashboards_cli.py.)"""
    from engine.commands.dashboards import DEFAULT_DATASOURCE_UID

    services = yaml.safe_load((DOCKER / "compose.yaml").read_text())["services"]
    grafana = services["grafana"]
    assert grafana["image"].startswith("grafana/grafana:11.6.")  # the SDK's Grafana
    mounts = _mounts(grafana)
    provisioning = DOCKER / mounts["/etc/grafana/provisioning"]
    (datasource,) = yaml.safe_load((provisioning / "datasources" / "prometheus.yaml").read_text())[
        "datasources"
    ]
    assert (datasource["type"], datasource["uid"]) == ("prometheus", DEFAULT_DATASOURCE_UID)
    prometheus_port = services["prometheus"]["ports"][0].split(":")[-1]
    assert datasource["url"] == f"http://prometheus:{prometheus_port}"
    scrape = yaml.safe_load((DOCKER / "prometheus.yml").read_text())["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape
    (provider,) = yaml.safe_load((provisioning / "dashboards" / "burnrate.yaml").read_text())[
        "providers"
    ]
    assert provider["type"] == "file"
    container_dir = provider["options"]["path"]
    host_dir = DOCKER / mounts[container_dir]
    assert sorted(p.name for p in host_dir.glob("*.json"))
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(container_dir + "/")
    assert (host_dir / home.removeprefix(container_dir + "/")).is_file()
