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
_KEYS = {"kind", "low", "high", "choices", "default", "ordered", "flag", "times", "at_least", "by", "ranges"}


def place_in(kind: str, lo: float, hi: float, v: float) -> float:
    """``v``'s place in [lo, hi]: 0 at lo, 1 at hi, in log space for kind ``log``."""
    if kind == "log":
        return (math.log(v) - math.log(lo)) / (math.log(hi) - math.log(lo))
    return (v - lo) / (hi - lo)


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
    by: str | None = None  # a choice parameter whose value picks this one's range ...
    ranges: tuple[tuple[Any, float, float], ...] = ()  # ... (choice, low, high); low/high: their envelope

    def bounds(self, point: dict[str, Any] | None = None) -> tuple[float, float]:
        """The range that applies at ``point`` (its own choice of ``by``), the envelope without one."""
        if self.by is not None and point is not None:
            for choice, lo, hi in self.ranges:
                if choice == point.get(self.by):
                    return lo, hi
        assert self.low is not None and self.high is not None
        return self.low, self.high

    def unit(self, v: float, point: dict[str, Any]) -> float:
        """``v``'s position in the range that applies at ``point``: 0 at its low end, 1 at its high end
        (in log space for a log parameter). An optimizer searches a ``by`` parameter in these units, so a
        good position carries over when it switches the choice (SGD's lr 0.3 is LAMB's 0.01)."""
        return place_in(self.kind, *self.bounds(point), v)

    def from_unit(self, u: float, point: dict[str, Any]) -> Any:
        """The value at position ``u`` of the range that applies at ``point`` (inverse of :meth:`unit`)."""
        lo, hi = self.bounds(point)
        u = min(max(float(u), 0.0), 1.0)
        if self.kind == "int":
            return int(round(lo + u * (hi - lo)))
        v = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if self.kind == "log" else lo + u * (hi - lo)
        # 12 digits: a value survives unit() and back as written (the recipe's 0.012 stays 0.012)
        return min(max(float(f"{v:.12g}"), lo), hi)

    @property
    def cli_flag(self) -> str:
        return self.flag or "--" + self.name.replace("_", "-")

    @property
    def field(self) -> str:
        """The TrainConfig field it sets (its train flag without dashes)."""
        return self.cli_flag[2:].replace("-", "_")

    def to_dict(self) -> dict[str, Any]:
        """The record form (``records.SweepInfo.space``): only the keys that apply."""
        skip = ("name", "choices", "ordered", "ranges")
        d = {k: v for k, v in asdict(self).items() if v is not None and k not in skip}
        if self.choices:
            d["choices"] = list(self.choices)
        if self.ordered:
            d["ordered"] = True
        if self.ranges:
            d["ranges"] = {str(c): [lo, hi] for c, lo, hi in self.ranges}
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
            if p.by is not None:  # the middle of the range its choice's (uninformed) default gives it
                return p.from_unit(0.5, {p.by: next(q for q in self.params if q.name == p.by).choices[0]})
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
            _check_value(p, point[p.name], self.source, "value", point)

    def encode(self, point: dict[str, Any]) -> dict[str, Any]:
        """A point in the optimizer's coordinates: a ``by`` parameter as its position in its range
        (:meth:`Param.unit`), every other one as it is."""
        return {p.name: p.unit(point[p.name], point) if p.by else point[p.name] for p in self.params}

    def decode(self, coords: dict[str, Any]) -> dict[str, Any]:
        """The point at the optimizer's coordinates ``coords`` (inverse of :meth:`encode`)."""
        return {p.name: p.from_unit(coords[p.name], coords) if p.by else coords[p.name] for p in self.params}

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
        """A seeded ``ng.p.Dict`` whose ``.value`` is a point in the optimizer's coordinates
        (:meth:`decode` makes it a point: dict name -> value)."""
        import nevergrad as ng  # noqa: PLC0415 - heavy, and only the driver needs it

        def one(p: Param) -> Any:
            if p.by is not None:  # searched as its position in the range its choice picks (encode/decode)
                return ng.p.Scalar(lower=0.0, upper=1.0, init=p.unit(p.default, self.defaults()))
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


def _check_value(p: Param, v: Any, where: str, what: str, point: dict[str, Any] | None = None) -> None:
    bad = f"{where}: parameter {p.name!r}: {what}"
    if p.kind == "choice":
        if v not in p.choices:
            raise ConfigError(f"{bad} {v!r} is not one of {list(p.choices)}")
        return
    if not _num(v):
        raise ConfigError(f"{bad} {v!r} is not a finite number")
    if p.kind == "int" and int(v) != v:
        raise ConfigError(f"{bad} {v!r} is not an integer")
    lo, hi = p.bounds(point)
    if not lo <= v <= hi:
        at = f" (its range for {p.by} = {point[p.by]!r})" if p.by and point and p.by in point else ""
        raise ConfigError(f"{bad} {v!r} is outside [{lo}, {hi}]{at}")


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
    ranges: tuple[tuple[Any, float, float], ...] = ()
    if kind == "choice":
        choices = d.get("choices")
        if not isinstance(choices, list) or len(choices) < 2 or len(set(map(repr, choices))) != len(choices):
            raise ConfigError(f"{bad}: choice needs `choices`, a list of >= 2 distinct values, got {choices!r}")
        if "low" in d or "high" in d or "ranges" in d or "by" in d:
            raise ConfigError(f"{bad}: a choice has `choices`, not low/high, by or ranges")
        p = Param(name, kind, choices=tuple(choices), default=d.get("default", choices[0]),
                  ordered=bool(d.get("ordered", False)), flag=d.get("flag"), times=d.get("times"),
                  at_least=d.get("at_least"))
    else:
        ranges = _ranges(d, bad)
        low, high = d.get("low"), d.get("high")
        if ranges:  # the envelope; a record (SweepInfo.space) states it, a space file need not
            env = (min(r[1] for r in ranges), max(r[2] for r in ranges))
            if (low, high) not in ((None, None), env):
                raise ConfigError(f"{bad}: low/high with `ranges` must be their envelope {list(env)} "
                                  f"(or left out), got low={low!r} high={high!r}")
            low, high = env
        if not (_num(low) and _num(high) and low < high):
            raise ConfigError(f"{bad}: needs numbers low < high, got low={low!r} high={high!r}")
        if kind == "log" and low <= 0:
            raise ConfigError(f"{bad}: a log parameter needs low > 0, got {low!r}")
        if kind == "int" and (int(low) != low or int(high) != high):
            raise ConfigError(f"{bad}: an int parameter needs integer bounds, got {low!r}, {high!r}")
        if "choices" in d or "ordered" in d:
            raise ConfigError(f"{bad}: `choices`/`ordered` only apply to kind = \"choice\"")
        # with `ranges`, no default means the middle of its choice's range (set in _resolve_by)
        default = d.get("default", None if ranges else math.sqrt(low * high) if kind == "log" else (low + high) / 2)
        if kind == "int":
            low, high, default = int(low), int(high), int(round(default)) if _num(default) else default
        p = Param(name, kind, low=low, high=high, default=default, flag=d.get("flag"),
                  times=d.get("times"), at_least=d.get("at_least"), by=d.get("by"), ranges=ranges)
    if not ranges:  # with ranges: checked in the range of its choice's default (_resolve_by)
        _check_value(p, p.default, where, "default")
    if p.flag is not None and not (isinstance(p.flag, str) and p.flag.startswith("--")):
        raise ConfigError(f"{bad}: flag must look like --some-flag, got {p.flag!r}")
    return p


def _ranges(d: dict[str, Any], bad: str) -> tuple[tuple[Any, float, float], ...]:
    """``by`` + ``ranges = {choice = [low, high], ...}`` (choices as TOML keys: strings until
    :func:`space_from_dict` matches them to the ``by`` parameter's values)."""
    by, ranges = d.get("by"), d.get("ranges")
    if by is None and ranges is None:
        return ()
    if not isinstance(by, str) or not isinstance(ranges, dict) or not ranges:
        raise ConfigError(f"{bad}: `by` (a choice parameter) and `ranges` (a table choice = [low, high]) go "
                          f"together, got by={by!r} ranges={ranges!r}")
    out = []
    for choice, r in ranges.items():
        if not (isinstance(r, list) and len(r) == 2 and all(_num(x) for x in r) and r[0] < r[1]):
            raise ConfigError(f"{bad}: ranges.{choice} must be [low, high] with low < high, got {r!r}")
        if d.get("kind") == "log" and r[0] <= 0:
            raise ConfigError(f"{bad}: ranges.{choice}: a log parameter needs low > 0, got {r[0]!r}")
        if d.get("kind") == "int" and (int(r[0]) != r[0] or int(r[1]) != r[1]):
            raise ConfigError(f"{bad}: ranges.{choice}: an int parameter needs integer bounds, got {r!r}")
        out.append((choice, r[0], r[1]))
    return tuple(out)


def _resolve_by(p: Param, params: tuple[Param, ...], where: str) -> Param:
    """Match a ``by`` parameter's range keys to the choices of the parameter it names (one range each)."""
    bad = f"{where}: parameter {p.name!r}"
    other = next((q for q in params if q.name == p.by), None)
    if other is None or other.kind != "choice" or other.by is not None:
        raise ConfigError(f"{bad}: by = {p.by!r} is not a choice parameter (have "
                          f"{sorted(q.name for q in params if q.kind == 'choice')})")
    keys = {str(c): lo_hi for c, *lo_hi in p.ranges}
    want = [str(c) for c in other.choices]
    if sorted(keys) != sorted(want):
        raise ConfigError(f"{bad}: ranges must name each choice of {other.name!r} once: {want}, got {sorted(keys)}")
    q = replace(p, ranges=tuple((c, *keys[str(c)]) for c in other.choices))
    if q.default is None:
        q = replace(q, default=q.from_unit(0.5, {other.name: other.default}))
    _check_value(q, q.default, where, f"default (with {other.name} = {other.default!r})", {other.name: other.default})
    return q


def space_from_dict(d: dict[str, Any], where: str = "<dict>") -> Space:
    """Validate a parsed space (TOML tables or ``SweepInfo.space``)."""
    if not d:
        raise ConfigError(f"{where}: the search space has no parameters")
    params = tuple(_param(name, spec, where) for name, spec in d.items())
    params = tuple(_resolve_by(p, params, where) if p.by else p for p in params)
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
