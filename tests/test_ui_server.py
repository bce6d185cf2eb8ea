"""The UI's server: what it answers, what it refuses (Host, methods, paths, queries), what it binds."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import pytest

from ml_manager import MLRun
from ml_manager._ui import data
from ml_manager._ui.server import allowed_hosts, make_app
from ml_manager.cli import _parser

pytest.importorskip("httpx", reason="httpx is not installed (the test extra): starlette's TestClient needs it")

from starlette.testclient import TestClient

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


def make_runs(base_dir: Path) -> list[MLRun]:
    runs = []
    for lr in (0.1, 0.01):
        with MLRun.create({"lr": lr, "model": {"name": "mlp"}}, base_dir, "demo") as run:
            for step in range(50):
                run.log({"loss": math.exp(-lr * step), "acc": step / 50}, step=step)
        runs.append(run)
    return runs


@pytest.fixture
def client(base_dir: Path) -> Iterator[TestClient]:
    make_runs(base_dir)
    with TestClient(make_app(base_dir), base_url="http://127.0.0.1:8765") as test_client:
        yield test_client


def test_the_runs_table_lists_every_run_with_what_differs_and_the_metrics(
    client: TestClient,
) -> None:
    table = client.get("/api/runs").json()
    assert table["columns"] == ["project_name", "run_id", "status", "created", "lr", "acc", "loss"]
    assert table["config"] == ["lr"]  # model.name is the same everywhere
    assert sorted(row[4] for row in table["rows"]) == [0.01, 0.1]
    assert {row[2] for row in table["rows"]} == {"finished"}


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("lr < 0.05", [0.01]),
        ("not lr > 0.05", [0.01]),
        ("0.001 < lr < 0.05", [0.01]),
        ("lr in [0.1, 7]", [0.1]),
        ("lr not in (0.1,)", [0.01]),
        ("lr == 0.1 or `model.name` != 'mlp'", [0.1]),
        ("lr > -1 and not (lr >= 0.1)", [0.01]),
    ],
)
def test_the_query_language(client: TestClient, query: str, expected: list[float]) -> None:
    table = client.get("/api/runs", params={"q": query}).json()
    assert sorted(row[4] for row in table["rows"]) == expected


def test_a_query_filters_the_table(client: TestClient) -> None:
    table = client.get("/api/runs", params={"q": "lr < 0.05 and `model.name` == 'mlp'"}).json()
    assert [row[4] for row in table["rows"]] == [0.01]


@pytest.mark.parametrize(
    "query",
    [
        "lr.__class__",
        "__import__('os').system('true')",
        "lr < @limit",
        "len(lr) > 0",
        "lr + 1 > 2",
        "nope > 1",
        "`no.such` == 1",
        "lr <",
        "0",
        "[0, 0, 0]",
        "not " * 3000 + "lr > 0",
        "(" * 300 + "lr > 0" + ")" * 300,
        "lr > 0 or " * 500 + "lr > 0",
        "lr in lr",
        "lr > [1, 2]",
        # A comparison inside a comparison: pandas would evaluate it twice per level, exponentially.
        "(False <= (False <= (project_name == 'x') <= True) <= True)",
    ],
)
def test_a_query_that_is_more_than_names_literals_and_comparisons_gets_400(client: TestClient, query: str) -> None:
    response = client.get("/api/runs", params={"q": query})
    assert response.status_code == 400
    assert response.json()["error"]


def test_a_request_for_another_host_name_is_refused(client: TestClient) -> None:
    assert client.get("/", headers={"Host": "attacker.example"}).status_code == 400
    assert client.get("/api/runs", headers={"Host": "127.0.0.1.attacker.example:8765"}).status_code == 400
    assert client.get("/api/runs", headers={"Host": "localhost:8765"}).status_code == 200


@pytest.mark.parametrize("path", ["/", "/api/runs", "/api/history", "/static/app.js"])
def test_only_get_is_answered(client: TestClient, path: str) -> None:
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert client.request(method, path).status_code == 405
    assert "access-control-allow-origin" not in client.get(path).headers


@pytest.mark.parametrize(
    "path",
    [
        "/static/../server.py",
        "/static/..%2Fserver.py",
        "/static/%2E%2E%2F%2E%2E%2Frun.py",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/index.html.bak",
        "/../../etc/passwd",
        "/api/../static/app.js/..",
    ],
)
def test_paths_outside_the_page_files_are_not_found(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404


@pytest.mark.parametrize(
    ("project", "run"), [("demo", "../demo"), ("..", "demo"), ("/etc", "passwd"), ("demo", "nope")]
)
def test_a_run_is_found_only_among_the_scanned_runs(client: TestClient, project: str, run: str) -> None:
    assert client.get("/api/history", params={"project": project, "run": run, "metric": "loss"}).status_code == 404
    assert client.get("/api/run", params={"project": project, "run": run}).status_code == 404


def test_history_and_run_page(client: TestClient) -> None:
    project, run_id = client.get("/api/runs").json()["rows"][0][:2]
    names = client.get("/api/history", params={"project": project, "run": run_id}).json()["metrics"]
    assert names == ["loss", "acc"]
    found = client.get("/api/history", params={"project": project, "run": run_id, "metric": "acc"}).json()
    (series,) = found["series"]
    assert series["x"] == list(range(50))
    assert series["y"] == [step / 50 for step in range(50)]
    zoom = client.get(
        "/api/history", params={"project": project, "run": run_id, "metric": "acc", "start": 10, "end": 19}
    ).json()
    assert zoom["series"][0]["x"] == list(range(10, 20))
    page = client.get("/api/run", params={"project": project, "run": run_id}).json()
    assert page["config"]["model"] == {"name": "mlp"}
    assert page["meta"]["status"] == "finished"
    assert page["records"] == 50
    assert (
        client.get("/api/history", params={"project": project, "run": run_id, "metric": "acc", "x": "bad"}).status_code
        == 400
    )


def test_the_page_and_its_files_are_served(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200
    assert "uPlot.iife.min.js" in page.text
    assert client.get("/static/uPlot.iife.min.js").headers["content-type"].startswith("text/javascript")


def test_the_default_bind_address_is_loopback() -> None:
    args = _parser().parse_args(["ui"])
    assert args.host == "127.0.0.1"
    assert set(allowed_hosts("127.0.0.1")) == {"127.0.0.1", "localhost", "::1"}


def test_downsampling_keeps_every_bucket_extreme_and_both_ends() -> None:
    np = pytest.importorskip("numpy")

    points = [(float(i), 0.0) for i in range(100_000)]
    points[54_321] = (54_321.0, 1e9)  # one spike
    points[77_777] = (77_777.0, -1e9)  # one dip
    xs, ys = (np.array(column, dtype=np.float64) for column in zip(*points, strict=True))
    kept = [points[i] for i in data.downsample_indices(xs, ys, 500).tolist()]
    assert len(kept) <= 2 * 500 + 2
    assert kept[0] == points[0]
    assert kept[-1] == points[-1]
    assert (54_321.0, 1e9) in kept
    assert (77_777.0, -1e9) in kept
    assert [p[0] for p in kept] == sorted(p[0] for p in kept)


def test_the_history_reader_reads_only_what_a_file_gained_and_never_half_a_line(tmp_path: Path) -> None:
    history = tmp_path / "run" / "history"
    history.mkdir(parents=True)
    path = history / "host-1.jsonl"

    def line(step: int) -> bytes:
        return b'{"step":%d,"time":1.0,"writer":"w","metrics":{"loss":%d}}\n' % (step, step)

    def steps() -> list[float]:
        run = reader.read(tmp_path / "run")
        return run.columns["loss"]["w"].steps if "loss" in run.columns else []

    path.write_bytes(line(0) + line(1))
    reader = data.HistoryReader()
    assert steps() == [0, 1]
    with path.open("ab") as file:
        file.write(line(2) + line(3)[:10])  # a writer in the middle of a record
    assert steps() == [0, 1, 2]
    assert reader.runs[tmp_path / "run"].files[str(path)][1] == len(line(0) + line(1) + line(2))
    with path.open("ab") as file:
        file.write(line(3)[10:] + b'{"step":4,"time":NaN,"writer":"w","metrics":{"loss":NaN}}\n')
    assert steps() == [0, 1, 2, 3, 4]
    assert math.isnan(reader.read(tmp_path / "run").columns["loss"]["w"].values[-1])
    path.write_bytes(line(7))  # cut back (a failed append undone), or replaced: read again whole
    assert steps() == [7]


def test_requests_made_by_another_sites_page_are_refused(client: TestClient) -> None:
    assert client.get("/api/runs", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 403
    assert client.get("/api/runs", headers={"Sec-Fetch-Site": "same-site"}).status_code == 403
    assert client.get("/api/runs", headers={"Sec-Fetch-Site": "same-origin"}).status_code == 200
    assert client.get("/api/runs", headers={"Sec-Fetch-Site": "none"}).status_code == 200  # typed in the bar


def test_host_names_of_the_bound_address() -> None:
    from ml_manager._ui.server import _Guard

    loopback = _Guard(None, "127.0.0.1")
    assert loopback.refuse("[::1]:8765", "") is None
    assert loopback.refuse("LOCALHOST:8765", "") is None
    assert loopback.refuse("192.168.1.5:8765", "") is not None
    assert loopback.refuse("localhost.:8765", "") is not None
    everywhere = _Guard(None, "0.0.0.0")
    assert everywhere.refuse("192.168.1.5:8765", "") is None  # any address of this machine
    assert everywhere.refuse("rebound.attacker.example:8765", "") is not None  # never a foreign name


def test_the_report_keeps_any_text_of_a_run_inside_its_data(base_dir: Path) -> None:
    import json
    import re

    from ml_manager._ui.report import build_report

    hostile = "</script><!--<script>alert(1)</script>"
    with MLRun.create({"note": hostile}, base_dir, "demo") as run:
        run.log({"loss": 1.0}, step=0)
    page = build_report(base_dir)
    assert page.count("<script>") == 3  # uPlot, the page's script, the data: nothing more
    assert "<!--" not in page.split("window.ML_MANAGER_DATA", 1)[1]
    literal = re.search(r'JSON\.parse\((".*?")\);</script>', page, re.DOTALL)
    assert literal is not None
    payload = json.loads(json.loads(literal.group(1)))
    assert payload["runs"][f"demo/{run.run_id}"]["config"]["note"] == hostile
