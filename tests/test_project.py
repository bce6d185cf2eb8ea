"""MLProject as the original API reference documents it, plus skipping bad runs and the collision rule."""

from __future__ import annotations

import contextlib
import os
import pty
import subprocess
import sys
from typing import TYPE_CHECKING

import pandas as pd
import pytest

from ml_manager import AmbiguousRunError, CorruptRunFileError, MLProject, MLRun, RunNotFoundError
from ml_manager.errors import MLManagerWarning

if TYPE_CHECKING:
    from pathlib import Path


def _run(base_dir: Path, project: str, config: dict[str, object], metrics: dict[str, object], **kw: object) -> MLRun:
    run = MLRun.create(config, base_dir, project, **kw)  # type: ignore[arg-type]
    run.add_metrics(metrics)
    run.finish()
    return run


@pytest.fixture
def two_runs(base_dir: Path) -> tuple[MLRun, MLRun]:
    cnn = _run(base_dir, "demo", {"lr": 0.001, "model": {"name": "CNN", "layers": 5}}, {"accuracy": 0.92, "epoch": 10})
    bert = _run(base_dir, "demo", {"lr": 5e-5, "model": {"name": "BERT", "layers": 12}}, {"accuracy": 0.96, "epoch": 5})
    return cnn, bert


def test_init_scans_base_dir_immediately(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    project = MLProject(base_dir=base_dir)
    assert list(project.df["run_id"]) == [two_runs[0].run_id, two_runs[1].run_id]


def test_load_project_refreshes_the_dataframe(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    project = MLProject(base_dir)
    third = _run(base_dir, "other", {"lr": 0.1}, {"accuracy": 0.5})
    assert third.run_id not in set(project.df["run_id"])
    df = project.load_project()
    assert df is project.df
    assert set(df["run_id"]) == {two_runs[0].run_id, two_runs[1].run_id, third.run_id}


def test_df_has_ids_flattened_config_metrics_and_meta_columns(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    df = MLProject(base_dir).df
    assert list(df.columns[:2]) == ["run_id", "project_name"]
    for column in ("lr", "model.name", "model.layers", "accuracy", "epoch", "_meta.status", "_wandb.id"):
        assert column in df.columns
    assert list(df["model.name"]) == ["CNN", "BERT"]
    assert set(df["_meta.status"]) == {"finished"}
    assert "_meta.python_types" not in df.columns


def test_numeric_columns_keep_numeric_dtypes(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    df = MLProject(base_dir).df
    for column in ("lr", "model.layers", "accuracy", "epoch"):
        assert pd.api.types.is_numeric_dtype(df[column]), column
    assert pd.api.types.is_integer_dtype(df["epoch"])
    assert pd.api.types.is_datetime64_any_dtype(df["_meta.created_at"])


def test_a_key_in_both_config_and_metrics_keeps_both_values(base_dir: Path) -> None:
    _run(base_dir, "demo", {"lr": 0.1, "run_id": "cfg"}, {"lr": 0.0125})
    _run(base_dir, "demo", {"lr": 0.2}, {"accuracy": 1.0})
    df = MLProject(base_dir).df
    assert list(df["config.lr"]) == [0.1, 0.2]
    assert df["lr"].iloc[0] == 0.0125
    assert pd.isna(df["lr"].iloc[1])
    assert list(df["config.run_id"].fillna("")) == ["cfg", ""]


def test_search_filters_with_pandas_query_syntax(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    project = MLProject(base_dir)
    best = project.search(query_string="accuracy > 0.95")
    assert list(best["run_id"]) == [two_runs[1].run_id]
    cnn = project.search("`model.name` == 'CNN' and accuracy > 0.9")
    assert list(cnn["run_id"]) == [two_runs[0].run_id]


def test_search_can_return_run_objects(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    runs = MLProject(base_dir).search("epoch >= 5", return_objects=True)
    assert [r.run_id for r in runs] == [two_runs[0].run_id, two_runs[1].run_id]
    assert all(isinstance(r, MLRun) and r.wandb_run is None for r in runs)
    assert runs[1].metrics == {"accuracy": 0.96, "epoch": 5}


def test_get_run_loads_one_run(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    project = MLProject(base_dir)
    run = project.get_run(two_runs[0].run_id)
    assert run.config == two_runs[0].config
    assert run.metrics == two_runs[0].metrics
    assert project.get_run(two_runs[0].run_id, project_name="demo").run_dir == two_runs[0].run_dir
    with pytest.raises(RunNotFoundError):
        project.get_run("missing")


def test_get_run_of_an_id_in_two_projects_names_both(base_dir: Path) -> None:
    _run(base_dir, "alpha", {}, {"a": 1}, run_id="twin")
    _run(base_dir, "beta", {}, {"a": 2}, run_id="twin")
    project = MLProject(base_dir)
    with pytest.raises(AmbiguousRunError, match="'alpha', 'beta'"):
        project.get_run("twin")
    assert project.get_run("twin", "beta").metrics == {"a": 2}


@pytest.mark.parametrize(
    ("file", "content"),
    [("metrics.toml", b"accuracy = 0."), ("config.toml", b"\xff\xfe\x00garbage"), ("metrics.toml", b"[a]\n[a]\n")],
)
def test_a_corrupt_run_is_skipped_with_one_warning_and_listed(
    base_dir: Path, two_runs: tuple[MLRun, MLRun], file: str, content: bytes
) -> None:
    broken = two_runs[0]
    (broken.run_dir / file).write_bytes(content)
    with pytest.warns(MLManagerWarning, match=broken.run_id) as caught:
        project = MLProject(base_dir)
    assert len(caught) == 1
    assert list(project.df["run_id"]) == [two_runs[1].run_id]
    assert [type(e) for e in project.skipped] == [CorruptRunFileError]
    assert project.skipped[0].path == str(broken.run_dir / file)


def test_a_directory_where_a_file_should_be_is_skipped(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    (two_runs[0].run_dir / "metrics.toml").unlink()
    (two_runs[0].run_dir / "metrics.toml").mkdir()
    with pytest.warns(MLManagerWarning):
        project = MLProject(base_dir)
    assert list(project.df["run_id"]) == [two_runs[1].run_id]
    with pytest.raises(CorruptRunFileError, match=r"metrics\.toml"):
        MLRun.load(two_runs[0].run_id, base_dir)


def test_a_run_still_being_created_is_skipped_silently(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    # What create leaves while wandb.init runs: the directory, wandb's files, no config.toml yet.
    (base_dir / "demo" / "halfmade" / "wandb").mkdir(parents=True)
    project = MLProject(base_dir)  # warnings are errors in this suite: none may be raised
    assert len(project.df) == 2
    assert project.skipped == []


def test_an_empty_base_dir_gives_an_empty_frame(base_dir: Path) -> None:
    df = MLProject(base_dir).df
    assert df.empty
    assert list(df.columns) == ["run_id", "project_name"]


def test_a_missing_base_dir_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nowhere"):
        MLProject(tmp_path / "nowhere")


def test_wandb_files_inside_run_dirs_are_not_runs(base_dir: Path) -> None:
    run = _run(base_dir, "demo", {"lr": 0.1}, {"accuracy": 0.5}, mode="offline")
    assert (run.run_dir / "wandb").is_dir()
    assert list(MLProject(base_dir).df["run_id"]) == [run.run_id]


PROGRESS_SCRIPT = """
import sys
from ml_manager import MLProject, project
project._Progress.DELAY = project._Progress.EVERY = 0  # as if every load were slow
MLProject(sys.argv[1])
print("loaded")
"""


def _load_with_stderr(base_dir: Path, stderr: int) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", PROGRESS_SCRIPT, str(base_dir)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        timeout=120,
        check=True,
    )


def test_a_slow_load_shows_progress_on_a_terminal(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    controller, terminal = pty.openpty()
    try:
        done = _load_with_stderr(base_dir, terminal)
        os.close(terminal)
        terminal = -1
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child's side is closed and drained
            while chunk := os.read(controller, 4096):
                shown += chunk
    finally:
        os.close(controller)
        if terminal >= 0:
            os.close(terminal)
    assert b"loading runs: 2/2" in shown
    assert b"loaded 2 runs in" in shown
    assert done.stdout == "loaded\n"  # progress never goes to stdout


def test_no_progress_when_stderr_is_not_a_terminal(base_dir: Path, two_runs: tuple[MLRun, MLRun]) -> None:
    done = _load_with_stderr(base_dir, subprocess.PIPE)
    assert done.stderr == ""
    assert done.stdout == "loaded\n"
