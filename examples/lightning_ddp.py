"""PyTorch Lightning with DDP on CPU, every rank logging into ONE ml_manager run.

    torchrun --standalone --nproc_per_node=2 examples/lightning_ddp.py [--base-dir ./checkpoints]
    python examples/lightning_ddp.py --strategy ddp_fork      # Lightning starts the two processes itself

Each rank logs the loss averaged over the ranks (``sync_dist=True``: written once, by rank 0) and its own
batch loss and throughput (``sync_dist=False``: written by each rank, apart in the run's history).  The
checkpoints land inside the run's directory.
"""

from __future__ import annotations

import argparse
import time
import warnings

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ml_manager import MLRun
from ml_manager.integrations.lightning import MLManagerLogger

# lightning 2.6 with torch 2.13 warns about a torch API it calls; nothing to act on here.
warnings.filterwarnings("ignore", ".*LeafSpec.*", FutureWarning)


class Regressor(pl.LightningModule):
    def __init__(self, lr: float = 0.05, hidden: int = 16) -> None:
        super().__init__()
        self.save_hyperparameters()  # lr and hidden go to the run's config
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.started = time.perf_counter()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        self.log("loss", loss, sync_dist=True)  # the same on every rank: one value per step
        self.log("rank_loss", loss, sync_dist=False)  # this rank's own: one value per rank per step
        now = time.perf_counter()
        self.log("samples_per_second", len(x) / max(now - self.started, 1e-9), sync_dist=False)
        self.started = now
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default="./checkpoints")
    parser.add_argument("--strategy", default="ddp", help="ddp (under torchrun), ddp_fork or ddp_spawn")
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    x = torch.randn(256, 8)
    data = DataLoader(TensorDataset(x, x.sum(dim=1, keepdim=True)), batch_size=16)
    logger = MLManagerLogger(args.base_dir, "lightning-demo", config={"data": "random", "epochs": args.epochs})
    logger.log_hyperparams({"batch_size": data.batch_size})  # before fit: kept until the run exists
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=args.strategy,
        max_epochs=args.epochs,
        logger=logger,
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(Regressor(), data)
    if trainer.is_global_zero:
        run = MLRun.load(logger.version, args.base_dir, "lightning-demo")
        history = run.history()
        ranks = history["writer"].nunique()
        print(f"run {run.run_id} ({run.status}): {len(history)} history records from {ranks} ranks")
        print(f"final metrics: {run.metrics}")


if __name__ == "__main__":
    main()
