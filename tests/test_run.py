"""MLRun as the original API reference documents it, one test per statement, plus what we added."""

from __future__ import annotations

import math
import string
import subprocess
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pytest

from ml_manager import AmbiguousRunError, MLRun, RunNotFoundError
from ml_manager._storage import read_toml

if TYPE_CHECKING:
    from collections.abc import Callable

CONFIG = {"learning_rate": 0.001, "batch_size": 32, "model": {"name": "CNN", "layers": 5}}


# -- create ------------------------------------------------------------------------------------------------


def test_create_makes_the_run_directory_under_base_project_run_id(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    assert run.run_dir == base_dir / "demo" / run.run_id
    assert run.run_dir.is_dir()
    run.finish()


def test_create_saves_config_with_wandb_and_meta_tables(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", "team")
    document = read_toml(run.run_dir / "config.toml")
    assert {k: document[k] for k in CONFIG} == CONFIG
    assert document["_wandb"] == {"id": run.run_id, "project": "demo", "entity": "team", "mode": "disabled"}
    meta = document["_meta"]
    assert meta["format_version"] == 1
    assert meta["status"] == "running"
    assert meta["created_at"].tzinfo is not None
    for key in ("hostname", "argv", "python", "ml_manager"):
        assert key in meta
    run.finish()


def test_create_records_the_git_commit_of_the_working_directory(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo)]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], check=True)
    (repo / "train.py").write_text("print()\n")
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "first"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    monkeypatch.chdir(repo)
    run = MLRun.create(CONFIG, base_dir, "demo")
    meta = read_toml(run.run_dir / "config.toml")["_meta"]
    assert (meta["git_commit"], meta["git_branch"], meta["git_dirty"]) == (commit, "trunk", False)
    run.finish()


def test_create_calls_wandb_init_with_project_entity_config_and_our_id(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    try:
        assert run.wandb_run is not None
        assert run.wandb_run.id == run.run_id
        assert run.wandb_run.project == "demo"
        assert dict(run.wandb_run.config) == CONFIG
        # wandb's own files live inside the run directory.
        assert list((run.run_dir / "wandb").glob(f"offline-run-*-{run.run_id}"))
    finally:
        run.finish()


def test_create_returns_a_run_with_an_active_wandb_run(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    assert run.wandb_run is not None
    run.wandb_run.log({"probe": 1})  # an active run accepts a log call
    run.finish()


def test_create_with_explicit_run_id_and_refuses_an_existing_one(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", run_id="fixed-id")
    assert run.run_id == "fixed-id"
    with pytest.raises(FileExistsError):
        MLRun.create(CONFIG, base_dir, "demo", run_id="fixed-id")
    run.finish()


@pytest.mark.parametrize("name", ["..", ".", "a/b", "/abs", "", "nul\0byte"])
@pytest.mark.parametrize("field", ["project_name", "run_id"])
def test_bad_names_raise_value_error_and_create_nothing(base_dir: Path, name: str, field: str) -> None:
    kwargs = {"project_name": "demo", "run_id": "ok"} | {field: name}
    with pytest.raises(ValueError, match=field):
        MLRun.create(CONFIG, base_dir, kwargs["project_name"], run_id=kwargs["run_id"])
    assert list(base_dir.iterdir()) == []


def test_bad_names_are_refused_by_load_too(base_dir: Path) -> None:
    with pytest.raises(ValueError, match="run_id"):
        MLRun.load("../x", base_dir)
    with pytest.raises(ValueError, match="project_name"):
        MLRun.load("x", base_dir, project_name="a/b")


def test_reserved_config_keys_are_refused(base_dir: Path) -> None:
    with pytest.raises(ValueError, match="_meta"):
        MLRun.create({"_meta": {}}, base_dir, "demo")
    assert list(base_dir.iterdir()) == []


# -- add_metrics -------------------------------------------------------------------------------------------


def test_add_metrics_updates_the_metrics_attribute(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics({"accuracy": 0.9})
    run.add_metrics({"loss": 0.1})
    assert run.metrics == {"accuracy": 0.9, "loss": 0.1}
    run.finish()


def test_add_metrics_saves_the_entire_metrics_dict_to_metrics_toml(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics({"accuracy": 0.9, "eval": {"f1": 0.5}})
    run.add_metrics({"accuracy": 0.95, "eval": {"recall": 0.7}})
    assert read_toml(run.run_dir / "metrics.toml") == {"accuracy": 0.95, "eval": {"f1": 0.5, "recall": 0.7}}
    run.finish()


def test_add_metrics_logs_to_the_wandb_run(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    run.add_metrics({"accuracy": 0.92, "f1_score": 0.91})
    assert run.wandb_run is not None
    assert run.wandb_run.summary["accuracy"] == 0.92
    assert run.wandb_run.summary["f1_score"] == 0.91
    run.finish()


def test_add_metrics_reflects_other_writers_keys(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    other = MLRun.load(run.run_id, base_dir)
    other.add_metrics({"from_other": 1})
    run.add_metrics({"mine": 2})
    assert run.metrics == {"from_other": 1, "mine": 2}
    run.finish()


def test_add_metrics_normalises_numpy_scalars_and_keeps_non_finite_floats(base_dir: Path) -> None:
    np = pytest.importorskip("numpy")
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics(
        {"f32": np.float32(0.5), "i64": np.int64(7), "flag": np.bool_(True), "nan": float("nan"), "inf": -np.inf}
    )
    stored = MLRun.load(run.run_id, base_dir).metrics
    assert stored["f32"] == 0.5
    assert type(stored["f32"]) is float
    assert stored["i64"] == 7
    assert type(stored["i64"]) is int
    assert stored["flag"] is True
    assert math.isnan(stored["nan"])
    assert stored["inf"] == -math.inf
    run.finish()


@pytest.mark.parametrize(
    ("metrics", "named"),
    [
        ({"eval": {"acc": object()}}, r"metrics\['eval'\]\['acc'\]"),
        ({"loss": None}, r"metrics\['loss'\]"),
        ({1: 0.5}, "key 1"),
        ({"big": 2**70}, r"metrics\['big'\]"),
        ({"hist": [1, None]}, r"metrics\['hist'\]\[1\]"),
        ({"text": "\ud800"}, r"metrics\['text'\]"),
    ],
)
def test_bad_metrics_are_refused_naming_the_key_and_change_nothing(
    base_dir: Path, snapshot: Callable[[Path], dict[str, bytes]], metrics: dict[object, object], named: str
) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics({"accuracy": 0.9})
    before = snapshot(run.run_dir)
    with pytest.raises((TypeError, ValueError), match=named):
        run.add_metrics(metrics)  # type: ignore[arg-type]
    assert snapshot(run.run_dir) == before
    assert run.metrics == {"accuracy": 0.9}
    run.finish()


def test_metrics_that_are_not_a_mapping_are_refused(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    with pytest.raises(TypeError, match="mapping"):
        run.add_metrics([("accuracy", 0.9)])  # type: ignore[arg-type]
    run.finish()


# -- config values -----------------------------------------------------------------------------------------


def test_none_tuples_and_paths_in_config_round_trip_through_load(base_dir: Path) -> None:
    config = {
        "scheduler": None,
        "image_size": (224, 224),
        "data_dir": Path("/data/imagenet"),
        "model": {"dropout": None, "widths": (64, (128, 256)), "ckpt": PurePosixPath("a/b.pt")},
        "stages": [{"name": "warmup", "until": None}],
    }
    run = MLRun.create(config, base_dir, "demo")
    assert run.config == config
    loaded = MLRun.load(run.run_id, base_dir).config
    assert loaded == config
    assert type(loaded["image_size"]) is tuple
    assert type(loaded["model"]["widths"][1]) is tuple
    assert isinstance(loaded["data_dir"], Path)
    # The file stays plain TOML: the key is absent, the tuple an array, the path a string.
    stored = read_toml(run.run_dir / "config.toml")
    assert "scheduler" not in stored
    assert stored["image_size"] == [224, 224]
    assert stored["data_dir"] == "/data/imagenet"
    run.finish()


def test_config_with_unstorable_value_raises_naming_the_key_and_creates_nothing(base_dir: Path) -> None:
    with pytest.raises(TypeError, match=r"config\['model'\]\['act'\]"):
        MLRun.create({"model": {"act": print}}, base_dir, "demo")
    with pytest.raises(ValueError, match=r"config\['ids'\]\[0\]"):
        MLRun.create({"ids": [None]}, base_dir, "demo")
    assert list(base_dir.iterdir()) == []


def test_update_config_merges_nested_keys_and_round_trips_python_types(base_dir: Path) -> None:
    run = MLRun.create({"lr": 0.1, "model": {"layers": 2, "act": "relu"}, "note": None}, base_dir, "demo")
    run.update_config({"model": {"layers": 4, "widths": (8, 8)}, "note": "tuned", "data": Path("/d")})
    expected = {"lr": 0.1, "model": {"layers": 4, "act": "relu", "widths": (8, 8)}, "note": "tuned", "data": Path("/d")}
    assert run.config == expected
    assert run.wandb_run.config["note"] == "tuned"
    loaded = MLRun.load(run.run_id, base_dir)
    assert loaded.config == expected
    assert type(loaded.config["model"]["widths"]) is tuple
    # The replaced None is no longer recorded as one; the run's own tables are kept.
    assert {"path": ["note"], "type": "none"} not in loaded.meta["python_types"]
    assert loaded.meta["status"] == "running"
    assert loaded.wandb_info == run.wandb_info
    # Another handle's update merges with this one's.
    loaded.update_config({"model": {"act": "gelu"}})
    assert MLRun.load(run.run_id, base_dir).config["model"] == {"layers": 4, "act": "gelu", "widths": (8, 8)}
    run.finish()


def test_update_config_refuses_bad_values_before_writing(base_dir: Path) -> None:
    run = MLRun.create({"lr": 0.1}, base_dir, "demo")
    before = (run.run_dir / "config.toml").read_bytes()
    with pytest.raises(TypeError, match=r"config\['opt'\]\['fn'\]"):
        run.update_config({"opt": {"fn": print}})
    with pytest.raises(ValueError, match="reserved"):
        run.update_config({"_meta": {"status": "finished"}})
    with pytest.raises(TypeError, match="mapping"):
        run.update_config([("lr", 1)])  # type: ignore[arg-type]
    assert (run.run_dir / "config.toml").read_bytes() == before
    assert run.config == {"lr": 0.1}
    run.finish()


# -- finish and the context manager -------------------------------------------------------------------------


def test_finish_finishes_the_wandb_run(base_dir: Path) -> None:
    import wandb

    run = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    run.finish()
    assert run.wandb_run is not None
    with pytest.raises(wandb.errors.UsageError, match="finished"):
        run.wandb_run.log({"late": 1})


def test_finish_records_status_and_is_idempotent(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.finish()
    first = (run.run_dir / "config.toml").read_bytes()
    run.finish()
    assert (run.run_dir / "config.toml").read_bytes() == first
    meta = read_toml(run.run_dir / "config.toml")["_meta"]
    assert meta["status"] == "finished"
    assert meta["finished_at"] >= meta["created_at"]
    assert run.status == "finished"


def test_context_manager_finishes_on_exit(base_dir: Path) -> None:
    with MLRun.create(CONFIG, base_dir, "demo") as run:
        run.add_metrics({"accuracy": 0.9})
    assert MLRun.load(run.run_id, base_dir).meta["status"] == "finished"


def test_context_manager_marks_the_run_failed_on_an_exception(base_dir: Path) -> None:
    with pytest.raises(RuntimeError, match="diverged"), MLRun.create(CONFIG, base_dir, "demo") as run:
        raise RuntimeError("diverged")
    assert MLRun.load(run.run_id, base_dir).meta["status"] == "failed"


def test_a_loaded_handle_finishing_does_not_mark_the_run(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    with MLRun.load(run.run_id, base_dir) as worker:
        worker.add_metrics({"worker": 1})
    assert MLRun.load(run.run_id, base_dir).meta["status"] == "running"
    run.finish()


# -- load --------------------------------------------------------------------------------------------------


def test_load_reads_config_and_metrics(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics({"accuracy": 0.9})
    loaded = MLRun.load(run.run_id, base_dir, "demo")
    assert loaded.config == CONFIG
    assert loaded.metrics == {"accuracy": 0.9}
    assert loaded.run_dir == run.run_dir
    assert loaded.project_name == "demo"
    run.finish()


def test_load_without_metrics_file_gives_empty_metrics(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    assert not (run.run_dir / "metrics.toml").exists()
    assert MLRun.load(run.run_id, base_dir).metrics == {}
    run.finish()


def test_load_searches_all_projects_when_no_project_is_given(base_dir: Path) -> None:
    MLRun.create(CONFIG, base_dir, "other").finish()
    run = MLRun.create(CONFIG, base_dir, "demo")
    assert MLRun.load(run.run_id, base_dir).project_name == "demo"
    run.finish()


def test_load_gives_a_run_without_wandb(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    assert MLRun.load(run.run_id, base_dir).wandb_run is None
    run.finish()


def test_load_of_an_unknown_run_raises_run_not_found(base_dir: Path) -> None:
    with pytest.raises(RunNotFoundError, match="nope"):
        MLRun.load("nope", base_dir)
    with pytest.raises(RunNotFoundError, match="nope"):
        MLRun.load("nope", base_dir, "demo")
    with pytest.raises(LookupError):
        MLRun.load("nope", base_dir / "missing")


def test_load_of_a_run_id_in_two_projects_names_both(base_dir: Path) -> None:
    MLRun.create(CONFIG, base_dir, "alpha", run_id="same").finish()
    MLRun.create(CONFIG, base_dir, "beta", run_id="same").finish()
    with pytest.raises(AmbiguousRunError, match="'alpha', 'beta'"):
        MLRun.load("same", base_dir)
    assert MLRun.load("same", base_dir, "beta").project_name == "beta"


def test_a_loaded_run_can_add_metrics(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo")
    run.add_metrics({"a": 1})
    joined = MLRun.load(run.run_id, base_dir)
    joined.add_metrics({"b": 2})
    assert MLRun.load(run.run_id, base_dir).metrics == {"a": 1, "b": 2}
    run.finish()


# -- get_wandb_url -----------------------------------------------------------------------------------------


def test_get_wandb_url_offline_with_entity_is_the_url_once_synced(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", "team", mode="offline")
    assert run.get_wandb_url() == f"https://wandb.ai/team/demo/runs/{run.run_id}"
    assert MLRun.load(run.run_id, base_dir).get_wandb_url() == run.get_wandb_url()
    run.finish()


def test_get_wandb_url_is_none_without_entity_offline_or_when_disabled(base_dir: Path) -> None:
    offline = MLRun.create(CONFIG, base_dir, "demo", mode="offline")
    assert offline.get_wandb_url() is None
    offline.finish()
    disabled = MLRun.create(CONFIG, base_dir, "demo", "team", mode="disabled")
    assert disabled.get_wandb_url() is None
    disabled.finish()


# -- durability switch --------------------------------------------------------------------------------------


def test_non_durable_runs_write_the_same_files(base_dir: Path) -> None:
    run = MLRun.create(CONFIG, base_dir, "demo", durable=False)
    run.add_metrics({"accuracy": 0.9})
    assert MLRun.load(run.run_id, base_dir).metrics == {"accuracy": 0.9}
    run.finish()


def test_run_ids_are_fresh_and_path_safe(base_dir: Path) -> None:
    ids = {MLRun.create({}, base_dir, "demo").run_id for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 8 and set(i) <= set(string.ascii_lowercase + string.digits) for i in ids)


def test_arguments_that_are_not_utf8_do_not_break_create(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["train.py", "--data", b"caf\xe9".decode("utf-8", "surrogateescape")])
    run = MLRun.create({}, base_dir, "demo")
    assert read_toml(run.run_dir / "config.toml")["_meta"]["argv"] == ["train.py", "--data", "caf\ufffd"]
    run.finish()


def test_a_write_by_another_process_between_two_calls_is_merged(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    run.add_metrics({"mine": 1})
    code = "import sys; from ml_manager import MLRun; MLRun.attach(sys.argv[1]).add_metrics({'theirs': 2})"
    subprocess.run([__import__("sys").executable, "-c", code, str(run.run_dir)], check=True, timeout=120)
    run.add_metrics({"mine_again": 3})
    assert read_toml(run.run_dir / "metrics.toml") == {"mine": 1, "theirs": 2, "mine_again": 3}
    run.finish()


def test_an_in_place_edit_between_two_calls_is_merged_not_overwritten(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    run.add_metrics({"a": 1})
    metrics = run.run_dir / "metrics.toml"
    inode = metrics.stat().st_ino
    with open(metrics, "r+b") as handle:  # another tool edits the file where it lies, without the lock
        handle.write(b"a = 700\n")
    assert metrics.stat().st_ino == inode
    run.add_metrics({"b": 2})
    assert read_toml(metrics) == {"a": 700, "b": 2}
    run.finish()


def test_changing_the_returned_metrics_changes_nothing_on_disk(base_dir: Path) -> None:
    run = MLRun.create({}, base_dir, "demo")
    run.add_metrics({"nested": {"x": 1}})
    run.metrics["nested"]["x"] = 99  # the caller's copy
    run.add_metrics({"y": 2})
    assert read_toml(run.run_dir / "metrics.toml") == {"nested": {"x": 1}, "y": 2}
    run.finish()
