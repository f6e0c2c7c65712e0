"""Search spaces: a TOML file -> validated :class:`Param` list -> nevergrad parametrization and train argv.

The file format is documented at the top of the default space, ``hpcdlrm/sweep/space.toml``.
Every error names the file and the parameter, because a typo in a sweep file otherwise shows up as a
trial failure hours later on a cluster.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the project requires tomli there (pyproject)
    import tomli as tomllib

DEFAULT_SPACE = Path(__file__).with_name("space.toml")
KINDS = ("log", "float", "int", "choice")
_KEYS = {"kind", "low", "high", "choices", "default", "ordered", "flag", "times", "at_least"}


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    low: float | None = None
    high: float | None = None
    choices: tuple[Any, ...] = ()
    default: Any = None
    ordered: bool = False
    flag: str | None = None
    times: str | None = None
    at_least: str | None = None

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def field(self) -> str:
        """The TrainConfig field it sets (its train flag without dashes)."""
        return self.cli_flag[2:].replace("-", "_")

    def to_dict(self) -> dict[str, Any]:
        """The record form (``records.SweepInfo.space``): only the keys that apply."""
        d = {k: v for k, v in asdict(self).items() if v is not None and k not in ("name", "choices", "ordered")}
        if self.choices:
            d["choices"] = list(self.choices)
        if self.ordered:
            d["ordered"] = True
        return d


@dataclass(frozen=True)
class Space:
    params: tuple[Param, ...]
    source: str = "<dict>"

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.params]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {p.name: p.to_dict() for p in self.params}

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}

    def uninformed(self) -> "Space":
        """This space with every default moved to the middle of its range (geometric for log, first
        choice), i.e. without the prior knowledge the defaults carry: optimizers that start at the
        defaults (CMA, (1+1)) then get no head start. For benchmarking the search itself."""
        def mid(p: Param) -> Any:
            if p.kind == "choice":
                return p.choices[0]
            assert p.low is not None and p.high is not None
            v = math.sqrt(p.low * p.high) if p.kind == "log" else (p.low + p.high) / 2
            return round(v) if p.kind == "int" else v
        return replace(self, params=tuple(replace(p, default=mid(p)) for p in self.params),
                       source=f"{self.source} (uninformed)")

    def check_point(self, point: dict[str, Any]) -> None:
        """Raise ConfigError when ``point`` (e.g. a stored trial) does not fit this space."""
        if set(point) != set(self.names):
            raise ConfigError(f"point {point} has parameters {sorted(point)}, space {self.source} has "
                              f"{sorted(self.names)}")
        for p in self.params:
            _check_value(p, point[p.name], self.source, "value")

    def apply(self, point: dict[str, Any]) -> dict[str, Any]:
        """The TrainConfig fields one point sets (``TrainConfig.from_dict({**base, **space.apply(point)})``),
        applying ``times`` and ``at_least``."""
        fields: dict[str, Any] = {}
        for p in self.params:
            v = point[p.name]
            if p.times:
                v = float(v) * float(point[p.times])
            if p.at_least:
                v = max(v, point[p.at_least])
            fields[p.field] = v
        return fields

    def to_argv(self, point: dict[str, Any]) -> list[str]:
        """The same as train flags (for a log line or a command to rerun a trial by hand)."""
        return [a for f, v in self.apply(point).items() for a in ("--" + f.replace("_", "-"), _fmt(v))]

    def parametrization(self, seed: int | None = None) -> Any:
        """A seeded ``ng.p.Dict`` whose ``.value`` is a point (dict name -> value)."""
        import nevergrad as ng  # noqa: PLC0415 - heavy, and only the driver needs it

        def one(p: Param) -> Any:
            if p.kind == "log":
                return ng.p.Log(lower=p.low, upper=p.high, init=p.default)
            if p.kind == "float":
                return ng.p.Scalar(lower=p.low, upper=p.high, init=p.default)
            if p.kind == "int":
                return ng.p.Scalar(lower=p.low, upper=p.high, init=p.default).set_integer_casting()
            if p.ordered:  # neighbours are similar: mutate to a neighbour, not to any choice
                return ng.p.TransitionChoice(list(p.choices))
            return ng.p.Choice(list(p.choices))

        param = ng.p.Dict(**{p.name: one(p) for p in self.params})
        param.function.deterministic = False  # trial outcomes are noisy: recommend the pessimistic best
        if seed is not None:
            param.random_state.seed(seed)
        return param


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return repr(v)
    return str(v)


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_value(p: Param, v: Any, where: str, what: str) -> None:
    bad = f"{where}: parameter {p.name!r}: {what}"
    if p.kind == "choice":
        if v not in p.choices:
            raise ConfigError(f"{bad} {v!r} is not one of {list(p.choices)}")
        return
    if not _num(v):
        raise ConfigError(f"{bad} {v!r} is not a finite number")
    if p.kind == "int" and int(v) != v:
        raise ConfigError(f"{bad} {v!r} is not an integer")
    assert p.low is not None and p.high is not None
    if not p.low <= v <= p.high:
        raise ConfigError(f"{bad} {v!r} is outside [{p.low}, {p.high}]")


def _param(name: str, d: Any, where: str) -> Param:
    if not isinstance(d, dict):
        raise ConfigError(f"{where}: parameter {name!r} must be a table like [{name}] kind = ..., got {d!r}")
    unknown = sorted(set(d) - _KEYS)
    if unknown:
        raise ConfigError(f"{where}: parameter {name!r}: unknown key(s) {unknown}; valid: {sorted(_KEYS)}")
    kind = d.get("kind")
    if kind not in KINDS:
        raise ConfigError(f"{where}: parameter {name!r}: kind must be one of {list(KINDS)}, got {kind!r}")
    bad = f"{where}: parameter {name!r}"
    if kind == "choice":
        choices = d.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{bad}: choice needs `choices`, a list of >= 2 distinct values, got {choices!r}")
        if "low" in d or "high" in d:
            raise ConfigError(f"{bad}: a choice has `choices`, not low/high")
        p = Param(name, kind, choices=tuple(choices), default=d.get("default", choices[0]),
                  ordered=bool(d.get("ordered", False)), flag=d.get("flag"), times=d.get("times"),
                  at_least=d.get("at_least"))
    else:
        low, high = d.get("low"), d.get("high")
        if not (_num(low) and _num(high) and low < high):
            raise ConfigError(f"{bad}: needs numbers low < high, got low={low!r} high={high!r}")
        if kind == "log" and low <= 0:
            raise ConfigError(f"{bad}: a log parameter needs low > 0, got {low!r}")
        if kind == "int" and (int(low) != low or int(high) != high):
            raise ConfigError(f"{bad}: an int parameter needs integer bounds, got {low!r}, {high!r}")
        if "choices" in d or "ordered" in d:
            raise ConfigError(f"{bad}: `choices`/`ordered` only apply to kind = \"choice\"")
        default = d.get("default", math.sqrt(low * high) if kind == "log" else (low + high) / 2)
        if kind == "int":
            low, high, default = int(low), int(high), int(round(default)) if _num(default) else default
        p = Param(name, kind, low=low, high=high, default=default, flag=d.get("flag"),
                  times=d.get("times"), at_least=d.get("at_least"))
    _check_value(p, p.default, where, "default")
    if p.flag is not None and not (isinstance(p.flag, str) and p.flag.startswith("--")):
        raise ConfigError(f"{bad}: flag must look like --some-flag, got {p.flag!r}")
    return p


def space_from_dict(d: dict[str, Any], where: str = "<dict>") -> Space:
    """Validate a parsed space (TOML tables or ``SweepInfo.space``)."""
    if not d:
        raise ConfigError(f"{where}: the search space has no parameters")
    params = tuple(_param(name, spec, where) for name, spec in d.items())
    names = {p.name for p in params}
    for p in params:
        for key in ("times", "at_least"):
            ref = getattr(p, key)
            if ref is None:
                continue
            other = next((q for q in params if q.name == ref), None)
            if other is None or ref == p.name:
                raise ConfigError(f"{where}: parameter {p.name!r}: {key} = {ref!r} is not another parameter "
                                  f"(have {sorted(names)})")
            if other.kind == "choice" and not all(_num(c) for c in other.choices):
                raise ConfigError(f"{where}: parameter {p.name!r}: {key} = {ref!r} must be numeric")
    flags = [p.cli_flag for p in params]
    dup = sorted({f for f in flags if flags.count(f) > 1})
    if dup:
        raise ConfigError(f"{where}: several parameters set the same train flag(s) {dup}")
    return Space(params, where)


def load_space(path: str | Path | None = None) -> Space:
    """Read and validate a space file (the shipped default when ``path`` is None)."""
    path = Path(path) if path is not None else DEFAULT_SPACE
    try:
        text = path.read_text()
    except OSError as e:
        raise ConfigError(f"cannot read search space {path}: {e.strerror}") from e
    try:
        d = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from e
    return space_from_dict(d, str(path))
