"""Two ranks against one on this host, paired: the goal's two commands, alternated round by round.

    python analysis/ranks_vs_one.py [--rounds 6] [--ranks 2] [--backend mpi] [-- BENCH_TRAIN_FLAGS...]

Each round runs ``python -m hpcdlrm.bench train --json --batch-size 4096 FLAGS`` (one rank, all cores)
then ``mpiexec -n R ... --backend mpi`` (one thread per rank) and prints both rates, their ratio and
the 2-rank step's exposed communication; the last line is the median ratio over the rounds. One
machine's rates drift by a few % between minutes: only ratios of neighbouring runs mean anything.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys


def _bench(prefix: list[str], flags: list[str]) -> dict[str, dict]:
    """``bench train --json``'s records by metric name."""
    cmd = [*prefix, sys.executable, "-m", "hpcdlrm.bench", "train", "--json", *flags]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return {rec["metric"]: rec for rec in map(json.loads, filter(None, out.splitlines()))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--ranks", type=int, default=2)
    p.add_argument("--backend", default="mpi")
    p.add_argument("flags", nargs="*", help="more `bench train` flags (after --)")
    args = p.parse_args(argv)
    mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        print("error: mpiexec not found (pip install -e '.[mpi]')", file=sys.stderr)
        return 2
    flags = ["--batch-size", "4096", *args.flags]
    ratios = []
    for r in range(1, args.rounds + 1):
        one = _bench([], flags)
        many = _bench([mpiexec, "-n", str(args.ranks)], [*flags, "--backend", args.backend])
        a, b = one["train_samples_per_s"], many["train_samples_per_s"]
        ratio = b["value"] / a["value"]
        ratios.append(ratio)
        print(f"round {r}: 1 rank {a['value']:,.0f}  {args.ranks} ranks {b['value']:,.0f} samples/s  "
              f"ratio {ratio:.3f}  exposed comm {many['step_comm_exposed_ms']['value']:.2f} ms of "
              f"{b['median_step_ms']:.1f} ms/step", flush=True)
    print(f"ratio_{args.ranks}_ranks_vs_1: median {statistics.median(ratios):.3f}  "
          f"range {min(ratios):.3f}-{max(ratios):.3f}  rounds {len(ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
