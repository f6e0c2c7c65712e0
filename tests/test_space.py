"""Search-space files: validation names the file and the parameter; mapping to nevergrad and argv."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcdlrm.errors import ConfigError
from hpcdlrm.sweep.space import DEFAULT_SPACE, load_space, space_from_dict


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "space.toml"
    p.write_text(text)
    return p


def test_default_space_has_the_documented_parameters() -> None:
    sp = load_space()
    assert sp.names == ["lr", "warmup_steps", "decay_start", "decay_steps", "batch_size", "dense_optimizer",
                        "sparse_lr"]
    kinds = {p.name: p.kind for p in sp.params}
    assert kinds["lr"] == "log" and kinds["batch_size"] == "choice" and kinds["warmup_steps"] == "int"
    assert next(p for p in sp.params if p.name == "batch_size").ordered
    assert set(next(p for p in sp.params if p.name == "dense_optimizer").choices) == {"sgd", "lamb"}
    sp.check_point(sp.defaults())  # the defaults lie inside the space


@pytest.mark.parametrize("body, words", [
    ('[lr]\nkind = "log"\nlow = 0.0\nhigh = 1.0\n', ["lr", "low > 0"]),
    ('[lr]\nkind = "gauss"\nlow = 0.1\nhigh = 1.0\n', ["lr", "kind must be one of"]),
    ('[bs]\nkind = "choice"\nchoices = [1024]\n', ["bs", ">= 2 distinct"]),
    ('[bs]\nkind = "choice"\nchoices = [1, 2]\ndefault = 3\n', ["bs", "default 3 is not one of"]),
    ('[w]\nkind = "int"\nlow = 0\nhigh = 10.5\n', ["'w'", "integer bounds"]),
    ('[w]\nkind = "int"\nlow = 5\nhigh = 1\n', ["'w'", "low < high"]),
    ('[w]\nkind = "float"\nlow = 0\nhigh = 1\nstep = 2\n', ["'w'", "unknown key(s) ['step']"]),
    ('[w]\nkind = "float"\nlow = 0\nhigh = 1\ndefault = 2\n', ["'w'", "outside [0, 1]"]),
    ('[s]\nkind = "log"\nlow = 0.1\nhigh = 1\ntimes = "lr"\n', ["'s'", "times = 'lr' is not another"]),
    ('[a]\nkind = "float"\nlow = 0\nhigh = 1\nflag = "--x"\n[b]\nkind = "float"\nlow = 0\nhigh = 1\nflag = "--x"\n',
     ["same train flag", "--x"]),
    ("lr = 3\n", ["'lr'", "must be a table"]),
    ("[lr\n", ["not valid TOML"]),
    ("", ["no parameters"]),
])
def test_invalid_space_files_name_the_file_and_parameter(tmp_path: Path, body: str, words: list[str]) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    msg = str(e.value)
    assert str(path) in msg
    for w in words:
        assert w in msg, msg


def test_missing_space_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read search space .*nope.toml"):
        load_space(tmp_path / "nope.toml")


def test_argv_applies_times_and_at_least() -> None:
    sp = load_space(DEFAULT_SPACE.parent / "space_emb_lr_scale.toml")  # the default until 2026-12-07
    point = {"lr": 0.5, "warmup_steps": 100, "decay_start": 40, "decay_steps": 10, "batch_size": 2048,
             "dense_optimizer": "lamb", "emb_lr_scale": 4.0}
    fields = sp.apply(point)
    assert fields["sparse_lr"] == 2.0 and fields["decay_start"] == 100 and "emb_lr_scale" not in fields
    argv = sp.to_argv(point)
    flags = dict(zip(argv[::2], argv[1::2]))
    assert flags["--sparse-lr"] == "2.0"  # lr * emb_lr_scale
    assert flags["--decay-start"] == "100"  # not before the end of the warm-up
    assert flags["--batch-size"] == "2048" and flags["--dense-optimizer"] == "lamb"
    assert "--emb-lr-scale" not in flags


def test_point_outside_the_space_is_rejected() -> None:
    sp = load_space()
    bad = {**sp.defaults(), "lr": 100.0}
    with pytest.raises(ConfigError, match="'lr'.*outside"):
        sp.check_point(bad)
    with pytest.raises(ConfigError, match="parameters"):
        sp.check_point({"lr": 0.1})


def test_record_form_round_trips() -> None:
    sp = load_space()
    again = space_from_dict(sp.to_dict(), "stored")
    assert again.params == sp.params


def test_parametrization_samples_stay_in_bounds_and_are_seeded() -> None:
    sp = load_space()
    a, b = sp.parametrization(seed=3), sp.parametrization(seed=3)
    pa = [a.sample().value for _ in range(20)]
    pb = [b.sample().value for _ in range(20)]
    assert pa == pb
    for v in pa:  # the optimizer's coordinates: decode() makes them a point
        sp.check_point(sp.decode({k: (x.item() if hasattr(x, "item") else x) for k, x in v.items()}))
        assert isinstance(v["warmup_steps"], int)


def test_uninformed_space_moves_defaults_mid_range_and_keeps_the_rest() -> None:
    sp = load_space()
    mid = sp.uninformed()
    assert mid.names == sp.names and [p.kind for p in mid.params] == [p.kind for p in sp.params]
    d = mid.defaults()
    assert d["sparse_lr"] == pytest.approx((1.0 * 300.0) ** 0.5)  # geometric middle of a log range
    assert d["dense_optimizer"] == "sgd" and d["lr"] == pytest.approx(0.3)  # the middle of SGD's lr range
    assert d["warmup_steps"] == 100 and isinstance(d["warmup_steps"], int)
    assert d["batch_size"] == 1024 and d != sp.defaults()
    mid.check_point(d)


PER_OPT = """
[lr]
kind = "log"
by = "opt"
ranges = { sgd = [0.03, 3.0], lamb = [0.001, 0.1] }
default = 0.012

[opt]
kind = "choice"
choices = ["sgd", "lamb"]
default = "lamb"
flag = "--dense-optimizer"
"""


def test_a_range_per_choice_checks_each_point_in_its_own_range(tmp_path: Path) -> None:
    sp = load_space(write(tmp_path, PER_OPT))
    lr = sp.params[0]
    assert (lr.low, lr.high) == (0.001, 3.0) and lr.ranges == (("sgd", 0.03, 3.0), ("lamb", 0.001, 0.1))
    sp.check_point({"lr": 0.5, "opt": "sgd"})
    with pytest.raises(ConfigError, match=r"'lr': value 0.5 is outside \[0.001, 0.1\] \(its range for opt = 'lamb'\)"):
        sp.check_point({"lr": 0.5, "opt": "lamb"})
    assert sp.apply({"lr": 0.5, "opt": "sgd"}) == {"lr": 0.5, "dense_optimizer": "sgd"}  # the value as it is
    # the record form (SweepInfo.space) states the envelope and reads back to the same space
    assert sp.to_dict()["lr"]["ranges"] == {"sgd": [0.03, 3.0], "lamb": [0.001, 0.1]}
    assert space_from_dict(sp.to_dict(), "record").params == sp.params


def test_a_ranged_parameter_is_searched_as_its_place_in_its_range(tmp_path: Path) -> None:
    sp = load_space(write(tmp_path, PER_OPT))
    # the middle of SGD's range and of LAMB's are the same coordinate: a good place carries over
    assert sp.encode({"lr": 0.3, "opt": "sgd"})["lr"] == pytest.approx(0.5)
    assert sp.encode({"lr": 0.01, "opt": "lamb"})["lr"] == pytest.approx(0.5)
    assert sp.decode({"lr": 0.5, "opt": "lamb"}) == {"lr": 0.01, "opt": "lamb"}
    assert sp.decode({"lr": 1.0, "opt": "sgd"}) == {"lr": 3.0, "opt": "sgd"}
    assert sp.decode(sp.encode(sp.defaults())) == sp.defaults() == {"lr": 0.012, "opt": "lamb"}  # exact, not 0.0119999
    assert sp.uninformed().defaults() == {"lr": pytest.approx(0.3), "opt": "sgd"}


def test_uniform_points_of_a_ranged_parameter_fill_their_own_range_log_uniformly(tmp_path: Path) -> None:
    import numpy as np

    from hpcdlrm.sweep.optim import uniform_points

    sp = load_space(write(tmp_path, PER_OPT))
    pts = uniform_points(sp, 4000, 0)
    for opt, lo, hi in (("sgd", 0.03, 3.0), ("lamb", 0.001, 0.1)):
        lrs = np.log10([p["lr"] for p in pts if p["opt"] == opt])
        assert lrs.min() >= np.log10(lo) and lrs.max() <= np.log10(hi)
        # log-uniform: quartiles at a quarter of the range's decades each
        q = np.quantile(lrs, [0.25, 0.5, 0.75])
        assert q == pytest.approx(np.log10(lo) + np.array([0.5, 1.0, 1.5]), abs=0.08)


@pytest.mark.parametrize("lr, words", [
    ('kind = "log"\nby = "opt"\nranges = { sgd = [0.03, 3.0] }', "ranges must name each choice of 'opt' once"),
    ('kind = "log"\nby = "nope"\nranges = { sgd = [0.03, 3.0], lamb = [0.001, 0.1] }', "by = 'nope' is not a choice"),
    ('kind = "log"\nby = "opt"', "`by` (a choice parameter) and `ranges`"),
    ('kind = "log"\nranges = { sgd = [0.03, 3.0], lamb = [0.001, 0.1] }', "`by` (a choice parameter) and `ranges`"),
    ('kind = "log"\nby = "opt"\nranges = { sgd = [3.0, 0.03], lamb = [0.001, 0.1] }', "ranges.sgd must be [low, high]"),
    ('kind = "log"\nby = "opt"\nranges = { sgd = [0.0, 3.0], lamb = [0.001, 0.1] }', "a log parameter needs low > 0"),
    ('kind = "log"\nby = "opt"\nlow = 0.01\nhigh = 3.0\nranges = { sgd = [0.03, 3.0], lamb = [0.001, 0.1] }',
     "must be their envelope"),
    ('kind = "log"\nby = "opt"\nranges = { sgd = [0.03, 3.0], lamb = [0.001, 0.1] }\ndefault = 0.5',
     "default (with opt = 'lamb') 0.5 is outside [0.001, 0.1]"),
])
def test_bad_ranges_name_the_file_and_parameter(tmp_path: Path, lr: str, words: str) -> None:
    body = f"[lr]\n{lr}\n\n[opt]\nkind = \"choice\"\nchoices = [\"sgd\", \"lamb\"]\ndefault = \"lamb\"\n"
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as e:
        load_space(path)
    assert str(path) in str(e.value) and "'lr'" in str(e.value) and words in str(e.value)
