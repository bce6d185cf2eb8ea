"""One run across the ranks of a real torch.distributed job (gloo, CPU, spawned processes)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ml_manager import MLRun
from ml_manager._storage import read_toml

torch = pytest.importorskip("torch", reason="torch is not installed (pip install torch); the DDP tests need it")
if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
    pytest.skip("this torch build has no gloo backend", allow_module_level=True)

WORLD, STEPS = 4, 10
EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "ddp_train.py"


def _rank_main(rank: int, base_dir: str, rendezvous: str, reports: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    try:
        run = MLRun.create({"lr": 0.1, "world": WORLD}, base_dir, "ddp", mode="offline")
        for step in range(STEPS):
            run.add_metrics({f"rank{rank}_loss": 1 / (step + 1), "shared": rank}, step=step)
        dist.barrier()
        report = {"run_id": run.run_id, "has_wandb": run.wandb_run is not None, "meta": run.meta.get("rank")}
        Path(reports, f"{rank}.json").write_text(json.dumps(report))
        run.finish()
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_every_rank_logs_into_one_run_created_by_rank_0(base_dir: Path, tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    reports.mkdir()
    # A file rendezvous: no port to collide with other tests running in parallel.
    torch.multiprocessing.spawn(
        _rank_main, args=(str(base_dir), str(tmp_path / "rendezvous"), str(reports)), nprocs=WORLD, join=True
    )
    runs = list((base_dir / "ddp").iterdir())
    assert len(runs) == 1, "exactly one run directory for the whole job"
    run_dir = runs[0]
    replies = {rank: json.loads((reports / f"{rank}.json").read_text()) for rank in range(WORLD)}
    assert {reply["run_id"] for reply in replies.values()} == {run_dir.name}
    assert [replies[rank]["has_wandb"] for rank in range(WORLD)] == [True, False, False, False]
    assert len(list((run_dir / "wandb").glob("offline-run-*"))) == 1

    meta = read_toml(run_dir / "config.toml")["_meta"]
    assert (meta["rank"], meta["world_size"], meta["status"]) == (0, WORLD, "finished")
    metrics = read_toml(run_dir / "metrics.toml")
    assert {f"rank{rank}_loss" for rank in range(WORLD)} <= set(metrics)

    history = MLRun.load(run_dir.name, base_dir).history()
    assert len(history) == WORLD * STEPS
    assert sorted(set(history["writer"])) == [f"rank{rank}" for rank in range(WORLD)]
    for rank in range(WORLD):
        assert list(history[history["writer"] == f"rank{rank}"]["step"]) == list(range(STEPS))


def _rank_logs(rank: int, base_dir: str, rendezvous: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{rendezvous}", rank=rank, world_size=WORLD)
    run = MLRun.create({}, base_dir, "ddp", flush_interval=3600)
    for step in range(STEPS):
        run.log({f"rank{rank}": {"loss": 1 / (step + 1)}}, step=step)
    dist.barrier()
    dist.destroy_process_group()
    # No flush, no finish: the process's exit writes the buffer, signed with the rank it was logged under.


@pytest.mark.slow
def test_every_rank_logging_per_step_ends_in_one_run_without_a_flush(base_dir: Path, tmp_path: Path) -> None:
    torch.multiprocessing.spawn(_rank_logs, args=(str(base_dir), str(tmp_path / "rendezvous")), nprocs=WORLD, join=True)
    (run_dir,) = (base_dir / "ddp").iterdir()
    history = MLRun.load(run_dir.name, base_dir).history()
    assert sorted(set(history["writer"])) == [f"rank{rank}" for rank in range(WORLD)]
    for rank in range(WORLD):
        assert list(history[history["writer"] == f"rank{rank}"]["step"]) == list(range(STEPS))
    assert read_toml(run_dir / "metrics.toml") == {f"rank{rank}": {"loss": 1 / STEPS} for rank in range(WORLD)}


@pytest.mark.slow
def test_the_ddp_example_runs_under_torchrun(tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=os.path.dirname(sys.executable)) or shutil.which("torchrun")
    if torchrun is None:
        pytest.skip("torchrun is not on PATH")
    done = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node=4",
            str(EXAMPLE),
            "--base-dir",
            str(tmp_path / "ck"),
            "--epochs",
            "1",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "WANDB_MODE": "disabled"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "40 history records from 4 ranks" in done.stdout
    assert len(list((tmp_path / "ck" / "ddp-demo").iterdir())) == 1
