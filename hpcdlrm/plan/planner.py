"""Predict a cluster's throughput per sharding plan and pick one (``python -m hpcdlrm.plan``).

Rates of a target socket come from hpcdlrm's own measurements (the calibration, fitted to ``bench
scaling`` runs on this host) and the target's hardware:

- FLOPs: the calibration's multi-threaded FLOP rate per core divided by this host's fp32 peak per core
  (AVX2: 32 FLOP/cycle at its clock) is hpcdlrm's *efficiency*; a target socket runs at that share of its
  own fp32 peak (default: Xeon 8376H, 27 of 28 cores, the 28th left to the communication thread, 2.6 GHz,
  AVX-512: 64 FLOP/cycle). ``--flops-per-socket`` overrides it.
- memory-bound work (embedding rows, optimizer, loader): this host's calibrated rates x ``mem_scale``
  (default 14 = 28 cores / this host's 2: row gathers are latency-bound per core), capped at the
  socket's 6 x DDR4-3200 channels (153.6 GB/s).
- intra-node link: 100 GB/s per node (8 sockets over UPI); between nodes ``--net-gbps`` per node.
- per-message latency: 25 us (a collective's software + wire latency on dedicated cores). The alpha
  calibrated here is NOT used: on a shared, oversubscribed 2-core host it measures how long a peer
  waits to be scheduled (milliseconds), not the network.
- overlap: hpcdlrm's (``--overlap``; cost.Overlap), evaluations on MLPerf's clock (``--eval-every-epochs``).
The per-step overhead (Python, kernel launches) is the calibrated one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Sequence

from ..errors import ConfigError
from .calibrate import Calibration
from .cost import VERTICAL, Cluster, Overlap, Rates, StepCost, Workload, predict
from .published import XEON_8376H

TARGET_CORES = XEON_8376H.cores - 1  # one core left to the communication thread
TARGET_GHZ = XEON_8376H.base_ghz
TARGET_FP32_FLOP_PER_CYCLE = 64  # AVX-512: 2 FMA ports x 16 lanes x 2 FLOP
SOCKET_MEM_PEAK = 6 * 3200e6 * 8  # bytes/s: 6 channels of DDR4-3200
DEFAULT_MEM_SCALE = 14.0
DEFAULT_INTRA_NODE_BYTES = 100e9
DEFAULT_ALPHA_S = 25e-6
SHARDINGS = ("table", "column", VERTICAL)  # the trainer's plans (replicate never wins at scale)


@dataclass(frozen=True)
class Socket:
    """One socket of the target cluster; ``None`` fields fall back to the calibration."""

    flops_per_s: float | None = None  # None: hpcdlrm's measured efficiency x the target's fp32 peak
    mem_scale: float = DEFAULT_MEM_SCALE
    intra_node_bytes_per_s: float = DEFAULT_INTRA_NODE_BYTES
    alpha_s: float = DEFAULT_ALPHA_S

    def rates(self, cal: Calibration) -> Rates:
        r = cal.rates
        for name in ("flops_per_s", "mem_scale", "intra_node_bytes_per_s", "alpha_s"):
            if getattr(self, name) is not None and not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        peak = TARGET_CORES * TARGET_GHZ * 1e9 * TARGET_FP32_FLOP_PER_CYCLE
        flops = self.flops_per_s or measured_efficiency(cal) * peak
        return Rates(flops_per_s=flops,
                     emb_bytes_per_s=min(r.emb_bytes_per_s * self.mem_scale, SOCKET_MEM_PEAK),
                     opt_bytes_per_s=min(r.opt_bytes_per_s * self.mem_scale, SOCKET_MEM_PEAK),
                     loader_s_per_row=r.loader_s_per_row / self.mem_scale, overhead_s=r.overhead_s,
                     alpha_s=self.alpha_s, emb_row_s=r.emb_row_s / self.mem_scale,
                     link_bytes_per_s=self.intra_node_bytes_per_s)


def measured_efficiency(cal: Calibration) -> float:
    """hpcdlrm's MLP + interaction FLOP rate per core (multi-threaded ranks) as a share of the calibration
    host's fp32 peak per core."""
    host = cal.host
    if not host.get("ghz") or not host.get("fp32_flop_per_cycle") or not host.get("cores"):
        raise ConfigError("the calibration does not record its host's clock, cores and FLOP/cycle "
                          "(recalibrate, or pass --flops-per-socket)")
    per_core = cal.rates.flops_per_s * cal.rates.thread_efficiency / host["cores"]
    eff = per_core / (host["ghz"] * 1e9 * host["fp32_flop_per_cycle"])
    if eff > 1:  # a fit on a busy host can blame the other tenants for more than the cores could do
        raise ConfigError(f"the calibration's FLOP rate is {eff:.2f}x its host's fp32 peak per core (fitted "
                          f"background threads: {cal.rates.background_threads:g}): not physical; recalibrate "
                          "on a quieter host or pass --flops-per-socket")
    return eff


@dataclass(frozen=True)
class Option:
    """One sharding plan's prediction."""

    sharding: str
    cost: StepCost
    epoch_s: float
    target_s: float  # training to the target epochs plus the evaluations on the way
    emb_gib_per_rank: float  # embedding weights of the most loaded rank
    eval_s: float = 0.0  # one evaluation
    evals: int = 0


@dataclass(frozen=True)
class Schedule:
    """Evaluations on the way to the target (MLPerf's clock counts them)."""

    every_epochs: float = 0.05  # MLPerf DLRM: 20 evaluations per epoch
    samples: int = 0  # rows of one evaluation (0: none)
    batch: int = 0  # evaluation global batch (0: the training batch)


def options(preset: str, table_sizes: Sequence[int], global_batch: int, cluster: Cluster, rates: Rates,
            epoch_samples: int, target_epochs: float, shardings: Sequence[str] = SHARDINGS,
            overlap: Overlap = Overlap.NONE, schedule: Schedule = Schedule(), act_bytes: int = 4) -> list[Option]:
    """Every feasible sharding plan's prediction, fastest first."""
    if epoch_samples < 1 or not target_epochs > 0:
        raise ConfigError(f"epoch samples ({epoch_samples}) and target epochs ({target_epochs}) must be > 0")
    if global_batch % cluster.world:
        raise ConfigError(f"--global-batch {global_batch} is not a multiple of the {cluster.world} ranks")
    out = []
    for kind in shardings:
        w = Workload.of(preset, table_sizes, global_batch, kind, 2048 if kind == VERTICAL else 1000)
        w = replace(w, act_bytes=act_bytes)
        try:
            plan = w.plan(cluster.world)
        except ConfigError:  # e.g. column: more ranks than embedding columns
            continue
        cost = predict(w, cluster, rates, overlap)
        epoch = epoch_samples / cost.samples_per_s
        gib = max(plan.load(r) for r in range(cluster.world)) * 4 / 2**30
        evals, eval_s = 0, 0.0
        if schedule.samples:
            eb = schedule.batch or global_batch
            ev = predict(replace(w, global_batch=eb), cluster, rates, overlap, train=False)
            eval_s = math.ceil(schedule.samples / eb) * ev.step_s
            evals = max(1, round(target_epochs / schedule.every_epochs))
        out.append(Option(kind, cost, epoch, epoch * target_epochs + evals * eval_s, gib, eval_s, evals))
    if not out:
        raise ConfigError(f"no sharding plan fits {cluster.world} ranks")
    return sorted(out, key=lambda o: o.cost.step_s)
