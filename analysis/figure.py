"""Render one report figure of a sweep to a PNG (the drawing code lives in ``hpcdlrm.report``).

    python analysis/figure.py history SWEEP_DIR [--out history.png]
    python analysis/figure.py --list
"""

from __future__ import annotations

import argparse
import sys

from hpcdlrm.errors import HpcDlrmError
from hpcdlrm.report.builder import FIGURES, ReportConfig, load_data
from hpcdlrm.report.style import save_png


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Render one report figure of a sweep.")
    p.add_argument("name", nargs="?", choices=sorted(FIGURES))
    p.add_argument("sweep_dir", nargs="?")
    p.add_argument("--out", help="PNG path (default: NAME.png in the current directory)")
    p.add_argument("--list", action="store_true", help="list the figure names")
    args = p.parse_args(argv)
    if args.list or not (args.name and args.sweep_dir):
        print("\n".join(sorted(FIGURES)))
        return 0 if args.list else 2
    try:
        data = load_data(args.sweep_dir)
    except HpcDlrmError as e:
        print(f"figure.py: error: {e}", file=sys.stderr)
        return 2
    out = save_png(FIGURES[args.name](data, f"{data.info.name}: ", ReportConfig()), args.out or f"{args.name}.png")
    print(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
