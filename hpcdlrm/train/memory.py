"""Will the embedding tables fit? Estimated before anything is allocated, so an impossible run is one
line naming the figure and the flag, instead of an OOM kill (or a swapping node) minutes later.

The tables dominate DLRM's memory: Kaggle hashed with ``--max-ind-range 10000000`` is 26 x 10M rows x
16 floats = 16.6 GB before any optimizer state. MLPs, batches and the loader are small beside them and
are left out, so the estimate is a floor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from ..errors import ConfigError
from ..model import model_config

if TYPE_CHECKING:
    from ..env import RankInfo
    from .config import TrainConfig

SKIP_ENV = "HPCDLRM_MEMORY_CHECK"  # "off": train anyway (e.g. a node whose swap or limits we misread)
FLOAT_BYTES = 4
# Optimizer state per table row, in floats: sparse SGD keeps none, row-wise Adagrad one sum per row.
STATE_PER_ROW = {"sgd": 0, "rowwise_adagrad": 1}


@dataclass(frozen=True)
class Estimate:
    rows: int  # embedding rows over all tables
    dim: int
    table_bytes: int  # all ranks together
    state_bytes: int
    node_bytes: int  # what the ranks of this node hold

    def describe(self) -> str:
        state = f" + {gb(self.state_bytes)} optimizer state" if self.state_bytes else ""
        return f"{self.rows:,} embedding rows x dim {self.dim} fp32 = {gb(self.table_bytes)} of tables{state}"


def gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def estimate(table_sizes: Sequence[int], dim: int, sparse_optimizer: str, world_size: int = 1,
             local_world_size: int = 1) -> Estimate:
    """Bytes of the tables and their optimizer state; ``node_bytes`` is this node's share when the
    tables are spread over ``world_size`` ranks, ``local_world_size`` of them here."""
    rows = int(sum(table_sizes))
    table = rows * dim * FLOAT_BYTES
    state = rows * STATE_PER_ROW.get(sparse_optimizer, 0) * FLOAT_BYTES
    share = min(1.0, local_world_size / max(1, world_size))
    return Estimate(rows, dim, table, state, int((table + state) * share))


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None  # cgroup v2 writes "max" when unlimited


def available_bytes(proc: Path = Path("/proc"), cgroup: Path = Path("/sys/fs/cgroup")) -> tuple[int, str] | None:
    """(bytes this process may still allocate, where that figure comes from): the smaller of
    MemAvailable and the cgroup's limit minus its usage (v2, else v1). None when neither is readable."""
    found: list[tuple[int, str]] = []
    try:
        for line in (proc / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"))
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        limit, usage = _read_int(cgroup / limit_file), _read_int(cgroup / usage_file)
        if limit is not None and usage is not None and limit < 1 << 60:  # v1 says "unlimited" with 2**63
            found.append((max(0, limit - usage), f"the cgroup limit {gb(limit)} minus its usage"))
            break
    return min(found) if found else None


def check(est: Estimate, avail: tuple[int, str] | None, environ: dict[str, str] | None = None) -> None:
    """ConfigError when this node's share of the tables exceeds ``avail`` (see :func:`available_bytes`)."""
    environ = dict(os.environ) if environ is None else environ
    if environ.get(SKIP_ENV, "").lower() in ("off", "0", "no", "false"):
        return
    if avail is None or est.node_bytes <= avail[0]:
        return
    raise ConfigError(
        f"the embedding tables need {gb(est.node_bytes)} on this node ({est.describe()}) but only "
        f"{gb(avail[0])} is available ({avail[1]}); preprocess with a smaller --max-ind-range (or a larger "
        f"--min-count), lower --emb-dim, or spread the tables over more nodes ({SKIP_ENV}=off skips this check)")


def check_tables(cfg: "TrainConfig", table_sizes: Sequence[int], info: "RankInfo") -> None:
    """Refuse a run whose tables (as the model will size them) cannot fit in this node's memory."""
    mcfg = model_config(cfg.preset, table_sizes, emb_dim=cfg.emb_dim, bot_mlp=cfg.arch_mlp_bot,
                        top_mlp=cfg.arch_mlp_top, interaction=cfg.interaction,
                        self_interaction=cfg.self_interaction)
    est = estimate(mcfg.table_sizes, mcfg.emb_dim, cfg.sparse_optimizer, info.world_size, info.local_world_size)
    check(est, available_bytes())
