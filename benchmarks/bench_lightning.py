"""Lightning: what a logger adds to each training step of a 2-rank DDP fit on CPU, against no logger at all.

One ``Trainer.fit`` per variant and round, all launched from this process: ``strategy="ddp_fork"``,
``accelerator="cpu"``, ``devices=2`` (gloo), the same tiny model (``Linear(32, 1)``, SGD), the same data (a fixed
random set, batches of 16, exactly ``--steps`` batches a rank) and ``max_steps=--steps``, with
``log_every_n_steps=1`` and no progress bar, model summary or checkpointing, each fit in its own temporary
directory (removed after it, with whatever the ranks made through ``tempfile``).  Each ``training_step`` logs 4
values: the loss with ``sync_dist=True`` (an all-reduce every step, paid by every variant, the floor included)
and 3 per-rank values with ``sync_dist=False``.  The variants, in a fresh random order each round:

* ``logger=False``: the floor, Lightning's own cost of ``self.log`` with nothing behind it;
* ``MLManagerLogger`` (wandb disabled): every rank logs into one run, each through its background writer;
* Lightning's ``CSVLogger`` and ``TensorBoardLogger`` (the latter where tensorboard is installed): rank 0
  alone writes, the other rank's ``log_metrics`` returns at once.

A callback in the ranks times the training loop (``time.perf_counter``, from ``on_train_start`` to
``on_train_end``) and writes what it saw to a file in the fit's directory; the logger's setup (creating the run,
``log_hyperparams``) comes before that window and its ``finalize`` (the last flush) after it.

1. Per training step, wall time: the loop ÷ ``trainer.global_step`` (the mean step: every cost the logger adds
   inside the loop, amortized, whether in the training thread or in its own threads competing for the 2
   cores); and the median step, from one ``on_train_batch_start`` to the next (a step's ``log_metrics`` comes
   after its batch ends), which a stray pause of the shared machine does not move but a periodic cost, such as
   CSVLogger writing its file every 100 steps, does not show either.  The ranks are held in step by the
   gradient all-reduce; each figure is the slower rank's.  These answer "overhead per step", but the floor is
   several ms (two ranks and their gloo all-reduces on 2 cores) and moves by several percent from one fit to
   the next, so the range of the rounds' overheads is printed beside their median: an overhead inside that
   range is not told apart from none.
2. Where a step's time goes, figures that the machine's noise moves far less: the time inside the logger's
   ``log_metrics`` and ``save`` (what Lightning calls in the training thread each logged step; the callback
   wraps both in each rank), all the loop's calls ÷ steps and the median ``log_metrics`` call, each rank; and
   the CPU time of both ranks' processes over the loop (every thread, the loggers' own included) ÷ steps.
3. Per fit, timed here: the whole ``trainer.fit`` (fork, process group, setup, loop, teardown, ``finalize``,
   joining the ranks), split at the later rank's ``on_train_start`` and ``on_train_end`` (forked ranks read
   the same monotonic clock as this process) into before the loop and after it.  ``ddp_fork`` starts every
   fit's ranks from this process, so what a logger imports lazily in the ranks it imports again in every fit,
   as a real one-fit job would.

Every fit starts from the same state: Lightning, torch and the loggers' classes imported here, nothing else;
one short untimed fit of each variant comes first.  Overheads ("over") and ratios ("÷") are taken within a
round, against ``logger=False`` of the same round, and the median of the rounds is printed; on a shared
machine read those, not a lone absolute time.  After each ``MLManagerLogger`` fit the run's history is read
back and its rows per rank printed, as a sanity check (not an assertion).

Usage: python benchmarks/bench_lightning.py [--rounds R] [--steps N] [--quick]
"""

from __future__ import annotations

import argparse
import importlib.util
import itertools
import json
import logging
import os
import random
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from _report import print_summary

if TYPE_CHECKING:
    from collections.abc import Callable

FLOOR, ML_MANAGER, CSV, TENSORBOARD = "logger=False", "MLManagerLogger", "CSVLogger", "TensorBoardLogger"
BATCH = 16
FEATURES = 32
WORLD = 2
WARMUP_STEPS = 20
PROJECT = "bench"


def _quiet() -> None:
    """Before Lightning is imported: no deprecation noise, Lightning's info lines off; the ranks inherit this."""
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", ".*LeafSpec.*")
    from lightning.fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)
    for name in ("lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.WARNING)


def _tensorboard_available() -> bool:
    """Without importing it here: the ranks import it themselves, as they would in a real job."""
    return importlib.util.find_spec("tensorboard") is not None


# -- the fit -------------------------------------------------------------------------------------------------------


def _model() -> Any:
    import torch
    from lightning.pytorch import LightningModule

    class Tiny(LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(FEATURES, 1)

        def training_step(self, batch: Any, batch_idx: int) -> Any:
            x, y = batch
            out = self.layer(x)
            loss = torch.nn.functional.mse_loss(out, y)
            self.log("loss", loss, sync_dist=True)
            self.log("rank_loss", loss.detach(), sync_dist=False)
            self.log("out_mean", out.detach().mean(), sync_dist=False)
            self.log("target_mean", y.mean(), sync_dist=False)
            return loss

        def configure_optimizers(self) -> Any:
            return torch.optim.SGD(self.parameters(), lr=0.01)

    return Tiny()


def _data(steps: int) -> Any:
    """Exactly ``steps`` batches for each of the 2 ranks, the same numbers every fit."""
    import torch
    from torch.utils.data import DataLoader, TensorDataset

    generator = torch.Generator().manual_seed(0)
    n = steps * BATCH * WORLD
    x = torch.randn(n, FEATURES, generator=generator)
    y = x[:, :1] * 0.5 + 0.1 * torch.randn(n, 1, generator=generator)
    return DataLoader(TensorDataset(x, y), batch_size=BATCH, shuffle=False)


def _clock(out_dir: Path) -> Any:
    from lightning.pytorch import Callback

    class StepClock(Callback):
        """In each rank: the loop's wall and CPU seconds, each step's, the logger's calls, to a file."""

        def __init__(self) -> None:
            self.start = self.cpu = 0.0
            self.batch_starts: list[float] = []
            self.calls: dict[str, list[int]] = {}  # ns of each call of the logger's log_metrics and save

        def _time_logger(self, trainer: Any) -> None:
            """Wrap each logger's log_metrics and save (what Lightning calls every logged step) with a timer."""
            clock = time.perf_counter_ns

            def timed(call: Callable[..., Any], took: list[int]) -> Callable[..., Any]:
                def wrapper(*args: Any, **kwargs: Any) -> Any:
                    start = clock()
                    try:
                        return call(*args, **kwargs)
                    finally:
                        took.append(clock() - start)

                return wrapper

            for logger in trainer.loggers:
                for name in ("log_metrics", "save"):
                    setattr(logger, name, timed(getattr(logger, name), self.calls.setdefault(name, [])))

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            self._time_logger(trainer)  # in this rank's process only: the ranks are forked
            self.batch_starts = []
            for took in self.calls.values():
                took.clear()
            self.cpu = time.process_time()
            self.start = time.perf_counter()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self.batch_starts.append(time.perf_counter())

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            end = time.perf_counter()
            cpu = time.process_time() - self.cpu
            marks = [*self.batch_starts, end]
            # A step: from one batch's start to the next's (the logging of a step comes after its batch ends).
            steps = [b - a for a, b in itertools.pairwise(marks)]
            report = {
                "start": self.start,
                "end": end,
                "seconds": end - self.start,
                "cpu_seconds": cpu,
                "logger_seconds": sum(sum(took) for took in self.calls.values()) / 1e9,
                "log_metrics_median": statistics.median(self.calls["log_metrics"]) / 1e9 if self.calls else 0.0,
                "median_step": statistics.median(steps),
                "steps": trainer.global_step,
            }
            (out_dir / f"clock-rank{trainer.global_rank}.json").write_text(json.dumps(report))

    return StepClock()


def _logger(variant: str, tmp: str) -> Any:
    if variant == FLOOR:
        return False
    if variant == ML_MANAGER:
        from ml_manager.integrations.lightning import MLManagerLogger

        return MLManagerLogger(tmp, PROJECT, mode="disabled")
    if variant == CSV:
        from lightning.pytorch.loggers import CSVLogger

        return CSVLogger(tmp, name=PROJECT)
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(tmp, name=PROJECT)


@dataclass
class Fit:
    fit_seconds: float  # the whole trainer.fit, seen from here
    before_seconds: float  # from the fit's start to the later rank's on_train_start
    after_seconds: float  # from the later rank's on_train_end to the fit's return
    loop_seconds: float  # on_train_start to on_train_end, the slower rank
    median_step: float  # the median step's seconds, the slower rank
    cpu_seconds: float  # CPU seconds of the loop, every thread, both ranks together
    logger_seconds: tuple[float, ...]  # each rank's seconds inside the logger's calls during the loop
    log_metrics_median: tuple[float, ...]  # each rank's median log_metrics call, seconds
    steps: int  # the fewest steps a rank took
    history: str = ""  # MLManagerLogger only: what the run's history holds


def _history_check(tmp: str, run_id: str, steps: int) -> str:
    from ml_manager import MLRun

    run = MLRun.load(run_id, tmp, PROJECT)
    counts = run.history()["writer"].value_counts().to_dict()
    rows = ", ".join(f"{writer} {count}" for writer, count in sorted(counts.items()))
    both = all(counts.get(f"rank{r}", 0) > 0 for r in range(WORLD))
    return f"{rows}; both ranks: {'yes' if both else 'NO'}; status {run.status}; {steps} steps a rank"


def _fit(variant: str, steps: int, data: Any) -> Fit:
    from lightning.pytorch import Trainer

    with tempfile.TemporaryDirectory(prefix="bench-lightning-") as tmp:
        os.environ.pop("MASTER_PORT", None)  # a fresh free port each fit, chosen by Lightning
        logger = _logger(variant, tmp)
        trainer = Trainer(
            accelerator="cpu",
            devices=WORLD,
            strategy="ddp_fork",
            max_steps=steps,
            max_epochs=1,
            log_every_n_steps=1,
            logger=logger,
            callbacks=[_clock(Path(tmp))],
            enable_progress_bar=False,
            enable_model_summary=False,
            enable_checkpointing=False,
            default_root_dir=tmp,
        )
        model = _model()
        # What the ranks (or Lightning, for rank 0's weights) make with tempfile goes in here too, and goes.
        previous, tempfile.tempdir = tempfile.tempdir, tmp
        try:
            start = time.perf_counter()
            trainer.fit(model, data)
            end = time.perf_counter()
        finally:
            tempfile.tempdir = previous
        clocks = [json.loads((Path(tmp) / f"clock-rank{r}.json").read_text()) for r in range(WORLD)]
        fit = Fit(
            end - start,
            max(c["start"] for c in clocks) - start,
            end - max(c["end"] for c in clocks),
            max(c["seconds"] for c in clocks),
            max(c["median_step"] for c in clocks),
            sum(c["cpu_seconds"] for c in clocks),
            tuple(c["logger_seconds"] for c in clocks),
            tuple(c["log_metrics_median"] for c in clocks),
            min(c["steps"] for c in clocks),
        )
        if variant == ML_MANAGER:
            fit.history = _history_check(tmp, logger.version, fit.steps)
    return fit


# -- the rounds ----------------------------------------------------------------------------------------------------


@dataclass
class Results:
    fits: dict[str, list[Fit]] = field(default_factory=dict)

    def per_round(self, variant: str, figure: Callable[[Fit], float]) -> list[float]:
        return [figure(fit) for fit in self.fits[variant]]


def _loop_us(fit: Fit) -> float:
    return fit.loop_seconds / fit.steps * 1e6


def _median_step_us(fit: Fit) -> float:
    return fit.median_step * 1e6


def _cpu_us(fit: Fit) -> float:
    return fit.cpu_seconds / fit.steps * 1e6


def _fit_seconds(fit: Fit) -> float:
    return fit.fit_seconds


def _before_seconds(fit: Fit) -> float:
    return fit.before_seconds


def _after_seconds(fit: Fit) -> float:
    return fit.after_seconds


@dataclass
class Figures:
    fit: float  # s, median of the rounds
    loop: float  # µs a step, the loop's mean
    loop_over: float  # µs a step over logger=False
    loop_ratio: float
    loop_over_range: tuple[float, float]  # the rounds' fewest and most µs over logger=False
    step: float  # µs, the median step
    step_over: float
    logger_calls: tuple[float, ...]  # µs a step inside the logger's calls, each rank
    log_metrics_median: tuple[float, ...]  # µs, the median log_metrics call, each rank
    cpu: float  # CPU µs a step, both ranks
    cpu_over: float
    fit_over: float  # s over logger=False
    before: float  # s, fit start to the loop
    before_over: float
    after: float  # s, the loop's end to the fit's return
    after_over: float


def _figures(results: Results, variant: str) -> Figures:
    def over(figure: Callable[[Fit], float]) -> float:
        pairs = zip(results.per_round(variant, figure), results.per_round(FLOOR, figure), strict=True)
        return statistics.median(v - f for v, f in pairs)

    loop, floor = results.per_round(variant, _loop_us), results.per_round(FLOOR, _loop_us)
    differences = [v - f for v, f in zip(loop, floor, strict=True)]
    return Figures(
        fit=statistics.median(results.per_round(variant, _fit_seconds)),
        loop=statistics.median(loop),
        loop_over=over(_loop_us),
        loop_ratio=statistics.median(v / f for v, f in zip(loop, floor, strict=True)),
        loop_over_range=(min(differences), max(differences)),
        step=statistics.median(results.per_round(variant, _median_step_us)),
        step_over=over(_median_step_us),
        logger_calls=tuple(
            statistics.median(fit.logger_seconds[r] / fit.steps * 1e6 for fit in results.fits[variant])
            for r in range(WORLD)
        ),
        log_metrics_median=tuple(
            statistics.median(fit.log_metrics_median[r] * 1e6 for fit in results.fits[variant]) for r in range(WORLD)
        ),
        cpu=statistics.median(results.per_round(variant, _cpu_us)),
        cpu_over=over(_cpu_us),
        fit_over=over(_fit_seconds),
        before=statistics.median(results.per_round(variant, _before_seconds)),
        before_over=over(_before_seconds),
        after=statistics.median(results.per_round(variant, _after_seconds)),
        after_over=over(_after_seconds),
    )


def _report(variants: list[str], args: argparse.Namespace, results: Results) -> None:
    print(
        f"2 ranks (strategy=ddp_fork, CPU, gloo), Linear({FEATURES}, 1), batch {BATCH}, {args.steps} steps a rank, "
        f"4 values logged a step (1 with sync_dist=True), log_every_n_steps=1; medians of {args.rounds} rounds"
    )
    figures = {variant: _figures(results, variant) for variant in variants}
    print("\n1. per training step, timed in the ranks (the slower rank)")
    header = f"{'loop µs/step':>12}{'over':>8}{'rounds: over':>16}{'÷':>8}{'median step µs':>16}{'over':>8}"
    print(f"{'':22}{header}")
    for variant, f in figures.items():
        if variant == FLOOR:
            print(f"{variant + ' (floor)':22}{f.loop:12.0f}{'':32}{f.step:16.0f}")
            continue
        spread = f"{f.loop_over_range[0]:.0f} .. {f.loop_over_range[1]:.0f}"
        print(
            f"{variant:22}{f.loop:12.0f}{f.loop_over:8.0f}{spread:>16}{f.loop_ratio:8.3f}"
            f"{f.step:16.0f}{f.step_over:8.0f}"
        )
    print("   loop: on_train_start to on_train_end ÷ steps; median step: one batch's start to the next's")
    print("   rounds: over: the fewest and the most µs over logger=False among the rounds")
    print("\n2. where a step's time goes, in the ranks")
    print(f"{'':22}{'in the logger, µs/step':>24}{'median log_metrics µs':>24}{'CPU µs/step':>14}{'over':>8}")
    print(f"{'':22}{'rank 0':>12}{'rank 1':>12}{'rank 0':>12}{'rank 1':>12}{'both ranks':>14}")
    for variant, f in figures.items():
        if variant == FLOOR:
            print(f"{variant + ' (floor)':22}{'':48}{f.cpu:14.0f}")
            continue
        calls = "".join(f"{c:12.1f}" for c in (*f.logger_calls, *f.log_metrics_median))
        print(f"{variant:22}{calls}{f.cpu:14.0f}{f.cpu_over:8.0f}")
    print("   in the logger: inside its log_metrics and save (Lightning calls both in the training thread each")
    print("   logged step), all the loop's calls ÷ steps; median log_metrics: its median call")
    print("   CPU: CPU time of the ranks' processes (every thread, the loggers' own included) over the loop ÷ steps")
    print("\n3. per fit, seconds, timed here (the ranks' clock is this process's)")
    print(f"{'':22}{'whole fit':>10}{'over':>7}{'before loop':>13}{'over':>7}{'after loop':>12}{'over':>7}")
    for variant, f in figures.items():
        if variant == FLOOR:
            print(f"{variant + ' (floor)':22}{f.fit:10.2f}{'':7}{f.before:13.2f}{'':7}{f.after:12.2f}")
        else:
            print(
                f"{variant:22}{f.fit:10.2f}{f.fit_over:7.2f}{f.before:13.2f}{f.before_over:7.2f}"
                f"{f.after:12.2f}{f.after_over:7.2f}"
            )
    print("   before loop: fit's start to the later rank's on_train_start (fork, process group, logger setup)")
    print("   after loop: the later rank's on_train_end to fit's return (teardown, logger finalize, join)")
    print("over, ÷: the median of the rounds' differences and ratios to logger=False in the same round")
    steps = {fit.steps for fits in results.fits.values() for fit in fits}
    if steps != {args.steps}:
        print(f"WARNING: steps taken a rank: {sorted(steps)}, expected {args.steps}")
    if TENSORBOARD not in variants:
        print(f"{TENSORBOARD}: tensorboard not importable, not measured")
    print(f"\n{ML_MANAGER}: the run's history after each fit, rows by writer (a sanity check)")
    for r, fit in enumerate(results.fits[ML_MANAGER], start=1):
        print(f"   round {r}: {fit.history}")

    peers = [variant for variant in variants if variant not in (FLOOR, ML_MANAGER)]

    def peer_text(figure: str, fmt: str) -> str:
        return ", ".join(f"{peer}: {format(getattr(figures[peer], figure), fmt)}" for peer in peers)

    ours = figures[ML_MANAGER]
    rows = [
        ("logger=False, loop µs/step (the floor)", f"{figures[FLOOR].loop:.0f}", ""),
        (f"{ML_MANAGER}, loop µs/step over logger=False", f"{ours.loop_over:.0f}", peer_text("loop_over", ".0f")),
        ("  loop ÷ logger=False", f"{ours.loop_ratio:.3f}", peer_text("loop_ratio", ".3f")),
        ("  median step, µs over logger=False", f"{ours.step_over:.0f}", peer_text("step_over", ".0f")),
        (
            "  median log_metrics call µs, rank 0 / rank 1",
            " / ".join(f"{c:.1f}" for c in ours.log_metrics_median),
            ", ".join(f"{peer}: " + " / ".join(f"{c:.1f}" for c in figures[peer].log_metrics_median) for peer in peers),
        ),
        (
            "  in the logger, µs/step, rank 0 / rank 1",
            " / ".join(f"{c:.1f}" for c in ours.logger_calls),
            ", ".join(f"{peer}: " + " / ".join(f"{c:.1f}" for c in figures[peer].logger_calls) for peer in peers),
        ),
        ("  CPU µs/step, both ranks, over logger=False", f"{ours.cpu_over:.0f}", peer_text("cpu_over", ".0f")),
        ("  whole fit, s over logger=False", f"{ours.fit_over:.2f}", peer_text("fit_over", ".2f")),
        ("    of which before the loop", f"{ours.before_over:.2f}", peer_text("before_over", ".2f")),
        ("    of which after the loop", f"{ours.after_over:.2f}", peer_text("after_over", ".2f")),
    ]
    print_summary(rows, args.rounds, "peers")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300, help="training steps a rank in each fit")
    parser.add_argument("--quick", action="store_true", help="3 rounds of 100 steps, for a quick look")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.steps = 3, 100
    _quiet()
    variants = [FLOOR, ML_MANAGER, CSV] + ([TENSORBOARD] if _tensorboard_available() else [])
    data, warmup_data = _data(args.steps), _data(WARMUP_STEPS)
    start = time.perf_counter()
    for variant in variants:
        _fit(variant, WARMUP_STEPS, warmup_data)
    print(f"warm-up: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    results = Results({variant: [] for variant in variants})
    draw = random.Random(0)
    for r in range(args.rounds):
        start = time.perf_counter()
        for variant in draw.sample(variants, len(variants)):
            results.fits[variant].append(_fit(variant, args.steps, data))
        print(f"round {r + 1}/{args.rounds}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)
    _report(variants, args, results)


if __name__ == "__main__":
    main()
