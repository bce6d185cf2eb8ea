"""The ``ml-manager`` command, run as a real subprocess on runs created through the API."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ml_manager import MLProject, MLRun

CONFIGS = [
    {"lr": 0.1, "model": {"name": "CNN", "layers": 4}, "seed": 1},
    {"lr": 0.01, "model": {"name": "BERT", "layers": 4}, "seed": 1},
    {"lr": 0.001, "model": {"name": "CNN", "layers": 4}, "seed": 1},
]


def cli(*args: str, env: dict[str, str] | None = None, width: int = 200) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": str(width), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "ml_manager", *args],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )


@pytest.fixture
def runs(base_dir: Path) -> list[MLRun]:
    made = []
    for i, config in enumerate(CONFIGS):
        run = MLRun.create(config, base_dir, "vision" if i < 2 else "text")
        run.add_metrics({"accuracy": 0.8 + i / 20, "loss": 1 / (i + 1)})
        run.finish()
        made.append(run)
    return made


def _no_traceback(done: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


# -- ls -------------------------------------------------------------------------------------------------------


def test_ls_csv_is_the_project_table(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "--format", "csv")
    assert done.returncode == 0, done.stderr
    got = pd.read_csv(io.StringIO(done.stdout))
    df = MLProject(base_dir).df
    assert list(got["run_id"]) == list(df["run_id"])
    assert list(got.columns) == ["run_id", "project_name", "status", "created", "lr", "model.name", "accuracy", "loss"]
    assert list(got["lr"]) == list(df["lr"])
    assert list(got["model.name"]) == list(df["model.name"])
    assert list(got["accuracy"]) == list(df["accuracy"])
    assert list(got["status"]) == ["finished"] * 3
    # Config keys every run shares (seed, model.layers) are left out of the default view.
    assert "seed" not in got.columns


def test_ls_json_with_chosen_columns_matches_the_frame(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "-f", "json", "--columns", "run_id,model.layers,loss,_meta.status")
    assert done.returncode == 0, done.stderr
    want = MLProject(base_dir).df[["run_id", "model.layers", "loss", "_meta.status"]].to_dict("records")
    assert json.loads(done.stdout) == want
    assert done.stderr == ""


def test_ls_query_sort_limit_and_project(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "-f", "json", "-q", "`model.name` == 'CNN'", "--sort", "accuracy", "--desc")
    assert [row["run_id"] for row in json.loads(done.stdout)] == [runs[2].run_id, runs[0].run_id]
    done = cli("ls", str(base_dir), "-f", "json", "--sort", "loss", "--limit", "1")
    assert [row["run_id"] for row in json.loads(done.stdout)] == [runs[2].run_id]
    done = cli("ls", str(base_dir), "-f", "json", "--project", "text")
    assert [row["run_id"] for row in json.loads(done.stdout)] == [runs[2].run_id]


def test_ls_table_fits_the_terminal_and_says_what_it_left_out(base_dir: Path, runs: list[MLRun]) -> None:
    wide = cli("ls", str(base_dir))
    assert wide.returncode == 0
    assert wide.stderr == ""
    assert all(run.run_id in wide.stdout for run in runs)
    assert "accuracy" in wide.stdout.splitlines()[0]
    narrow = cli("ls", str(base_dir), width=60)
    assert narrow.returncode == 0
    assert max(len(line) for line in narrow.stdout.splitlines()) <= 60
    assert "left out to fit the terminal" in narrow.stderr
    # The config goes first, the metrics stay.
    assert "model.name" in narrow.stderr
    assert "accuracy" in narrow.stdout.splitlines()[0]


def test_ls_markdown(base_dir: Path, runs: list[MLRun]) -> None:
    lines = cli("ls", str(base_dir), "-f", "markdown").stdout.splitlines()
    assert lines[0].startswith("| run_id")
    assert len(lines) == 2 + len(runs)


def test_ls_nothing_found_exits_1(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "-q", "accuracy > 2")
    assert done.returncode == 1
    assert done.stdout == ""
    _no_traceback(done)


def test_machine_output_stays_clean_when_a_run_is_skipped(base_dir: Path, runs: list[MLRun]) -> None:
    (runs[1].run_dir / "config.toml").write_text("lr = [")
    done = cli("ls", str(base_dir), "-f", "csv")
    assert done.returncode == 0
    assert list(pd.read_csv(io.StringIO(done.stdout))["run_id"]) == [runs[0].run_id, runs[2].run_id]
    assert "warning: skipping run" in done.stderr
    assert str(runs[1].run_dir / "config.toml") in done.stderr
    _no_traceback(done)


# -- show, diff -----------------------------------------------------------------------------------------------


def test_show_json_is_the_run(base_dir: Path, runs: list[MLRun]) -> None:
    run = runs[1]
    done = cli("show", run.run_id, "--base-dir", str(base_dir), "-f", "json")
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)
    loaded = MLRun.load(run.run_id, base_dir)
    assert shown["config"] == loaded.config
    assert shown["metrics"] == loaded.metrics
    assert shown["meta"]["status"] == "finished"
    assert shown["meta"]["hostname"] == loaded.meta["hostname"]
    assert shown["project_name"] == "vision"
    assert shown["wandb_url"] is None  # wandb disabled


def test_show_text_names_every_section(base_dir: Path, runs: list[MLRun]) -> None:
    out = cli("show", runs[0].run_id, "-d", str(base_dir)).stdout
    for expected in ("[config]", "model.name", "CNN", "[metrics]", "accuracy", "[meta]", "status", "wandb: -"):
        assert expected in out


def test_show_gives_the_wandb_url_of_an_offline_run(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = MLRun.create({"lr": 1}, base_dir, "demo", entity="team")
    run.finish()
    out = cli("show", run.run_id, "-d", str(base_dir)).stdout
    assert f"wandb: https://wandb.ai/team/demo/runs/{run.run_id}" in out


def test_diff_lists_only_what_differs(base_dir: Path, runs: list[MLRun]) -> None:
    ids = [run.run_id for run in runs]
    done = cli("diff", *ids, "-d", str(base_dir), "-f", "json")
    assert done.returncode == 0, done.stderr
    rows = {row["key"]: row for row in json.loads(done.stdout)}
    assert set(rows) == {"config.lr", "config.model.name", "metrics.accuracy", "metrics.loss"}
    assert [rows["config.lr"][i] for i in ids] == [0.1, 0.01, 0.001]
    table = cli("diff", ids[0], ids[1], "-d", str(base_dir)).stdout
    assert "config.model.name" in table
    assert "seed" not in table


def test_diff_shows_a_key_one_run_lacks(base_dir: Path) -> None:
    a = MLRun.create({"lr": 1}, base_dir, "p")
    b = MLRun.create({"lr": 1, "warmup": 5}, base_dir, "p")
    rows = json.loads(cli("diff", a.run_id, b.run_id, "-d", str(base_dir), "-f", "json").stdout)
    assert rows == [{"key": "config.warmup", a.run_id: None, b.run_id: 5}]
    a.finish()
    b.finish()


def test_diff_of_identical_runs_finds_nothing(base_dir: Path) -> None:
    a = MLRun.create({"lr": 1}, base_dir, "p")
    b = MLRun.create({"lr": 1}, base_dir, "p")
    done = cli("diff", a.run_id, b.run_id, "-d", str(base_dir))
    assert done.returncode == 1
    assert "no differences" in done.stderr
    a.finish()
    b.finish()


# -- export ---------------------------------------------------------------------------------------------------


def test_export_csv_and_json_hold_the_whole_table(base_dir: Path, runs: list[MLRun], tmp_path: Path) -> None:
    df = MLProject(base_dir).df
    for form in ("csv", "json"):
        out = tmp_path / f"runs.{form}"
        done = cli("export", str(base_dir), "--format", form, "-o", str(out))
        assert done.returncode == 0, done.stderr
        assert done.stdout == ""
        got = pd.read_csv(out) if form == "csv" else pd.DataFrame(json.loads(out.read_text()))
        assert list(got.columns) == list(df.columns)
        assert list(got["run_id"]) == list(df["run_id"])
        assert list(got["accuracy"]) == list(df["accuracy"])


def test_export_parquet_round_trips(base_dir: Path, runs: list[MLRun], tmp_path: Path) -> None:
    out = tmp_path / "runs.parquet"
    done = cli("export", str(base_dir), "-f", "parquet", "-o", str(out))
    assert done.returncode == 0, done.stderr
    got, df = pd.read_parquet(out), MLProject(base_dir).df
    assert list(got.columns) == list(df.columns)
    assert list(got["run_id"]) == list(df["run_id"])
    assert list(got["lr"]) == list(df["lr"])


def test_export_parquet_without_pyarrow_says_so(base_dir: Path, runs: list[MLRun], tmp_path: Path) -> None:
    # Fault injection: this child cannot import pyarrow, as on a machine without it.
    code = (
        "import sys; sys.modules['pyarrow'] = None; from ml_manager.cli import main; "
        f"sys.exit(main(['export', {str(base_dir)!r}, '-f', 'parquet', '-o', {str(tmp_path / 'x.parquet')!r}]))"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "needs pyarrow" in done.stderr
    assert not (tmp_path / "x.parquet").exists()
    _no_traceback(done)


def test_json_export_is_strict_json(base_dir: Path, tmp_path: Path) -> None:
    run = MLRun.create({"lr": 1}, base_dir, "p")
    run.add_metrics({"loss": math.nan, "best": math.inf})
    run.finish()
    done = cli("export", str(base_dir), "-f", "json", "-o", "-")

    def refuse(token: str) -> Any:
        raise AssertionError(f"non-standard JSON token {token}")

    rows = json.loads(done.stdout, parse_constant=refuse)
    assert rows[0]["loss"] is None
    assert rows[0]["best"] == "inf"


# -- bad input ------------------------------------------------------------------------------------------------


def test_unknown_run_is_one_line_exit_1(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("show", "nosuchid", "-d", str(base_dir))
    assert done.returncode == 1
    assert "no run 'nosuchid'" in done.stderr
    _no_traceback(done)


def test_ambiguous_run_id_names_the_projects(base_dir: Path) -> None:
    first = MLRun.create({"lr": 1}, base_dir, "alpha", run_id="same")
    second = MLRun.create({"lr": 2}, base_dir, "beta", run_id="same")
    first.finish()
    second.finish()
    done = cli("show", "same", "-d", str(base_dir))
    assert done.returncode == 2
    assert "alpha" in done.stderr
    assert "beta" in done.stderr
    assert "--project" in done.stderr
    _no_traceback(done)
    chosen = cli("show", "same", "-d", str(base_dir), "--project", "beta", "-f", "json")
    assert json.loads(chosen.stdout)["config"] == {"lr": 2}


def test_malformed_query_is_one_line_exit_2(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "-q", "accuracy >")
    assert done.returncode == 2
    assert "bad query" in done.stderr
    assert done.stdout == ""
    _no_traceback(done)


def test_unknown_column_is_one_line_exit_2(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", str(base_dir), "--sort", "nope")
    assert done.returncode == 2
    assert "unknown column 'nope'" in done.stderr
    _no_traceback(done)


@pytest.mark.parametrize("command", ["ls", "export", "doctor"])
def test_missing_base_directory_is_one_line_exit_2(tmp_path: Path, command: str) -> None:
    extra = ["-f", "csv", "-o", str(tmp_path / "out.csv")] if command == "export" else []
    done = cli(command, str(tmp_path / "missing"), *extra)
    assert done.returncode == 2
    assert "no such base directory" in done.stderr
    _no_traceback(done)


def test_a_file_as_base_directory_is_one_line_exit_2(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    done = cli("ls", str(tmp_path / "file"))
    assert done.returncode == 2
    assert "not a directory" in done.stderr
    _no_traceback(done)


def test_unreadable_run_file_is_a_warning_and_the_rest_is_listed(base_dir: Path, runs: list[MLRun]) -> None:
    config = runs[0].run_dir / "config.toml"
    config.unlink()
    config.mkdir()  # unreadable as a file, even by root
    done = cli("ls", str(base_dir), "-f", "csv")
    assert done.returncode == 0
    assert list(pd.read_csv(io.StringIO(done.stdout))["run_id"]) == [runs[1].run_id, runs[2].run_id]
    assert f"skipping run {runs[0].run_dir}" in done.stderr
    _no_traceback(done)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a directory whatever its mode")
def test_unreadable_project_directory_is_a_warning(base_dir: Path, runs: list[MLRun]) -> None:
    (base_dir / "text").chmod(0)
    try:
        done = cli("ls", str(base_dir), "-f", "csv")
    finally:
        (base_dir / "text").chmod(0o755)
    assert done.returncode == 0
    assert list(pd.read_csv(io.StringIO(done.stdout))["run_id"]) == [runs[0].run_id, runs[1].run_id]
    assert "Permission denied" in done.stderr


def test_usage_errors_exit_2() -> None:
    assert cli().returncode == 2
    assert cli("ls", "--limit", "0").returncode == 2
    assert cli("diff", "onlyone").returncode == 2


def test_console_script_and_help() -> None:
    script = Path(sys.executable).with_name("ml-manager")
    done = subprocess.run([str(script), "--help"], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0
    for command in ("ls", "show", "diff", "export", "doctor"):
        assert command in done.stdout


def test_base_dir_from_the_environment(base_dir: Path, runs: list[MLRun]) -> None:
    done = cli("ls", "-f", "json", env={"ML_MANAGER_BASE_DIR": str(base_dir)})
    assert len(json.loads(done.stdout)) == 3


def test_a_table_written_to_a_file_or_pipe_keeps_every_column(base_dir: Path, runs: list[MLRun]) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "COLUMNS"}
    done = subprocess.run(
        [sys.executable, "-m", "ml_manager", "ls", str(base_dir)],
        check=False,
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert done.returncode == 0
    assert done.stderr == ""
    header = done.stdout.splitlines()[0].split()
    assert header == ["run_id", "project_name", "status", "created", "lr", "model.name", "accuracy", "loss"]


# -- the base directory, every way ----------------------------------------------------------------------------


def _every_command(base_dir: Path, runs: list[MLRun], out: Path) -> dict[str, list[str]]:
    """Each subcommand's arguments but the base directory (the ui is started on its own below)."""
    return {
        "ls": ["ls", "--format", "csv"],
        "show": ["show", runs[0].run_id, "--format", "json"],
        "diff": ["diff", runs[0].run_id, runs[1].run_id, "--format", "csv"],
        "export": ["export", "--format", "json", "--output", str(out / "export.json")],
        "doctor": ["doctor"],
        "report": ["report", "--output", str(out / "report.html")],
    }


def test_every_command_takes_the_base_directory_as_an_option_and_from_the_environment(
    base_dir: Path, runs: list[MLRun], tmp_path: Path
) -> None:
    for name, args in _every_command(base_dir, runs, tmp_path).items():
        by_option = cli(*args, "-d", str(base_dir))
        by_long_option = cli(*args, "--base-dir", str(base_dir))
        by_variable = cli(*args, env={"ML_MANAGER_BASE_DIR": str(base_dir)})
        assert by_option.returncode == 0, (name, by_option.stderr)
        assert by_long_option.stdout == by_option.stdout, name
        assert by_variable.stdout == by_option.stdout, name
    assert runs[0].run_id in cli("ls", "--base-dir", str(base_dir)).stdout


def test_table_commands_take_it_as_their_last_positional_too(base_dir: Path, runs: list[MLRun], tmp_path: Path) -> None:
    for name in ("ls", "export", "doctor", "report"):
        args = _every_command(base_dir, runs, tmp_path)[name]
        by_option = cli(*args, "-d", str(base_dir))
        by_position = cli(args[0], str(base_dir), *args[1:])
        assert by_position.returncode == 0, (name, by_position.stderr)
        assert by_position.stdout == by_option.stdout, name
    twice = cli("ls", str(base_dir), "-d", str(tmp_path))
    assert twice.returncode == 2
    assert "two base directories" in twice.stderr
    assert cli("ls", str(base_dir), "-d", str(base_dir)).returncode == 0  # the same one twice is fine


@pytest.mark.parametrize("way", ["positional", "option"])
def test_the_ui_serves_the_base_directory_given_either_way(base_dir: Path, runs: list[MLRun], way: str) -> None:
    import urllib.request

    from _ui_process import ui_process

    where = [str(base_dir)] if way == "positional" else ["-d", str(base_dir)]
    with ui_process(*where) as url, urllib.request.urlopen(url + "api/runs", timeout=30) as answer:
        table = json.load(answer)
    assert len(table["rows"]) == len(runs)
