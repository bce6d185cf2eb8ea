"""The Trainer example on one process or two CPU ranks, run by the integration tests in a fresh interpreter
(see _child_setup); the ranks are forked by ``accelerate.debug_launcher``.

    python _hf_child.py RANKS [the example's options]
"""

from __future__ import annotations

import sys

from _child_setup import EXAMPLES, strict_warnings

strict_warnings()
sys.path.insert(0, str(EXAMPLES))

import accelerate  # noqa: E402 - after the warning filters
import hf_trainer  # noqa: E402

if __name__ == "__main__":
    ranks, argv = int(sys.argv[1]), sys.argv[2:]
    if ranks == 1:
        hf_trainer.main(argv)
    else:
        accelerate.debug_launcher(hf_trainer.main, args=(argv,), num_processes=ranks)
