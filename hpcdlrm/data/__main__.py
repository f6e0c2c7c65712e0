"""``python -m hpcdlrm.data {synth,preprocess,inspect} ...``

Each subcommand lives in its own module with ``cli(argv) -> int``; this file only dispatches and maps
the project's errors to a one-line message and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import HpcDlrmError

COMMANDS = {
    "synth": "hpcdlrm.data.synth",
    "preprocess": "hpcdlrm.data.preprocess",
    "inspect": "hpcdlrm.data.inspect",
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        print(f"usage: python -m hpcdlrm.data {{{','.join(COMMANDS)}}} [-h] ...", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]])
    try:
        return int(module.cli(argv[1:]) or 0)
    except HpcDlrmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
