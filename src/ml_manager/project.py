"""``MLProject``: every run under a base directory, as one pandas DataFrame."""

from __future__ import annotations

import errno
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from . import _cache, _fs, _history, _storage
from ._frame import RunRow, build_frame, history_frame
from ._values import restore_config
from .errors import CorruptRunFileError, MLManagerWarning
from .run import MLRun

if TYPE_CHECKING:
    import pandas as pd


class MLProject:
    """All runs under ``base_dir`` (``base_dir/project_name/run_id``), loaded into :attr:`df`.

    Loading takes no lock: each file is read whole, as it was before or after any concurrent update.  A run
    whose files cannot be read is skipped with one warning and listed in :attr:`skipped`; a directory still
    being created (no ``config.toml`` yet) is skipped silently.

    Example::

        project = MLProject("./checkpoints")
        best = project.search("accuracy > 0.95 and `model.name` == 'BERT'")
        run = project.get_run(best.iloc[0]["run_id"])

    Attributes:
        base_dir: the root of all projects.
        df: one row per run; see :meth:`load_project` for the columns.
        skipped: the errors of the runs left out of the last load, each naming its file.
        config_columns: the columns of :attr:`df` that hold config values, in column order.
        metric_columns: the columns of :attr:`df` that hold metrics, in column order.
    """

    def __init__(self, base_dir: str | os.PathLike[str]) -> None:
        self.base_dir = Path(base_dir)
        self.skipped: list[CorruptRunFileError] = []
        self.config_columns: tuple[str, ...] = ()
        self.metric_columns: tuple[str, ...] = ()
        self.df: pd.DataFrame = self.load_project()

    def load_project(self) -> pd.DataFrame:
        """Scan ``base_dir/*/*/`` for runs and rebuild :attr:`df` from their files.

        Columns: ``run_id``, ``project_name``, the config flattened with ``.`` (``model.name``), the metrics
        flattened the same way, then ``_meta.*`` and ``_wandb.*``.  A name found in both config and metrics
        keeps the metric under the bare name and the config value under ``config.<name>``.

        Returns:
            The new :attr:`df`.

        Raises:
            FileNotFoundError: ``base_dir`` does not exist.
        """
        if not self.base_dir.is_dir():
            raise FileNotFoundError(errno.ENOENT, "no such base directory", str(self.base_dir))
        _fs.forget()  # which mounts cache sizes: looked up again, once per mount, for this load
        rows: list[RunRow] = []
        skipped: list[CorruptRunFileError] = []
        cache, now = _cache.cache_for(self.base_dir), time.time_ns()
        signature: list[tuple[str, _cache.RunKey]] = []
        all_settled = True
        fresh_rows: dict[str, tuple[_cache.RunKey, RunRow]] = {}
        run_dirs = self._run_dirs(skipped)
        progress = _Progress(len(run_dirs))
        config_name, metrics_name = os.sep + _storage.CONFIG_FILE, os.sep + _storage.METRICS_FILE
        for where, project_name in run_dirs:
            progress.step()
            hit = cache.rows.get(where)
            if hit is not None:
                # Plain strings on this path: a reload of an unchanged project is little more than the stats.
                key = (_cache.file_key(where + config_name), _cache.file_key(where + metrics_name))
                if hit[0] == key:
                    # Only settled entries are cached, and unchanged files stay settled.
                    fresh_rows[where] = hit
                    signature.append((where, key))
                    rows.append(hit[1])
                    continue
            try:
                row, key = _read_row(where, project_name)
            except FileNotFoundError:
                continue  # still being created, or removed while we looked
            except CorruptRunFileError as exc:
                skipped.append(exc)
                warnings.warn(f"skipping run {where}: {exc}", MLManagerWarning, stacklevel=3)
                continue
            if _cache.settled(key, now):
                fresh_rows[where] = (key, row)
            else:
                all_settled = False
            signature.append((where, key))
            rows.append(row)
        progress.done()
        cache.rows = fresh_rows
        self.skipped = skipped
        unchanged = tuple(signature)
        if cache.frame is not None and cache.frame[0] == unchanged and not skipped:
            frame = cache.frame[1]
        else:
            frame = build_frame(rows)
            cache.frame = (unchanged, frame) if all_settled and not skipped else None
        self.df = frame.df.copy()  # the cache keeps its own copy, whatever the caller does with this one
        self.config_columns, self.metric_columns = frame.config_columns, frame.metric_columns
        return self.df

    def _run_dirs(self, skipped: list[CorruptRunFileError]) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        for project_name, project_dir in _subdirs(str(self.base_dir), skipped):
            found.extend((run_dir, project_name) for _, run_dir in _subdirs(project_dir, skipped))
        return found

    @overload
    def search(self, query_string: str, return_objects: Literal[False] = False) -> pd.DataFrame: ...

    @overload
    def search(self, query_string: str, return_objects: Literal[True]) -> list[MLRun]: ...

    def search(self, query_string: str, return_objects: bool = False) -> pd.DataFrame | list[MLRun]:
        """Query :attr:`df` with :meth:`pandas.DataFrame.query` syntax.

        Column names containing dots must be quoted with backticks: ``"`model.name` == 'BERT'"``.

        Args:
            query_string: the query.
            return_objects: return the matching runs as :class:`MLRun` objects (read afresh from disk)
                instead of a DataFrame.

        Returns:
            The matching rows of :attr:`df`, or the matching runs.
        """
        matches: pd.DataFrame = self.df.query(query_string)
        if not return_objects:
            return matches
        return [
            self.get_run(str(run_id), project_name=str(project_name))
            for run_id, project_name in zip(matches["run_id"], matches["project_name"], strict=True)
        ]

    def history(self, query_string: str | None = None) -> pd.DataFrame:
        """The per-step history of many runs, each row joined with its run's config.

        Args:
            query_string: choose the runs with a :meth:`search` query; default every run in :attr:`df`.

        Returns:
            One row per ``add_metrics`` call: ``run_id``, ``project_name``, the run's config (flattened),
            ``step``, ``time``, ``writer``, then the metrics; see :meth:`MLRun.history`.  A config key named like
            a metric moves to ``config.<name>``.
        """
        chosen = self.df if query_string is None else self.search(query_string)
        runs = []
        for run_id, project_name in zip(chosen["run_id"], chosen["project_name"], strict=True):
            run = self.get_run(str(run_id), project_name=str(project_name))
            ids = {"run_id": run.run_id, "project_name": run.project_name}
            runs.append((ids, run.config, _history.read(run.run_dir)))
        return history_frame(runs)

    def get_run(self, run_id: str, project_name: str | None = None) -> MLRun:
        """Load one run of this project's ``base_dir``; see :meth:`MLRun.load`.

        Raises:
            RunNotFoundError: no such run.
            AmbiguousRunError: ``project_name`` is ``None`` and several projects hold ``run_id``.
        """
        return MLRun.load(run_id, self.base_dir, project_name)

    def __repr__(self) -> str:
        return f"MLProject(base_dir={str(self.base_dir)!r}, runs={len(self.df)})"


def _read_row(run_dir: str, project_name: str) -> tuple[RunRow, _cache.RunKey]:
    """One run's row, with the identity of the file versions it was read from (the key of the cache)."""
    config, metrics, key = _storage.read_run_files(run_dir)
    meta, wandb_info = _storage.split_config(config, os.path.join(run_dir, _storage.CONFIG_FILE))
    config = restore_config(config, meta.get("python_types"))
    return RunRow(os.path.basename(run_dir), project_name, config, metrics, meta, wandb_info), key


class _Progress:
    """``loading runs: 5,000/10,000`` on stderr, only on a terminal and only once a load has taken a second."""

    DELAY, EVERY = 1.0, 0.25

    def __init__(self, total: int) -> None:
        self.total, self.count = total, 0
        self.start = self.last = time.monotonic()
        self.shown = False
        self.enabled = total > 0 and sys.stderr is not None and sys.stderr.isatty()

    def step(self) -> None:
        self.count += 1
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self.start >= self.DELAY and now - self.last >= self.EVERY:
            self.last, self.shown = now, True
            sys.stderr.write(f"\rloading runs: {self.count:,}/{self.total:,}")
            sys.stderr.flush()

    def done(self) -> None:
        if self.shown:
            sys.stderr.write(f"\rloaded {self.total:,} runs in {time.monotonic() - self.start:.1f} s\n")
            sys.stderr.flush()


def _subdirs(directory: str, skipped: list[CorruptRunFileError]) -> list[tuple[str, str]]:
    """``(name, path)`` of the visible subdirectories, sorted by name."""
    try:
        with os.scandir(directory) as entries:
            return sorted((entry.name, entry.path) for entry in entries if _is_dir(entry))
    except OSError as exc:
        error = CorruptRunFileError(directory, exc.strerror or str(exc))
        skipped.append(error)
        warnings.warn(f"skipping {directory}: {error}", MLManagerWarning, stacklevel=4)
        return []


def _is_dir(entry: Any) -> bool:
    try:
        return bool(entry.is_dir()) and not entry.name.startswith(".")
    except OSError:
        return False
