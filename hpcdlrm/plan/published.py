"""Intel's published MLPerf DLRM training runs on Xeon CPUs: hardware, recipe and measured times.

Every figure is read from the MLPerf results repositories (``mlcommons/training_results_v1.0``, which
also carries Intel's v0.7 results under ``Intel/results/*8380H*``):

- times: ``run_start`` to ``run_stop`` of each of the 5 logs ``Intel/results/<system>/dlrm/result_*.txt``
  (MLPerf's clock: evaluations included, initialisation excluded); MLPerf scores the mean of the middle
  three (the fastest and slowest dropped);
- epochs: the ``epoch_num`` of each log's last ``eval_accuracy`` (the one that reached AUC 0.8025), minus
  the 1 the logger starts at;
- hardware: ``Intel/systems/<system>.json`` (nodes, sockets, CPU model, 28 cores, 3200 MT/s DDR4);
- recipe: ``Intel/benchmarks/dlrm/*/run_and_time.sh`` (v0.7: batch 32,768, eval every 6,400 steps at
  batch 65,536, 24 OpenMP threads + 3 CCL workers per socket, bf16, tables of >= 2,048 rows one per rank;
  v1.0: batch 262,144, eval every 800 steps at batch 524,288, 24 threads + 4 CCL workers, bf16, LAMB,
  each table of >= 2,048 rows split by columns into ranks / 16 pieces: ``num_grps`` in the
  ``HybridParallelCriteoBinDataset`` of ``intel/intel-extension-for-pytorch:
  torch_patches/models/dlrm_mlperf_v1.0_training.diff``, whose loader reads each rank's ids of its
  tables for the whole global batch from per-table files, so no ids cross the network).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .cost import ROUND_ROBIN, VERTICAL

TRAIN_SAMPLES = 4_195_197_692  # Criteo 1TB days 0-22 (the logs' train_samples)
EVAL_SAMPLES = 89_137_319  # the logs' eval_samples


@dataclass(frozen=True)
class Xeon:
    """One socket, from Intel's specification (ark.intel.com) and the MLPerf system description."""

    model: str
    cores: int
    base_ghz: float
    mem_channels: int = 6
    mem_mts: int = 3200

    @property
    def mem_bytes_per_s(self) -> float:
        return self.mem_channels * self.mem_mts * 1e6 * 8


XEON_8380H = Xeon("Xeon Platinum 8380H", 28, 2.9)
XEON_8376H = Xeon("Xeon Platinum 8376H", 28, 2.6)


@dataclass(frozen=True)
class PublishedRun:
    """One MLPerf submission (five runs of one system and recipe)."""

    name: str
    mlperf: str  # round
    system: str  # folder under Intel/results
    nodes: int
    sockets_per_node: int
    cpu: Xeon
    global_batch: int
    eval_every: int  # steps
    eval_batch: int
    sharding: str  # how the recipe placed the large tables (hpcdlrm.plan.cost kinds)
    replicate_threshold: int  # tables below it are replicated (data parallel)
    run_s: tuple[float, ...]  # the five run_start -> run_stop times
    epochs: tuple[float, ...]  # epochs trained by each run when it reached the target

    @property
    def sockets(self) -> int:
        return self.nodes * self.sockets_per_node

    def _middle(self) -> list[int]:
        order = sorted(range(len(self.run_s)), key=self.run_s.__getitem__)
        return order[1:-1] if len(order) >= 3 else order

    @property
    def published_s(self) -> float:
        """MLPerf's score: the mean of the five times without the fastest and the slowest."""
        return statistics.fmean(self.run_s[i] for i in self._middle())

    @property
    def target_epochs(self) -> float:
        """Epochs of the same three runs (convergence is the recipe's, not the model's business)."""
        return statistics.fmean(self.epochs[i] for i in self._middle())

    @property
    def source(self) -> str:
        return f"mlcommons/training_results_v1.0:Intel/results/{self.system}/dlrm/"


_V07 = dict(mlperf="v0.7", cpu=XEON_8380H, global_batch=32_768, eval_every=6_400, eval_batch=65_536,
            sharding=ROUND_ROBIN, replicate_threshold=2_048)
_V10 = dict(mlperf="v1.0", cpu=XEON_8376H, global_batch=262_144, eval_every=800, eval_batch=524_288,
            sharding=VERTICAL, replicate_threshold=2_048)

RUNS = (
    PublishedRun("v0.7 1 node x 4 sockets", system="1-node-4s-8380H-pytorch", nodes=1, sockets_per_node=4,
                 run_s=(6956.9, 7023.7, 6978.4, 6990.2, 7062.1), epochs=(0.6998,) * 5, **_V07),
    PublishedRun("v0.7 1 node x 8 sockets", system="1-node-8s-8380H-pytorch", nodes=1, sockets_per_node=8,
                 run_s=(4306.1, 4297.8, 4292.6, 4278.9, 4289.3), epochs=(0.6998,) * 5, **_V07),
    PublishedRun("v0.7 2 nodes x 4 sockets", system="2-nodes-8s-8380H-pytorch", nodes=2, sockets_per_node=4,
                 run_s=(4296.7, 4387.4, 4438.6, 4525.0, 4453.3), epochs=(0.6998,) * 5, **_V07),
    PublishedRun("v0.7 4 nodes x 4 sockets", system="4-nodes-16s-8380H-pytorch", nodes=4, sockets_per_node=4,
                 run_s=(2705.9, 2690.1, 2713.5, 2507.4, 2711.2), epochs=(0.6998, 0.6998, 0.6998, 0.6499, 0.6998),
                 **_V07),
    PublishedRun("v1.0 4 nodes x 8 sockets", system="4-nodes-32s-8376H-pytorch", nodes=4, sockets_per_node=8,
                 run_s=(1387.3, 1309.4, 1305.4, 1476.9, 1310.6), epochs=(0.8498, 0.7998, 0.7998, 0.8998, 0.7998),
                 **_V10),
    PublishedRun("v1.0 8 nodes x 8 sockets", system="8-nodes-64s-8376H-pytorch", nodes=8, sockets_per_node=8,
                 run_s=(900.4, 898.6, 916.8, 892.6, 896.8), epochs=(0.7998,) * 5, **_V10),
)
