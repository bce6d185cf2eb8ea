"""``MLProject``: every run under a base directory, as one pandas DataFrame."""

from __future__ import annotations

import contextlib
import errno
import gc
import os
import sys
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from . import _cache, _fs, _history, _storage
from ._frame import Frame, build_frame, history_frame
from ._toml import parse_toml_as_is
from ._values import restore_config
from .errors import CorruptRunFileError, MLManagerWarning
from .run import MLRun

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from . import _table


# The first load of a project whose cache file is this large lists its runs in a second interpreter meanwhile.
_SCAN_ASIDE_FROM = 4_000_000


class MLProject:
    """All runs under ``base_dir`` (``base_dir/project_name/run_id``), loaded into :attr:`df`.

    Loading takes no lock: each file is read whole, as it was before or after any concurrent update.  A run
    whose files cannot be read is skipped with one warning and listed in :attr:`skipped`; a directory still
    being created (no ``config.toml`` yet) is skipped silently.

    Runs already parsed by this process or an earlier one are not parsed again while their files are
    unchanged: a cache of parsed runs lives in the user's cache directory (see ``cache``).

    Args:
        base_dir: the root of all projects.
        cache: where the cache of parsed runs is kept between processes: ``None`` (the default) for
            ``$ML_MANAGER_CACHE_DIR``, else ``$XDG_CACHE_HOME/ml_manager``, else ``~/.cache/ml_manager``
            (``ML_MANAGER_NO_CACHE=1`` turns it off); a directory; or ``False`` to keep it in memory only.
            The cache never changes what is loaded, only how fast.

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

    def __init__(self, base_dir: str | os.PathLike[str], *, cache: bool | str | os.PathLike[str] | None = None) -> None:
        self.base_dir = Path(base_dir)
        self._cache = cache
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
        with _gc_paused():  # a load makes millions of objects and keeps them: collecting meanwhile finds nothing
            frame = self._load()
        self.df = frame.df.copy()  # the cache keeps its own copy, whatever the caller does with this one
        self.config_columns, self.metric_columns = frame.config_columns, frame.metric_columns
        return self.df

    def _load(self) -> Frame:
        base = str(self.base_dir)
        store = _cache.store_for(base, self._cache)
        with store.lock:  # one load of a base directory at a time in this process (the runs page has threads)
            return self._load_with(store, base)

    def _load_with(self, store: _cache.Store, base: str) -> Frame:
        skipped: list[CorruptRunFileError] = []
        import numpy as np  # imported by the first load, not by `import ml_manager`

        from . import _scan, _table

        _fs.forget()  # which mounts cache sizes: looked up again, once per mount, for this load
        aside = _scan.Aside(base) if store.table is None and store.file_size() >= _SCAN_ASIDE_FROM else None
        ahead = listed = listing = None
        try:
            cached = store.load()
            if aside is not None:
                # While the runs are listed: the frame (right unless something changed) and the listing expected.
                ahead = (cached, build_frame(cached))
                listed = cached.in_listing_order()
                listing = aside.result()
        finally:
            if aside is not None:
                aside.close()  # not left running if anything above raised (Ctrl-C included)
        if listing is None:
            errors: list[tuple[str, OSError]] = []
            listing = _scan.scan(base, errors, identify=len(cached) > 0)
            for directory, exc in errors:
                error = CorruptRunFileError(directory, exc.strerror or str(exc))
                skipped.append(error)
                warnings.warn(f"skipping {directory}: {error}", MLManagerWarning, stacklevel=5)
        places, found = listing[0], np.frombuffer(listing[1], np.int64).reshape(len(listing[0]), 8)
        # The same runs as last time in the same order: their rows are known, no lookup by name.
        known = listed[1] if listed is not None and listed[0] == places else None
        rows, same = _table.matching(cached, places, found, known)
        kept = rows[same]  # only settled runs are cached, and unchanged files stay settled
        parsed: list[_table.Parsed] = []
        now = time.time_ns()  # before reading: a file this young when read may change within its clock tick
        progress = _Progress(len(places) - len(kept))
        for at in np.flatnonzero(~same).tolist():
            progress.step()
            run_dir = os.path.join(base, places[at])
            try:
                parsed.append(_parse(run_dir, places[at]))
            except FileNotFoundError:
                continue  # still being created, or removed while we looked
            except CorruptRunFileError as exc:
                skipped.append(exc)
                warnings.warn(f"skipping run {run_dir}: {exc}", MLManagerWarning, stacklevel=5)
        progress.done()
        self.skipped = skipped
        table = self._refresh(store, cached, np.sort(kept), parsed, now)
        if store.frame is not None and store.frame[0] is table:
            return store.frame[1]
        frame = ahead[1] if ahead is not None and ahead[0] is table else build_frame(table)
        store.frame = (table, frame)
        return frame

    @staticmethod
    def _refresh(
        store: _cache.Store, cached: _table.Table, kept: Any, parsed: list[_table.Parsed], now: int
    ) -> _table.Table:
        """The table of this load, from the cached rows still valid and the runs parsed; the cache is updated with
        what of it has settled."""
        import numpy as np

        from . import _table

        if len(kept) == len(cached) and not parsed:
            return cached  # nothing changed: the frame built last time is still right
        unchanged = cached if len(kept) == len(cached) else cached.take(kept)
        table = _table.merge(unchanged, _table.from_parsed(parsed))
        unsettled = {run.where for run in parsed if not _cache.settled(run.key, now)}
        if len(unsettled) < len(parsed) or len(kept) != len(cached):
            rows = [row for row, place in enumerate(table.where) if place not in unsettled] if unsettled else None
            store.save(table if rows is None else table.take(np.asarray(rows, np.intp)))
        return table

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


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _parse(run_dir: str, where: str) -> Any:
    """One run as read from its files, with the identity of the file versions it was read from."""
    from . import _scan, _table

    config, metrics, (config_key, metrics_key) = _storage.read_run_files(run_dir, parse_toml_as_is)
    meta, wandb_info = _storage.split_config(config, os.path.join(run_dir, _storage.CONFIG_FILE))
    config = restore_config(config, meta.get("python_types"))
    key = (*(config_key or _scan.NO_FILE), *(metrics_key or _scan.NO_FILE))
    return _table.Parsed(where, key, config, metrics, meta, wandb_info)


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
