"""ml_manager inside the training frameworks where distributed training happens: every rank logs into ONE run.

* :mod:`ml_manager.integrations.lightning` — ``MLManagerLogger``, a PyTorch Lightning logger
  (:mod:`ml_manager.integrations.pytorch_lightning` for the older ``pytorch_lightning`` package name);
* :mod:`ml_manager.integrations.transformers` — ``MLManagerCallback``, a Hugging Face ``TrainerCallback``;
* :mod:`ml_manager.integrations.accelerate` — ``MLManagerTracker``, an accelerate ``GeneralTracker``.

Importing this package imports none of the frameworks; each module imports its own when it is imported.
"""
