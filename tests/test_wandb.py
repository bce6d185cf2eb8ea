"""wandb can never hurt training: modes, missing credentials, and a wandb that fails."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING, Any

import pytest

from ml_manager import MLRun
from ml_manager._storage import read_toml
from ml_manager._wandb import has_credentials, resolve_mode
from ml_manager.errors import MLManagerWarning

if TYPE_CHECKING:
    from pathlib import Path


def test_online_without_credentials_falls_back_to_offline_with_one_warning(base_dir: Path) -> None:
    with pytest.warns(MLManagerWarning, match="no wandb credentials") as caught:
        run = MLRun.create({"lr": 0.1}, base_dir, "demo", "team", mode="online")
    assert len(caught) == 1
    assert run.wandb_info["mode"] == "offline"
    assert run.wandb_run is not None
    assert run.wandb_run.settings.mode == "offline"
    assert run.get_wandb_url() == f"https://wandb.ai/team/demo/runs/{run.run_id}"
    run.finish()


def test_no_prompt_and_no_hang_without_a_terminal(base_dir: Path, tmp_path: Path) -> None:
    # A real child with no stdin and WANDB_MODE unset: the default is online, and without credentials the
    # run must complete offline on its own.
    script = (
        "import sys, ml_manager; r = ml_manager.MLRun.create({'a': 1}, sys.argv[1], 'demo');"
        "r.add_metrics({'x': 1}); r.finish(); print(r.wandb_info['mode'])"
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "WANDB_MODE"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(base_dir)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "offline"
    assert done.stderr.count("no wandb credentials") == 1


def test_credentials_are_found_in_the_environment_and_in_netrc(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert not has_credentials()
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert has_credentials()
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert has_credentials()


def test_wandb_mode_environment_variable_is_respected(monkeypatch: pytest.MonkeyPatch, base_dir: Path) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    run = MLRun.create({}, base_dir, "demo")
    assert run.wandb_info["mode"] == "offline"
    run.finish()


def test_the_mode_argument_overrides_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("disabled") == "disabled"
    assert resolve_mode(None) == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode(None) == "offline"


def test_an_unknown_mode_is_named_before_anything_is_created(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="'cloud'"):
        MLRun.create({}, base_dir, "demo", mode="cloud")
    monkeypatch.setenv("WANDB_MODE", "sometimes")
    with pytest.raises(ValueError, match="WANDB_MODE"):
        MLRun.create({}, base_dir, "demo")
    assert list(base_dir.iterdir()) == []


def test_a_wandb_log_that_raises_never_reaches_training(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    run = MLRun.create({}, base_dir, "demo", mode="offline")
    calls = []

    def failing_log(data: dict[str, Any], *args: Any, **kwargs: Any) -> None:  # fault injection
        calls.append(data)
        raise ConnectionError("wandb backend unreachable")

    monkeypatch.setattr(run.wandb_run, "log", failing_log)
    with caplog.at_level(logging.WARNING, logger="ml_manager"):
        for step in range(5):
            run.add_metrics({f"m{step}": step})
    assert len(calls) == 5
    assert len([r for r in caplog.records if "wandb log failed" in r.getMessage()]) == 1
    assert run.wandb_stats.failed == 5
    assert read_toml(run.run_dir / "metrics.toml") == {f"m{i}": i for i in range(5)}
    run.finish()
    assert read_toml(run.run_dir / "config.toml")["_meta"]["status"] == "finished"


def test_a_wandb_init_that_raises_leaves_a_local_run(base_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    def broken_init(**kwargs: Any) -> None:
        raise RuntimeError("wandb-core did not start")

    monkeypatch.setattr(wandb, "init", broken_init)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = MLRun.create({"lr": 0.1}, base_dir, "demo", mode="offline")
    assert [str(w.message) for w in caught if "wandb.init failed" in str(w.message)]
    assert run.wandb_run is None
    assert run.wandb_info["mode"] == "disabled"
    run.add_metrics({"accuracy": 0.9})
    run.finish()
    assert MLRun.load(run.run_id, base_dir).metrics == {"accuracy": 0.9}


def test_update_config_merges_nested_tables_in_wandb_too(base_dir: Path) -> None:
    run = MLRun.create({"model": {"depth": 2}}, base_dir, "demo", mode="offline")
    run.update_config({"model": {"width": 8}, "lr": 0.1})
    assert dict(run.wandb_run.config)["model"] == {"depth": 2, "width": 8}
    assert run.wandb_run.config["lr"] == 0.1
    run.finish()
