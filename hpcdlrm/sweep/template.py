"""From a search-space point to the trial's ``TrainConfig``, checked before anything is submitted.

``TrialTemplate.build`` parses the train flags given after ``--`` once, with the trainer's own parser
(the same flags, types and choices as ``python -m hpcdlrm.train``), refuses one the sweep sets itself or
one that collides with a swept parameter, and checks that every parameter of the space sets a real train
field with values the trainer accepts. Each trial is then
``TrainConfig.from_dict({**base, "out": ..., "max_time": ..., **space.apply(point)})``.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import ConfigError
from ..train.config import TrainConfig, parse_overrides
from .config import TRAIN_ENTRY, SweepConfig
from .space import Space

WHERE = "train flags after --"
# Fields the sweep sets for every trial, and the sweep option that sets them.
OWNED = {"out": "--out (each trial gets SWEEP_DIR/trials/NNNN/run)", "data": "--data", "seed": "--seed",
         "max_time": "--time (a trial's training limit derives from its job limit; capping lowers it)",
         "threads": "--cpus-per-task", "target_auc": "--target-auc"}
NO_DATA = "(none: this trainer reads no dataset)"


def resolve_entry(entry: str) -> Callable[..., Any]:
    """``"package.module:function"`` -> the function (``f(TrainConfig, **options) -> RunResult``)."""
    module, _, func = entry.partition(":")
    if not module or not func:
        raise ConfigError(f"entry {entry!r} must look like package.module:function")
    try:
        return getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"entry {entry!r}: {e}") from e


def entry_options(entry: str) -> Callable[[argparse.ArgumentParser], None] | None:
    """The entry's own flags beyond TrainConfig's (``add_trial_options`` in its module), if any."""
    module = importlib.import_module(entry.partition(":")[0])
    return getattr(module, "add_trial_options", None)


@dataclass(frozen=True)
class TrialTemplate:
    space: Space
    base: dict[str, Any]  # TrainConfig fields every trial shares
    options: dict[str, Any]  # the entry's own options (the surrogate's --speed)
    entry: str = TRAIN_ENTRY

    @classmethod
    def build(cls, cfg: SweepConfig, space: Space, laptop_args: list[str] | None = None) -> "TrialTemplate":
        """Parse and check everything a trial's config is made of; ConfigError naming the flag or the
        parameter otherwise. ``laptop_args`` (default: ``cfg.laptop_args``): train flags of the synthetic
        laptop sweep, below the flags after ``--`` and the swept parameters (which override them)."""
        resolve_entry(cfg.entry)
        extra = entry_options(cfg.entry)
        laptop = cfg.laptop_args if laptop_args is None else laptop_args
        shared, _ = parse_overrides(list(laptop), where="laptop defaults")
        given, options = parse_overrides(list(cfg.train_args), where=WHERE, extra=extra)
        for name in given:
            if name in OWNED:
                raise ConfigError(f"{WHERE}: --{_flag(name)} is set by the sweep for every trial; use the "
                                  f"sweep's {OWNED[name]}")
        swept = {p.field: p for p in space.params}
        _check_fields(space)
        for name in given:
            if name in swept:
                raise ConfigError(f"{WHERE}: --{_flag(name)} collides with the swept parameter "
                                  f"{swept[name].name!r} of {space.source}; drop one of the two")
        base = {**shared, **given, "data": cfg.data or NO_DATA, "seed": cfg.seed, "threads": cfg.cpus_per_task,
                "target_auc": cfg.target_auc if cfg.objective == "time_to_target" else None}
        tpl = cls(space, base, options, cfg.entry)
        tpl._check_values(cfg.limit_s)
        return tpl

    def check_resume(self, cfg: SweepConfig, stored: SweepConfig) -> None:
        """A rerun on a stored sweep must make the trials it made: the same dataset (by its manifest's
        identity, so moved data passes) and the same train config apart from each trial's out and limit."""
        now_id, old_id = cfg.data_identity, stored.data_identity
        if old_id is None and stored.data and Path(stored.data, "manifest.json").exists():  # an older record
            from ..data.format import read_manifest  # noqa: PLC0415

            old_id = read_manifest(stored.data).identity()
        if now_id is not None and old_id is not None and now_id.get("digest") != old_id.get("digest"):
            raise ConfigError(f"--data {cfg.data}: {cfg.out} holds a sweep on other data ({old_id.get('summary')}; "
                              f"this is {now_id.get('summary')}); rerun with its --data to resume it, or pick "
                              f"a new --out")
        old = TrialTemplate.build(dataclasses.replace(stored, data=cfg.data), self.space)
        was, now = {**old.base, **old.options}, {**self.base, **self.options}
        diff = [k for k in sorted({*was, *now} - {"out", "max_time", "data"}) if was.get(k) != now.get(k)]
        if diff:
            detail = "; ".join(f"{OWNED[k].split(' ')[0] if k in OWNED else '--' + _flag(k)}: stored "
                               f"{was.get(k)!r}, now {now.get(k)!r}" for k in diff)
            raise ConfigError(f"{cfg.out} holds a sweep whose trials train otherwise ({detail}); rerun with "
                              f"the same train flags after -- to resume it, or pick a new --out")

    def config(self, point: dict[str, Any], *, out: str, max_time: float) -> TrainConfig:
        return TrainConfig.from_dict({**self.base, "out": out, "max_time": round(float(max_time), 1),
                                      **self.space.apply(point)})

    def _check_values(self, limit_s: float) -> None:
        """The defaults, and each parameter at its bounds / each of its choices (the others at their
        defaults), must make a valid TrainConfig: a bad value fails here, not in every trial."""
        defaults = self.space.defaults()
        try:
            self.config(defaults, out="check", max_time=limit_s)
        except ConfigError as e:
            try:  # the flags after -- alone (the trainer's defaults for the swept fields): theirs, or the space's?
                TrainConfig.from_dict({**self.base, "out": "check", "max_time": round(float(limit_s), 1)})
            except ConfigError as flags:
                raise ConfigError(f"{WHERE}: {flags}") from flags
            raise ConfigError(f"{self.space.source}: the defaults make a bad train config: {e}") from e
        # ranged parameters last: a bad choice is named as itself, not as one of their ranges
        for p in sorted(self.space.params, key=lambda q: q.by is not None):
            if p.kind == "choice":
                points = [{**defaults, p.name: v} for v in p.choices]
            elif p.by is not None:  # each choice's range, with that choice
                points = [{**defaults, p.by: c, p.name: v} for c, lo, hi in p.ranges for v in (lo, hi)]
            else:
                points = [{**defaults, p.name: v} for v in (p.low, p.high)]
            for point in points:
                try:
                    self.config(point, out="check", max_time=limit_s)
                except ConfigError as e:
                    raise ConfigError(f"{self.space.source}: parameter {p.name!r} = {point[p.name]!r}: {e}") from e


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _check_fields(space: Space) -> None:
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    for p in space.params:
        if p.field in OWNED:
            raise ConfigError(f"{space.source}: parameter {p.name!r}: {p.cli_flag} is set by the sweep, not "
                              f"searched (use the sweep's {OWNED[p.field]})")
        if p.field not in names:
            near = difflib.get_close_matches(p.field, names, n=1)
            hint = f"; did you mean --{_flag(near[0])}?" if near else "; see python -m hpcdlrm.train --help"
            raise ConfigError(f"{space.source}: parameter {p.name!r}: {p.cli_flag} is not a train flag{hint}")
