"""Shared output format of the benchmarks."""

from __future__ import annotations

import json
from typing import Any


def emit(metric: str, value: float, unit: str, as_json: bool, **extra: Any) -> None:
    """Print one figure: a JSON object per line with ``--json``, else a readable line."""
    if as_json:
        print(json.dumps({"metric": metric, "value": value, "unit": unit, **extra}), flush=True)
    else:
        tail = " ".join(f"{k}={v}" for k, v in extra.items())
        print(f"{metric}: {value:,.6g} {unit}  {tail}".rstrip(), flush=True)
