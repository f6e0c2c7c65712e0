"""``python -m hpcdlrm.plan``: predicted throughput of a CPU cluster per sharding plan, and the pick.

    python -m hpcdlrm.plan --nodes 8 --sockets-per-node 8 --net-gbps 100 [--preset mlperf]
        [--global-batch 262144] [--epoch-samples N] [--target-epochs 0.8] [--calibration FILE]
        [--flops-per-socket F] [--mem-scale X] [--intra-node-gbps B] [--net-latency-us U] [--json]
    python -m hpcdlrm.plan calibrate SCALING.jsonl [--out FILE]     # fit rates to bench measurements
    python -m hpcdlrm.plan validate [--json] [--net-gbps 100]      # the model vs Intel's MLPerf runs

One rank per socket, the real Criteo table sizes of the preset (1TB capped at 40M rows for mlperf,
Kaggle for kaggle). See ``hpcdlrm/plan/planner.py`` for where the default socket rates come from.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..errors import ConfigError, HpcDlrmError
from .calibrate import Calibration, calibrate, host_info, read_measurements, relative_errors
from .cost import VERTICAL, Cluster, Overlap
from .criteo import DATASETS, EVAL_SAMPLES
from .planner import (DEFAULT_ALPHA_S, DEFAULT_INTRA_NODE_BYTES, DEFAULT_MEM_SCALE, Schedule, Socket,
                      measured_efficiency, options)


def _positive(kind: type) -> Any:
    def parse(text: str) -> Any:
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {kind.__name__}, got {text!r}") from None
        if not v > 0:
            raise argparse.ArgumentTypeError(f"must be > 0, got {text!r}")
        return v
    return parse


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.plan", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nodes", type=_positive(int), required=True)
    ap.add_argument("--sockets-per-node", type=_positive(int), required=True, help="one rank per socket")
    ap.add_argument("--net-gbps", type=_positive(float), required=True, help="network bandwidth per node, Gbit/s")
    ap.add_argument("--preset", choices=sorted(DATASETS), default="mlperf")
    ap.add_argument("--global-batch", type=_positive(int), default=262_144)
    ap.add_argument("--epoch-samples", type=_positive(int),
                    help="training rows per epoch (default: the preset's Criteo)")
    ap.add_argument("--target-epochs", type=_positive(float), default=0.8,
                    help="epochs to reach the target AUC [0.8: Intel's MLPerf v1.0 run reached 0.8025 after 0.80]")
    ap.add_argument("--calibration", help="rates fitted by `python -m hpcdlrm.plan calibrate` (default: shipped)")
    ap.add_argument("--flops-per-socket", type=_positive(float),
                    help="MLP FLOP/s of one socket [hpcdlrm's measured efficiency x a Xeon 8376H's fp32 peak]")
    ap.add_argument("--mem-scale", type=_positive(float), default=DEFAULT_MEM_SCALE,
                    help=f"memory-bound speed of a socket vs the calibration host [{DEFAULT_MEM_SCALE:g}]")
    ap.add_argument("--intra-node-gbps", type=_positive(float), default=DEFAULT_INTRA_NODE_BYTES * 8 / 1e9,
                    help=f"bandwidth between a node's sockets, Gbit/s [{DEFAULT_INTRA_NODE_BYTES * 8 / 1e9:g}]")
    ap.add_argument("--net-latency-us", type=_positive(float), default=DEFAULT_ALPHA_S * 1e6,
                    help=f"per-message latency of a collective, us [{DEFAULT_ALPHA_S * 1e6:g}]")
    ap.add_argument("--overlap", choices=[o.value for o in Overlap], default=Overlap.HPCDLRM.value,
                    help="which communication runs under compute [hpcdlrm: the trainer's --overlap]")
    ap.add_argument("--shardings", default="table,column,vertical",
                    help="the trainer's plans to compare: table, column, vertical (Intel v1.0's: each table of "
                         ">= 2,048 rows split into ranks/tables column pieces; --replicate-threshold 2048) "
                         "[table,column,vertical]")
    ap.add_argument("--a2a-dtype", choices=("fp32", "bf16"), default="bf16",
                    help="embedding activations/gradients in the all-to-all: bf16 is the trainer's exchange under "
                         "--bf16 (the target Xeon 8376H has native AVX512_BF16, as Intel's run used), fp32 without "
                         "[bf16]")
    ap.add_argument("--eval-every-epochs", type=_positive(float), default=0.05,
                    help="evaluate this often on the way to the target [0.05: MLPerf]")
    ap.add_argument("--eval-samples", type=int, help="rows of one evaluation (default: the preset's; 0: none)")
    ap.add_argument("--json", action="store_true", help="one JSON object per sharding plan")
    return ap.parse_args(argv)


def _train_flags(sharding: str, a2a_dtype: str) -> str:
    """The trainer's flags that run the plan the prediction is for."""
    flags = f"--sharding {sharding}" + (" --replicate-threshold 2048" if sharding == VERTICAL else "")
    return flags + (" --bf16" if a2a_dtype == "bf16" else "")


def _fmt_s(s: float) -> str:
    return f"{s:,.0f} s ({s / 60:,.1f} min)" if s < 36_000 else f"{s / 3600:,.1f} h"


def plan_main(argv: list[str]) -> int:
    args = parse_args(argv)
    cal = Calibration.load(args.calibration)
    tables, epoch = DATASETS[args.preset]
    epoch = args.epoch_samples or epoch
    socket = Socket(args.flops_per_socket, args.mem_scale, args.intra_node_gbps * 1e9 / 8, args.net_latency_us * 1e-6)
    cluster = Cluster(args.nodes, args.sockets_per_node, 1, args.net_gbps * 1e9 / 8)
    rates = socket.rates(cal)
    schedule = Schedule(args.eval_every_epochs,
                        EVAL_SAMPLES[args.preset] if args.eval_samples is None else args.eval_samples)
    kinds = [k.strip() for k in args.shardings.split(",") if k.strip()]
    bad = [k for k in kinds if k not in ("table", "column", VERTICAL)]
    if bad or not kinds:
        raise ConfigError(f"--shardings: {bad or args.shardings!r} not in table, column, {VERTICAL}")
    opts = options(args.preset, tables, args.global_batch, cluster, rates, epoch, args.target_epochs, kinds,
                   overlap=Overlap(args.overlap), schedule=schedule, act_bytes=2 if args.a2a_dtype == "bf16" else 4)
    if not args.json:
        print(f"{cluster.world} ranks ({args.nodes} nodes x {args.sockets_per_node} sockets), {args.preset}, "
              f"global batch {args.global_batch:,} ({args.global_batch // cluster.world:,} per rank), "
              f"{args.net_gbps:g} Gbit/s per node; epoch {epoch:,} samples")
        source = "--flops-per-socket" if args.flops_per_socket else \
            f"hpcdlrm's measured {measured_efficiency(cal):.2f} of this host's fp32 peak"
        print(f"socket: {rates.flops_per_s / 1e12:.2f} TFLOP/s ({source}); overlap {args.overlap}")
    for o in opts:
        c = o.cost
        row = {"sharding": o.sharding, "samples_per_s": round(c.samples_per_s), "step_ms": round(1e3 * c.step_s, 2),
               "compute_ms": round(1e3 * c.compute_s, 2), "a2a_ms": round(1e3 * c.a2a_s, 2),
               "allreduce_ms": round(1e3 * c.allreduce_s, 2), "loader_ms": round(1e3 * c.loader_s, 2),
               "exposed_comm_ms": round(1e3 * c.exposed_comm_s, 2), "hidden_ms": round(1e3 * c.hidden_s, 2),
               "epoch_s": round(o.epoch_s, 1), "time_to_target_s": round(o.target_s, 1),
               "evals": o.evals, "eval_s": round(o.eval_s, 2), "flops_per_socket": round(rates.flops_per_s),
               "overlap": args.overlap, "a2a_dtype": args.a2a_dtype,
               "target_epochs": args.target_epochs, "emb_gib_per_rank": round(o.emb_gib_per_rank, 2),
               "train_flags": _train_flags(o.sharding, args.a2a_dtype), "recommended": o is opts[0]}
        if args.json:
            print(json.dumps(row))
            continue
        print(f"  {o.sharding:>6}: {c.samples_per_s:>12,.0f} samples/s  step {1e3 * c.step_s:8.1f} ms = compute "
              f"{1e3 * c.compute_s:.1f} + all-to-all {1e3 * c.a2a_s:.1f} + all-reduce {1e3 * c.allreduce_s:.1f} "
              f"- hidden {1e3 * c.hidden_s:.1f} + loader {1e3 * c.loader_s:.1f}; epoch {_fmt_s(o.epoch_s)}; "
              f"{o.evals} evaluations of {o.eval_s:.1f} s; {o.emb_gib_per_rank:.1f} GiB tables/rank")
    if not args.json:
        best = opts[0]
        print(f"recommended: {_train_flags(best.sharding, args.a2a_dtype)}; predicted time to {args.target_epochs:g} epoch: "
              f"{_fmt_s(best.target_s)} (training steps and evaluations, MLPerf's clock; no start-up)")
    return 0


def calibrate_main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.plan calibrate",
                                 description="Fit the cost model's rates to scaling-bench measurements.")
    ap.add_argument("measurements", help="JSONL from `python -m hpcdlrm.bench scaling --out FILE`")
    ap.add_argument("--out", help="write the calibration JSON here (default: print it)")
    args = ap.parse_args(argv)
    recs = [r for r in read_measurements(args.measurements) if r["ranks_per_host"] == r["ranks"]]
    cal = calibrate(recs, host_info())
    for r, err in zip(recs, relative_errors(recs, cal.rates)):
        print(f"# {r['preset']:>6} {r['sharding']:>6} {r['ranks']} ranks batch {r['global_batch']}: "
              f"measured {r['samples_per_s']:,.0f} samples/s, error {100 * err:.1f}%", file=sys.stderr)
    if args.out:
        cal.save(args.out)
    else:
        print(json.dumps(cal.to_dict(), indent=2))
    return 0


def validate_main(argv: list[str]) -> int:
    from .validate import NET_GBPS, TOLERANCE, validate  # noqa: PLC0415

    ap = argparse.ArgumentParser(prog="python -m hpcdlrm.plan validate",
                                 description="The cost model against Intel's published MLPerf DLRM CPU runs.")
    ap.add_argument("--json", action="store_true", help="one JSON object per published run")
    ap.add_argument("--net-gbps", type=_positive(float), default=NET_GBPS,
                    help=f"assumed network bandwidth per node, Gbit/s [{NET_GBPS:g}]")
    args = ap.parse_args(argv)
    preds = validate(args.net_gbps)
    if args.json:
        for p in preds:
            print(json.dumps(p.row()))
        return 0
    print(f"{'published run':<26} {'sockets':>7} {'batch':>8} {'epochs':>6} {'predicted_s':>11} {'published_s':>11} "
          f"{'error':>7}  step ms (compute + exposed comm)")
    for p in preds:
        r = p.row()
        mark = " (anchor)" if p.in_sample else ""
        print(f"{r['run']:<26} {r['sockets']:>7} {r['global_batch']:>8,} {r['epochs']:>6.3f} "
              f"{r['predicted_s']:>11,.0f} "
              f"{r['published_s']:>11,.0f} {100 * r['error']:>+6.1f}%  {r['step_ms']:.1f} = {r['compute_ms']:.1f} + "
              f"{p.step.exposed_comm_s * 1e3:.1f}{mark}")
    held = [p for p in preds if not p.in_sample]
    ok = sum(abs(p.error) <= TOLERANCE for p in held)
    print(f"{ok} of {len(held)} predicted runs within {100 * TOLERANCE:.0f}% (compute efficiency "
          f"{preds[0].efficiency:.3f} of the bf16 peak, from the anchor); assumptions: hpcdlrm/plan/validate.py")
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] == "validate":
            return validate_main(argv[1:])
        if argv and argv[0] == "calibrate":
            return calibrate_main(argv[1:])
        return plan_main(argv)
    except (HpcDlrmError, ConfigError) as e:
        print(f"hpcdlrm.plan: error: {e}", file=sys.stderr)
        return 2


from ..io import cli  # noqa: E402 - only the command line needs it

if __name__ == "__main__":
    raise SystemExit(cli(main))
