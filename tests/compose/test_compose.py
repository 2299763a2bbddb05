"""The compose deployment: valid against the Compose Specification schema, pinned images, the services the
README names, a Dockerfile that installs with CI's lock, and Prometheus scraping every service."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import jsonschema_rs
import pytest
import yaml

from schemas.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose" / "docker-compose.yml"
SPEC = Path(__file__).parent / "compose_spec" / "compose-spec.json"
AGENTTRACE_SERVICES = {"gateway": "ingest", "proxy": "proxy", "streams": "stream", "sinks": "sink", "api": "api"}
INFRA = {"redpanda", "console", "clickhouse", "grafana", "prometheus", "init"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def validator():
    return jsonschema_rs.validator_for(json.loads(SPEC.read_text()))


def test_compose_file_validates_against_the_compose_spec(compose, validator) -> None:
    errors = [f"{'/'.join(map(str, e.instance_path))}: {e.message}" for e in validator.iter_errors(compose)]
    assert errors == []


def test_the_schema_check_rejects_a_broken_file(compose, validator) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["gateway"]["helthcheck"] = broken["services"]["gateway"].pop("healthcheck")
    assert not validator.is_valid(broken)
    broken = copy.deepcopy(compose)
    broken["services"]["init"]["depends_on"]["redpanda"]["condition"] = "service_ready"
    assert not validator.is_valid(broken)


def test_every_service_is_there_with_a_pinned_image(compose) -> None:
    services = compose["services"]
    assert set(services) == INFRA | set(AGENTTRACE_SERVICES)
    for name, svc in services.items():
        image = svc.get("image", "")
        repo, _, tag = image.rpartition(":")
        assert repo and tag and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest" and re.search(r"\d", tag), f"{name}: image {image!r} is not pinned to a version"
    project_version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    for name, command in {**AGENTTRACE_SERVICES, "init": None}.items():
        svc = services[name]
        assert svc["build"] == {"context": "..", "dockerfile": "Dockerfile"}, name
        assert svc["image"] == f"agenttrace:{project_version}", name
        if command:
            assert svc["command"][0] == command, f"{name} runs `agenttrace {command}`"


def test_health_checks_volumes_and_start_order(compose) -> None:
    services = compose["services"]
    defaults = Settings()
    ports = {"gateway": defaults.gateway_port, "proxy": defaults.proxy_port, "api": defaults.api_port,
             "streams": defaults.stream_metrics_port, "sinks": defaults.sink_metrics_port}
    for name, port in ports.items():
        check = " ".join(services[name]["healthcheck"]["test"])
        assert f"127.0.0.1:{port}/readyz" in check, name
        assert services[name]["depends_on"]["init"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["AGENTTRACE_HOST"] == "0.0.0.0"
    for name in ("redpanda", "clickhouse", "grafana", "prometheus"):
        assert "healthcheck" in services[name], name
        assert any(":/" in v and not v.startswith(".") for v in services[name]["volumes"]), f"{name} keeps data"
    init = services["init"]
    assert init["command"] == ["agenttrace stack topics && python compose/init_stack.py"]
    assert init["depends_on"] == {"redpanda": {"condition": "service_healthy"},
                                  "clickhouse": {"condition": "service_healthy"}}
    # Redpanda runs its schema registry and HTTP proxy; Console points at both broker and registry.
    cmd = " ".join(services["redpanda"]["command"])
    assert "--schema-registry-addr" in cmd and "--pandaproxy-addr" in cmd
    console = yaml.safe_load((ROOT / "compose" / "console" / "config.yml").read_text())
    assert console["kafka"]["brokers"] == ["redpanda:9092"]
    assert console["kafka"]["schemaRegistry"]["urls"] == ["http://redpanda:8081"]


def test_mounted_files_exist(compose) -> None:
    for name, svc in compose["services"].items():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("."):
                assert (COMPOSE.parent / src).exists(), f"{name} mounts missing {src}"


def test_grafana_gets_plugins_provisioning_and_dashboards(compose) -> None:
    grafana = compose["services"]["grafana"]
    plugins = dict(p.split(" ") for p in grafana["environment"]["GF_INSTALL_PLUGINS"].split(","))
    assert set(plugins) == {"grafana-clickhouse-datasource", "simpod-json-datasource"}
    assert all(re.fullmatch(r"\d+\.\d+\.\d+", v) for v in plugins.values()), "plugin versions are pinned"
    ds = yaml.safe_load((ROOT / "dashboards/provisioning/datasources/agenttrace.yaml").read_text())["datasources"]
    by_type = {d["type"]: d for d in ds}
    assert by_type["grafana-clickhouse-datasource"]["uid"] == "clickhouse"
    assert by_type["simpod-json-datasource"]["url"].endswith(":8090/grafana")
    assert by_type["prometheus"]["uid"] == "prometheus"
    env = grafana["environment"]
    assert env["AGENTTRACE_API_HOST"] == "api" and env["AGENTTRACE_CLICKHOUSE_HOST"] == "clickhouse"
    used = set(re.findall(r"\$\{(\w+)\}", (ROOT / "dashboards/provisioning/datasources/agenttrace.yaml").read_text()))
    assert used <= set(env), f"Grafana lacks {used - set(env)}"
    providers = yaml.safe_load((ROOT / "dashboards/provisioning/dashboards/agenttrace.yaml").read_text())
    path = providers["providers"][0]["options"]["path"]
    assert f"../dashboards/generated:{path}:ro" in grafana["volumes"]
    assert "../dashboards/provisioning:/etc/grafana/provisioning:ro" in grafana["volumes"]


def test_prometheus_scrapes_every_service(compose) -> None:
    config = yaml.safe_load((ROOT / "compose/prometheus/prometheus.yml").read_text())
    targets = {j["job_name"]: j["static_configs"][0]["targets"] for j in config["scrape_configs"]}
    defaults = Settings()
    assert targets["gateway"] == [f"gateway:{defaults.gateway_port}"]
    assert targets["proxy"] == [f"proxy:{defaults.proxy_port}"]
    assert targets["api"] == [f"api:{defaults.api_port}"]
    assert targets["streams"] == [f"streams:{defaults.stream_metrics_port}"]
    assert targets["sinks"] == [f"sinks:{defaults.sink_metrics_port}"]
    assert {"redpanda", "clickhouse", "prometheus"} <= set(targets)
    for job, hosts in targets.items():
        host = hosts[0].split(":")[0]
        assert host == "localhost" or host in compose["services"], f"{job} scrapes unknown host {host}"
    volumes = compose["services"]["prometheus"]["volumes"]
    assert "./prometheus/rules:/etc/prometheus/rules:ro" in volumes


def test_every_service_the_readme_names_exists(compose) -> None:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Docker Compose deployment", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"^\| `([\w-]+)` \|", section, flags=re.M))
    assert named == set(compose["services"]), f"README names {named ^ set(compose['services'])}"
    assert "docker compose -f compose/docker-compose.yml up -d" in section
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            host_port = port.split(":")[0]
            assert f"localhost:{host_port}" in section, f"README does not say where {name}:{host_port} is"


def test_dockerfile_installs_with_the_ci_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^FROM python:3\.11\.\d+-slim-\w+$", dockerfile, re.M), "base image pinned to a patch release"
    assert "pip install -c requirements.lock -e ." in dockerfile
    pip_pin = re.search(r"pip==([\d.]+)", makefile).group(1)
    assert f"pip install --upgrade pip=={pip_pin}" in dockerfile, "same pip as `make install`"
    assert "-c requirements.lock" in makefile
    lock = dict(line.split("==") for line in (ROOT / "requirements.lock").read_text().split() if "==" in line)
    lock = {k.lower().replace("_", "-"): v for k, v in lock.items()}
    for dep in tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]:
        name, version = dep.split("==")
        assert lock.get(name.lower().replace("_", "-")) == version, f"{dep} differs from requirements.lock"
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and ".git" in ignored
    assert "compose" not in ignored, "the init job runs compose/init_stack.py from the image"


def test_compose_runs_without_an_env_file() -> None:
    # Every ${VAR} has a default, so `up -d` works on a fresh checkout; `$$` escapes reach the container shell.
    text = COMPOSE.read_text()
    unescaped = re.findall(r"(?<!\$)\$\{(\w+)(:-[^}]*)?\}", text)
    assert unescaped, "expected configurable values"
    assert [name for name, default in unescaped if not default] == []
