"""``ml-manager ui``: the page and its JSON, served on this machine (starlette on uvicorn).

Security, because a tracker's UI is a known target: it binds the loopback address unless told otherwise; a
request whose ``Host`` is not a name of the bound address is refused (DNS rebinding); only GET (and HEAD) is
answered, with no CORS headers; a file is served only by its name in a fixed list, and a run only by the
project and id the last scan found, never by a path taken from the request; a query is checked before pandas
parses it (``data.run_query`` evaluates its checked syntax tree).
"""

from __future__ import annotations

import ipaddress
import socket
import sys
import threading
import time
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import data

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

STATIC = {
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
# A reload of an unchanged project costs little, but the page asks every second per tab.
_RELOAD_EVERY = 0.5


def static_text(name: str) -> str:
    """One of the page's files, from the package."""
    return resources.files(__package__).joinpath("static").joinpath(name).read_text(encoding="utf-8")


class _State:
    def __init__(self, base_dir: Path) -> None:
        self.snapshot = data.Snapshot(base_dir)
        self.loaded = time.monotonic()
        self.lock = threading.Lock()
        self.reader = data.HistoryReader()

    def fresh(self) -> data.Snapshot:
        with self.lock:
            if time.monotonic() - self.loaded > _RELOAD_EVERY:
                self.snapshot.reload()
                self.loaded = time.monotonic()
            return self.snapshot

    def series(self, run_dir: Path, metric: str | None, **options: Any) -> dict[str, Any]:
        """A metric's downsampled series (or, with no metric, the run's metric names), from the run's history as
        read so far plus what its files gained since.  Under the lock: a read appends to the columns."""
        with self.lock:
            history = self.reader.read(run_dir)
            if not metric:
                return {"metrics": history.metric_names()}
            return {"metric": metric, "series": data.series(history, metric, **options)}

    def details(self, run_dir: Path) -> dict[str, Any]:
        with self.lock:
            return run_details(run_dir, self.reader.read(run_dir))


def make_app(base_dir: str | Path, *, host: str = "127.0.0.1") -> Starlette:
    """The application: the page, its files and the JSON API, for the runs under ``base_dir``."""
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.responses import HTMLResponse, JSONResponse, Response
    from starlette.routing import Route

    state = _State(Path(base_dir))

    def index(request: Request) -> Response:
        page = static_text("index.html").replace("{{INLINE}}", "")
        return HTMLResponse(page, headers={**_NO_STORE, "Content-Security-Policy": _POLICY})

    def static(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC:
            return Response("not found", status_code=404)
        return Response(static_text(name), media_type=STATIC[name])

    def runs(request: Request) -> Response:
        try:
            table = state.fresh().table(request.query_params.get("q") or None)
        except data.QueryError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(table, headers=_NO_STORE)

    def run_dir_of(request: Request) -> Path | None:
        return state.fresh().run_dir(request.query_params.get("project", ""), request.query_params.get("run", ""))

    def history(request: Request) -> Response:
        run_dir = run_dir_of(request)
        if run_dir is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        params = request.query_params
        try:
            width = min(max(int(params.get("width", "1000")), 2), 20_000)
            start = float(params["start"]) if params.get("start") else None
            end = float(params["end"]) if params.get("end") else None
            found = state.series(
                run_dir, params.get("metric"), x=params.get("x", "step"), width=width, start=start, end=end
            )
        except (ValueError, data.QueryError) as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(found, headers=_NO_STORE)

    def run_info(request: Request) -> Response:
        run_dir = run_dir_of(request)
        if run_dir is None:
            return JSONResponse({"error": "no such run"}, status_code=404)
        return JSONResponse(state.details(run_dir), headers=_NO_STORE)

    routes = [
        Route("/", index, methods=["GET"]),
        Route("/static/{name}", static, methods=["GET"]),
        Route("/api/runs", runs, methods=["GET"]),
        Route("/api/history", history, methods=["GET"]),
        Route("/api/run", run_info, methods=["GET"]),
    ]
    return Starlette(routes=routes, middleware=[Middleware(_Guard, host=host)])


_NO_STORE = {"Cache-Control": "no-store"}
# The page loads its own files and asks its own server; nothing inline runs, nothing else is reached.
_POLICY = "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; base-uri 'none'"


class _Guard:
    """Refuses, before any work: a ``Host`` that is not a name of the bound address (DNS rebinding), and a
    request another site's page made (``Sec-Fetch-Site``: a link or script elsewhere cannot make it work)."""

    def __init__(self, app: Any, host: str) -> None:
        self.app = app
        self.names = set(allowed_hosts(host))
        self.any_address = host in ("0.0.0.0", "::")

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
            problem = self.refuse(headers.get("host", ""), headers.get("sec-fetch-site", ""))
            if problem:
                from starlette.responses import PlainTextResponse

                await PlainTextResponse(problem, status_code=400 if "Host" in problem else 403)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refuse(self, host_header: str, fetch_site: str) -> str | None:
        name = host_header.strip().lower()
        if name.startswith("["):  # [::1]:8765
            name = name[1 : name.find("]")] if "]" in name else name
        elif name.count(":") == 1:
            name = name.rsplit(":", 1)[0]
        if name not in self.names and not (self.any_address and _is_address(name)):
            return f"Host {host_header!r} is not this server's"
        if fetch_site in ("cross-site", "same-site"):
            return "requests from other sites' pages are refused"
        return None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def allowed_hosts(host: str) -> list[str]:
    """The ``Host`` names a request may carry: the bound address, and this machine's names for it."""
    names = {host.lower()}
    if is_loopback(host):
        names.update(_LOOPBACK)
    elif host in ("0.0.0.0", "::"):
        names.update(_LOOPBACK)
        names.update({socket.gethostname().lower(), socket.getfqdn().lower()})
    return sorted(names)


def run_details(run_dir: Path, history: data.RunHistory) -> dict[str, Any]:
    """A run's page: config, metrics, ``_meta``, wandb link, and its last history records."""
    from ml_manager.run import MLRun

    run = MLRun.attach(run_dir)
    return {
        "project_name": run.project_name,
        "run_id": run.run_id,
        "config": data.as_json(run.config),
        "metrics": data.as_json(run.metrics),
        "meta": data.as_json(run.meta),
        "wandb_url": run.get_wandb_url(),
        "metric_names": history.metric_names(),
        "records": history.records,
        "history": [data.as_json(r) for r in history.tail],
    }


def serve(base_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8765, open_browser: bool = False) -> None:
    """Serve the page until interrupted; messages go to stderr."""
    import uvicorn

    if not is_loopback(host):
        print(
            f"ml-manager: warning: serving on {host}: anyone who can reach this address can read every run "
            "under the base directory (an SSH tunnel to 127.0.0.1 keeps it private)",
            file=sys.stderr,
        )
    app = make_app(base_dir, host=host)
    shown = "localhost" if is_loopback(host) else f"[{host}]" if ":" in host else host
    url = f"http://{shown}:{port}/"
    print(f"ml-manager: serving {Path(base_dir).resolve()} at {url} (Ctrl-C to stop)", file=sys.stderr)
    if open_browser:
        import webbrowser

        threading.Timer(0.5, webbrowser.open, args=(url,)).start()
    uvicorn.run(app, host=host, port=port, log_level="warning")
