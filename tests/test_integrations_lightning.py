"""The Lightning logger on real Lightning, two CPU ranks with gloo: ddp_fork, ddp_spawn and torchrun's ddp."""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from _frameworks import need, run_job
from ml_manager import MLProject, MLRun
from ml_manager.errors import MLManagerWarning

torch = need("torch")
pl = need("lightning.pytorch")
need("pytorch_lightning")

from ml_manager.integrations.lightning import MLManagerLogger  # noqa: E402 - after the skip

pytestmark = pytest.mark.slow
HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
STEPS_PER_EPOCH = 4  # 16 samples, batches of 2 per rank


def fit(base_dir: Path, strategy: str, *options: str, fails: bool = False) -> str:
    """Fit in a fresh interpreter (see _child_setup); returns the logger's version."""
    out = run_job("_lightning_child.py", str(base_dir), strategy, *options, fails=fails)
    return out.strip().splitlines()[-1] if not fails else ""


def the_run(base_dir: Path) -> MLRun:
    runs = list((base_dir / "pl").iterdir())
    assert len(runs) == 1, runs
    return MLRun.load(runs[0].name, base_dir, "pl")


def check_two_rank_run(run: MLRun, *, epochs: int = 2) -> None:
    steps = epochs * STEPS_PER_EPOCH
    assert run.status == "finished"
    assert run.config == {"data": "random", "lr": 0.1, "fail_at_step": -1}
    assert set(run.metrics) == {
        "loss",
        "rank_value",
        "from_rank_zero",
        "epoch",
        "val_loss/dataloader_idx_0",
        "val_loss/dataloader_idx_1",
    }
    assert run.metrics["from_rank_zero"] == 10.0
    assert run.metrics["epoch"] == epochs - 1
    history = run.history()
    assert set(history["writer"]) == {"rank0", "rank1"}
    # Per-rank values: one row per rank per step, each rank's own.
    per_rank = history.dropna(subset=["rank_value"])
    assert len(per_rank) == 2 * steps
    assert (per_rank["rank_value"] == per_rank["writer"].str.removeprefix("rank").astype(float)).all()
    # Reduced values: one row per step, from rank 0; so is the rank-zero-only value.
    for key in ("loss", "from_rank_zero"):
        rows = history.dropna(subset=[key])
        assert sorted(rows["step"]) == list(range(steps)), key
        assert set(rows["writer"]) == {"rank0"}, key
    assert set(history.dropna(subset=["epoch"])["writer"]) == {"rank0"}  # with the steps' and validations' values
    # metrics.toml holds the final values: the last step's reduced loss.
    assert run.metrics["loss"] == history.dropna(subset=["loss"]).sort_values("step")["loss"].iloc[-1]
    assert (history.dropna(subset=["from_rank_zero"])["from_rank_zero"] == 10.0).all()
    # Validation values reduced across ranks, one per epoch and validation set, from rank 0.
    for key in ("val_loss/dataloader_idx_0", "val_loss/dataloader_idx_1"):
        rows = history.dropna(subset=[key])
        assert list(rows["writer"]) == ["rank0"] * epochs, key
    # ModelCheckpoint saved into the run.
    assert [path.name for path in (run.run_dir / "checkpoints").iterdir()] == [f"epoch={epochs - 1}-step={steps}.ckpt"]


def test_ddp_fork_puts_both_ranks_in_one_run(base_dir: Path) -> None:
    version = fit(base_dir, "ddp_fork")
    run = the_run(base_dir)
    assert version == run.run_id
    assert run.meta["world_size"] == 2
    check_two_rank_run(run)


def test_ddp_spawn_pickles_the_logger_and_puts_both_ranks_in_one_run(base_dir: Path) -> None:
    fit(base_dir, "ddp_spawn", "--epochs", "1")
    check_two_rank_run(the_run(base_dir), epochs=1)


def test_a_failing_training_step_marks_the_run_failed(base_dir: Path) -> None:
    fit(base_dir, "ddp_fork", "--fail-at-step", "2", fails=True)
    run = the_run(base_dir)
    assert run.status == "failed"
    # What the ranks logged before the failure is kept.
    assert sorted(run.history().dropna(subset=["loss"])["step"]) == [0, 1]


def test_a_second_fit_with_the_same_logger_logs_into_the_same_run(base_dir: Path) -> None:
    fit(base_dir, "ddp_fork", "--fits", "2", "--epochs", "1")
    run = the_run(base_dir)
    assert run.status == "finished"
    assert len(run.history().dropna(subset=["rank_value"])) == 2 * STEPS_PER_EPOCH * 2  # 2 fits, 2 ranks


def test_lightning_ddp_example_runs_under_torchrun(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    assert torchrun is not None, "torch is installed, so is its torchrun"
    base_dir = tmp_path / "checkpoints"
    command = [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "examples" / "lightning_ddp.py")]
    done = subprocess.run(
        [*command, "--base-dir", str(base_dir), "--epochs", "1"],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-4000:]
    (run_dir,) = (base_dir / "lightning-demo").iterdir()
    run = MLRun.load(run_dir.name, base_dir)
    assert run.status == "finished"
    assert run.wandb_info["mode"] == "offline"
    assert run.config == {"data": "random", "epochs": 1, "batch_size": 16, "lr": 0.05, "hidden": 16}
    history = run.history()
    assert set(history.dropna(subset=["rank_loss"])["writer"]) == {"rank0", "rank1"}
    assert len(history.dropna(subset=["loss"])) == 8  # 256 samples / 2 ranks / batches of 16
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    assert f"run {run.run_id} (finished): 16 history records from 2 ranks" in done.stdout
    assert len(MLProject(base_dir).load_project()) == 1


@dataclasses.dataclass
class Optimizer:
    name: str = "adam"
    betas: tuple[float, float] = (0.9, 0.99)


def test_log_hyperparams_merges_namespaces_dataclasses_and_text_for_the_rest(base_dir: Path) -> None:
    logger = MLManagerLogger(base_dir, "pl", config={"data": "random", "model": {"depth": 2}})
    run = logger.experiment
    hparams = argparse.Namespace(lr=0.1, model={"width": 8}, optimizer=Optimizer(), act=torch.nn.ReLU(), ckpt=None)
    with pytest.warns(MLManagerWarning, match=r"stored as text.*: act$"):
        logger.log_hyperparams(hparams)
    expected = {
        "data": "random",
        "model": {"depth": 2, "width": 8},
        "lr": 0.1,
        "optimizer": {"name": "adam", "betas": (0.9, 0.99)},
        "act": "ReLU()",
        "ckpt": None,
    }
    assert MLRun.load(run.run_id, base_dir, "pl").config == expected
    assert run.wandb_run.config["model"] == {"depth": 2, "width": 8}  # merged in wandb too, not replaced
    logger.finalize("success")
    assert MLRun.load(run.run_id, base_dir, "pl").status == "finished"


def test_hyperparameters_logged_before_the_run_exists_are_kept_for_it(base_dir: Path) -> None:
    logger = MLManagerLogger(base_dir, "pl", config={"model": {"depth": 2}})
    logger.log_hyperparams({"model": {"width": 8}, "lr": 0.1})
    assert not (base_dir / "pl").exists()  # nothing made before every rank can agree on it
    assert logger.experiment.config == {"model": {"depth": 2, "width": 8}, "lr": 0.1}
    logger.finalize("success")


def test_hyperparameters_logged_before_going_on_with_an_existing_run_reach_it(base_dir: Path) -> None:
    first = MLManagerLogger(base_dir, "pl", config={"lr": 0.1})
    run_id = first.experiment.run_id
    first.finalize("success")
    again = MLManagerLogger(base_dir, "pl", run_id=run_id)
    again.log_hyperparams({"resumed": True, "lr": 0.01})
    assert again.experiment.run_id == run_id
    again.finalize("success")
    assert MLRun.load(run_id, base_dir, "pl").config == {"lr": 0.01, "resumed": True}


def test_a_logger_used_before_torchrun_initialised_torch_distributed_says_why(
    base_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WORLD_SIZE", "2")
    logger = MLManagerLogger(base_dir, "pl")
    with pytest.raises(RuntimeError, match=r"WORLD_SIZE is set\) and torch.distributed is not up yet"):
        _ = logger.experiment
    assert not (base_dir / "pl").exists()


def test_a_failing_second_fit_in_the_same_process_marks_the_run_failed(base_dir: Path) -> None:
    class Failing(pl.LightningModule):
        def __init__(self, fail: bool) -> None:
            super().__init__()
            self.fail = fail
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            if self.fail and batch_idx == 1:
                raise RuntimeError("a training step that fails")
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    logger = MLManagerLogger(base_dir, "pl")
    options = {"accelerator": "cpu", "devices": 1, "max_epochs": 1, "logger": logger, "log_every_n_steps": 1}
    quiet = {"enable_progress_bar": False, "enable_model_summary": False, "enable_checkpointing": False}
    pl.Trainer(**options, **quiet).fit(Failing(fail=False), torch.utils.data.DataLoader(data, batch_size=2))
    assert logger.experiment.status == "finished"
    with pytest.raises(RuntimeError, match="a training step that fails"):
        pl.Trainer(**options, **quiet).fit(Failing(fail=True), torch.utils.data.DataLoader(data, batch_size=2))
    run = MLRun.load(logger.version, base_dir, "pl")
    assert run.status == "failed"
    assert len(run.history()) == 4 + 1  # the first fit's steps, and the second's before it failed


def test_the_logger_works_with_the_pytorch_lightning_package_name(base_dir: Path) -> None:
    import pytorch_lightning

    from ml_manager.integrations.pytorch_lightning import MLManagerLogger as OldNameLogger

    class OldNameModel(pytorch_lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(4, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            loss = torch.nn.functional.mse_loss(self.layer(batch[0]), batch[1])
            self.log("loss", loss)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = torch.utils.data.TensorDataset(torch.randn(8, 4), torch.randn(8, 1))
    logger = OldNameLogger(base_dir, "pl")
    trainer = pytorch_lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=1,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(OldNameModel(), torch.utils.data.DataLoader(data, batch_size=2))
    run = the_run(base_dir)
    assert run.status == "finished"
    assert sorted(run.history()["step"]) == [0, 1, 2, 3]
    assert list((run.run_dir / "checkpoints").glob("*.ckpt"))
