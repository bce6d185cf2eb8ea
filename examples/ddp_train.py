"""A tiny model trained with DistributedDataParallel on CPU, every rank logging into ONE run.

    torchrun --standalone --nproc_per_node=4 examples/ddp_train.py [--base-dir ./checkpoints] [--epochs 3]

Rank 0 creates the run (and the wandb run); the other ranks attach to it through a torch.distributed
collective inside ``MLRun.create``.  Each rank logs its own loss every step, plus the averaged loss, with
``run.log``: a microsecond per call, written by a background thread within the flush interval.  The run's
``metrics.toml`` ends with every rank's keys and ``run.history()`` with every rank's steps.
"""

from __future__ import annotations

import argparse

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ml_manager import MLRun


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default="./checkpoints")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch")
    args = parser.parse_args()

    dist.init_process_group("gloo")  # CPU; torchrun provides rank, world size and the rendezvous
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.manual_seed(0)
    model = DistributedDataParallel(nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    config = {"model": {"layers": [8, 16, 1]}, "lr": 0.05, "world_size": world, "epochs": args.epochs}

    # Identical on every rank: one run for the whole job.
    with MLRun.create(config, args.base_dir, "ddp-demo", background_wandb=True) as run:
        generator = torch.Generator().manual_seed(rank)
        for step in range(args.epochs * args.steps):
            x = torch.randn(32, 8, generator=generator)
            y = x.sum(dim=1, keepdim=True)
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            mean_loss = loss.detach().clone()
            dist.all_reduce(mean_loss)
            mean_loss /= world
            run.log({f"rank{rank}": {"loss": loss.item()}, "loss": mean_loss.item()}, step=step)
        run.flush()  # this rank's records are on disk ...
        dist.barrier()  # ... on every rank, before rank 0 reads the history and marks the run finished
        if rank == 0:
            history = run.history()
            print(f"run {run.run_id}: {len(history)} history records from {history['writer'].nunique()} ranks")
            print(f"final metrics: {run.metrics}")
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
