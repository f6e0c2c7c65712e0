"""Sharding plans are pure functions of (table sizes, dim, world size): tested for every rank in one process."""

from __future__ import annotations

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.train.sharding import column_widths, make_plan

SIZES = [5, 100_000, 40_000, 2_000, 999, 70_000, 1_000, 10, 30_000, 60_000]


def test_table_plan_places_every_big_table_once_and_balances() -> None:
    plan = make_plan(SIZES, 16, 3, "table", replicate_threshold=1000)
    assert plan.kind == "table"
    assert sorted(plan.replicated) == [0, 4, 7]  # 5, 999, 10 rows: below the threshold
    placed = sorted(p.table for p in plan.pieces)
    assert placed == [1, 2, 3, 5, 6, 8, 9]
    assert all((p.lo, p.hi) == (0, 16) for p in plan.pieces)
    loads = [plan.load(r) for r in range(3)]
    big = [n * 16 for n in SIZES if n >= 1000]
    # Greedy largest-first: the spread is at most the largest table.
    assert max(loads) - min(loads) <= max(big)
    assert sum(loads) - 3 * sum(SIZES[t] for t in plan.replicated) * 16 == sum(big)
    # Largest first onto the least-loaded (then lowest) rank: 100k|70k|60k, 40k->r2, 30k->r1, 2k->r0, 1k->r1.
    by_rank = [sorted(SIZES[p.table] for p in plan.pieces_of(r)) for r in range(3)]
    assert by_rank == [[2_000, 100_000], [1_000, 30_000, 70_000], [40_000, 60_000]]


@pytest.mark.parametrize("dim,world", [(16, 2), (16, 3), (5, 4), (8, 8)])
def test_column_plan_splits_every_big_table_over_all_ranks(dim: int, world: int) -> None:
    plan = make_plan(SIZES, dim, world, "column", replicate_threshold=1000)
    for t in (1, 2, 3, 5, 6, 8, 9):
        pieces = sorted((p for p in plan.pieces if p.table == t), key=lambda p: p.lo)
        assert [p.lo for p in pieces][0] == 0 and pieces[-1].hi == dim
        assert all(a.hi == b.lo for a, b in zip(pieces, pieces[1:]))  # contiguous, no overlap
        assert sorted(p.owner for p in pieces) == list(range(world))  # one slice per rank
    widths = [sum(p.width for p in plan.pieces_of(r)) for r in range(world)]
    assert sum(widths) == 7 * dim
    # Even split: equal work. Uneven: owners rotate by table, so rank 0 does not take every extra column.
    assert max(widths) - min(widths) == 0 if dim % world == 0 else max(widths) - min(widths) < 7


def test_column_widths_sum_and_refusal() -> None:
    assert column_widths(16, 3) == [6, 5, 5]
    assert column_widths(4, 4) == [1, 1, 1, 1]
    with pytest.raises(ConfigError, match="emb dim 4 over 5 ranks"):
        column_widths(4, 5)
    with pytest.raises(ConfigError, match="--sharding table"):
        make_plan(SIZES, 4, 5, "column")


def test_replicate_auto_and_single_rank() -> None:
    rep = make_plan(SIZES, 16, 4, "replicate")
    assert rep.replicated == tuple(range(len(SIZES))) and rep.pieces == ()
    # auto: fewer big tables (7) than ranks (8) and 8 <= dim -> column; otherwise table.
    assert make_plan(SIZES, 16, 8, "auto").kind == "column"
    assert make_plan(SIZES, 16, 2, "auto").kind == "table"
    assert make_plan(SIZES, 4, 8, "auto").kind == "table"
    one = make_plan(SIZES, 16, 1, "column")  # one rank: everything local, nothing replicated
    assert one.replicated == () and [p.table for p in one.pieces] == list(range(len(SIZES)))
    with pytest.raises(ConfigError, match="--sharding"):
        make_plan(SIZES, 16, 2, "rows")


def test_plan_describe_is_json_ready() -> None:
    import json

    d = make_plan(SIZES, 16, 2, "table").describe()
    assert json.loads(json.dumps(d))["kind"] == "table" and len(d["load"]) == 2


def test_vertical_plan_is_intels_grouped_split() -> None:
    # 7 big tables: 14 ranks -> 2 pieces of 8 columns per table, one piece per rank, a table's pieces
    # on consecutive ranks (its ids go to those 2 only)
    plan = make_plan(SIZES, 16, 14, "vertical", replicate_threshold=1000)
    assert plan.kind == "vertical" and sorted(plan.replicated) == [0, 4, 7]
    assert sorted(p.owner for p in plan.pieces) == list(range(14)) and {p.width for p in plan.pieces} == {8}
    assert [plan.tables_of(q) for q in (0, 1, 2)] == [[1], [1], [2]]
    # 15 ranks: still 2 pieces per table; rank 14 holds none. Uneven dim: widths differ by one.
    assert len(make_plan(SIZES, 16, 15, "vertical").pieces_of(14)) == 0
    assert {p.width for p in make_plan(SIZES, 5, 14, "vertical").pieces} == {2, 3}
    # fewer ranks than tables: whole tables dealt round-robin (equal lookups per rank)
    rr = make_plan(SIZES, 16, 3, "vertical")
    assert [len(rr.pieces_of(q)) for q in range(3)] == [3, 2, 2] and {p.width for p in rr.pieces} == {16}
    with pytest.raises(ConfigError, match="vertical: cannot split emb dim 2 into 3"):
        make_plan(SIZES, 2, 21, "vertical")
