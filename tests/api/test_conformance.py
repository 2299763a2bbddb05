"""The Grafana endpoints against the JSON datasource's OpenAPI contract (schemathesis, real HTTP).

Two runs:
1. Every request shape the spec describes (bodies present or not, panelId string or number, range
   or rangeRaw, scopedVars, filters, payloads of any content), with the *names* in it (target,
   variable, tag key, filter key, time order) set to ones the API knows: all of schemathesis'
   checks pass, including "schema-valid request accepted" and response conformance.
2. Unconstrained requests: unknown names get a 400 with a JSON message; never a server error.

The spec's table schema says each of `rows` is a string or a number, while its own example, the
plugin and Grafana use rows that are arrays of cells; for table targets the rows schema is read as
"array of cells" (the only change made to the spec).
"""

from __future__ import annotations

import copy
import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.api.server import serve

SPEC = Path("/work/shared/conformance/grafana-json-datasource.openapi.yaml")
if not SPEC.exists():  # the repository keeps a copy next to the tests
    SPEC = Path(__file__).with_name("grafana-json-datasource.openapi.yaml")

TARGETS = itertools.cycle(["metrics", "traces", "observations", "scores", "costs", "alerts"])
VARIABLES = itertools.cycle(["models", "agents", "users", "sessions", "names", "releases", "tags", "projects"])
KEYS = itertools.cycle(["model", "agent", "user_id", "session_id", "tag", "release", "name", "provider"])
RESERVED = {"field", "aggregation", "group_by", "groupBy", "limit", "filters", "model", "models", "provider",
            "agent", "agent_id", "agents", "name", "names", "user_id", "user", "users", "session_id", "session",
            "sessions", "release", "releases", "version", "versions", "tag", "tags", "type", "event_type",
            "project", "project_id", "projects", "providers"}


def load_spec(tables: bool) -> dict:
    doc = yaml.safe_load(SPEC.read_text())
    if tables:
        doc = copy.deepcopy(doc)
        table = doc["paths"]["/query"]["post"]["responses"]["200"]["content"]["application/json"]["schema"][
            "items"]["anyOf"][1]
        table["properties"]["rows"]["items"] = {"type": "array", "items": {
            "anyOf": [{"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "array"}],
            "nullable": True}}
    return doc


def known_names(case, tables: bool):
    """Keep the request's shape; replace the names in it with ones the API serves."""
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return case
    now = datetime.now(UTC)
    rng = body.get("range")
    if isinstance(rng, dict):
        if "from" in rng:
            rng["from"] = (now - timedelta(hours=3)).isoformat()
        if "to" in rng:
            rng["to"] = now.isoformat()
        if isinstance(rng.get("raw"), dict):
            rng["raw"] = {k: ("now-3h" if k == "from" else "now" if k == "to" else v) for k, v in rng["raw"].items()}
    if isinstance(body.get("rangeRaw"), dict):
        body["rangeRaw"] = {k: ("now-3h" if k == "from" else "now" if k == "to" else v)
                            for k, v in body["rangeRaw"].items()}
    for t in body.get("targets") or []:
        if isinstance(t, dict):
            t["target"] = next(TARGETS) if tables else "metrics"
            if isinstance(t.get("payload"), dict):
                t["payload"] = {k: v for k, v in t["payload"].items() if k not in RESERVED}
    for f in body.get("filters") or []:
        if isinstance(f, dict):
            f["key"], f["operator"] = next(KEYS), "="
    if isinstance(body.get("payload"), dict) and "target" in body["payload"]:
        body["payload"]["target"] = next(VARIABLES)
    if "key" in body:
        body["key"] = next(KEYS)
    return case


def run_operation(op, base: str, headers: dict[str, str], calls: dict[str, int], strategy, **checks) -> None:
    @given(case=strategy)
    @settings(max_examples=25, deadline=None, database=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def check(case):
        response = case.call_and_validate(base_url=f"{base}/grafana", headers=headers, **checks)
        if response.status_code >= 400:
            assert isinstance(response.json()["error"], str)
        calls[op.label] = calls.get(op.label, 0) + 1

    check()


def test_every_request_shape_of_the_spec_is_served(env):
    with serve(env.app) as base:
        for tables in (False, True):
            schema = schemathesis.openapi.from_dict(load_spec(tables))
            calls: dict[str, int] = {}
            for result in schema.get_all_operations():
                op = result.ok()
                strategy = op.as_strategy().map(lambda c, t=tables: known_names(c, t))
                run_operation(op, base, env.h(), calls, strategy)
            assert len(calls) == 7 and all(n > 0 for n in calls.values()), calls


def test_unknown_names_get_json_errors_never_server_errors(env):
    schema = schemathesis.openapi.from_dict(load_spec(tables=True))
    calls: dict[str, int] = {}
    with serve(env.app) as base:
        for result in schema.get_all_operations():
            op = result.ok()
            run_operation(op, base, env.h(), calls, op.as_strategy(), checks=[not_a_server_error])
        # And the real thing Grafana sends first: the connection test with the key.
        assert httpx.get(f"{base}/grafana/", headers=env.h()).status_code == 200
    assert len(calls) == 7, calls
