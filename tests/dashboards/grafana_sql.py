"""Expand a ClickHouse panel's SQL the way Grafana and grafana-clickhouse-datasource 4.x do, in their order.

1. The plugin's frontend replaces `$__conditionalAll(condition, $var)` by `1=1` when the variable is
   All (or empty) and by `condition` otherwise.
2. Grafana's template service interpolates variables: `${name:singlequote}` ('a','b', quotes escaped
   with a backslash), `${name:sqlstring}` ('a','b', quotes doubled), `${name:percentencode}`
   (strict URI encoding), `${name}` / `$name` (raw).
3. The plugin's backend (sqlds) expands its macros: `$__timeFilter(col)` to
   `col >= toDateTime(from) AND col <= toDateTime(to)`, `$__fromTime` / `$__toTime` to
   `toDateTime(unix seconds)`, `$__timeInterval(col)` to
   `toStartOfInterval(toDateTime(col), INTERVAL n second)`, `$__interval_s` to n (at least 1).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import quote

ALL = None  # a variable set to All


class ExpansionError(ValueError):
    pass


@dataclass
class QueryContext:
    time_from: datetime
    time_to: datetime
    interval_s: int
    variables: Mapping[str, Sequence[str] | str | None] = field(default_factory=dict)


def _args_at(sql: str, open_idx: int, quotes: bool = True) -> tuple[list[str], int]:
    """Comma-separated arguments of the call whose `(` is at open_idx; returns (args, index after `)`).

    The plugin's frontend counts brackets only (quotes=False); the backend also skips string literals.
    """
    depth, quote, args, cur = 0, "", [], []
    i = open_idx
    while i < len(sql):
        ch = sql[i]
        if quote and quotes:
            cur.append(ch)
            if ch == "\\":
                cur.append(sql[i + 1])
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "'\"" and quotes:
            quote = ch
            cur.append(ch)
        elif ch == "(":
            depth += 1
            if depth > 1:
                cur.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                args.append("".join(cur).strip())
                return args, i + 1
            cur.append(ch)
        elif ch == "," and depth == 1:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
        i += 1
    raise ExpansionError(f"unbalanced parentheses after position {open_idx}: {sql[open_idx:open_idx + 60]!r}")


def _is_all(value: Sequence[str] | str | None) -> bool:
    return value is ALL or value == "" or (not isinstance(value, str) and len(value) == 0)


def conditional_all(sql: str, variables: Mapping[str, Sequence[str] | str | None]) -> str:
    macro = "$__conditionalAll("
    idx = sql.rfind(macro)
    while idx != -1:
        args, end = _args_at(sql, idx + len(macro) - 1, quotes=False)
        if len(args) != 2:
            raise ExpansionError(f"$__conditionalAll takes 2 arguments, got {args}")
        m = re.fullmatch(r"\$\{?(\w+)\}?", args[1])
        if not m or m.group(1) not in variables:
            raise ExpansionError(f"$__conditionalAll names an unknown variable: {args[1]!r}")
        phrase = "1=1" if _is_all(variables[m.group(1)]) else args[0]
        sql = sql[:idx] + phrase + sql[end:]
        idx = sql.rfind(macro)
    return sql


def _values(value: Sequence[str] | str | None) -> list[str]:
    if value is ALL:
        raise ExpansionError("an All variable outside $__conditionalAll would expand to every value")
    return [value] if isinstance(value, str) else list(value)


def _format(value: Sequence[str] | str | None, fmt: str) -> str:
    vals = _values(value)
    if fmt == "singlequote":
        return ",".join("'" + v.replace("'", "\\'") + "'" for v in vals)
    if fmt == "sqlstring":
        return ",".join("'" + v.replace("'", "''") + "'" for v in vals)
    if fmt == "percentencode":  # encodeURIComponent plus !'()*, as Grafana's strict encoder
        text = "{" + ",".join(vals) + "}" if len(vals) > 1 else vals[0]
        return quote(text, safe="-_.~")
    if fmt in ("", "raw"):
        return ",".join(vals)
    raise ExpansionError(f"variable format {fmt!r} is not handled here")


def interpolate(sql: str, variables: Mapping[str, Sequence[str] | str | None]) -> str:
    def braced(m: re.Match[str]) -> str:
        name, fmt = m.group(1), m.group(2) or ""
        if name not in variables:
            raise ExpansionError(f"unknown variable ${{{name}}}")
        return _format(variables[name], fmt)

    def bare(m: re.Match[str]) -> str:
        name = m.group(1)
        if name.startswith("__"):
            return m.group(0)  # a macro, not a variable
        if name not in variables:
            raise ExpansionError(f"unknown variable ${name}")
        return _format(variables[name], "")

    sql = re.sub(r"\$\{(\w+)(?::(\w+))?\}", braced, sql)
    return re.sub(r"\$(\w+)", bare, sql)


def _dt(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def backend_macros(sql: str, ctx: QueryContext) -> str:
    seconds = max(int(ctx.interval_s), 1)

    def one_arg(name: str, args: list[str]) -> str:
        if len(args) != 1 or not args[0]:
            raise ExpansionError(f"$__{name} takes 1 argument, got {args}")
        return args[0]

    expanders = {
        "timeFilter": lambda a: f"{one_arg('timeFilter', a)} >= {_dt(ctx.time_from)} AND "
                                f"{one_arg('timeFilter', a)} <= {_dt(ctx.time_to)}",
        "timeInterval": lambda a: f"toStartOfInterval(toDateTime({one_arg('timeInterval', a)}), "
                                  f"INTERVAL {seconds} second)",
        "fromTime": lambda a: _dt(ctx.time_from),
        "toTime": lambda a: _dt(ctx.time_to),
        "interval_s": lambda a: str(seconds),
    }
    out, i = [], 0
    for m in re.finditer(r"\$__(\w+)", sql):
        if m.start() < i:
            continue
        name = m.group(1)
        if name not in expanders:
            raise ExpansionError(f"macro $__{name} is not one the ClickHouse plugin expands")
        out.append(sql[i:m.start()])
        if m.end() < len(sql) and sql[m.end()] == "(":
            args, end = _args_at(sql, m.end())
        else:
            args, end = [], m.end()
        out.append(expanders[name](args))
        i = end
    out.append(sql[i:])
    return "".join(out)


def expand(sql: str, ctx: QueryContext) -> str:
    sql = conditional_all(sql, ctx.variables)
    sql = interpolate(sql, ctx.variables)
    sql = backend_macros(sql, ctx)
    if "$" in re.sub(r"'(?:[^'\\]|\\.|'')*'", "", sql):
        raise ExpansionError(f"unexpanded $ left in: {sql}")
    return sql


def grafana_interval(ctx_from: datetime, ctx_to: datetime, min_interval: str = "", max_points: int = 1000) -> int:
    """Grafana's $__interval in seconds: range / data points, rounded to a nice step, floored by the panel's."""
    raw = (ctx_to - ctx_from).total_seconds() / max_points
    nice = [1, 2, 5, 10, 15, 20, 30, 60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800, 21600, 43200, 86400]
    step = next((n for n in nice if n >= raw), nice[-1])
    if min_interval:
        m = re.fullmatch(r"(\d+)([smhd])", min_interval)
        if not m:
            raise ExpansionError(f"bad interval {min_interval!r}")
        step = max(step, int(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)])
    return step
