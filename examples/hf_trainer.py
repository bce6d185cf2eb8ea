"""The Hugging Face Trainer on CPU, every rank logging into ONE ml_manager run (nothing downloaded).

    torchrun --standalone --nproc_per_node=2 examples/hf_trainer.py [--base-dir ./checkpoints]
    python examples/hf_trainer.py                  # one process

A tiny BERT built from a config learns random labels for a few steps, evaluating and saving a checkpoint every
2 steps.  The loss, learning rate and evaluation metrics (gathered across ranks by the Trainer) are written once;
each rank's timings are written by each rank.  Checkpoints land inside the run's directory.
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Trainer,
    TrainerCallback,
    TrainerState,
    TrainingArguments,
)

from ml_manager.integrations.transformers import MLManagerCallback


class RandomTokens(torch.utils.data.Dataset[dict[str, Any]]):
    def __init__(self, size: int, seed: int) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 50, (size, 8), generator=generator)
        self.labels = torch.randint(0, 2, (size,), generator=generator)

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"input_ids": self.ids[index], "labels": self.labels[index]}


class FailAt(TrainerCallback):
    """Raises as training step ``step`` begins, in the main process: what a failing step does to the run.

    (Only there: where every rank raised, the launcher could stop the main process with a signal before its own
    exception ended it, and a process ended by a signal cannot record ``failed``; ``ml-manager doctor`` then
    reports the run as crashed.)
    """

    def __init__(self, step: int) -> None:
        self.step = step

    def on_step_begin(self, args: TrainingArguments, state: TrainerState, control: Any, **kwargs: Any) -> None:
        if state.global_step == self.step and state.is_world_process_zero:
            raise RuntimeError("a training step that fails")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default="./checkpoints")
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--fail-at-step", type=int, default=-1, help="raise in that training step (to see 'failed')")
    parser.add_argument("--run-id", help="log into this run (default a new one)")
    parser.add_argument("--resume", action="store_true", help="go on from the run's last checkpoint")
    args = parser.parse_args(argv)

    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=2,
    )
    model = BertForSequenceClassification(config)
    training = TrainingArguments(
        output_dir=tempfile.mkdtemp(),  # the callback points it into the run
        use_cpu=True,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=4,
        learning_rate=1e-3,
        max_steps=args.steps,
        logging_steps=1,
        eval_strategy="steps",
        eval_steps=2,
        save_steps=2,
        report_to="none",
        disable_tqdm=True,
        seed=0,
    )
    trainer = Trainer(
        model=model,
        args=training,
        train_dataset=RandomTokens(64, seed=1),
        eval_dataset=RandomTokens(16, seed=2),
        callbacks=[MLManagerCallback(args.base_dir, "hf-demo", config={"data": "random tokens"}, run_id=args.run_id)],
    )
    if args.fail_at_step >= 0:
        trainer.add_callback(FailAt(args.fail_at_step))
    trainer.train(resume_from_checkpoint=args.resume or None)
    callback = next(c for c in trainer.callback_handler.callbacks if isinstance(c, MLManagerCallback))
    if trainer.is_world_process_zero() and callback.run is not None:
        run = callback.run
        history = run.history()
        ranks = history["writer"].nunique()
        print(f"run {run.run_id} ({run.status}): {len(history)} history records from {ranks} ranks")
        print(f"final metrics: {run.metrics}")


if __name__ == "__main__":
    main()
