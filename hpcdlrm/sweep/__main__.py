"""``python -m hpcdlrm.sweep``: tune DLRM with an asynchronous Nevergrad sweep, one job per trial.

    python -m hpcdlrm.sweep                                  # laptop: local trials on synthetic data
    python -m hpcdlrm.sweep --partition xeon --nodes 4 --tasks-per-node 2 --cpus-per-task 28 \\
        --data /lustre/criteo-tb --target-auc 0.8025 --budget 64 --parallel 8 --time 60
    python -m hpcdlrm.sweep --partition a,b --parallel 4,2 ...   # 4 trials in flight on a, 2 on b
    python -m hpcdlrm.sweep ... -- --epochs 1 --eval-every 1000000   # extra train flags after --
    python -m hpcdlrm.sweep status SWEEP_DIR [--json]
    python -m hpcdlrm.sweep rebuild SWEEP_DIR                # a lost or damaged sweep.sqlite, from the files
    python -m hpcdlrm.sweep space > my-space.toml            # the default search space, to edit

Rerunning the same command on the same --out resumes the sweep (after any crash or kill); one driver at a
time per --out (SWEEP_DIR/driver.lock).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import HpcDlrmError
from ..train.config import OneLineParser, add_arguments
from .config import SURROGATE_ENTRY, TRAIN_ENTRY, SweepConfig
from .live import LiveReport
from .space import DEFAULT_SPACE, Space

if TYPE_CHECKING:
    from .executors import Backend
    from .template import TrialTemplate

log = logging.getLogger("hpcdlrm.sweep")
__all__ = ["SURROGATE_ENTRY", "build_config", "main"]


def _parser() -> argparse.ArgumentParser:
    p = OneLineParser(prog="python -m hpcdlrm.sweep",
                                description="Tune DLRM with an asynchronous Nevergrad sweep, one job per trial.",
                                epilog="Extra train flags go after `--` (python -m hpcdlrm.train --help). "
                                       "Subcommands: status, space, rebuild (each with --help).")
    add_arguments(p, SweepConfig)  # one flag per SweepConfig field: defaults and help live there
    return p


def _split_train_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def build_config(a: argparse.Namespace, train_args: list[str]) -> tuple[SweepConfig, Space]:
    """The parsed flags as a resolved, validated SweepConfig (defaults that depend on where we run, the
    data and its target) and its search space. Touches nothing but the synthetic-data cache."""
    from .space import load_space  # noqa: PLC0415

    names = {f.name for f in dataclasses.fields(SweepConfig)}
    cfg = SweepConfig(**{k: v for k, v in vars(a).items() if k in names})
    cfg.train_args = list(train_args)
    cfg.out = str(Path(cfg.out).resolve())
    cfg.resolve()
    space = load_space(cfg.space_file)
    cfg.space, cfg.space_file = space.to_dict(), str(space.source)
    if cfg.entry == SURROGATE_ENTRY and cfg.target_auc is None and cfg.objective == "time_to_target":
        cfg.target_auc = 0.79  # the surrogate's scale (ceiling 0.80)
    if cfg.entry == TRAIN_ENTRY:
        from .dataset import LAPTOP_TRAIN_ARGS, resolve_data  # noqa: PLC0415
        from .template import TrialTemplate  # noqa: PLC0415

        if cfg.data is None:
            cfg.laptop_args = list(LAPTOP_TRAIN_ARGS)  # the small model the default dataset is sized for
        cfg.validate(data_known=False)  # every refusal before the default dataset is generated
        TrialTemplate.build(cfg, space)  # (its data a placeholder)
        cfg.data, target = resolve_data(cfg.data, cfg.target_auc)
        cfg.target_auc = cfg.target_auc if cfg.target_auc is not None else target
    if cfg.data:
        cfg.data = str(Path(cfg.data).resolve())
    if cfg.entry == TRAIN_ENTRY:
        from ..data.format import read_manifest  # noqa: PLC0415

        cfg.data_identity = read_manifest(cfg.data).identity()
    cfg.validate()
    return cfg, space


def _versions() -> dict[str, str]:
    from importlib import metadata  # noqa: PLC0415

    out = {"python": sys.version.split()[0]}
    for pkg in ("hpcdlrm", "torch", "numpy", "nevergrad", "submitit"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    return out


def _git_commit() -> str | None:
    try:
        p = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                           text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return p.stdout.strip() or None if p.returncode == 0 else None


def run(argv: list[str]) -> int:
    from .executors import SlurmBackend, make_backend  # noqa: PLC0415 - keeps `status` light
    from .lock import driver_lock  # noqa: PLC0415
    from .store import check_sweep_dir  # noqa: PLC0415
    from .template import TrialTemplate  # noqa: PLC0415

    own, train_args = _split_train_args(argv)
    cfg, space = build_config(_parser().parse_args(own), train_args)
    template = TrialTemplate.build(cfg, space)  # every trial's config is checked before --out is touched
    backend = make_backend(cfg.executor)
    if isinstance(backend, SlurmBackend):
        backend.check(cfg.partitions)  # a controller that answers, partitions that exist: before anything
    check_sweep_dir(Path(cfg.out))
    # Resumed without --optimizer: go on with the optimizer the sweep started with, even when the
    # default has changed since (the same command must resume it); naming another one is refused.
    given = any(a == "--optimizer" or a.startswith("--optimizer=") for a in own)
    _check_resume(cfg, template, keep_optimizer=not given)
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    with driver_lock(Path(cfg.out)):  # before the store opens: a second driver changes nothing
        return _drive(cfg, space, template, backend, argv)


def _drive(cfg: SweepConfig, space: Space, template: "TrialTemplate", backend: "Backend", argv: list[str]) -> int:
    """The sweep itself, under SWEEP_DIR's driver lock."""
    from .driver import Driver  # noqa: PLC0415
    from .optim import Optimizer  # noqa: PLC0415
    from .rebuild import write_sweep_file  # noqa: PLC0415
    from .records import SweepInfo  # noqa: PLC0415
    from .store import Store, export_trials, load_sweep  # noqa: PLC0415

    stored = _check_resume(cfg, template)  # again, now that no other driver can change it
    _log_to(Path(cfg.out) / "driver.log")
    with Store(cfg.out) as store:
        if stored is None:
            store.init_sweep(SweepInfo(Path(cfg.out).name, ["python", "-m", "hpcdlrm.sweep", *argv], cfg.space,
                                       cfg.optimizer, cfg.objective, cfg.target_auc, time.time(), _versions(),
                                       _git_commit()), cfg.to_dict())
        else:
            store.update_config(cfg.to_dict())
        info = store.sweep_info()
        assert info is not None
        write_sweep_file(cfg.out, info, cfg.to_dict())  # what `sweep rebuild` reads
        backends = {p: backend for p in cfg.partitions}
        opt = Optimizer(space, cfg.optimizer, budget=int(cfg.budget or 0), num_workers=cfg.num_workers,
                        seed=cfg.seed)
        log.info("sweep %s: %s executor, %s, budget %d, %s in flight, target AUC %s, trial limit %.0f s",
                 cfg.out, cfg.executor, cfg.optimizer, cfg.budget, "+".join(map(str, cfg.parallel)),
                 cfg.target_auc, cfg.limit_s)
        live = LiveReport(cfg.out, min_interval_s=cfg.report_every) if cfg.report else None
        summary = Driver(cfg, space, store, backends, opt, template=template, on_trial_end=live,
                         on_poll=live.tick if live else None).run()
    log.info("sweep done (%s): %d trials %s", summary.stopped, summary.trials,
             {str(k): v for k, v in summary.by_status.items()})
    inc = summary.incumbent
    if inc is not None:
        print(f"incumbent: trial {inc.id} {inc.status} best AUC {inc.best_auc} time to target "
              f"{inc.time_to_target_s} s: {inc.params}")
    if cfg.export:
        path = Path(cfg.out) / f"trials.{cfg.export}"
        path.write_text(export_trials(load_sweep(cfg.out), cfg.export))
        print(f"wrote {path}")
    if live is not None and live.final():
        log.info("reports written to %s", Path(cfg.out) / "report")
    if summary.stopped.startswith("the scheduler refused"):
        print(f"error: {summary.stopped}; rerun the same command to resume", file=sys.stderr)
    return 1 if summary.stopped.startswith(("more than", "the scheduler refused")) else 0


def _stored_config(out: Path) -> SweepConfig | None:
    """The config of the sweep stored in OUT (read only), None for a new sweep."""
    from .store import DB_NAME, Store  # noqa: PLC0415

    if not (out / DB_NAME).exists() or (out / DB_NAME).stat().st_size == 0:
        return None
    with Store(out, readonly=True) as store:
        d = store.sweep_config()
    return SweepConfig.from_dict(d) if d is not None else None


def _check_resume(cfg: SweepConfig, template: "TrialTemplate", keep_optimizer: bool = False) -> SweepConfig | None:
    """The stored sweep's config (None: a new sweep); ConfigError when this command would make other
    trials (other settings, data or train flags). Reads only (``keep_optimizer``: ``cfg`` takes the
    stored optimizer first)."""
    stored = _stored_config(Path(cfg.out))
    if stored is not None:
        if keep_optimizer:
            cfg.optimizer = stored.optimizer
        cfg.check_resume(stored)
        template.check_resume(cfg, stored)
    return stored


def _log_to(path: Path) -> None:
    root = logging.getLogger("hpcdlrm")
    if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(h)


def status(argv: list[str]) -> int:
    from .status import status_json, status_text  # noqa: PLC0415
    from .store import load_sweep  # noqa: PLC0415

    p = OneLineParser(prog="python -m hpcdlrm.sweep status", description="One row per trial, and the incumbent.")
    p.add_argument("sweep_dir")
    p.add_argument("--json", action="store_true", help="one JSON object: trials, incumbent")
    a = p.parse_args(argv)
    data = load_sweep(a.sweep_dir)
    print(status_json(data) if a.json else status_text(data))
    return 0


def rebuild_cmd(argv: list[str]) -> int:
    from .rebuild import rebuild  # noqa: PLC0415
    from .store import DB_NAME  # noqa: PLC0415

    p = OneLineParser(prog="python -m hpcdlrm.sweep rebuild",
                      description=f"Rebuild SWEEP_DIR/{DB_NAME} from the trials' own files (after it was lost or "
                                  f"damaged; a damaged one is kept as {DB_NAME}.broken).")
    p.add_argument("sweep_dir")
    a = p.parse_args(argv)
    by = rebuild(Path(a.sweep_dir).resolve())
    print(f"rebuilt {Path(a.sweep_dir) / DB_NAME}: " + ", ".join(f"{n} {s}" for s, n in by.items()))
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="[sweep %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        if argv[:1] == ["status"]:
            return status(argv[1:])
        if argv[:1] == ["rebuild"]:
            return rebuild_cmd(argv[1:])
        if argv[:1] == ["space"]:
            OneLineParser(prog="python -m hpcdlrm.sweep space",
                          description="Print the default search space (TOML), to edit and pass "
                                      "with --space FILE.").parse_args(argv[1:])
            print(DEFAULT_SPACE.read_text(), end="")
            return 0
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, _terminate)  # scancel of the driver: stop cleanly, resume later
        return run(argv)
    except HpcDlrmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: running trials keep running; rerun the same command to resume", file=sys.stderr)
        return 130


def _exit(code: int) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    # A stuck optimizer thread (see optim.py) must not keep the process alive after we are done.
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        os._exit(code)
    raise SystemExit(code)


from ..io import cli  # noqa: E402 - only the command line needs it

if __name__ == "__main__":
    _exit(cli(main))
