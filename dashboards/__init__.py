"""Grafana dashboards and alert rules as code; `python -m dashboards.build` writes what Grafana provisions."""
