"""``python -m hpcdlrm.plan validate``: the cost model against Intel's published MLPerf DLRM runs.

The model is :func:`hpcdlrm.plan.cost.predict` (the same one the planner uses), given each run's
hardware and recipe (:mod:`hpcdlrm.plan.published`) and ONE set of socket rates derived from the
hardware by the assumptions below; nothing is fitted per run. Predicted time = steps to the run's epochs
x step time + evaluations x evaluation time (MLPerf's clock includes the evaluations).

Assumptions (each one a constant here, so a reader can change it and see what moves):

- compute: 24 of the 28 cores run the model (the run scripts give 24 OpenMP threads per socket; the rest
  drive oneCCL), at the base clock, 128 bf16 FLOP per cycle per core (AVX512_BF16: 2 FMA ports x 16 lanes
  x 2 products x 2 FLOP), at an efficiency (share of that peak for the whole MLP + interaction work)
  that is the ONE number taken from a published run: the anchor, v0.7 on one 4-socket node (no network;
  compute is 95% of its step). It is solved so that the anchor's prediction equals its time; the other
  five runs are predictions (``in_sample`` false);
- embeddings: every row a rank gathers is read once and updated (read + write) once, in whole 64-byte
  lines, at ``RANDOM_ACCESS_EFFICIENCY`` of the socket's DRAM peak (6 x DDR4-3200 = 153.6 GB/s); the dense
  optimizer (LAMB) makes 7 passes over the MLP's fp32 parameters at 80% of peak;
- all-to-all: bf16 embeddings and gradients; no ids (Intel's loaders read every rank's ids of its own
  tables for the whole global batch from disk);
- network: ``NET_GBPS`` per node (the v1.0 script runs oneCCL over PSM3, Intel's RDMA transport for its
  100 GbE adapters; the system files leave the network blank), ``ALPHA_S`` per message; between the
  sockets of a node one UPI link per socket (``UPI_BYTES_PER_S``: 10.4 GT/s x 2 bytes);
- overlap: Intel's (cost.Overlap.INTEL): the returned embeddings under the bottom MLP, the gradients
  under its backward, the all-reduce under the table update, the next batch's ids under the top MLP;
- the loader and the per-step framework overhead cost nothing (Intel's binary loader runs in its own
  threads);
- one rank per socket; large tables placed as the recipe did (v0.7: each rank an equal number of whole
  tables of >= 2,048 rows; v1.0: each of those 16 tables split by columns into ranks / 16 pieces).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from .cost import Cluster, Overlap, Rates, StepCost, Workload, predict
from .criteo import TERABYTE_TABLES
from .published import EVAL_SAMPLES, RUNS, TRAIN_SAMPLES, PublishedRun, Xeon

COMPUTE_CORES = 24
BF16_FLOP_PER_CYCLE = 128
ANCHOR = "v0.7 1 node x 4 sockets"
RANDOM_ACCESS_EFFICIENCY = 0.5
STREAM_EFFICIENCY = 0.8
LAMB_PASSES = 7
LINE_BYTES = 64
NET_GBPS = 100.0
ALPHA_S = 10e-6
UPI_BYTES_PER_S = 20.8e9
INDEX_BYTES = 0
BF16_BYTES = 2
TOLERANCE = 0.25  # the goal: every prediction within 25% of the published time


def intel_rates(cpu: Xeon, sockets_per_node: int, efficiency: float) -> Rates:
    """Rates of one socket running Intel's MLPerf stack, from the hardware and the assumptions above."""
    mem = cpu.mem_bytes_per_s
    rand = mem * RANDOM_ACCESS_EFFICIENCY
    return Rates(flops_per_s=COMPUTE_CORES * cpu.base_ghz * 1e9 * BF16_FLOP_PER_CYCLE * efficiency,
                 emb_bytes_per_s=rand / 3, emb_row_s=3 * LINE_BYTES / rand,
                 opt_bytes_per_s=mem * STREAM_EFFICIENCY / LAMB_PASSES, loader_s_per_row=0.0, overhead_s=0.0,
                 alpha_s=ALPHA_S, link_bytes_per_s=sockets_per_node * UPI_BYTES_PER_S)


@dataclass(frozen=True)
class Prediction:
    run: PublishedRun
    step: StepCost
    eval_step: StepCost
    steps: int
    evals: int
    efficiency: float

    @property
    def in_sample(self) -> bool:
        return self.run.name == ANCHOR

    @property
    def eval_s(self) -> float:
        return math.ceil(EVAL_SAMPLES / self.run.eval_batch) * self.eval_step.step_s

    @property
    def predicted_s(self) -> float:
        return self.steps * self.step.step_s + self.evals * self.eval_s

    @property
    def error(self) -> float:
        return self.predicted_s / self.run.published_s - 1.0

    def row(self) -> dict[str, Any]:
        r, s = self.run, self.step
        return {"run": r.name, "mlperf": r.mlperf, "sockets": r.sockets, "nodes": r.nodes, "cpu": r.cpu.model,
                "global_batch": r.global_batch, "epochs": round(r.target_epochs, 4), "steps": self.steps,
                "evals": self.evals, "predicted_s": round(self.predicted_s, 1), "published_s": round(r.published_s, 1),
                "error": round(self.error, 4), "within_tolerance": abs(self.error) <= TOLERANCE,
                "step_ms": round(1e3 * s.step_s, 2), "compute_ms": round(1e3 * s.compute_s, 2),
                "a2a_ms": round(1e3 * s.a2a_s, 2), "allreduce_ms": round(1e3 * s.allreduce_s, 2),
                "hidden_ms": round(1e3 * s.hidden_s, 2), "eval_s": round(self.eval_s, 2),
                "samples_per_s": round(s.samples_per_s), "compute_efficiency": round(self.efficiency, 4),
                "in_sample": self.in_sample, "source": r.source}


def predict_run(run: PublishedRun, efficiency: float, net_gbps: float = NET_GBPS) -> Prediction:
    w = Workload.of("mlperf", TERABYTE_TABLES, run.global_batch, run.sharding, run.replicate_threshold)
    w = replace(w, index_bytes=INDEX_BYTES, act_bytes=BF16_BYTES)
    cluster = Cluster(run.nodes, run.sockets_per_node, 1, net_gbps * 1e9 / 8 if run.nodes > 1 else None)
    rates = intel_rates(run.cpu, run.sockets_per_node, efficiency)
    step = predict(w, cluster, rates, Overlap.INTEL)
    eval_step = predict(replace(w, global_batch=run.eval_batch), cluster, rates, Overlap.INTEL, train=False)
    # A run stops at the evaluation that reaches the target: a whole number of evaluation intervals.
    evals = max(1, round(run.target_epochs * TRAIN_SAMPLES / run.global_batch / run.eval_every))
    return Prediction(run, step, eval_step, evals * run.eval_every, evals, efficiency)


def anchor_efficiency(net_gbps: float = NET_GBPS) -> float:
    """The compute efficiency at which the anchor run's prediction equals its published time (bisection:
    the prediction falls as the efficiency rises)."""
    anchor = next(r for r in RUNS if r.name == ANCHOR)
    lo, hi = 1e-3, 1.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if predict_run(anchor, mid, net_gbps).predicted_s > anchor.published_s:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def validate(net_gbps: float = NET_GBPS) -> list[Prediction]:
    """Every published run's prediction at the anchor's efficiency."""
    eff = anchor_efficiency(net_gbps)
    return [predict_run(r, eff, net_gbps) for r in RUNS]
