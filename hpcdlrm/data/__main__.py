"""``python -m hpcdlrm.data {synth,preprocess,inspect} ...``

Each subcommand lives in its own module with ``cli(argv) -> int``; this file only dispatches and maps
the project's errors to a one-line message and exit code 2.
"""

from __future__ import annotations

import importlib
import sys

from ..errors import HpcDlrmError

# name -> (module, what it does): the help lists them without importing any
COMMANDS = {
    "synth": ("hpcdlrm.data.synth", "generate a synthetic Criteo-shaped dataset with a known ceiling AUC"),
    "preprocess": ("hpcdlrm.data.preprocess", "turn raw Criteo Kaggle/Terabyte TSV files into HDF5 shards + "
                                              "manifest.json (MPI ranks; resumable)"),
    "inspect": ("hpcdlrm.data.inspect", "show what a dataset holds and check that every shard is whole"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [f"usage: python -m hpcdlrm.data {{{','.join(COMMANDS)}}} [-h] ...", "",
             "Make and check hpcdlrm datasets (a directory of HDF5 shards + manifest.json).", "", "commands:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, what) in COMMANDS.items()]
    lines += ["", "python -m hpcdlrm.data COMMAND --help shows a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in COMMANDS:
        what = f"unknown command {argv[0]!r}" if argv else "no command given"
        print(f"{usage()}\n\nerror: {what}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    try:
        return int(module.cli(argv[1:]) or 0)
    except HpcDlrmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


from ..io import cli  # noqa: E402 - only the command line needs it

if __name__ == "__main__":
    raise SystemExit(cli(main))
