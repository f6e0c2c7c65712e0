"""Write a full report of a plausible fake sweep, to see the figures without running one.

    python analysis/demo_report.py OUT_DIR [--trials 30] [--points 40] [--seed 0]
"""

from __future__ import annotations

import argparse

from hpcdlrm.report import build
from hpcdlrm.report.demo import fake_sweep


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Full report of a fake sweep.")
    p.add_argument("out_dir")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--points", type=int, default=40, help="AUC evaluations per full-length trial")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    for path in build(fake_sweep(args.trials, args.points, args.seed), args.out_dir):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
