"""SQL fragments the ClickHouse panels share: variable filters, sketch percentiles, template variables.

Tables live in the `agenttrace` database (schemas/sql). Aggregates read `rollups_1m` (one row per
minute and dimensions, FINAL so a replayed window replaces its twin); per-event panels read `events`.
"""

from __future__ import annotations

from dashboards.model import Variable
from schemas.sketch import clickhouse_quantile_sql

DB = "agenttrace"
ROLLUPS = f"{DB}.rollups_1m FINAL"
EVENTS = f"{DB}.events FINAL"
SCORES = f"{DB}.scores FINAL"
SPANS = f"{DB}.spans FINAL"

# Template variable -> column, the same column name in rollups_1m and events.
FILTER_COLUMNS = {"project": "project_id", "agent": "agent_id", "model": "model", "provider": "provider"}


def var_filter(*names: str) -> str:
    """`$__conditionalAll` per variable: `1=1` when All is selected, else an IN list of quoted values."""
    names = names or tuple(FILTER_COLUMNS)
    return " AND ".join(
        f"$__conditionalAll({FILTER_COLUMNS[n]} IN (${{{n}:singlequote}}), ${n})" for n in names
    )


def quantile(sketch_expr: str, q: float) -> str:
    """Percentile (ms) of a merged sketch, the same rule as schemas.sketch.Sketch.quantile."""
    return clickhouse_quantile_sql(sketch_expr, repr(q))


def variables() -> list[Variable]:
    """project, agent, model, provider: each list narrowed by the ones before it."""
    out: list[Variable] = []
    for name, label in (("project", "Project"), ("agent", "Agent"), ("model", "Model"), ("provider", "Provider")):
        column = FILTER_COLUMNS[name]
        before = list(FILTER_COLUMNS)[: list(FILTER_COLUMNS).index(name)]
        where = " AND ".join(["$__timeFilter(window_start)"] + ([var_filter(*before)] if before else []))
        out.append(Variable(name, label, query=(
            f"SELECT DISTINCT {column} FROM {ROLLUPS} WHERE {where} AND {column} != '' ORDER BY {column}"
        )))
    return out


TRACE_LINK = "/d/agenttrace-trace/agenttrace-trace?var-trace_id=${__value.raw}&${__url_time_range}"
