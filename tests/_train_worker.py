"""Run under ``mpiexec -n R``: several tiny training runs in one launch (torch imported once per rank);
rank 0 prints one JSON line per run.

    python tests/_train_worker.py DATA OUT_ROOT '[["name", {"TrainConfig field": value, ...}], ...]'
"""

from __future__ import annotations

import json
import sys

from hpcdlrm.env import detect
from hpcdlrm.train import TrainConfig, run


def main(argv: list[str]) -> int:
    data, out_root, runs = argv[0], argv[1], json.loads(argv[2])
    for name, fields in runs:
        result = run(TrainConfig(data=data, out=f"{out_root}/{name}", **fields))
        if detect().rank == 0:
            print(json.dumps({"name": name, "kind": result.plan["kind"], "status": result.status.value,
                              "ranks": result.env["ranks"]}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
