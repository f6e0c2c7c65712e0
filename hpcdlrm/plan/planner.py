"""Predict a cluster's throughput per sharding plan and pick one (``python -m hpcdlrm.plan``).

Rates of a target socket come from the calibration (measured here) and three documented defaults:

- FLOPs: ``DEFAULT_FLOPS_PER_SOCKET`` from the anchors: the reference DLRM ran 43,000 samples/s of the
  Kaggle model (2.92 MFLOP per row forward+backward, ``cost.flops_per_sample``) on 2 vCPUs of an AVX-512
  Xeon (dlrm-anchors.md §7.4): 62.8 GFLOP/s per core, x 28 cores of a Xeon 8376H = 1.76 TFLOP/s fp32.
  Intel ran bf16 (AVX512-BF16), up to 2x that: pass ``--flops-per-socket``.
- memory-bound work (embedding rows, optimizer, loader): this host's calibrated rates x ``mem_scale``
  (default 14 = 28 cores / this host's 2: row gathers are latency-bound per core), capped at the
  socket's 6 x DDR4-3200 channels (153.6 GB/s).
- intra-node link: 100 GB/s per node (8 sockets over UPI); between nodes ``--net-gbps`` per node.
- per-message latency: 25 us (a collective's software + wire latency on dedicated cores). The alpha
  calibrated here is NOT used: on a shared, oversubscribed 2-core host it measures how long a peer
  waits to be scheduled (milliseconds), not the network.
The per-step overhead (Python, kernel launches) is the calibrated one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

from ..errors import ConfigError
from ..model import model_config
from .calibrate import Calibration
from .cost import Cluster, Rates, StepCost, Workload, flops_per_sample, predict

ANCHOR_KAGGLE_SAMPLES_PER_S = 43_000  # dlrm-anchors.md §7.4, reference dlrm, batch 2048, 2 vCPU
ANCHOR_VCPUS = 2
XEON_8376H_CORES = 28
DEFAULT_FLOPS_PER_SOCKET = (ANCHOR_KAGGLE_SAMPLES_PER_S * flops_per_sample(model_config("kaggle", [1] * 26))
                            / ANCHOR_VCPUS * XEON_8376H_CORES)
SOCKET_MEM_PEAK = 6 * 3200e6 * 8  # bytes/s: 6 channels of DDR4-3200
DEFAULT_MEM_SCALE = 14.0
DEFAULT_INTRA_NODE_BYTES = 100e9
DEFAULT_ALPHA_S = 25e-6
SHARDINGS = ("table", "column")


@dataclass(frozen=True)
class Socket:
    """One socket of the target cluster; ``None`` fields fall back to the calibration."""

    flops_per_s: float = DEFAULT_FLOPS_PER_SOCKET
    mem_scale: float = DEFAULT_MEM_SCALE
    intra_node_bytes_per_s: float = DEFAULT_INTRA_NODE_BYTES
    alpha_s: float = DEFAULT_ALPHA_S

    def rates(self, cal: Calibration) -> Rates:
        r = cal.rates
        for name in ("flops_per_s", "mem_scale", "intra_node_bytes_per_s", "alpha_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name.replace('_', '-')} must be > 0, got {getattr(self, name)}")
        return Rates(flops_per_s=self.flops_per_s,
                     emb_bytes_per_s=min(r.emb_bytes_per_s * self.mem_scale, SOCKET_MEM_PEAK),
                     opt_bytes_per_s=min(r.opt_bytes_per_s * self.mem_scale, SOCKET_MEM_PEAK),
                     loader_s_per_row=r.loader_s_per_row / self.mem_scale, overhead_s=r.overhead_s,
                     alpha_s=self.alpha_s, emb_row_s=r.emb_row_s / self.mem_scale,
                     link_bytes_per_s=self.intra_node_bytes_per_s)


@dataclass(frozen=True)
class Option:
    """One sharding plan's prediction."""

    sharding: str
    cost: StepCost
    epoch_s: float
    target_s: float
    emb_gib_per_rank: float  # embedding weights of the most loaded rank


def options(preset: str, table_sizes: Sequence[int], global_batch: int, cluster: Cluster, rates: Rates,
            epoch_samples: int, target_epochs: float, shardings: Sequence[str] = SHARDINGS) -> list[Option]:
    """Every feasible sharding plan's prediction, fastest first."""
    if epoch_samples < 1 or not target_epochs > 0:
        raise ConfigError(f"epoch samples ({epoch_samples}) and target epochs ({target_epochs}) must be > 0")
    if global_batch % cluster.world:
        raise ConfigError(f"--global-batch {global_batch} is not a multiple of the {cluster.world} ranks")
    out = []
    for kind in shardings:
        w = Workload.of(preset, table_sizes, global_batch, kind)
        try:
            plan = w.plan(cluster.world)
        except ConfigError:  # e.g. column: more ranks than embedding columns
            continue
        cost = predict(w, cluster, rates)
        epoch = epoch_samples / cost.samples_per_s
        gib = max(plan.load(r) for r in range(cluster.world)) * 4 / 2**30
        out.append(Option(kind, cost, epoch, epoch * target_epochs, gib))
    if not out:
        raise ConfigError(f"no sharding plan fits {cluster.world} ranks")
    return sorted(out, key=lambda o: o.cost.step_s)
