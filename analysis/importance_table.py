"""Print a sweep's parameter importance as a table (fANOVA with seed spread, PED-ANOVA for the target).

    python analysis/importance_table.py SWEEP_DIR [--trees 16] [--seeds 5]
"""

from __future__ import annotations

import argparse
import sys

from hpcdlrm.errors import HpcDlrmError
from hpcdlrm.report.builder import load_data
from hpcdlrm.report.importance import ImportanceInfo, importance_info


def table(info: ImportanceInfo) -> list[str]:
    """One row per parameter, most important (by fANOVA, else PED-ANOVA) first."""
    fan = info.fanova_mean or (0.0,) * len(info.names)
    std = info.fanova_std or (0.0,) * len(info.names)
    ped = info.ped_share
    rows = [f"{'parameter':<24} {'fANOVA':>8} {'± std':>7} {'PED-ANOVA':>10}"]
    for i in sorted(range(len(info.names)), key=lambda i: -(fan[i] if info.fanova_mean else (ped or fan)[i])):
        rows.append(f"{info.names[i]:<24} {fan[i]:>8.3f} {std[i]:>7.3f} {ped[i] if ped else float('nan'):>10.3f}")
    if info.interaction is not None:
        rows.append(f"{'(interactions)':<24} {info.interaction:>8.3f}")
    rows.append(f"fANOVA on {info.n_trials} finished trials; PED-ANOVA: {info.n_top} trials {info.top_label} "
                f"vs {info.n_region}")
    return rows + [f"warning: {w}" for w in info.warnings]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Parameter importance of a sweep, as text.")
    p.add_argument("sweep_dir")
    p.add_argument("--trees", type=int, default=16, help="trees per forest")
    p.add_argument("--seeds", type=int, default=5, help="forests (the spread between them is the ± std)")
    args = p.parse_args(argv)
    try:
        data = load_data(args.sweep_dir)
    except HpcDlrmError as e:
        print(f"importance_table.py: error: {e}", file=sys.stderr)
        return 2
    print("\n".join(table(importance_info(data, args.trees, tuple(range(args.seeds))))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
