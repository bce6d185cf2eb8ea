"""The cache of parsed runs: a load skips unchanged runs — in this process or after a restart — and never gives
anything but what a load without the cache gives."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from ml_manager import MLManagerWarning, MLProject, MLRun, _cache, _storage


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every run the project parses (a thin recording wrapper around the real reader)."""
    seen: list[str] = []
    real = _storage.read_run_files

    def recording(run_dir: str, *args: Any) -> Any:
        seen.append(os.path.basename(run_dir))
        return real(run_dir, *args)

    monkeypatch.setattr(_storage, "read_run_files", recording)
    return seen


@pytest.fixture
def settled(monkeypatch: pytest.MonkeyPatch) -> None:
    """As if every file had been written long ago (a test cannot wait for the clock)."""
    monkeypatch.setattr(_cache, "SETTLE_NS", -1)


@pytest.fixture(autouse=True)
def _fresh_memory() -> Any:
    _cache.forget()
    yield
    _cache.forget()


def _runs(base_dir: Path, n: int, project: str = "demo") -> list[MLRun]:
    runs = []
    for i in range(n):
        run = MLRun.create({"i": i, "model": {"name": f"m{i % 2}"}, "betas": (0.9, 0.99)}, base_dir, project)
        run.add_metrics({"acc": i / 10, "tags": ["a", str(i)]})
        run.finish()
        runs.append(run)
    return runs


def _cache_files(suffix: str = ".runs") -> list[Path]:
    return sorted((Path.home() / ".cache" / "ml_manager" / "projects").glob(f"*{suffix}"))


def _restarted(base_dir: Path) -> pd.DataFrame:
    """A load as a new process does it: nothing in memory, the cache file read."""
    _cache.forget()
    return MLProject(base_dir).df


def _same_as_without_cache(df: pd.DataFrame, base_dir: Path) -> None:
    pd.testing.assert_frame_equal(df, MLProject(base_dir, cache=False).df)


@pytest.mark.usefixtures("settled")
def test_a_restarted_load_reads_the_cache_and_parses_nothing(base_dir: Path, parses: list[str]) -> None:
    _runs(base_dir, 3)
    first = MLProject(base_dir).df
    assert len(parses) == 3
    assert len(_cache_files()) == 1
    parses.clear()
    again = _restarted(base_dir)
    assert parses == []
    pd.testing.assert_frame_equal(again, first)
    _same_as_without_cache(again, base_dir)


@pytest.mark.usefixtures("settled")
def test_reloading_in_the_same_process_parses_nothing_and_gives_a_frame_of_its_own(
    base_dir: Path, parses: list[str]
) -> None:
    _runs(base_dir, 3)
    first = MLProject(base_dir)
    again = first.load_project()
    other = MLProject(base_dir).df  # a new project object on the same directory shares the cache
    assert len(parses) == 3
    pd.testing.assert_frame_equal(again, first.df)
    pd.testing.assert_frame_equal(other, first.df)
    again.loc[0, "acc"] = -1.0  # the caller's frame is its own: the cache is not touched
    assert MLProject(base_dir).df.loc[0, "acc"] != -1.0


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("restart", [False, True], ids=["same-process", "restarted"])
def test_a_run_rewritten_by_add_metrics_is_read_again(base_dir: Path, parses: list[str], restart: bool) -> None:
    runs = _runs(base_dir, 3)
    MLProject(base_dir)
    MLRun.load(runs[1].run_id, base_dir).add_metrics({"acc": 0.99, "new": "x"})
    parses.clear()
    df = _restarted(base_dir) if restart else MLProject(base_dir).df
    assert parses == [runs[1].run_id]
    assert list(df["acc"]) == [0.0, 0.99, 0.2]
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_a_run_rewritten_by_log_is_read_again(base_dir: Path, parses: list[str]) -> None:
    runs = _runs(base_dir, 2)
    MLProject(base_dir)
    run = MLRun.load(runs[0].run_id, base_dir)
    for step in range(5):
        run.log({"loss": 1.0 / (step + 1)}, step=step)
    run.finish()  # flushes: the records reach the history and metrics.toml
    parses.clear()
    df = _restarted(base_dir)
    assert parses == [runs[0].run_id]
    assert df.set_index("run_id").loc[runs[0].run_id, "loss"] == 0.2
    _same_as_without_cache(df, base_dir)


def _edit_in_place(path: Path) -> None:
    """What another program may do: rewrite the file in place, same size, and set its modification time back."""
    before = os.stat(path)
    with open(path, "r+b") as handle:
        changed = handle.read().replace(b"acc = 0.0", b"acc = 0.5")
        handle.seek(0)
        handle.write(changed)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)


@pytest.fixture
def coarse_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file system whose times tick once a second (as some network and FUSE file systems report them)."""
    names = ("st_atime", "st_mtime", "st_ctime", "st_atime_ns", "st_mtime_ns", "st_ctime_ns", "st_blksize")

    def coarse(st: os.stat_result) -> os.stat_result:
        extra = {name: getattr(st, name) for name in (*names, "st_blocks", "st_rdev") if hasattr(st, name)}
        for name in ("st_mtime_ns", "st_ctime_ns"):
            extra[name] -= extra[name] % 10**9
        return os.stat_result(tuple(st[:10]), extra)

    real_stat, real_fstat = os.stat, os.fstat
    monkeypatch.setattr(os, "stat", lambda *args, **kw: coarse(real_stat(*args, **kw)))
    monkeypatch.setattr(os, "fstat", lambda fd: coarse(real_fstat(fd)))


@pytest.mark.parametrize("clock", ["settled", "coarse_clock"])
def test_an_edit_in_place_is_seen(base_dir: Path, clock: str, request: pytest.FixtureRequest) -> None:
    """Neither the run directory's time (an edit in place leaves it) nor the file's modification time (another
    program may set it back) is trusted alone: the change time shows.  With a coarse clock an edit within the
    tick keeps every field of the key; runs parsed while their files are younger than the settling time are not
    kept, so the edit is seen all the same."""
    request.getfixturevalue(clock)
    run = _runs(base_dir, 1)[0]
    MLProject(base_dir)
    _edit_in_place(run.run_dir / "metrics.toml")
    df = _restarted(base_dir)
    assert list(df["acc"]) == [0.5]
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_a_run_replaced_by_another_with_the_same_id_is_read_again(
    base_dir: Path, tmp_path: Path, parses: list[str]
) -> None:
    runs = _runs(base_dir, 2)
    MLProject(base_dir)
    with MLRun.create({"replacement": True}, tmp_path / "elsewhere", "demo", run_id=runs[0].run_id) as other:
        other.add_metrics({"acc": 0.7})
    shutil.rmtree(runs[0].run_dir)
    shutil.copytree(other.run_dir, runs[0].run_dir)
    parses.clear()
    df = _restarted(base_dir)
    assert parses == [runs[0].run_id]
    row = df.set_index("run_id").loc[runs[0].run_id]
    assert row["replacement"] is True
    assert pd.isna(row["i"])
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_removed_and_added_runs_show(base_dir: Path, parses: list[str]) -> None:
    runs = _runs(base_dir, 3)
    MLProject(base_dir)
    shutil.rmtree(runs[1].run_dir)
    added = _runs(base_dir, 1, project="other")[0]
    parses.clear()
    df = _restarted(base_dir)
    assert parses == [added.run_id]
    assert list(df["run_id"]) == [runs[0].run_id, runs[2].run_id, added.run_id]
    _same_as_without_cache(df, base_dir)
    shutil.rmtree(added.run_dir)  # the only run with a key: its columns go with it
    df = _restarted(base_dir)
    assert list(df["run_id"]) == [runs[0].run_id, runs[2].run_id]
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("damage", ["flipped byte", "truncated", "empty", "garbage", "other format"])
def test_a_damaged_cache_is_ignored_and_rebuilt(base_dir: Path, parses: list[str], damage: str) -> None:
    _runs(base_dir, 3)
    expected = MLProject(base_dir).df
    (cache_file,) = _cache_files()
    data = bytearray(cache_file.read_bytes())
    if damage == "flipped byte":
        data[-5] ^= 0x40
    elif damage == "truncated":
        del data[len(data) // 2 :]
    elif damage == "empty":
        data.clear()
    elif damage == "garbage":
        data[:] = os.urandom(len(data))
    else:
        data[len(_cache.MAGIC)] += 1  # the format number
    cache_file.write_bytes(bytes(data))
    parses.clear()
    df = _restarted(base_dir)
    assert len(parses) == 3
    pd.testing.assert_frame_equal(df, expected)
    parses.clear()
    pd.testing.assert_frame_equal(_restarted(base_dir), expected)  # rewritten whole
    assert parses == []


@pytest.mark.usefixtures("settled")
def test_a_cache_written_by_another_version_is_ignored(
    base_dir: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _runs(base_dir, 2)
    with monkeypatch.context() as patch:
        patch.setattr(_cache, "_version", lambda: "0.0.1-older")
        MLProject(base_dir)
    parses.clear()
    df = _restarted(base_dir)
    assert len(parses) == 2
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_another_base_directorys_cache_is_not_used(base_dir: Path, tmp_path: Path, parses: list[str]) -> None:
    _runs(base_dir, 2)
    MLProject(base_dir)
    (cache_file,) = _cache_files()
    other = tmp_path / "other"
    shutil.copytree(base_dir, other)
    MLProject(other)
    copied = [path for path in _cache_files() if path != cache_file]
    shutil.copyfile(cache_file, copied[0])  # the other directory's name, this directory's content
    parses.clear()
    df = _restarted(other)
    assert len(parses) == 2
    _same_as_without_cache(df, other)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="giving a file away needs root")
@pytest.mark.usefixtures("settled")
def test_a_cache_file_of_another_user_is_not_read(base_dir: Path, parses: list[str]) -> None:
    _runs(base_dir, 2)
    MLProject(base_dir)
    (cache_file,) = _cache_files()
    os.chown(cache_file, 12345, 12345)
    parses.clear()
    _restarted(base_dir)
    assert len(parses) == 2


@pytest.mark.usefixtures("settled")
def test_a_read_only_base_directory_loads_and_gains_no_file(base_dir: Path, parses: list[str]) -> None:
    _runs(base_dir, 2)
    before = sorted(path for path in base_dir.rglob("*"))
    for path in [base_dir, *before]:
        if path.is_dir():
            path.chmod(0o555)
    try:
        first = MLProject(base_dir).df
        parses.clear()
        again = _restarted(base_dir)
    finally:
        for path in [base_dir, *before]:
            if path.is_dir():
                path.chmod(0o755)
    assert sorted(path for path in base_dir.rglob("*")) == before
    assert parses == []
    pd.testing.assert_frame_equal(again, first)


@pytest.mark.usefixtures("settled")
def test_the_cache_can_be_moved_or_turned_off(
    base_dir: Path, tmp_path: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _runs(base_dir, 2)
    MLProject(base_dir, cache=False)
    monkeypatch.setenv("ML_MANAGER_NO_CACHE", "1")
    MLProject(base_dir)
    assert not _cache_files()
    monkeypatch.delenv("ML_MANAGER_NO_CACHE")
    monkeypatch.setenv("ML_MANAGER_CACHE_DIR", str(tmp_path / "elsewhere"))
    MLProject(base_dir)
    MLProject(base_dir, cache=tmp_path / "chosen")
    assert not _cache_files()
    assert len(list((tmp_path / "elsewhere" / "projects").glob("*.runs"))) == 1
    assert len(list((tmp_path / "chosen" / "projects").glob("*.runs"))) == 1
    monkeypatch.delenv("ML_MANAGER_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    MLProject(base_dir)
    xdg = tmp_path / "xdg" / "ml_manager"
    assert len(list((xdg / "projects").glob("*.runs"))) == 1
    assert (xdg.stat().st_mode & 0o777, (xdg / "projects").stat().st_mode & 0o777) == (0o700, 0o700)
    monkeypatch.setenv("ML_MANAGER_CACHE_DIR", "relative")  # ignored, as a relative XDG variable is
    monkeypatch.chdir(base_dir)
    MLProject(base_dir)
    assert not (base_dir / "relative").exists()
    with pytest.raises(ValueError, match="cache"):
        MLProject(base_dir, cache="")


@pytest.mark.usefixtures("settled")
def test_a_cache_directory_that_cannot_be_written_only_costs_speed(
    base_dir: Path, tmp_path: Path, parses: list[str]
) -> None:
    _runs(base_dir, 2)
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory")
    df = MLProject(base_dir, cache=blocked).df
    _same_as_without_cache(df, base_dir)
    assert blocked.read_text() == "not a directory"


_CHILD = textwrap.dedent(
    """
    import sys
    from ml_manager import MLProject, _cache, _storage
    _cache.SETTLE_NS = -1  # the runs were just written; as if long ago
    parsed = []
    real = _storage.read_run_files
    _storage.read_run_files = lambda run_dir, *args: parsed.append(run_dir) or real(run_dir, *args)
    sys.stdin.readline()  # every process starts loading at once
    df = MLProject(sys.argv[1]).df
    df.to_json(sys.argv[2], orient="split", date_format="iso", date_unit="us")
    print(len(parsed))
    """
)


@pytest.mark.slow
def test_processes_building_the_cache_at_once_each_load_right_and_leave_a_whole_cache(
    base_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _runs(base_dir, 30)
    monkeypatch.setattr(_cache, "SETTLE_NS", -1)
    expected = MLProject(base_dir, cache=False).df
    children = [
        subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(base_dir), str(tmp_path / f"frame{i}.json")],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    for child in children:
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.flush()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0, 0, 0]
    written = expected.to_json(orient="split", date_format="iso", date_unit="us")
    for i in range(4):
        assert (tmp_path / f"frame{i}.json").read_text() == written
    assert all(int(output) in (0, 30) for output in outputs)
    (cache_file,) = _cache_files()
    assert not list(cache_file.parent.glob("*.tmp"))
    restarted = subprocess.run(
        [sys.executable, "-c", _CHILD, str(base_dir), str(tmp_path / "again.json")],
        input="go\n",
        capture_output=True,
        text=True,
        check=True,
    )
    assert restarted.stdout.strip() == "0"  # a fresh process parses nothing: the cache left behind is whole
    assert (tmp_path / "again.json").read_text() == written


@pytest.mark.usefixtures("settled")
def test_every_kind_of_value_comes_back_from_the_cache_exactly(base_dir: Path, parses: list[str]) -> None:
    odd = MLRun.create(
        {"none": None, "pair": (1, "a"), "where": Path("/data/x"), "nested": [[1, 2], {"k": "v"}], "text": "é ✓ \n"},
        base_dir,
        "demo",
    )
    odd.add_metrics({"nan": float("nan"), "inf": float("-inf"), "series": [0.5, float("nan")], "mixed": 1})
    odd.finish()
    config = odd.run_dir / "config.toml"
    hand_written = (
        "when = 2026-01-01T10:00:00+02:00\nday = 2026-01-01\nat = 10:00:00.5\nnaive = 2026-01-01T10:00:00\n"
        "times = [2026-01-01T10:00:00Z, 1979-05-27]\nbig = 9223372036854775807\n"
    )
    config.write_text(hand_written + config.read_text())  # another program's edit: before the first table
    plain = MLRun.create({"none": "now text", "pair": 3, "when": 1.5, "nested": []}, base_dir, "demo")
    plain.add_metrics({"nan": 1, "mixed": 2.5, "flag": True})
    plain.finish()
    first = MLProject(base_dir).df
    parses.clear()
    df = _restarted(base_dir)
    assert parses == []
    pd.testing.assert_frame_equal(df, first)
    _same_as_without_cache(df, base_dir)
    row = df.set_index("run_id").loc[odd.run_id]
    assert row["pair"] == (1, "a")
    assert row["where"] == "/data/x"
    assert row["nested"] == [[1, 2], {"k": "v"}]
    assert row["when"].utcoffset().total_seconds() == 7200
    assert str(row["times"][0].tzinfo) == "UTC"
    assert row["big"] == 2**63 - 1
    assert row["series"][0] == 0.5
    assert row["series"][1] != row["series"][1]  # NaN inside a list


def test_a_run_with_a_value_the_file_cannot_hold_is_left_out_of_it() -> None:
    from ml_manager import _cachefile, _table

    key = (1, 2, 3, 4, -1, -1, -1, -1)
    runs = [
        _table.Parsed("p/a", key, {"x": 1, "odd": [object()]}, {}, {}, {}),
        _table.Parsed("p/b", key, {"x": 2}, {"acc": 0.5}, {}, {}),
    ]
    data = _cachefile.encode(_table.from_parsed(runs), "/base", "1.0")
    decoded = _cachefile.decode(data, "/base", "1.0")
    assert decoded is not None
    table = decoded[0]
    assert table.where == ["p/b"]
    assert list(table.sections["config"]) == ["x"]  # the left-out run's only column goes with it
    assert table.sections["metrics"]["acc"].value(0) == 0.5
    assert _cachefile.decode(data, "/other", "1.0") is None
    assert _cachefile.decode(data, "/base", "1.1") is None


@pytest.mark.usefixtures("settled")
def test_a_few_changes_to_a_large_cache_are_written_as_a_delta(
    base_dir: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    runs = _runs(base_dir, 6)
    MLProject(base_dir)
    (full,) = _cache_files()
    written = full.read_bytes()
    MLRun.load(runs[0].run_id, base_dir).add_metrics({"acc": 0.75})
    shutil.rmtree(runs[1].run_dir)
    added = _runs(base_dir, 1)[0]
    MLProject(base_dir)
    assert full.read_bytes() == written  # the full file stays; the changes go to the delta
    (delta,) = _cache_files(".delta")
    from ml_manager import _cachefile

    decoded = _cachefile.decode(delta.read_bytes(), os.path.realpath(base_dir), _cache._version())
    assert decoded is not None
    changed = decoded[0]
    assert sorted(changed.where) == sorted(f"demo/{run.run_id}" for run in (runs[0], added))
    for columns in changed.sections.values():  # only what the changed runs hold: not the whole table's texts
        assert all(len(column.texts) <= len(changed) for column in columns.values() if column.texts is not None)
    parses.clear()
    df = _restarted(base_dir)
    assert parses == []
    _same_as_without_cache(df, base_dir)
    assert set(df["run_id"]) == {run.run_id for run in runs if run is not runs[1]} | {added.run_id}

    delta.write_bytes(delta.read_bytes()[:-3])  # a damaged delta: only the changed runs are read again
    parses.clear()
    df = _restarted(base_dir)
    assert sorted(parses) == sorted([runs[0].run_id, added.run_id])
    _same_as_without_cache(df, base_dir)

    monkeypatch.setattr(_cache, "_DELTA_ROWS", 0)  # too many changes for a delta: the full file is rewritten
    MLRun.load(runs[2].run_id, base_dir).add_metrics({"acc": 0.25})
    _restarted(base_dir)
    assert full.read_bytes() != written
    assert not _cache_files(".delta")
    parses.clear()
    df = _restarted(base_dir)
    assert parses == []
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_a_delta_made_for_another_full_file_is_ignored(base_dir: Path, parses: list[str]) -> None:
    runs = _runs(base_dir, 3)
    MLProject(base_dir)
    MLRun.load(runs[0].run_id, base_dir).add_metrics({"acc": 0.75})
    MLProject(base_dir)
    (delta,) = _cache_files(".delta")
    kept = delta.read_bytes()
    MLRun.load(runs[0].run_id, base_dir).add_metrics({"acc": 0.5})
    _cache.forget()
    for path in _cache_files():
        path.unlink()
    MLProject(base_dir)  # another process rebuilt the full file; the old delta (acc 0.75) is back
    delta.write_bytes(kept)
    parses.clear()
    df = _restarted(base_dir)
    assert parses == []  # applied, the stale delta would have replaced the run by an outdated version
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
@pytest.mark.parametrize("interpreter", ["python", "not python", "failing"])
def test_a_large_cached_project_is_listed_in_a_second_interpreter_or_here(
    base_dir: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch, interpreter: str
) -> None:
    from ml_manager import _scan, project

    runs = _runs(base_dir, 4)
    MLProject(base_dir)
    MLRun.load(runs[3].run_id, base_dir).add_metrics({"acc": 0.5})
    monkeypatch.setattr(project, "_SCAN_ASIDE_FROM", 0)
    if interpreter == "not python":
        monkeypatch.setattr(sys, "executable", shutil.which("true") or "/bin/true")
    elif interpreter == "failing":
        monkeypatch.setattr(_scan, "__file__", str(base_dir / "no-such-script.py"))
    listed_here: list[str] = []
    real_scan = _scan.scan
    monkeypatch.setattr(
        _scan, "scan", lambda base, *args, **kw: listed_here.append(base) or real_scan(base, *args, **kw)
    )
    parses.clear()
    df = _restarted(base_dir)
    assert parses == [runs[3].run_id]
    assert listed_here == ([] if interpreter == "python" else [str(base_dir)])
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_a_run_still_being_written_is_shown_but_not_kept(base_dir: Path, parses: list[str]) -> None:
    runs = _runs(base_dir, 3)
    metrics = runs[1].run_dir / "metrics.toml"
    ahead = os.stat(metrics).st_mtime_ns + 3600 * 10**9  # written "later" than now: not settled yet
    os.utime(metrics, ns=(ahead, ahead))
    df = MLProject(base_dir).df
    assert list(df["run_id"]) == [run.run_id for run in runs]
    parses.clear()
    again = _restarted(base_dir)
    assert parses == [runs[1].run_id]
    pd.testing.assert_frame_equal(again, df)


@pytest.mark.usefixtures("settled")
def test_a_name_given_twice_in_one_run_keeps_the_last_value_with_or_without_the_cache(
    base_dir: Path, parses: list[str]
) -> None:
    both, neither = _runs(base_dir, 2)
    config = both.run_dir / "config.toml"
    config.write_text('"a.b" = 1\n[a]\nb = 2\n' + config.read_text())  # two spellings of the column a.b
    first = MLProject(base_dir).df
    assert first.set_index("run_id").loc[both.run_id, "a.b"] == 2
    assert pd.isna(first.set_index("run_id").loc[neither.run_id, "a.b"])
    parses.clear()
    df = _restarted(base_dir)
    assert parses == []
    _same_as_without_cache(df, base_dir)


@pytest.mark.usefixtures("settled")
def test_a_run_file_that_cannot_be_looked_up_is_skipped_on_every_load(base_dir: Path) -> None:
    runs = _runs(base_dir, 2)
    MLProject(base_dir)
    config = runs[0].run_dir / "config.toml"
    config.unlink()
    config.symlink_to(config)  # a loop: stat fails with ELOOP, not "no such file"
    with pytest.warns(MLManagerWarning, match="skipping run"):
        df = _restarted(base_dir)
    assert list(df["run_id"]) == [runs[1].run_id]
    with pytest.warns(MLManagerWarning, match="skipping run"):
        assert list(MLProject(base_dir).df["run_id"]) == [runs[1].run_id]


@pytest.mark.usefixtures("settled")
def test_a_base_directory_whose_name_is_not_utf8_is_cached(tmp_path: Path, parses: list[str]) -> None:
    base = Path(os.fsdecode(bytes(tmp_path) + b"/runs-\xff"))
    _runs(base, 2)
    first = MLProject(base).df
    assert len(_cache_files()) == 1
    parses.clear()
    pd.testing.assert_frame_equal(_restarted(base), first)
    assert parses == []


def test_a_cache_file_with_a_time_python_cannot_hold_is_ignored() -> None:
    from ml_manager import _cachefile, _column, _table

    key = (1, 2, 3, 4, -1, -1, -1, -1)
    table = _table.from_parsed([_table.Parsed("p/a", key, {}, {}, {"created_at": _column.EPOCH}, {})])
    column = table.sections["meta"]["created_at"]
    assert column.ints is not None
    column.ints[0] = 2**62  # far beyond year 9999: a file written by something else
    assert _cachefile.decode(_cachefile.encode(table, "/base", "1"), "/base", "1") is None
