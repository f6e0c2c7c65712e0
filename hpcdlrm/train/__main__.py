"""``python -m hpcdlrm.train --data DIR --out RUN_DIR [options]``: one rank, or every rank under
``mpiexec -n R``, ``srun`` or ``torchrun``. Flags are the fields of :class:`TrainConfig`.

Exit codes: 0 completed / reached the target / stopped by --max-time; 2 bad option, data, output
directory, checkpoint or memory (one-line message; refused before training starts, it writes nothing);
3 diverged; 4 preempted: stopped by SIGTERM/SIGUSR1 after a checkpoint (rerun to resume); 1 any other failure
(traceback). Every outcome except a refusal leaves RUN_DIR/result.json.
"""

from __future__ import annotations

import argparse
import sys

from ..env import detect
from ..errors import HpcDlrmError
from . import run
from .config import add_arguments, from_args
from .result import Status

EXIT = {Status.COMPLETED: 0, Status.REACHED_TARGET: 0, Status.TIMEOUT: 0, Status.DIVERGED: 3, Status.PREEMPTED: 4}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m hpcdlrm.train", description=__doc__.split("\n\n")[0])
    add_arguments(parser)
    ns = parser.parse_args(argv)
    try:
        result = run(from_args(ns))
    except HpcDlrmError as e:
        # Refusals are agreed (every rank raises the same one): rank 0 says it, once per job.
        if _rank() == 0:
            print(f"error: {e}", file=sys.stderr)
        return 2
    if detect().rank == 0:
        auc = result.best_auc
        print(f"{result.status}: best AUC {'n/a' if auc is None else f'{auc:.4f}'}, {result.samples:,} samples in "
              f"{result.wall_s:.1f} s ({result.samples_per_s or 0:,.0f} samples/s train), "
              f"time to target {result.time_to_target_s}; {ns.out}/result.json", flush=True)
    return EXIT.get(result.status, 1)


def _rank() -> int:
    try:
        return detect().rank
    except HpcDlrmError:  # a launcher environment it cannot read: say it on every rank
        return 0


if __name__ == "__main__":
    from .distributed import leave

    leave(main())
