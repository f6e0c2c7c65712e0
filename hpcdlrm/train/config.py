"""``TrainConfig``: every knob of a training run, shared by the CLI (flags are built from the fields)
and the sweep (which ``dataclasses.replace``-s it per trial and pickles it to Slurm through submitit).

A field's ``metadata`` holds its help text and, where it has one, its choices; ``add_arguments`` turns
each field into ``--field-name`` so the CLI can never drift from the dataclass.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from ..errors import ConfigError
from .schedule import LRSchedule

PRESET_CHOICES = ("kaggle", "mlperf")
SHARDINGS = ("auto", "table", "column", "vertical", "replicate")
DENSE_OPTIMIZERS = ("sgd", "adagrad", "lamb")
SPARSE_OPTIMIZERS = ("sgd", "rowwise_adagrad")
BACKENDS = ("auto", "gloo", "ccl", "mpi")


def _f(default: Any, help: str, **meta: Any) -> Any:  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help, **meta})


@dataclass
class TrainConfig:
    # --- what to read and where to write
    data: str = _f("", "dataset directory (made by `python -m hpcdlrm.data`)", required=True)
    out: str = _f("", "run directory: metrics.jsonl, result.json, checkpoints (rerun to resume)", required=True)
    # --- model (preset, then per-field overrides)
    preset: str = _f("kaggle", "model preset", choices=PRESET_CHOICES)
    arch_mlp_bot: str | None = _f(None, "bottom MLP widths, e.g. 13-512-256-64-16 (default: preset's)")
    arch_mlp_top: str | None = _f(None, "top MLP widths, e.g. 512-256-1 (default: preset's)")
    emb_dim: int | None = _f(None, "embedding dimension (default: preset's)")
    interaction: str | None = _f(None, "feature interaction (default: preset's)", choices=("dot", "cat"))
    self_interaction: bool = _f(False, "dot interaction includes each feature with itself")
    # --- optimisation
    # Defaults tuned on `python -m hpcdlrm.data synth --rows 300000` (kaggle preset): LAMB for the MLPs and
    # plain SGD for the rows (Intel's MLPerf split). Sparse SGD on a mean loss over 2048 rows needs a large
    # rate, so the two rates differ; a sweep may set sparse_lr=None to tie them.
    batch_size: int = _f(2048, "GLOBAL training batch (each of R ranks reads batch_size/R rows)")
    eval_batch_size: int = _f(32768, "GLOBAL evaluation batch")
    lr: float = _f(0.01, "dense (MLP) learning rate")
    sparse_lr: float | None = _f(20.0, "embedding learning rate (None in a config: same as --lr)")
    warmup_steps: int = _f(0, "linear warm-up steps from 0 to the base lr")
    decay_start: int = _f(0, "step where the polynomial (power 2) decay starts (0: no decay)")
    decay_steps: int = _f(0, "steps of the decay (0: no decay)")
    dense_optimizer: str = _f("lamb", "optimizer of the MLPs", choices=DENSE_OPTIMIZERS)
    sparse_optimizer: str = _f("sgd", "optimizer of the embeddings", choices=SPARSE_OPTIMIZERS)
    # --- parallelism
    sharding: str = _f("auto", "embedding placement across ranks: table (whole tables), column (every big "
                       "table's dim split over all ranks), vertical (each big table split into ranks/tables "
                       "column pieces, Intel's MLPerf v1.0), replicate (auto: column when ranks > big tables "
                       "and ranks <= emb dim, else table)", choices=SHARDINGS)
    replicate_threshold: int = _f(1000, "tables with fewer rows are replicated on every rank")
    backend: str = _f("auto", "collectives: mpi (mpi4py, the site's MPI), gloo or ccl (auto: mpi when an MPI "
                      "launcher or srun --mpi started the ranks and mpi4py imports, else ccl if importable, "
                      "else gloo)", choices=BACKENDS)
    overlap: bool | None = _f(None, "with several ranks: exchange embeddings while the bottom MLP runs and sum "
                              "gradients in buckets during backward (default: when a rank has >= 2 threads, so "
                              "the communication thread does not take its only core)")
    ipex: bool = _f(False, "use intel_extension_for_pytorch (must be installed)")
    threads: int | None = _f(None, "intra-op threads per rank (default: cores / ranks on the node)")
    bf16: bool = _f(False, "bfloat16 MLP weights and activations (fp32 master weights, loss, AUC and optimizer "
                    "state); pays on CPUs with native bf16 (AVX512-BF16/AMX)")
    bf16_tables: bool = _f(False, "embedding tables stored as bf16 + a 16-bit trail (split SGD: exact fp32 "
                           "updates, half the lookup traffic)")
    # --- length and stopping
    epochs: float = _f(2.0, "training epochs (fractions allowed)")
    max_samples: int | None = _f(None, "stop after this many training samples (overrides --epochs)")
    eval_every: int | None = _f(None, "evaluate on val every N training samples (default: each epoch)")
    target_auc: float | None = _f(None, "stop as soon as val AUC reaches this")
    max_time: float | None = _f(None, "stop after this many seconds of training (status timeout)")
    checkpoint_every: int | None = _f(None, "checkpoint every N training samples (also on SIGTERM/SIGUSR1)")
    log_every: int = _f(20, "log a train event every N steps")
    seed: int = _f(0, "seed of weights and data order")

    # ------------------------------------------------------------------ helpers
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrainConfig":
        """Build from a plain dict; unknown keys are an error that lists the valid ones."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError(f"unknown TrainConfig field(s) {unknown}; valid: {sorted(names)}")
        cfg = cls(**d)
        check_types(cfg)
        cfg.validate()
        return cfg

    @property
    def effective_sparse_lr(self) -> float:
        return self.lr if self.sparse_lr is None else self.sparse_lr

    def lr_schedules(self) -> tuple[LRSchedule, LRSchedule]:
        """The dense and the sparse lr schedules (warm-up, decay) this run trains with."""
        sched = dict(warmup_steps=self.warmup_steps, decay_start=self.decay_start, decay_steps=self.decay_steps)
        return (LRSchedule(self.lr, **sched, name="--lr"),
                LRSchedule(self.effective_sparse_lr, **sched, name="--sparse-lr"))

    def validate(self) -> None:
        """Raise ConfigError naming the flag of the first bad field."""
        for f in dataclasses.fields(self):
            value, choices = getattr(self, f.name), f.metadata.get("choices")
            if choices and value is not None and value not in choices:
                raise ConfigError(f"--{_flag(f.name)}: {value!r} is not one of {list(choices)}")
            if f.metadata.get("required") and not value:
                raise ConfigError(f"--{_flag(f.name)} is required")
        positive = ["batch_size", "eval_batch_size", "lr", "log_every"]
        positive += [n for n in ("sparse_lr", "emb_dim", "max_samples", "eval_every", "max_time",
                                 "checkpoint_every", "threads") if getattr(self, n) is not None]
        for name in positive:
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"--{_flag(name)}: must be a positive number, got {v!r}")
        for name in ("warmup_steps", "decay_start", "decay_steps", "replicate_threshold"):
            if getattr(self, name) < 0:
                raise ConfigError(f"--{_flag(name)}: must be >= 0, got {getattr(self, name)}")
        if not (self.epochs > 0 or self.max_samples):
            raise ConfigError(f"--epochs: must be > 0 (or give --max-samples), got {self.epochs}")
        if self.target_auc is not None and not 0.5 < self.target_auc <= 1.0:
            raise ConfigError(f"--target-auc: must be in (0.5, 1], got {self.target_auc}")
        if self.decay_steps and self.decay_start < self.warmup_steps:
            raise ConfigError(f"--decay-start ({self.decay_start}) must not come before the end of "
                              f"--warmup-steps ({self.warmup_steps})")


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _base_type(annotation: Any) -> type:
    """``int | None`` -> int; ``float`` -> float."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def _default_of(f: dataclasses.Field) -> Any:  # type: ignore[type-arg]
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return f.default_factory()  # type: ignore[misc]
    return None if f.default is dataclasses.MISSING else f.default


def add_arguments(parser: argparse.ArgumentParser, cls: type = TrainConfig, *, defaults: bool = True) -> None:
    """One ``--flag`` per dataclass field: type, default, choices and help all come from the field.

    Field metadata: ``help``, ``choices``, ``required``; ``flag`` (another flag name), ``parse`` (a
    converter from the flag's text, for list fields), ``hidden`` (not in --help), ``cli=False`` (no flag).
    ``defaults=False``: a flag not given is absent from the namespace (to see which fields argv sets).
    """
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if meta.get("cli", True) is False:
            continue
        typ, default = meta.get("parse") or _base_type(hints[f.name]), _default_of(f)
        kw: dict[str, Any] = {"help": meta.get("help", ""), "dest": f.name}
        if typ is bool:
            kw["action"] = argparse.BooleanOptionalAction
            kw["default"] = default
        else:
            kw.update(type=typ, default=default, metavar=meta.get("metavar") or f.name.upper().split("_")[-1])
            if meta.get("choices"):
                kw["choices"] = meta["choices"]
                kw.pop("metavar")
            if meta.get("required"):
                kw["required"] = True
        if default not in (None, "") and typ is not bool and not isinstance(default, (list, dict)):
            kw["help"] += f" [{default}]"
        if meta.get("hidden"):
            kw["help"] = argparse.SUPPRESS
        if not defaults:
            kw["default"] = argparse.SUPPRESS
            kw.pop("required", None)
        parser.add_argument(meta.get("flag") or f"--{_flag(f.name)}", **kw)


def from_args(ns: argparse.Namespace, cls: type = TrainConfig) -> Any:
    names = [f.name for f in dataclasses.fields(cls) if f.metadata.get("cli", True) is not False]
    cfg = cls(**{n: getattr(ns, n) for n in names})
    cfg.validate()
    return cfg


class OneLineParser(argparse.ArgumentParser):
    """argparse that raises ConfigError (one line, no usage text, no exit) on a bad flag or value."""

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(message)


class _Refusing(OneLineParser):
    def __init__(self, where: str) -> None:
        super().__init__(prog=where, add_help=False, allow_abbrev=False)
        self.where = where

    def error(self, message: str) -> typing.NoReturn:
        raise ConfigError(f"{self.where}: {message}")


def parse_overrides(argv: list[str], cls: type = TrainConfig, *, where: str = "train flags",
                    extra: typing.Callable[[argparse.ArgumentParser], None] | None = None
                    ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Parse train flags with the CLI's own flags, types and choices: (fields they set, ``extra`` options
    they set). Only what ``argv`` gives is returned; an unknown flag or a bad value is a ConfigError."""
    p = _Refusing(where)
    p.argument_default = argparse.SUPPRESS  # for ``extra``'s options too
    add_arguments(p, cls, defaults=False)
    if extra is not None:
        extra(p)
    ns = vars(p.parse_args(argv))
    names = {f.name for f in dataclasses.fields(cls)}
    return ({k: v for k, v in ns.items() if k in names}, {k: v for k, v in ns.items() if k not in names})


def check_types(cfg: Any) -> None:
    """Raise ConfigError naming the flag of a field whose value is not of the field's type
    (a config built from a dict or a search space is not typed by argparse)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        v, ann = getattr(cfg, f.name), hints[f.name]
        optional = type(None) in typing.get_args(ann)
        typ = _base_type(ann)
        if v is None and optional:
            continue
        ok = (isinstance(v, bool) if typ is bool else
              isinstance(v, int) and not isinstance(v, bool) if typ is int else
              isinstance(v, (int, float)) and not isinstance(v, bool) if typ is float else
              isinstance(v, typ) if isinstance(typ, type) else True)
        if not ok:
            raise ConfigError(f"--{_flag(f.name)}: expected {getattr(typ, '__name__', typ)}, got {v!r}")
