"""One rank of a torch.distributed (gloo) all-reduce, placed by ``hpcdlrm.env.detect()``.

Run under ``srun -N2 -n2``: proves that detect() reads the Slurm step (rank, world size, first node of
the step as rendezvous host, port from the job id) well enough for ranks on two nodes to meet.
Prints one JSON line per rank.
"""

from __future__ import annotations

import json
from datetime import timedelta

import torch
import torch.distributed as dist

from hpcdlrm.env import detect


def main() -> None:
    info = detect()
    dist.init_process_group(
        "gloo", init_method=f"tcp://{info.master_addr}:{info.master_port}",
        rank=info.rank, world_size=info.world_size, timeout=timedelta(seconds=60),
    )
    value = torch.tensor([float(info.rank + 1)])
    dist.all_reduce(value)
    hosts: list[str | None] = [None] * info.world_size
    dist.all_gather_object(hosts, info.hostname)
    dist.destroy_process_group()
    print(json.dumps({
        "rank": info.rank, "world_size": info.world_size, "launcher": info.launcher,
        "master_addr": info.master_addr, "hosts": hosts, "sum": value.item(),
    }), flush=True)


if __name__ == "__main__":
    main()
