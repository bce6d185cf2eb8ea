"""Warnings on the ``ml_manager`` logger; :mod:`logging` is imported on the first one (it costs more to import
than most of the package, and most processes never warn)."""

from __future__ import annotations

from typing import Any


def warning(message: str, *args: Any, exc_info: bool = False) -> None:
    """``logging.getLogger("ml_manager").warning(...)``, attributed to the caller."""
    import logging

    logging.getLogger("ml_manager").warning(message, *args, exc_info=exc_info, stacklevel=2)
