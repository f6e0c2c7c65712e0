"""Run under ``mpiexec -n 2``: real training where rank 1 alone fails at step 3 (its step raises).

Over MPI (no timeout) rank 0 would wait in the step's collective forever; the trainer must say why on
rank 1 and end the whole job. argv: DATA OUT BACKEND."""

from __future__ import annotations

import sys

from hpcdlrm.train import TrainConfig, loop


def main() -> int:
    data, out, backend = sys.argv[1:4]
    step = loop.Engine.step

    def failing(self, batch, i, flags):  # noqa: ANN001, ANN202
        if self.comm.rank == 1 and i == 3:
            raise RuntimeError("rank 1 failing on purpose at step 3")
        return step(self, batch, i, flags)

    loop.Engine.step = failing  # type: ignore[method-assign]
    cfg = TrainConfig(data=data, out=out, backend=backend, batch_size=256, eval_batch_size=1024, epochs=1,
                      arch_mlp_bot="13-16-8", arch_mlp_top="16-1", emb_dim=8, threads=1, log_every=2)
    loop.run(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main())
