"""``ml-manager report``: the runs page as one self-contained HTML file (data, uPlot and the page inlined)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import data
from .server import run_details, static_text

if TYPE_CHECKING:
    from collections.abc import Sequence

_STYLES = re.compile(r"<!--STYLES-->.*?<!--/STYLES-->", re.DOTALL)
_SCRIPTS = re.compile(r"<!--SCRIPTS-->.*?<!--/SCRIPTS-->", re.DOTALL)
# Buckets per series in the file (each keeps its lowest and highest point), and the significant digits kept of
# a value: a report of 100 runs x 10,000 steps x 5 metrics stays a few MB, and the charts look the same.
REPORT_WIDTH = 300
REPORT_DIGITS = 6


def build_report(base_dir: str | Path, *, query: str | None = None, metrics: Sequence[str] | None = None) -> str:
    """The page, with every run the query selects and their history (downsampled, spikes kept) inlined.

    Raises:
        data.QueryError: a query that is not allowed, or a metric no run has.
    """
    snapshot = data.Snapshot(base_dir)
    table = snapshot.table(query)
    if metrics:
        unknown = [m for m in metrics if m not in table["metrics"]]
        if unknown:
            raise data.QueryError(f"unknown metric {unknown[0]!r}; the metrics are: {', '.join(table['metrics'])}")
        table["metrics"] = list(metrics)
        every_metric = set(snapshot.project.metric_columns)
        keep = [i for i, c in enumerate(table["columns"]) if c not in every_metric or c in metrics]
        table["columns"] = [table["columns"][i] for i in keep]
        table["rows"] = [[row[i] for i in keep] for row in table["rows"]]
    histories: dict[str, dict[str, Any]] = {}
    runs: dict[str, Any] = {}
    for row in table["rows"]:
        project_name, run_id = str(row[0]), str(row[1])
        run_dir = Path(base_dir) / project_name / run_id
        history = data.read_history(run_dir)
        key = f"{project_name}/{run_id}"
        histories[key] = {
            m: data.series(history, m, width=REPORT_WIDTH, digits=REPORT_DIGITS) for m in table["metrics"]
        }
        details = run_details(run_dir, history)
        details["history"] = details["history"][-20:]
        runs[key] = details
    payload = {"table": table, "histories": histories, "runs": runs, "query": query or ""}
    return inline_page(payload)


def inline_page(payload: dict[str, Any]) -> str:
    """index.html with its styles, scripts and ``payload`` inside: it asks the network for nothing."""
    page = static_text("index.html")
    styles = f"<style>{static_text('uPlot.min.css')}\n{static_text('app.css')}</style>"
    scripts = "\n".join(f"<script>{_script(static_text(name))}</script>" for name in ("uPlot.iife.min.js", "app.js"))
    blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    # No '<' at all in the data: neither '</script>' nor '<!--' can change how the page's parser reads it.
    blob = blob.replace("<", "\\u003c")
    inline = f"<script>window.ML_MANAGER_DATA = JSON.parse({json.dumps(blob)});</script>"
    page = _STYLES.sub(lambda _: styles, page)
    page = _SCRIPTS.sub(lambda _: scripts, page)
    return page.replace("{{INLINE}}", inline)


def _script(text: str) -> str:
    # Nothing inside a <script> may close it.
    return text.replace("</", "<\\/")
