"""Dispatch ``python -m hpcdlrm.bench NAME ...`` to ``hpcdlrm.bench.NAME.main``."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("loader", "preprocess", "train", "sweep", "report", "scaling")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in BENCHMARKS:
        print(f"usage: python -m hpcdlrm.bench {{{','.join(BENCHMARKS)}}} [--json] [options]", file=sys.stderr)
        return 2
    try:
        module = importlib.import_module(f"hpcdlrm.bench.{argv[0]}")
    except ModuleNotFoundError as e:
        if e.name == f"hpcdlrm.bench.{argv[0]}":
            print(f"benchmark {argv[0]!r} is not implemented yet", file=sys.stderr)
            return 2
        raise
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
