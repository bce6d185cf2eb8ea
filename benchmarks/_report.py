"""The summary table every benchmark ends with: one row per figure, what was measured, and its goal or peer."""

from __future__ import annotations


def print_summary(rows: list[tuple[str, str, str]], rounds: int, last_column: str = "goal") -> None:
    """Print ``(figure, measured, goal or peer)`` rows under a header naming the rounds."""
    width = max(len(row[0]) for row in rows)
    print(f"\nsummary, median of {rounds} rounds")
    print(f"{'figure':{width}}  {'measured':>14}  {last_column}")
    for figure, measured, last in rows:
        print(f"{figure:{width}}  {measured:>14}  {last}")
