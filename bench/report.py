"""`make bench`: run every benchmark in bench/, then write one JSON + Markdown report with each
figure next to its target. Each benchmark prints one JSON object as its last stdout line."""

from __future__ import annotations

import argparse
import json
import operator
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS = {">=": operator.ge, "<=": operator.le}


@dataclass(frozen=True)
class Target:
    label: str
    path: str  # dotted path into the benchmark's JSON
    op: str
    value: float
    unit: str = ""


@dataclass(frozen=True)
class Bench:
    name: str
    argv: list[str]
    targets: list[Target]


BENCHES: list[Bench] = []  # filled in below, one entry per benchmark module


def lookup(doc: dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def run_bench(b: Bench, timeout: float) -> dict[str, Any]:
    t = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, "-m", *b.argv], capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in proc.stdout.splitlines() if line.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}"}
    doc = json.loads(lines[-1])
    doc["_seconds"] = round(time.monotonic() - t, 1)
    return doc


def evaluate(b: Bench, doc: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for t in b.targets:
        v = lookup(doc, t.path)
        met = None if v is None else bool(OPS[t.op](v, t.value))
        rows.append({"bench": b.name, "figure": t.label, "value": v, "target": f"{t.op} {t.value:g} {t.unit}".strip(),
                     "met": met})
    return rows


def markdown(rows: list[dict[str, Any]], errors: dict[str, str]) -> str:
    out = ["# AgentTrace benchmark report", "", "| benchmark | figure | measured | target | met |", "|---|---|---|---|---|"]
    for r in rows:
        v = r["value"]
        shown = "n/a" if v is None else (f"{v:,.3f}" if isinstance(v, float) else f"{v:,}" if isinstance(v, int) else str(v))
        met = {True: "yes", False: "**no**", None: "n/a"}[r["met"]]
        out.append(f"| {r['bench']} | {r['figure']} | {shown} | {r['target']} | {met} |")
    for name, err in errors.items():
        out += ["", f"**{name} failed:** `{err.strip().splitlines()[-1] if err.strip() else err}`"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--only", nargs="*", help="names of benchmarks to run")
    ap.add_argument("--out", default="bench/out", help="folder for report.json and report.md")
    ap.add_argument("--timeout", type=float, default=1800)
    args = ap.parse_args(argv)
    results, rows, errors = {}, [], {}
    for b in BENCHES:
        if args.only and b.name not in args.only:
            continue
        print(f"running {b.name} ...", file=sys.stderr, flush=True)
        doc = run_bench(b, args.timeout)
        results[b.name] = doc
        if "error" in doc:
            errors[b.name] = doc["error"]
        rows += evaluate(b, doc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps({"results": results, "figures": rows}, indent=2))
    (out / "report.md").write_text(markdown(rows, errors))
    print(json.dumps({"figures": rows, "errors": errors}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
