"""The committed dashboards JSON and alert rules are exactly what the code generates, and well formed."""

from __future__ import annotations

import json

import yaml

from dashboards import build


def test_committed_files_equal_the_generated_ones() -> None:
    assert build.stale() == [], "run `python -m dashboards.build` and commit dashboards/generated"
    assert build.main(["--check"]) == 0


def test_check_reports_a_hand_edit(tmp_path, monkeypatch) -> None:
    target = tmp_path / "generated"
    target.mkdir()
    monkeypatch.setattr(build, "GENERATED", target)
    monkeypatch.setattr(build, "ALERT_RULES", tmp_path / "rules.yaml")
    assert build.main([]) == 0
    first = next(target.glob("*.json"))
    first.write_text(first.read_text().replace('"refresh"', '"refresh_"', 1))
    (target / "stray.json").write_text("{}")
    assert build.main(["--check"]) == 1
    assert {p.name for p in build.stale()} == {first.name, "stray.json"}


def test_dashboards_are_what_the_issue_asks_for() -> None:
    dashboards = {p.stem: json.loads(p.read_text()) for p in build.GENERATED.glob("*.json")}
    assert set(dashboards) == {"agenttrace-overview", "agenttrace-cost", "agenttrace-performance",
                               "agenttrace-quality", "agenttrace-pipeline", "agenttrace-trace"}
    overview = dashboards["agenttrace-overview"]
    assert overview["refresh"] == "30s" and overview["time"] == {"from": "now-7d", "to": "now"}
    for uid in ("agenttrace-overview", "agenttrace-cost", "agenttrace-performance"):
        names = [v["name"] for v in dashboards[uid]["templating"]["list"]]
        assert names[:4] == ["project", "agent", "model", "provider"]
    for uid, dash in dashboards.items():
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        for p in dash["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24, f"{uid}/{p['title']}: outside the grid"
        if uid != "agenttrace-pipeline":
            assert all(p["datasource"]["uid"] == "clickhouse" for p in dash["panels"] if p["type"] != "row")
    assert all(p["datasource"]["uid"] == "prometheus" for p in dashboards["agenttrace-pipeline"]["panels"]
               if p["type"] != "row")
    rules = yaml.safe_load(build.ALERT_RULES.read_text())
    assert rules["apiVersion"] == 1 and len(rules["groups"][0]["rules"]) == 3
