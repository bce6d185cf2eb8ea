"""A Lightning fit on two CPU ranks, run by the integration tests in a fresh interpreter (see _child_setup).

    python _lightning_child.py BASE_DIR STRATEGY [--fail-at-step N] [--epochs N] [--fits N]

Prints the logger's version (the run id).
"""

from __future__ import annotations

import argparse
from typing import Any

from _child_setup import strict_warnings

strict_warnings()

import lightning.pytorch as pl  # noqa: E402 - after the warning filters
import torch  # noqa: E402

from ml_manager.integrations.lightning import MLManagerLogger  # noqa: E402


class Model(pl.LightningModule):
    """Logs a reduced loss, a per-rank value, a rank-zero-only value; raises at ``fail_at_step``."""

    def __init__(self, lr: float = 0.1, fail_at_step: int = -1) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: Any, batch_idx: int) -> Any:
        if self.global_step == self.hparams["fail_at_step"]:
            raise RuntimeError("a training step that fails")
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.layer(x), y)
        self.log("loss", loss, sync_dist=True)
        self.log("rank_value", float(self.global_rank), sync_dist=False)
        self.log("from_rank_zero", 10.0 + self.global_rank, rank_zero_only=True)
        return loss

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.layer(x), y), sync_dist=True)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=self.hparams["lr"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_dir")
    parser.add_argument("strategy")
    parser.add_argument("--fail-at-step", type=int, default=-1)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--fits", type=int, default=1)
    args = parser.parse_args()
    data = torch.utils.data.TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    logger = MLManagerLogger(args.base_dir, "pl", config={"data": "random"})
    for _ in range(args.fits):
        trainer = pl.Trainer(
            accelerator="cpu",
            devices=2,
            strategy=args.strategy,
            max_epochs=args.epochs,
            logger=logger,
            log_every_n_steps=1,
            enable_progress_bar=False,
            enable_model_summary=False,
            num_sanity_val_steps=0,
        )
        model = Model(fail_at_step=args.fail_at_step)
        loader = torch.utils.data.DataLoader(data, batch_size=2)
        # Two validation sets: Lightning names their values val_loss/dataloader_idx_{0,1}.
        trainer.fit(model, loader, [torch.utils.data.DataLoader(data, batch_size=4)] * 2)
    print(logger.version)


if __name__ == "__main__":
    main()
