"""Shared output format and options of the benchmarks."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ..sweep.surrogate import Landscapes


def emit(metric: str, value: float, unit: str, as_json: bool, **extra: Any) -> None:
    """Print one figure: a JSON object per line with ``--json``, else a readable line."""
    if as_json:
        print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)
    else:
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{metric}: {value:,.6g} {unit}  {tail}".rstrip(), flush=True)


def landscape_arg(text: str) -> Landscapes:
    """``--landscape NAME``: one of the surrogate's landscapes, by its lower-case name."""
    try:
        return Landscapes[text.upper()]
    except KeyError:
        names = ", ".join(m.name.lower() for m in Landscapes)
        raise argparse.ArgumentTypeError(f"{text!r}: not one of {names}") from None
