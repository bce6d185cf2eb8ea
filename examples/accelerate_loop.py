"""A plain training loop with Hugging Face accelerate on CPU, every rank logging into ONE ml_manager run.

    torchrun --standalone --nproc_per_node=2 examples/accelerate_loop.py [--base-dir ./checkpoints]
    accelerate launch --num_processes 2 --cpu examples/accelerate_loop.py
    python examples/accelerate_loop.py             # one process

``accelerator.log`` reaches the main process's tracker only (accelerate's design): the averaged loss goes
there, once.  Each rank's own figures go through its own tracker, ``tracker.log``, and stay apart in the
run's history.
"""

from __future__ import annotations

import argparse

import torch
from accelerate import Accelerator
from torch import nn

from ml_manager.integrations.accelerate import MLManagerTracker


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default="./checkpoints")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--fail-at-step", type=int, default=-1, help="raise in that step (to see 'failed')")
    args = parser.parse_args(argv)

    tracker = MLManagerTracker(args.base_dir, "accelerate-demo", config={"data": "random"})
    accelerator = Accelerator(cpu=True, log_with=[tracker])
    accelerator.init_trackers("accelerate-demo", config={"lr": 0.05, "steps": args.steps})

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    model, optimizer = accelerator.prepare(model, optimizer)
    generator = torch.Generator().manual_seed(accelerator.process_index)
    for step in range(args.steps):
        if step == args.fail_at_step:
            raise RuntimeError("a training step that fails")
        x = torch.randn(32, 8, generator=generator)
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
        optimizer.zero_grad()
        accelerator.backward(loss)
        optimizer.step()
        accelerator.log({"loss": accelerator.reduce(loss.detach(), "mean").item()}, step=step)  # main process
        tracker.log({"rank_loss": loss.item()}, step=step)  # every rank, its own
    tracker.run.flush()  # every rank's records on disk ...
    accelerator.wait_for_everyone()  # ... before the main process marks the run finished
    accelerator.end_training()
    if accelerator.is_main_process:
        run = tracker.run
        history = run.history()
        ranks = history["writer"].nunique()
        print(f"run {run.run_id} ({run.status}): {len(history)} history records from {ranks} ranks")


if __name__ == "__main__":
    main()
