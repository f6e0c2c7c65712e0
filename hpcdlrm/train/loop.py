"""The training engine: one rank's hybrid-parallel step and evaluation (``Engine``), and the run around
it (``run``): resume, stopping rules that all ranks agree on, metrics.jsonl, checkpoints, result.json.

Per step a rank reads its B = G/R rows, runs the model with its embedding shards behind all-to-all,
and sums everything the ranks share in ONE all-reduce: MLP gradients, small replicated tables'
gradients, the loss and the stop flags (signal, time budget). Each rank's loss is its sum over rows /
G, so the summed gradient equals the one-rank mean-loss gradient whatever R is.
"""

from __future__ import annotations

import contextlib
import math
import signal
import sys
import threading
import time
import warnings
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F

from .. import __version__, env
from ..data import RankLoader, open_dataset
from ..data.loader import verify_shard
from ..errors import ConfigError, DataError, HpcDlrmError
from ..io import append_jsonl, check_out_dir
from ..model import DLRM, init_table, model_config
from . import checkpoint, distributed, memory
from .config import TrainConfig
from .metrics import distributed_evaluate
from .optim import MasterWeights, make_dense_optimizer, make_sparse_optimizer
from .result import RunResult, Status
from .sharding import ShardedEmbeddings, make_plan

REFUSALS = (ConfigError, DataError)  # raised before training starts, they leave every file as it was
TAIL = 3  # flat-buffer slots after the gradients: loss, signal flag, time-budget flag


class _Ahead(torch.nn.Module):
    """Stands in for the embeddings during one forward: returns the helper thread's result."""

    def __init__(self, future: Future) -> None:
        super().__init__()
        self.future, self.waited = future, 0.0

    def result(self) -> torch.Tensor:
        return self.future.result()

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        t0 = time.perf_counter()
        out = self.future.result()
        self.waited = time.perf_counter() - t0
        return out


class Engine:
    """Model, optimizers and exchange of one rank; ``step`` and ``evaluate`` are collective calls."""

    def __init__(self, cfg: TrainConfig, comm: distributed.Comm, table_sizes: list[int]) -> None:
        self.cfg, self.comm = cfg, comm
        mcfg = model_config(cfg.preset, table_sizes, emb_dim=cfg.emb_dim, bot_mlp=cfg.arch_mlp_bot,
                            top_mlp=cfg.arch_mlp_top, interaction=cfg.interaction,
                            self_interaction=cfg.self_interaction)
        self.plan = make_plan(mcfg.table_sizes, mcfg.emb_dim, comm.world_size, cfg.sharding,
                              cfg.replicate_threshold)
        # This rank's shards, built without the full tables, handed to the model (TorchRec style).
        # bf16 MLPs round the embeddings to bf16 at the interaction anyway: exchange them (and their
        # gradients) in bf16, half the bytes, same values.
        self.emb = ShardedEmbeddings(self.plan, comm, cfg.seed, init_table,
                                     dtype=torch.bfloat16 if cfg.bf16_tables else torch.float32,
                                     a2a_dtype=torch.bfloat16 if cfg.bf16 else None)
        self.model = DLRM(mcfg, cfg.seed, embeddings=self.emb)
        if cfg.bf16 and not distributed.bf16_native():
            warnings.warn("--bf16: this CPU has no native bfloat16 (AVX512-BF16/AMX); oneDNN emulates it and "
                          "the MLPs run many times slower than fp32", stacklevel=2)
        if cfg.ipex:  # optional and untested here: IPEX is discontinued and not installable on torch 2.13
            ipex = distributed.load_ipex()
            ipex.optimize(self.model, dtype=torch.float32, inplace=True, weights_prepack=False)
        params = self.model.dense_parameters()
        self.master: MasterWeights | None = None
        if cfg.bf16:  # native bf16 MLPs: masters from the fp32 init, then the model's weights become bf16
            self.master = MasterWeights(params)
            self.model.set_mlp_dtype(torch.bfloat16)
            params = self.master.masters
        self.flat = distributed.FlatGrads(params, extra=self.emb.reduce_size + TAIL)
        # Overlap (several ranks): gradient buckets are summed during backward; the embedding exchange
        # runs on a helper thread while this one runs the bottom MLP.
        self._ahead: ThreadPoolExecutor | None = None
        # The communication runs on its own thread: with one core per rank it would steal the compute's
        # core (measured here: as often slower as faster), so by default only ranks with several threads.
        overlap = cfg.overlap if cfg.overlap is not None else torch.get_num_threads() > 1
        if overlap and comm.world_size > 1:
            comm.concurrent()  # hooks and the helper thread issue collectives beside the step's thread
            self.flat.overlap(comm)
            self._ahead = ThreadPoolExecutor(1, thread_name_prefix="hpcdlrm-exchange")
        self.dense_opt = make_dense_optimizer(cfg.dense_optimizer, params, cfg.lr)
        self.sparse_opt = make_sparse_optimizer(cfg.sparse_optimizer)
        self.dense_lr, self.sparse_lr = cfg.lr_schedules()
        self.global_batch = cfg.batch_size
        self.timings: dict[str, float] | None = None  # phase -> seconds, when someone wants them

    def _forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        if self._ahead is None:
            return self.model(dense, sparse)
        return self._forward_ahead(dense, sparse)

    def _forward_ahead(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """The model runs its bottom MLP before its embeddings: start the embeddings (and their
        all-to-alls, which release the GIL) on the helper thread first, and hand the model their result."""
        grad = torch.is_grad_enabled()  # grad mode is per thread

        def exchange() -> torch.Tensor:
            with torch.set_grad_enabled(grad):
                return self.emb(sparse)

        stats = self.comm.stats
        before = stats.a2a_fwd_s if stats is not None else 0.0
        ahead = _Ahead(self._ahead.submit(exchange))
        self.model.embeddings = ahead
        try:
            return self.model(dense, sparse)
        finally:
            self.model.embeddings = self.emb
            ahead.result()  # never leave the exchange running (e.g. the bottom MLP raised)
            if stats is not None:  # the wait, as far as the exchange's collectives explain it
                self.comm.book_exposed(min(ahead.waited, stats.a2a_fwd_s - before))

    def step(self, batch: Any, step: int, flags: tuple[float, float]) -> tuple[float, float, float]:
        """One training step on this rank's rows; returns (global mean loss, signal, timeout) summed
        over ranks. A non-finite loss skips the update (the caller stops the run)."""
        t0 = time.perf_counter()
        self.flat.zero_()
        label = torch.from_numpy(batch.label)
        logits = self._forward(torch.from_numpy(batch.dense), torch.from_numpy(batch.sparse))
        loss = F.binary_cross_entropy_with_logits(logits, label, reduction="sum") / self.global_batch
        t1 = time.perf_counter()
        loss.backward()
        if self.master is not None:
            self.master.grads_to_masters()
        t2 = time.perf_counter()
        extra = self.flat.extra
        self.emb.pack_grads(extra[:-TAIL])
        extra[-TAIL] = loss.detach()
        extra[-2], extra[-1] = flags
        self.flat.all_reduce_(self.comm)
        total, sig, late = extra[-TAIL:].tolist()
        t3 = time.perf_counter()
        if math.isfinite(total):
            lr = self.dense_lr(step)
            for group in self.dense_opt.param_groups:
                group["lr"] = lr
            self.dense_opt.step()
            if self.master is not None:
                self.master.masters_to_model()
            self.emb.sparse_step(self.sparse_opt, self.sparse_lr(step), extra[:-TAIL])
        if self.timings is not None:  # the benchmark's breakdown of where a step goes
            t4 = time.perf_counter()
            phases = {"forward": t1 - t0, "backward": t2 - t1, "allreduce": t3 - t2, "optimizer": t4 - t3}
            for name, dt in phases.items():
                self.timings[name] = self.timings.get(name, 0.0) + dt
        return total, sig, late

    @torch.no_grad()
    def evaluate(self, loader: Any) -> dict[str, float]:
        """Exact metrics over ALL ranks' rows of the split; ranks may hold different batch counts."""
        scores, labels = [], []
        batches: Iterator[Any] = iter(loader.epoch(0))
        num_dense = self.model.cfg.num_dense
        while True:
            b = next(batches, None)
            sizes = [s[0] for s in self.comm.all_gather_ints([0 if b is None else len(b.label)])]
            if sum(sizes) == 0:
                break
            self.emb.batch_sizes = sizes
            if b is None:  # this rank is done but still serves its embedding shards to the others
                dense = torch.zeros(0, num_dense)
                sparse = torch.zeros(0, self.model.cfg.num_tables, dtype=torch.int32)
            else:
                dense, sparse = torch.from_numpy(b.dense), torch.from_numpy(b.sparse)
                labels.append(torch.from_numpy(b.label).clone())
            scores.append(self._forward(dense, sparse))  # logits: stable log loss, same AUC
        self.emb.batch_sizes = None
        s = torch.cat(scores).double().numpy()
        y = torch.cat(labels).double().numpy() if labels else np.zeros(0)
        m = distributed_evaluate(self.comm, y, s, from_logits=True)  # exact, without gathering the rows
        return {"auc": m.auc, "logloss": m.log_loss, "accuracy": m.accuracy, "eval_samples": m.n}

    def state_dict(self) -> dict[str, Any]:
        state = {"model": self.model.state_dict(), "dense_opt": self.dense_opt.state_dict(),
                 "sparse_opt": self.sparse_opt.state_dict(), "rng": torch.get_rng_state()}
        if self.master is not None:
            state["master"] = self.master.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.dense_opt.load_state_dict(state["dense_opt"])
        self.sparse_opt.load_state_dict(state["sparse_opt"])
        if self.master is not None:
            self.master.load_state_dict(state["master"])
        torch.set_rng_state(state["rng"])
        self.flat.zero_()  # load_state_dict may have replaced nothing, but grads must be the views


@dataclass
class Progress:
    """Where the run is; saved in every checkpoint so a resumed run continues the same curve."""

    step: int = 0
    samples: int = 0
    epoch: int = 0
    batch: int = 0  # next batch of ``epoch``
    elapsed_s: float = 0.0  # training wall clock incl. evaluations, summed over resumed segments
    train_s: float = 0.0  # time inside steps (and batch reads)
    eval_s: float = 0.0
    last_eval_s: float = 0.0  # duration of the latest evaluation
    next_eval: int = 0
    next_ckpt: int = 0
    last_eval_step: int = -1
    best_auc: float | None = None
    last_eval: dict[str, float] | None = None
    time_to_target_s: float | None = None
    samples_to_target: int | None = None
    window_loss: float = 0.0  # loss summed over the steps since the last train event
    window_steps: int = 0
    window_train_s: float = 0.0


class Run:
    """One training run on this rank: ``execute()`` returns the result dict (the same on every rank)."""

    def __init__(self, cfg: TrainConfig, comm: distributed.Comm, info: env.RankInfo) -> None:
        self.cfg, self.comm, self.info = cfg, comm, info
        self.out = Path(cfg.out)
        self.metrics_path = self.out / "metrics.jsonl"
        self.ds = open_dataset(cfg.data)
        self.dataset = self.ds.manifest.identity()
        world = comm.world_size
        if cfg.batch_size % world or cfg.eval_batch_size % world:
            raise ConfigError(f"--batch-size {cfg.batch_size} and --eval-batch-size {cfg.eval_batch_size} must be "
                              f"multiples of the {world} ranks")
        # Every refusal comes before anything is allocated or written (run() relies on it).
        self.previous = self._agreed(self._refusals)
        self.engine = Engine(cfg, comm, list(self.ds.table_sizes))
        self.train = RankLoader(self.ds, split="train", rank=comm.rank, world_size=world,
                                global_batch_size=cfg.batch_size, seed=cfg.seed, shuffle=True, drop_last=True)
        self.val = RankLoader(self.ds, split="val", rank=comm.rank, world_size=world,
                              global_batch_size=cfg.eval_batch_size, seed=cfg.seed, shuffle=False, drop_last=False)
        bpe = self.train.batches_per_epoch
        if bpe < 1:
            raise DataError(f"{cfg.data}: {self.ds.rows('train')} training rows make no batch of {cfg.batch_size}")
        self.epoch_samples = bpe * cfg.batch_size
        steps = math.ceil(cfg.max_samples / cfg.batch_size) if cfg.max_samples else round(cfg.epochs * bpe)
        self.total_steps = max(1, steps)
        self.eval_every = cfg.eval_every or self.epoch_samples
        self.p = Progress(next_eval=self.eval_every, next_ckpt=cfg.checkpoint_every or 0)
        self.signal: list[int] = []  # set by the handler; ranks agree on it in the next step
        self.tty = comm.is_main and sys.stderr.isatty()
        self.hosts = comm.all_gather_object(info.hostname)

    # ------------------------------------------------------------------ events
    def _event(self, kind: str, **fields: Any) -> None:
        if self.comm.is_main:
            e = {"event": kind, "step": self.p.step, "samples": self.p.samples,
                 "epoch": round(self.p.samples / self.epoch_samples, 4), "wall_s": round(self._elapsed(), 3)}
            append_jsonl(self.log, {**e, **fields})

    def _elapsed(self) -> float:
        return self.p.elapsed_s + time.perf_counter() - self.t0

    def _progress_line(self) -> None:
        if self.tty:
            auc = self.p.last_eval["auc"] if self.p.last_eval else float("nan")
            print(f"\rstep {self.p.step}/{self.total_steps}  loss {self._last_loss:.5f}  "
                  f"{self._last_rate:,.0f} samples/s  auc {auc:.4f}  ", end="", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ pieces of the loop
    def _log_train(self) -> None:
        p = self.p
        self._last_loss = p.window_loss / max(1, p.window_steps)
        self._last_rate = p.window_steps * self.cfg.batch_size / max(p.window_train_s, 1e-9)
        self._event("train", loss=self._last_loss, lr=self.engine.dense_lr(p.step - 1),
                    samples_per_s=round(self._last_rate, 1))
        p.window_loss, p.window_steps, p.window_train_s = 0.0, 0, 0.0
        self._progress_line()

    def _evaluate(self) -> bool:
        """Evaluate on val; True when the target AUC is reached."""
        p, t = self.p, time.perf_counter()
        m = self.engine.evaluate(self.val)
        p.last_eval_s = time.perf_counter() - t
        p.eval_s += p.last_eval_s
        p.last_eval, p.last_eval_step = m, p.step
        p.best_auc = m["auc"] if p.best_auc is None else max(p.best_auc, m["auc"])
        while p.next_eval <= p.samples:
            p.next_eval += self.eval_every
        self._event("eval", **m, lr=self.engine.dense_lr(max(p.step - 1, 0)),
                    samples_per_s=round(p.samples / max(p.train_s, 1e-9), 1))
        self._progress_line()
        target = self.cfg.target_auc
        if target is not None and m["auc"] >= target and p.time_to_target_s is None:
            p.time_to_target_s, p.samples_to_target = round(self._elapsed(), 3), p.samples
            return True
        return False

    def _checkpoint(self) -> None:
        p = self.p
        p.elapsed_s, self.t0 = self._elapsed(), time.perf_counter()
        if self.cfg.checkpoint_every:
            while p.next_ckpt <= p.samples:
                p.next_ckpt += self.cfg.checkpoint_every
        state = {**self.engine.state_dict(), "progress": asdict(p)}
        checkpoint.save(self.out, self.comm, p.step, state,
                        {"config": self.cfg.to_dict(), "samples": p.samples, "dataset": self.dataset})

    def _batches(self) -> Iterator[Any]:
        while True:
            yield from self.train.epoch(self.p.epoch, start_batch=self.p.batch)
            self.p.epoch, self.p.batch = self.p.epoch + 1, 0

    def _step(self, batches: Iterator[Any], flags: tuple[float, float]) -> tuple[float, float, float]:
        p, t = self.p, time.perf_counter()
        loss, sig, late = self.engine.step(next(batches), p.step, flags)
        p.step, p.batch, p.samples = p.step + 1, p.batch + 1, p.samples + self.cfg.batch_size
        dt = time.perf_counter() - t
        p.train_s += dt
        p.window_loss, p.window_steps = p.window_loss + loss, p.window_steps + 1
        p.window_train_s += dt
        return loss, sig, late

    def _loop(self) -> str:
        """Train until a stop rule fires; returns the status. Order per iteration matters for resume:
        a signal checkpoint precedes the eval due at its step, so a resumed run does that eval first."""
        batches = self._batches()
        try:
            return self._iterate(batches)
        finally:
            batches.close()  # stops the loader's prefetch thread now, not at garbage collection

    def _iterate(self, batches: Iterator[Any]) -> str:
        p, cfg = self.p, self.cfg
        sig, late = 0.0, 0.0
        while True:
            if sig:
                self._checkpoint()
                return "interrupted"
            if p.step and p.samples >= p.next_eval and p.last_eval_step != p.step and self._evaluate():
                return "reached_target"
            if cfg.checkpoint_every and p.samples >= p.next_ckpt and p.step:
                self._checkpoint()
            if p.step >= self.total_steps:
                return "completed"
            if late:
                return "timeout"
            flags = (float(bool(self.signal)), float(cfg.max_time is not None and self._elapsed() > cfg.max_time))
            loss, sig, late = self._step(batches, flags)
            if not math.isfinite(loss):
                self._event("train", loss=None, lr=self.engine.dense_lr(p.step - 1), samples_per_s=0.0,
                            nonfinite=True)  # null, not NaN: readers expect strict JSON
                return "diverged"
            if p.step % cfg.log_every == 0 or p.step == self.total_steps:
                self._log_train()

    # ------------------------------------------------------------------ refusals, resume, result, entry
    def _refusals(self) -> RunResult | None:
        """The finished run's result when there is one; else refuse what this rank can tell is wrong."""
        previous = self._previous()
        if previous is None:
            self._check_resumable()
            memory.check_tables(self.cfg, self.ds.table_sizes, self.info)
            self._verify_shards()
        return previous

    def _agreed(self, check: Any) -> Any:
        """``check()`` on every rank; if any rank refuses, every rank raises that refusal. One rank refusing
        alone (its node has less memory, its view of a shard differs) would leave the others waiting."""
        try:
            value, mine = check(), None
        except REFUSALS as e:
            value, mine = None, e
        said = self.comm.all_gather_object(None if mine is None else (isinstance(mine, DataError), str(mine)))
        if mine is not None:
            raise mine
        first = next((x for x in said if x is not None), None)
        if first is not None:
            raise (DataError if first[0] else ConfigError)(first[1])
        return value

    def _verify_shards(self) -> None:
        """Shapes and file lengths of the train/val shards against the manifest (HDF5 metadata only, ranks
        splitting the files), so a truncated or replaced shard is a refusal, not a failure at its first read."""
        refs = [r for split in ("train", "val") for r in self.ds.manifest.splits.get(split, [])]
        for ref in refs[self.comm.rank::self.comm.world_size]:
            verify_shard(Path(self.cfg.data) / ref.path, ref.rows)

    def _previous(self) -> RunResult | None:
        """A finished run's result (rerunning it returns that instead of training again)."""
        try:
            prev = RunResult.read(self.out)
        except ValueError:
            return None  # torn or unreadable: the run did not finish cleanly
        if prev is None or not prev.status.is_final_run:
            return None
        where = f"{self.out} (finished run)"
        checkpoint.check_compatible(prev.config, self.cfg.to_dict(), where)
        checkpoint.check_dataset(prev.dataset, self.dataset, where, self.cfg.data)
        return prev

    def _check_resumable(self) -> None:
        """Refuse, before any work, to resume a checkpoint with settings or data that would change its curve."""
        meta = checkpoint.latest(self.out)
        if meta is not None:
            where = f"{self.out} (checkpoint)"
            checkpoint.check_compatible(meta.get("config", {}), self.cfg.to_dict(), where)
            checkpoint.check_dataset(meta.get("dataset"), self.dataset, where, self.cfg.data)
        try:  # a run stopped by its time limit or a signal goes on from where it stopped: same settings, same data
            prev = RunResult.read(self.out)
        except ValueError:
            prev = None
        if prev is not None and prev.status in (Status.TIMEOUT, Status.PREEMPTED) and prev.config:
            where = f"{self.out} ({prev.status} run)"
            checkpoint.check_compatible(prev.config, self.cfg.to_dict(), where)
            checkpoint.check_dataset(prev.dataset, self.dataset, where, self.cfg.data)

    def _resume(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        self.resumed_from: int | None = None
        ck = checkpoint.load(self.out, self.comm)
        if ck is None:
            if self.comm.is_main and self.metrics_path.exists():
                self.metrics_path.unlink()  # events of an attempt that died before its first checkpoint
            return
        _, state = ck  # its settings and dataset were checked in __init__
        self.engine.load_state_dict(state)
        self.p = Progress(**state["progress"])
        self.resumed_from = self.p.step
        if self.comm.is_main:
            checkpoint.truncate_metrics(self.metrics_path, self.p.step)

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGTERM/SIGUSR1 (Slurm's warning before a kill) only set a flag; the step agrees on it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        old = {s: signal.signal(s, lambda signum, _frame: self.signal.append(signum))
               for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            yield
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)

    def execute(self) -> RunResult:
        if self.previous is not None:
            return self.previous
        self._resume()
        self.log = open(self.metrics_path, "a") if self.comm.is_main else None
        self.t0 = time.perf_counter()
        try:
            with self._signals():
                status = self._loop()
            if self._final_eval(status) and self._evaluate():
                status = "reached_target"
            if status == "timeout" and self.cfg.checkpoint_every:
                self._checkpoint()  # a rerun with a larger --max-time continues from here
        finally:
            if self.log is not None:
                self.log.close()
            if self.tty:
                print(file=sys.stderr)
        result = self._result(status)
        if self.comm.is_main:
            result.write(self.out)
        return result

    def _final_eval(self, status: str) -> bool:
        """Evaluate at the end unless the last step was just evaluated. Past --max-time only when cheap:
        the previous evaluation (if any) took at most 10% of the budget."""
        if status not in ("completed", "timeout") or self.p.last_eval_step == self.p.step:
            return False
        return status == "completed" or self.p.last_eval_s <= 0.1 * (self.cfg.max_time or 0.0)

    def _result(self, status: str) -> RunResult:
        p, cfg = self.p, self.cfg
        ceiling = ((self.ds.manifest.synthetic or {}).get("ceiling_auc") or {}).get("val")
        reason = {"interrupted": f"signal {self.signal[0] if self.signal else '?'}: checkpoint at step {p.step}; "
                                 "rerun with the same --out to resume",
                  "timeout": f"--max-time {cfg.max_time} s exceeded",
                  "diverged": f"non-finite loss at step {p.step}"}.get(status)
        return RunResult(
            status=Status.PREEMPTED if status == "interrupted" else Status(status), reason=reason,
            best_auc=p.best_auc, last_eval=p.last_eval,
            time_to_target_s=p.time_to_target_s, samples_to_target=p.samples_to_target,
            samples_per_s=round(p.samples / p.train_s, 1) if p.train_s else None,
            steps=p.step, samples=p.samples, epochs=round(p.samples / self.epoch_samples, 4),
            wall_s=round(self._elapsed(), 3), train_s=round(p.train_s, 3), eval_s=round(p.eval_s, 3),
            resumed_from_step=self.resumed_from,
            ceiling_auc=ceiling,
            gap_closed=(p.best_auc - 0.5) / (ceiling - 0.5) if ceiling and p.best_auc is not None else None,
            config=cfg.to_dict(), dataset=self.dataset, plan=self.engine.plan.describe(),
            env={"hosts": self.hosts, "ranks": self.comm.world_size, "launcher": self.info.launcher,
                 "backend": self.comm.backend, "threads": torch.get_num_threads(),
                 "bf16_native": distributed.bf16_native(), "torch": torch.__version__, "hpcdlrm": __version__,
                 "python": sys.version.split()[0], "slurm_job_id": self.info.job_id},
        )


def _failure(cfg: TrainConfig, info: env.RankInfo, err: BaseException) -> RunResult:
    """Record a failure in result.json (any failing rank does: its peers may be blocked in a collective),
    never over a finished run's result, and never raising in its turn: the caller re-raises ``err``."""
    # a user error is recorded as the CLI prints it (one line); anything else with its type
    error = str(err) if isinstance(err, HpcDlrmError) else f"{type(err).__name__}: {err}"
    result = RunResult(Status.FAILED, error=error, rank=info.rank, config=cfg.to_dict(),
                       env={"hosts": [info.hostname], "ranks": info.world_size, "torch": torch.__version__,
                            "hpcdlrm": __version__, "slurm_job_id": info.job_id})
    try:
        prev = RunResult.read(cfg.out)
        if prev is not None and prev.status.is_final_run:
            return result
    except ValueError:
        pass  # not a finished run's
    try:
        Path(cfg.out).mkdir(parents=True, exist_ok=True)
        result.write(cfg.out)
    except OSError as e:
        print(f"warning: could not record the failure in {cfg.out}/result.json: {e}", file=sys.stderr)
    return result


def run(cfg: TrainConfig) -> RunResult:
    """Train on every rank of the launcher this process is in; the result, also in RUN_DIR/result.json.

    Picklable entry for submitit (each task of a Slurm job calls it). Raises after writing a
    ``failed`` result when anything goes wrong; a refusal (bad option, data, output directory,
    checkpoint or memory: a ConfigError or DataError before training starts) raises without touching
    any file. A launcher or backend that cannot start (DistributedError) is a failure and is recorded.
    """
    cfg.validate()
    check_out_dir(cfg.out)
    info = env.detect()
    torch.set_num_threads(cfg.threads or distributed.default_threads(info))
    comm, ok, started = None, False, False
    try:
        comm = distributed.init(info, cfg.backend)
        job = Run(cfg, comm, info)
        started = True
        result = job.execute()
        ok = True
        return result
    except Exception as e:
        if started or not isinstance(e, REFUSALS):
            _failure(cfg, info, e)
            if comm is not None and comm.world_size > 1:
                # Peers may be waiting in a collective this rank will never join; over MPI (no timeout)
                # they would wait forever: say why, then end the job.
                print(f"rank {comm.rank}: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
                comm.abort(1)
        raise
    finally:
        if comm is not None:
            comm.close(sync=ok)
