"""Which on-disk format a persistent cache of the project table should use: file size, write and load time.

The table is generated deterministically: N runs x 37 columns with the value mix of real runs -- 8 float
columns (3 with missing values), 8 int, 2 bool, 14 string (12 with few distinct values, one of them with
missing values; 2 unique per row), 3 list columns (argv, betas, tags) and 2 tz-aware UTC datetime columns
(microseconds, unique per row).  Each format writes it from the pandas frame and loads it back into one:

- ``sqlite``: stdlib ``sqlite3``, one table, one column per table column (lists as JSON text, datetimes as
  int microseconds, the kinds in the declared column types), written with ``executemany`` in one
  transaction; loaded with ``fetchall`` + a frame built column by column (``sqlite``) or with
  ``pandas.read_sql`` (``sqlite read_sql``), lists decoded with ``orjson.loads`` per cell.
- ``feather``: Arrow IPC file (feather v2, uncompressed), read memory-mapped, ``Table.to_pandas()``;
  list columns are Arrow list columns, which ``to_pandas`` returns as numpy arrays per cell --
  ``feather pylists`` turns them back into Python lists (``to_pylist``) like the other formats.
- ``parquet``: ``pyarrow.parquet`` with its defaults (snappy), ``read_table().to_pandas()``.
- ``columnar``: a plain file -- an orjson header, then raw numpy buffers (float64, int64, bool, int64
  microseconds); low-cardinality strings dictionary-encoded (distinct values in the header, uint32 codes as a
  buffer), unique strings and list cells as one orjson list per column; read with one ``open().read()``,
  ``numpy.frombuffer`` and ``orjson.loads``, the frame built from a dict of arrays; ``columnar gc off`` is
  the same load with the cyclic garbage collector paused (``gc.disable``) while it runs.

Every write and every load runs in a fresh interpreter (this script with a hidden sub-command), page cache
warm (one untimed load of each file first), formats interleaved in each round, medians of R rounds.  Load is
given two ways: the in-process time from the first byte read to the finished frame (plus, separately, the
import of the libraries the format needs beyond pandas and numpy), and the wall time of the whole fresh
process minus that of a fresh process that only imports numpy and pandas.  Children leave with ``os._exit``
so that neither includes the interpreter's teardown.  Write time is in-process, from the frame to the closed
file.  Every loaded frame is compared once with the generated one; differences are printed under the table.

Usage: python benchmarks/bench_cache_format.py [--rows N] [--repeats R]
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    import pandas as pd

# name -> (file suffix, modules it needs beyond pandas/numpy)
FORMATS: dict[str, tuple[str, tuple[str, ...]]] = {
    "sqlite": (".sqlite", ("sqlite3", "orjson")),
    "sqlite read_sql": (".sqlite", ("sqlite3", "orjson")),
    "feather": (".arrow", ("pyarrow.feather",)),
    "feather pylists": (".arrow", ("pyarrow.feather",)),
    "parquet": (".parquet", ("pyarrow.parquet",)),
    "columnar": (".bin", ("orjson",)),
    "columnar gc off": (".bin", ("orjson",)),
}
# Loaders that read another format's file.
SAME_FILE = {"sqlite read_sql": "sqlite", "feather pylists": "feather", "columnar gc off": "columnar"}
HEADER_LENGTH = 8  # the columnar file starts with the header's length, little-endian uint64
ALIGN = 64


# --------------------------------------------------------------------------------------------- the table


def make_frame(rows: int) -> pd.DataFrame:
    """The project table of ``rows`` runs, the same for the same ``rows``."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(20240611)

    def pick(choices: list[Any]) -> Any:
        return np.asarray(choices, dtype=object)[rng.integers(0, len(choices), rows)]

    def holes(values: Any, fraction: float) -> Any:
        values = values.copy()
        values[rng.random(rows) < fraction] = np.nan
        return values

    seed = rng.integers(0, 10_000, rows)
    lr = 10.0 ** rng.uniform(-5, -1, rows)
    amp = rng.random(rows) < 0.3
    argv = [
        ["train.py", f"--seed={s}", f"--lr={x:.3g}", "--amp"] if a else ["train.py", f"--seed={s}", f"--lr={x:.3g}"]
        for s, x, a in zip(seed.tolist(), lr.tolist(), amp.tolist(), strict=True)
    ]
    beta_choices = [[0.9, 0.999], [0.95, 0.999], [0.9, 0.98]]
    betas = [list(beta_choices[i]) for i in rng.integers(0, len(beta_choices), rows).tolist()]
    tag_count = rng.integers(0, 4, rows).tolist()
    tag_group = rng.integers(0, 50, rows).tolist()
    tags = [["sweep", f"g{g}", "baseline"][:c] for c, g in zip(tag_count, tag_group, strict=True)]
    created_us = (
        1_704_067_200_000_000 + np.arange(rows, dtype=np.int64) * 60_000_000 + rng.integers(0, 59_999_999, rows)
    )
    finished_us = created_us + rng.integers(1_000_000, 10_000_000_000, rows)
    commits = [
        f"{rng.integers(0, 2**63):016x}{rng.integers(0, 2**63):016x}{rng.integers(0, 2**31):08x}" for _ in range(50)
    ]
    groups = pick([f"sweep-{k}" for k in range(200)])
    groups[rng.random(rows) < 0.3] = None
    columns: dict[str, Any] = {
        "id": [f"run{i:06d}" for i in range(rows)],
        "name": [f"trial {i}" for i in range(rows)],
        "status": pick(["finished", "finished", "finished", "failed", "running", "crashed"]),
        "optimizer": pick(["adam", "sgd", "adamw"]),
        "host": pick([f"node{k}" for k in range(16)]),
        "user": pick(["alice", "bob", "carol", "dave", "erin"]),
        "project": pick(["vision", "nlp", "rl"]),
        "model": pick(["resnet18", "resnet50", "vit-b16", "bert-base", "gpt2-small", "mlp"]),
        "dataset": pick(["cifar10", "cifar100", "imagenet", "wikitext", "atari"]),
        "scheduler": pick(["cosine", "step", "none"]),
        "git_branch": pick(["main", "dev", "feature-x", "fix-loader"]),
        "git_commit": pick(commits),
        "python": pick(["3.10.14", "3.11.9", "3.12.3"]),
        "group": groups,
        "lr": lr,
        "loss": rng.exponential(0.5, rows),
        "val_loss": holes(rng.exponential(0.6, rows), 0.2),
        "accuracy": rng.uniform(0.1, 0.99, rows),
        "val_accuracy": holes(rng.uniform(0.1, 0.95, rows), 0.2),
        "weight_decay": pick([0.0, 1e-4, 5e-4, 1e-2]).astype(np.float64),
        "momentum": holes(rng.uniform(0.8, 0.99, rows), 0.5),
        "duration_s": rng.uniform(10, 86_400, rows),
        "seed": seed,
        "epochs": rng.integers(1, 300, rows),
        "batch_size": 2 ** rng.integers(4, 11, rows),
        "step": rng.integers(0, 1_000_000, rows),
        "num_params": rng.integers(10_000, 2_000_000_000, rows),
        "gpus": rng.integers(0, 9, rows),
        "pid": rng.integers(1_000, 4_000_000, rows),
        "exit_code": pick([0, 0, 0, 1, 137]).astype(np.int64),
        "finished": rng.random(rows) < 0.8,
        "is_sweep": rng.random(rows) < 0.4,
        "argv": argv,
        "betas": betas,
        "tags": tags,
        "created_at": pd.to_datetime(created_us.view("M8[us]"), utc=True),
        "finished_at": pd.to_datetime(finished_us.view("M8[us]"), utc=True),
    }
    return pd.DataFrame(columns)


def kinds(df: pd.DataFrame) -> dict[str, str]:
    """Each column's kind: float, int, bool, str, list or time."""
    import numpy as np
    import pandas as pd

    out = {}
    for name, dtype in df.dtypes.items():
        if isinstance(dtype, pd.DatetimeTZDtype):
            out[str(name)] = "time"
        elif dtype == np.dtype(object):  # not the str dtype, whose kind is "O" too
            out[str(name)] = "list"
        elif dtype.kind in "fib":
            out[str(name)] = {"f": "float", "i": "int", "b": "bool"}[dtype.kind]
        else:
            out[str(name)] = "str"
    return out


def micros(column: pd.Series) -> Any:
    """A tz-aware datetime column as int64 microseconds since the epoch."""
    import numpy as np

    return np.asarray(column.dt.tz_localize(None), dtype="datetime64[us]").view(np.int64)


def from_micros(values: Any) -> Any:
    import pandas as pd

    return pd.to_datetime(values.view("M8[us]"), utc=True)


# --------------------------------------------------------------------------------------------- sqlite

SQL_TYPES = {
    "float": "REAL",
    "int": "INTEGER",
    "bool": "BOOLEAN",
    "str": "TEXT",
    "list": "JSON",
    "time": "TIMESTAMP_US",
}
SQL_KINDS = {sql: kind for kind, sql in SQL_TYPES.items()}


def write_sqlite(df: pd.DataFrame, path: str) -> None:
    import sqlite3

    import orjson

    columns = []
    for name, kind in kinds(df).items():
        column = df[name]
        if kind == "float":
            columns.append([None if math.isnan(v) else v for v in column.tolist()])
        elif kind == "str":
            columns.append(column.astype(object).where(column.notna(), None).tolist())
        elif kind == "list":
            columns.append([orjson.dumps(v).decode() for v in column.tolist()])
        elif kind == "time":
            columns.append(micros(column).tolist())
        else:
            columns.append(column.astype("int64").tolist())
    names = kinds(df)
    con = sqlite3.connect(path)
    declared = ", ".join(f'"{n}" {SQL_TYPES[k]}' for n, k in names.items())
    con.execute(f"CREATE TABLE runs ({declared})")
    with con:
        con.executemany(f"INSERT INTO runs VALUES ({', '.join('?' * len(names))})", zip(*columns, strict=True))
    con.close()


def _sqlite_kinds(con: Any) -> dict[str, str]:
    return {row[1]: SQL_KINDS[row[2]] for row in con.execute("PRAGMA table_info(runs)")}


def load_sqlite(path: str) -> pd.DataFrame:
    import sqlite3

    import numpy as np
    import orjson
    import pandas as pd

    con = sqlite3.connect(path)
    names = _sqlite_kinds(con)
    rows = con.execute("SELECT * FROM runs").fetchall()
    con.close()
    data: dict[str, Any] = {}
    for (name, kind), values in zip(names.items(), zip(*rows, strict=True), strict=True):
        if kind == "float":
            data[name] = np.array(values, dtype=np.float64)
        elif kind == "int":
            data[name] = np.array(values, dtype=np.int64)
        elif kind == "bool":
            data[name] = np.array(values, dtype=bool)
        elif kind == "str":
            data[name] = np.array(values, dtype=object)
        elif kind == "list":
            data[name] = pd.Series([orjson.loads(v) for v in values], dtype=object)
        else:
            data[name] = from_micros(np.array(values, dtype=np.int64))
    return pd.DataFrame(data)


def load_sqlite_read_sql(path: str) -> pd.DataFrame:
    import sqlite3

    import orjson
    import pandas as pd

    con = sqlite3.connect(path)
    names = _sqlite_kinds(con)
    df = pd.read_sql("SELECT * FROM runs", con)
    con.close()
    for name, kind in names.items():
        if kind == "bool":
            df[name] = df[name].astype(bool)
        elif kind == "list":
            df[name] = pd.Series([orjson.loads(v) for v in df[name].tolist()], dtype=object)
        elif kind == "time":
            df[name] = from_micros(df[name].to_numpy(dtype="int64"))
    return df


# --------------------------------------------------------------------------------------------- arrow


def write_feather(df: pd.DataFrame, path: str) -> None:
    import pyarrow as pa
    from pyarrow import feather

    feather.write_feather(pa.Table.from_pandas(df, preserve_index=False), path, compression="uncompressed")


def load_feather(path: str) -> pd.DataFrame:
    from pyarrow import feather

    return feather.read_table(path, memory_map=True).to_pandas()


def load_feather_pylists(path: str) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa
    from pyarrow import feather

    table = feather.read_table(path, memory_map=True)
    lists = [
        (i, f.name) for i, f in enumerate(table.schema) if pa.types.is_list(f.type) or pa.types.is_large_list(f.type)
    ]
    df = table.drop_columns([name for _, name in lists]).to_pandas()
    for i, name in lists:
        df.insert(i, name, pd.Series(table.column(name).to_pylist(), dtype=object))
    return df


def write_parquet(df: pd.DataFrame, path: str) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path)


def load_parquet(path: str) -> pd.DataFrame:
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pandas()


# --------------------------------------------------------------------------------------------- columnar


def write_columnar(df: pd.DataFrame, path: str) -> None:
    import numpy as np
    import orjson
    import pandas as pd

    buffers: list[bytes] = []
    header: list[dict[str, Any]] = []
    offset = 0

    def add(entry: dict[str, Any], buffer: bytes) -> None:
        nonlocal offset
        pad = -len(buffer) % ALIGN
        header.append({**entry, "offset": offset, "nbytes": len(buffer)})
        buffers.append(buffer + b"\0" * pad)
        offset += len(buffer) + pad

    for name, kind in kinds(df).items():
        column = df[name]
        if kind in ("float", "int", "bool"):
            add({"name": name, "kind": kind}, column.to_numpy().tobytes())
        elif kind == "time":
            add({"name": name, "kind": kind}, micros(column).tobytes())
        elif kind == "list":
            add({"name": name, "kind": kind}, orjson.dumps(column.tolist()))
        else:
            codes, uniques = pd.factorize(column)
            if len(uniques) * 2 > len(column):  # unique per row: a dictionary would only add the codes
                add(
                    {"name": name, "kind": "strings"},
                    orjson.dumps(column.astype(object).where(column.notna(), None).tolist()),
                )
            else:
                # A missing value is code 0xFFFFFFFF: -1 once viewed as int32, pandas' code for "missing".
                categories = uniques.astype(object).tolist()
                add(
                    {"name": name, "kind": "dict", "categories": categories},
                    codes.astype(np.int32).view(np.uint32).tobytes(),
                )
    head = orjson.dumps({"rows": len(df), "columns": header})
    start = HEADER_LENGTH + len(head)
    start += -start % ALIGN
    with open(path, "wb") as f:
        f.write(len(head).to_bytes(HEADER_LENGTH, "little"))
        f.write(head.ljust(start - HEADER_LENGTH, b" "))
        f.writelines(buffers)


def load_columnar(path: str) -> pd.DataFrame:
    import numpy as np
    import orjson
    import pandas as pd

    with open(path, "rb") as f:
        data = f.read()
    size = int.from_bytes(data[:HEADER_LENGTH], "little")
    head = orjson.loads(data[HEADER_LENGTH : HEADER_LENGTH + size])
    start = HEADER_LENGTH + size
    start += -start % ALIGN
    view = memoryview(data)
    rows = head["rows"]
    numeric = {"float": np.float64, "int": np.int64, "bool": np.bool_, "time": np.int64}
    columns: dict[str, Any] = {}
    for entry in head["columns"]:
        kind, at = entry["kind"], start + entry["offset"]
        if kind in numeric:
            values = np.frombuffer(data, numeric[kind], rows, at)
            columns[entry["name"]] = from_micros(values) if kind == "time" else values
        elif kind == "dict":
            # Code -1 (a missing value) takes the None appended last.
            categories = np.array([*entry["categories"], None], dtype=object)
            columns[entry["name"]] = categories[np.frombuffer(data, np.int32, rows, at)]
        elif kind == "list":
            columns[entry["name"]] = pd.Series(orjson.loads(view[at : at + entry["nbytes"]]), dtype=object)
        else:
            columns[entry["name"]] = np.array(orjson.loads(view[at : at + entry["nbytes"]]), dtype=object)
    return pd.DataFrame(columns)


def load_columnar_gc_off(path: str) -> pd.DataFrame:
    """``load_columnar`` with the cyclic garbage collector paused: 300,000 new list cells trigger it often."""
    gc.disable()
    try:
        return load_columnar(path)
    finally:
        gc.enable()


WRITERS: dict[str, Callable[[pd.DataFrame, str], None]] = {
    "sqlite": write_sqlite,
    "feather": write_feather,
    "parquet": write_parquet,
    "columnar": write_columnar,
}
LOADERS: dict[str, Callable[[str], pd.DataFrame]] = {
    "sqlite": load_sqlite,
    "sqlite read_sql": load_sqlite_read_sql,
    "feather": load_feather,
    "feather pylists": load_feather_pylists,
    "parquet": load_parquet,
    "columnar": load_columnar,
    "columnar gc off": load_columnar_gc_off,
}


# --------------------------------------------------------------------------------------------- children


def differences(expected: pd.DataFrame, got: pd.DataFrame) -> list[str]:
    """How ``got`` differs from ``expected``, column by column, in words."""
    import numpy as np
    import pandas as pd

    if list(got.columns) != list(expected.columns):
        return [f"columns {list(got.columns)}"]
    out = []
    for name in expected.columns:
        want, have = expected[name], got[name]
        if want.dtype != have.dtype:
            out.append(f"{name}: dtype {have.dtype} (not {want.dtype})")
        elif want.dtype == np.dtype(object):
            first = have.iloc[0]
            if not isinstance(first, list):
                out.append(f"{name}: cells are {type(first).__module__}.{type(first).__name__}, not list")
            elif have.tolist() != want.tolist():
                out.append(f"{name}: values differ")
        else:
            try:
                pd.testing.assert_series_equal(have, want, check_names=False)
            except AssertionError:
                out.append(f"{name}: values differ")
    if len(got) != len(expected) or not np.array_equal(got.index, expected.index):
        out.append("index differs")
    return out


def file_for(form: str, directory: str) -> str:
    """The file ``form`` writes or reads in ``directory``."""
    return str(Path(directory) / f"{SAME_FILE.get(form, form)}{FORMATS[form][0]}")


def child(phase: str, form: str, directory: str, rows: int) -> dict[str, Any]:
    """One measurement in this fresh interpreter; the figures in seconds."""
    start = time.perf_counter()
    import numpy  # noqa: F401
    import pandas  # noqa: F401

    pandas_s = time.perf_counter() - start
    result: dict[str, Any] = {
        "pandas_s": pandas_s,
        "pandas_imports_pyarrow": "pyarrow" in sys.modules,
    }
    if phase == "baseline":
        return result
    if phase == "verify":  # ``form`` is a comma-separated list of the formats
        expected = make_frame(rows)
        return {f: differences(expected, LOADERS[f](file_for(f, directory))) for f in form.split(",")} | result
    path = file_for(form, directory)
    start = time.perf_counter()
    for module in FORMATS[form][1]:
        importlib.import_module(module)
    result["import_s"] = time.perf_counter() - start
    if phase == "write":
        df = make_frame(rows)
        start = time.perf_counter()
        WRITERS[form](df, path)
        result["write_s"] = time.perf_counter() - start
        result["bytes"] = os.path.getsize(path)
    else:
        start = time.perf_counter()
        df = LOADERS[form](path)
        result["load_s"] = time.perf_counter() - start
        result["shape"] = df.shape
    return result


def spawn(*args: str) -> tuple[float, dict[str, Any]]:
    """Run ``args`` in a fresh interpreter: its wall time and the JSON it printed last."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"child {args[-4:]} failed:\n{done.stderr}")
    lines = done.stdout.strip().splitlines()
    return elapsed, json.loads(lines[-1]) if lines else {}


def run_child(*args: str) -> tuple[float, dict[str, Any]]:
    return spawn(__file__, *args)


# --------------------------------------------------------------------------------------------- parent

Timed = tuple[float, dict[str, Any]]  # a child's wall time and what it reported


def available() -> list[str]:
    """The formats whose libraries are installed; a line for each that is not."""
    forms = []
    for form, (_, modules) in FORMATS.items():
        missing = [m for m in modules if importlib.util.find_spec(m.split(".")[0]) is None]
        if missing:
            print(f"skipped {form}: {', '.join(missing)} not installed")
        else:
            forms.append(form)
    return forms


def measure(forms: list[str], rows: int, repeats: int) -> dict[str, Any]:
    """Every write, then every load and reference process, each round interleaved."""
    n = str(rows)
    writes: dict[str, list[dict[str, Any]]] = {f: [] for f in forms if f in WRITERS}
    refs: dict[str, list[Timed]] = {"bare": [], "pandas": [], "pyarrow": [], "baseline": []}
    loads: dict[str, list[Timed]] = {f: [] for f in forms}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(repeats):
            for form, rounds in writes.items():
                Path(file_for(form, tmp)).unlink(missing_ok=True)
                rounds.append(run_child("--rows", n, "--child", "write", form, tmp)[1])
        # Warm the page cache and the bytecode cache; check each loader's frame against the generated one.
        for form in forms:
            run_child("--rows", n, "--child", "load", form, tmp)
        verdict = run_child("--rows", n, "--child", "verify", ",".join(forms), tmp)[1]
        for _ in range(repeats):
            refs["bare"].append(spawn("-c", "pass"))
            refs["pandas"].append(spawn("-c", "import pandas"))
            if importlib.util.find_spec("pyarrow") is not None:
                refs["pyarrow"].append(spawn("-c", "import pyarrow"))
            refs["baseline"].append(run_child("--child", "baseline", "-", "-"))
            for form in forms:
                loads[form].append(run_child("--rows", n, "--child", "load", form, tmp))
    return {"writes": writes, "refs": refs, "loads": loads, "verdict": verdict}


def ratio(value: float, reference: float) -> str:
    """``value / reference``, or n/a where noise made the reference meaningless (at a few rows)."""
    return f"{value / reference:.2f}" if reference > 0 else "n/a"


def report(forms: list[str], rows: int, repeats: int, measured: dict[str, Any]) -> None:
    med = statistics.median
    writes, refs, loads = measured["writes"], measured["refs"], measured["loads"]
    wall = {name: med(w for w, _ in timed) if timed else math.nan for name, timed in refs.items()}
    pandas_import = wall["pandas"] - wall["bare"]
    print(f"{rows:,} runs x 37 columns; medians of {repeats} rounds, each write and load in a fresh process")
    print(f"\n{'reference (fresh process)':46}{'ms':>8}")
    print(f"{'python -c pass':46}{wall['bare'] * 1e3:8.0f}")
    print(f"{'python -c <import pandas>':46}{wall['pandas'] * 1e3:8.0f}")
    print(f"{'  import pandas (minus the bare interpreter)':46}{pandas_import * 1e3:8.0f}")
    print(f"{'  import numpy+pandas, in-process':46}{med(r['pandas_s'] for _, r in refs['baseline']) * 1e3:8.0f}")
    print(f"{'  import pyarrow (minus the bare interpreter)':46}{(wall['pyarrow'] - wall['bare']) * 1e3:8.0f}")
    print(f"{'baseline: this script importing numpy+pandas':46}{wall['baseline'] * 1e3:8.0f}")
    print(f"pandas imports pyarrow itself: {'yes' if refs['baseline'][0][1]['pandas_imports_pyarrow'] else 'no'}")

    fresh = {f: med(w for w, _ in loads[f]) - wall["baseline"] for f in forms}
    inproc = {f: med(r["load_s"] for _, r in loads[f]) for f in forms}
    best_fresh, best_in = min(fresh.values()), min(inproc.values())
    header = (
        f"{'format':17}{'size MB':>9}{'write ms':>10}{'import ms':>11}{'load ms':>9}{'fresh-base ms':>15}"
        f"{'load/best':>11}{'fresh/best':>12}{'fresh/pandas':>14}"
    )
    print(f"\n{header}")
    print("-" * len(header))
    for form in sorted(forms, key=fresh.__getitem__):
        written = writes.get(SAME_FILE.get(form, form), [])
        size = med(r["bytes"] for r in written) / 1e6
        write = med(r["write_s"] for r in written) * 1e3
        imports = med(r["import_s"] for _, r in loads[form]) * 1e3
        print(
            f"{form:17}{size:9.2f}{write:10.0f}{imports:11.1f}{inproc[form] * 1e3:9.0f}{fresh[form] * 1e3:15.0f}"
            f"{ratio(inproc[form], best_in):>11}{ratio(fresh[form], best_fresh):>12}"
            f"{ratio(fresh[form], pandas_import):>14}"
        )
    print(
        "\nimport ms: the format's libraries imported after numpy+pandas, in-process.  load ms: from the read to the"
        " finished frame,\nin-process.  fresh-base ms: the whole fresh load process minus the baseline process."
        "  fresh/pandas: that\nagainst `import pandas`.  Write and size of a loader variant are those of its file."
    )
    notes = [(f, d) for f in forms for d in measured["verdict"].get(f, [])]
    print("\ndifferences from the generated frame:" if notes else "\nevery loaded frame equals the generated one")
    for form, note in notes:
        print(f"  {form}: {note}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000, help="runs in the table (default 100,000)")
    parser.add_argument("--repeats", type=int, default=5, help="rounds; medians are printed (default 5)")
    parser.add_argument("--child", nargs=3, metavar=("PHASE", "FORMAT", "DIRECTORY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(*args.child, rows=args.rows)), flush=True)
        os._exit(0)  # no teardown of the frame in any child
    forms = available()
    report(forms, args.rows, args.repeats, measure(forms, args.rows, args.repeats))


if __name__ == "__main__":
    main()
