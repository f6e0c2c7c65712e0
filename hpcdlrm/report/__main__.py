"""``python -m hpcdlrm.report SWEEP_DIR [SWEEP_DIR ...] [--out DIR]``: write the PNG report of one sweep
(default ``SWEEP_DIR/report/``) or compare several (default ``report-compare/`` beside them)."""

from __future__ import annotations

import argparse
import sys

from hpcdlrm.errors import HpcDlrmError


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m hpcdlrm.report",
        description="Write the PNG report (figures + index.md) of one sweep, or compare several sweeps.",
    )
    p.add_argument("sweep_dirs", nargs="+", metavar="SWEEP_DIR", help="sweep directory (as written by the sweep)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: SWEEP_DIR/report, or report-compare beside several sweeps)")
    p.add_argument("--scaling", default=None, metavar="FILE",
                   help="scaling measurements (`python -m hpcdlrm.bench scaling --out FILE`) for scaling.png "
                        "[default: SWEEP_DIR/scaling.jsonl when present]")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from hpcdlrm.report.builder import build  # after argument parsing: --help stays instant

    try:
        written = build(args.sweep_dirs, args.out, scaling=args.scaling)
    except HpcDlrmError as e:
        print(f"hpcdlrm.report: error: {e}", file=sys.stderr)
        return 2
    for path in written:
        print(path)
    return 0


from ..io import cli  # noqa: E402 - only the command line needs it

if __name__ == "__main__":
    raise SystemExit(cli(main))
