"""Dispatch ``python -m hpcdlrm.bench NAME ...`` to ``hpcdlrm.bench.NAME.main``."""

from __future__ import annotations

import importlib
import sys

from ..errors import HpcDlrmError

# name -> what it measures: the help lists them without importing any (some load torch)
BENCHMARKS = {
    "loader": "samples/s one rank reads from HDF5 shards (train and eval order)",
    "preprocess": "rows/s of preprocessing a generated Criteo TSV (one process)",
    "train": "training samples/s end to end, kaggle preset (--bf16, --profile: where a step goes)",
    "sweep": "trials and wall-clock the sweep's optimizer and capping need to a target, against "
             "baseline optimizers (training surrogate)",
    "importance": "seeds in which a 24-trial sweep's importance ranks the truly most important parameter "
                  "first (training surrogate)",
    "default-sweep": "README command 1 over seeds: the incumbent's time to target, at which finished trial the "
                     "target is first reached, what fANOVA ranks first (real training)",
    "false-stops": "real re-runs of the trials a sweep's learning-curve rule stopped: how many would have reached "
                   "the target within the incumbent's cap",
    "sweep-real": "trials to target of short real sweeps on synthetic data: the sweep's optimizer vs random "
                  "(and Optuna TPE when installed)",
    "surrogate-fit": "how well each landscape of the training surrogate predicts real sweeps' trials (divergence, "
                     "best-AUC ranks)",
    "report": "seconds to build a full sweep report (500 trials)",
    "scaling": "where a step's time goes at 1/2/4 real ranks (compute, all-to-all, all-reduce); feeds "
               "`hpcdlrm.plan calibrate`",
}


def usage() -> str:
    width = max(map(len, BENCHMARKS))
    lines = [f"usage: python -m hpcdlrm.bench {{{','.join(BENCHMARKS)}}} [--json] [options]", "",
             "Benchmarks: each prints its figures (--json: one object per line with metric, value, unit).", "",
             "benchmarks:"]
    lines += [f"  {name:<{width}}  {what}" for name, what in BENCHMARKS.items()]
    lines += ["", "python -m hpcdlrm.bench NAME --help shows a benchmark's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if not argv or argv[0] not in BENCHMARKS:
        what = f"unknown benchmark {argv[0]!r}" if argv else "no benchmark given"
        print(f"{usage()}\n\nerror: {what}", file=sys.stderr)
        return 2
    module = importlib.import_module(f"hpcdlrm.bench.{argv[0].replace('-', '_')}")
    try:
        return int(module.main(argv[1:]) or 0)
    except HpcDlrmError as e:  # bad input (a sweep directory, a flag): one line, as every CLI here
        print(f"hpcdlrm.bench {argv[0]}: error: {e}", file=sys.stderr)
        return 2


from ..io import cli  # noqa: E402 - only the command line needs it

if __name__ == "__main__":
    raise SystemExit(cli(main))
