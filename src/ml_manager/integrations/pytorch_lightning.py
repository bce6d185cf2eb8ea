"""``MLManagerLogger`` for the older ``pytorch_lightning`` package name.

Example::

    from ml_manager.integrations.pytorch_lightning import MLManagerLogger

    trainer = pytorch_lightning.Trainer(logger=MLManagerLogger("./checkpoints", "my-project"), devices=4)

Importing this module imports ``pytorch_lightning``; with the ``lightning`` package use
:mod:`ml_manager.integrations.lightning`.  Both loggers behave the same.
"""

from __future__ import annotations

from pytorch_lightning.loggers.logger import Logger

from ._lightning import LoggerMixin

__all__ = ["MLManagerLogger"]


class MLManagerLogger(LoggerMixin, Logger):
    """:class:`ml_manager.integrations.lightning.MLManagerLogger`, on ``pytorch_lightning``'s ``Logger`` base."""
