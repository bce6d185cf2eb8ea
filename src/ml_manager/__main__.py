"""``python -m ml_manager``: the ``ml-manager`` command."""

from .cli import run

if __name__ == "__main__":
    run()
