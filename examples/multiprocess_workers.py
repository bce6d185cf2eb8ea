"""A pool of worker processes logging into one run: hyper-parameter trials, data shards, evaluations.

    python examples/multiprocess_workers.py [--base-dir ./checkpoints] [--workers 8]

An ``MLRun`` passed to a worker arrives as a handle to the same run (it pickles as a reference to the run's
directory, without wandb), so workers just call ``log`` (or ``add_metrics``).  Job arrays and ``subprocess``
workers use ``run.export_env()`` in the parent and ``MLRun.attach()`` in the child instead.

What a worker logs is written when its process ends, at the latest: ``ProcessPoolExecutor`` and a
``multiprocessing.Pool`` closed with ``close()`` + ``join()`` end their workers normally.  Leaving
``with Pool(...)`` calls ``terminate()``, which kills idle workers with SIGTERM: call ``run.flush()`` at the
end of each task there.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing

from ml_manager import MLRun


def evaluate_shard(run: MLRun, shard: int, steps: int) -> int:
    for step in range(steps):
        run.log({f"shard{shard}": {"loss": math.exp(-step / 10) + shard / 100}}, step=step)
    return shard


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base-dir", default="./checkpoints")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()

    with MLRun.create({"shards": args.workers, "steps": args.steps}, args.base_dir, "workers-demo") as run:
        with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
            done = pool.starmap(evaluate_shard, [(run, shard, args.steps) for shard in range(args.workers)])
            # Workers that end normally write what they logged; leaving `with` alone would terminate them.
            pool.close()
            pool.join()
        history = run.history()
        writers = history["writer"].nunique()
        print(f"run {run.run_id}: shards {done} logged {len(history)} records from {writers} processes")


if __name__ == "__main__":
    main()
