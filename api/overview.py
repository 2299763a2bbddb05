"""The live overview page at `/` for people without Grafana: static files that read the API's own
endpoints in the browser (no build step; uPlot is vendored from npm under static/vendor)."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

STATIC = resources.files("api").joinpath("static")


def router() -> APIRouter:
    r = APIRouter(include_in_schema=False)
    page = STATIC.joinpath("overview.html").read_text()

    @r.get("/", response_class=HTMLResponse)
    async def overview() -> str:
        return page

    return r


def static_files() -> StaticFiles:
    return StaticFiles(directory=str(STATIC))
