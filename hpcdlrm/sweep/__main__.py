"""``python -m hpcdlrm.sweep``: tune DLRM with an asynchronous Nevergrad sweep, one job per trial.

    python -m hpcdlrm.sweep                                  # laptop: local trials on synthetic data
    python -m hpcdlrm.sweep --partition xeon --nodes 4 --tasks-per-node 2 --cpus-per-task 28 \\
        --data /lustre/criteo-tb --target-auc 0.8025 --budget 64 --parallel 8 --time 60
    python -m hpcdlrm.sweep --partition a,b --parallel 4,2 ...   # 4 trials in flight on a, 2 on b
    python -m hpcdlrm.sweep ... -- --epochs 1 --eval-every 1000000   # extra train flags after --
    python -m hpcdlrm.sweep status SWEEP_DIR [--json]
    python -m hpcdlrm.sweep space > my-space.toml            # the default search space, to edit

Rerunning the same command on the same --out resumes the sweep (after any crash or kill).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import ConfigError, HpcDlrmError
from .config import SweepConfig
from .live import LiveReport
from .optim import DEFAULT_OPTIMIZER, OPTIMIZERS
from .space import DEFAULT_SPACE

log = logging.getLogger("hpcdlrm.sweep")
SURROGATE_ENTRY = "hpcdlrm.sweep.surrogate:main"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m hpcdlrm.sweep",
                                description="Tune DLRM with an asynchronous Nevergrad sweep, one job per trial.",
                                epilog="Extra train flags go after `--`. Subcommands: status, space.")
    a = p.add_argument
    a("--partition", help="Slurm partition(s), comma separated (implies --executor slurm)")
    a("--nodes", type=int, default=1, help="nodes per trial [1]")
    a("--tasks-per-node", type=int, default=1, help="ranks per node [1]")
    a("--cpus-per-task", type=int, help="cores per rank [local: cores / (parallel x ranks); slurm: 1]")
    a("--time", type=float, help="job time limit per trial, minutes [local 2, slurm 30]; training stops "
                                 "itself before it (its --max-time: the limit less start-up and signal slack)")
    a("--budget", type=int, help="trials in total, across restarts [local 8, slurm 48]")
    a("--parallel", default="2", help="trials in flight (per partition: 4,2) [2]")
    a("--space", help=f"search-space TOML [{DEFAULT_SPACE.name} shipped with hpcdlrm; see `space`]")
    a("--optimizer", default=DEFAULT_OPTIMIZER, choices=OPTIMIZERS, help=f"nevergrad optimizer [{DEFAULT_OPTIMIZER}]")
    a("--objective", default="time_to_target", choices=("time_to_target", "auc"), help="[time_to_target]")
    a("--target-auc", type=float, help="target validation AUC [synthetic data: from its manifest]")
    a("--data", help="dataset directory [a cached synthetic dataset]")
    a("--out", default="hpcdlrm-sweep", help="sweep directory; rerun to resume [hpcdlrm-sweep]")
    a("--executor", default="auto", choices=("auto", "slurm", "local"),
      help="auto: slurm when --partition is given or inside a Slurm job, else local [auto]")
    a("--seed", type=int, default=0, help="seed of the optimizer and of every trial [0]")
    a("--max-failures", type=int, default=5, help="stop submitting after this many failed trials [5]")
    a("--median-stopping", action="store_true", help="stop trials below the median AUC-vs-time curve")
    a("--no-capping", action="store_true", help="do not cap trials at the incumbent's time to target")
    a("--export", choices=("csv", "json"), help="also write SWEEP_DIR/trials.{csv,json} at the end")
    a("--no-report", action="store_true", help="do not write SWEEP_DIR/report/ (PNG reports, refreshed live)")
    a("--report-every", type=float, default=30.0, help="refresh the reports at most every S seconds [30]")
    a("--entry", help=argparse.SUPPRESS)  # module:function each task runs (tests/demos: the surrogate)
    a("--poll", type=float, help=argparse.SUPPRESS)  # seconds between polls
    return p


def _split_train_args(argv: list[str]) -> tuple[list[str], list[str]]:
    if "--" in argv:
        i = argv.index("--")
        return argv[:i], argv[i + 1:]
    return argv, []


def _executor(a: argparse.Namespace) -> str:
    if a.executor != "auto":
        return a.executor
    return "slurm" if a.partition or os.environ.get("SLURM_JOB_ID") else "local"


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as e:
        raise ConfigError(f"{flag}: expected integers like 4 or 4,2, got {text!r}") from e


def _default(value: object, default: object) -> Any:
    return default if value is None else value


def build_config(a: argparse.Namespace, train_args: list[str]) -> SweepConfig:
    """Resolve defaults that depend on where we run (executor, cores, data, target)."""
    from .space import load_space  # noqa: PLC0415
    from .trial import TRAIN_ENTRY  # noqa: PLC0415

    executor = _executor(a)
    parts = [x.strip() for x in (a.partition or "").split(",")] if a.partition else [""]
    parallel = _ints(a.parallel, "--parallel")
    if len(parallel) == 1 and len(parts) > 1:
        parallel = parallel * len(parts)
    local = executor == "local"
    cpus = a.cpus_per_task or (max(1, (os.cpu_count() or 1) // (sum(parallel) * a.tasks_per_node)) if local else 1)
    space = load_space(a.space)
    cfg = SweepConfig(
        out=str(Path(a.out).resolve()), space=space.to_dict(), space_file=str(space.source), executor=executor,
        partitions=parts, parallel=parallel, nodes=a.nodes, tasks_per_node=a.tasks_per_node,
        cpus_per_task=cpus, time_min=_default(a.time, 2.0 if local else 30.0),
        budget=_default(a.budget, 8 if local else 48),
        optimizer=a.optimizer, objective=a.objective, target_auc=a.target_auc, seed=a.seed,
        max_failures=a.max_failures, median_stopping=a.median_stopping, capping=not a.no_capping,
        entry=a.entry or TRAIN_ENTRY, train_args=train_args, data=a.data,
        poll_s=a.poll or (0.5 if local else 2.0), scheduler_poll_s=max(1.0, 5 * a.poll) if a.poll else 15.0)
    if cfg.entry == SURROGATE_ENTRY and cfg.target_auc is None and cfg.objective == "time_to_target":
        cfg.target_auc = 0.79  # the surrogate's scale (ceiling 0.80)
    if cfg.entry == TRAIN_ENTRY:
        from .dataset import LAPTOP_TRAIN_ARGS, resolve_data  # noqa: PLC0415

        if a.data is None and not train_args:
            cfg.train_args = list(LAPTOP_TRAIN_ARGS)  # the small model the default dataset is sized for
        cfg.data, target = resolve_data(a.data, cfg.target_auc)
        cfg.target_auc = cfg.target_auc if cfg.target_auc is not None else target
    if cfg.data:
        cfg.data = str(Path(cfg.data).resolve())
    cfg.validate()
    return cfg


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
    from .driver import Driver  # noqa: PLC0415 - keeps `status` light
    from .executors import make_backend  # noqa: PLC0415
    from .optim import Optimizer  # noqa: PLC0415
    from .records import SweepInfo  # noqa: PLC0415
    from .space import space_from_dict  # noqa: PLC0415
    from .store import Store, export_trials, load_sweep  # noqa: PLC0415

    own, train_args = _split_train_args(argv)
    a = _parser().parse_args(own)
    cfg = build_config(a, train_args)
    backend = make_backend(cfg.executor)  # before touching --out: no Slurm, no sweep dir
    Path(cfg.out).mkdir(parents=True, exist_ok=True)
    _log_to(Path(cfg.out) / "driver.log")
    with Store(cfg.out) as store:
        stored = store.sweep_config()
        if stored is None:
            store.init_sweep(SweepInfo(Path(cfg.out).name, ["python", "-m", "hpcdlrm.sweep", *argv], cfg.space,
                                       cfg.optimizer, cfg.objective, cfg.target_auc, time.time(), _versions(),
                                       _git_commit()), cfg.to_dict())
        else:
            cfg.check_resume(SweepConfig.from_dict(stored))
            store.update_config(cfg.to_dict())
        backends = {p: backend for p in cfg.partitions}
        space = space_from_dict(cfg.space, cfg.space_file or "<stored space>")
        opt = Optimizer(space, cfg.optimizer, budget=cfg.budget, num_workers=cfg.num_workers, seed=cfg.seed)
        log.info("sweep %s: %s executor, %s, budget %d, %s in flight, target AUC %s, trial limit %.0f s",
                 cfg.out, cfg.executor, cfg.optimizer, cfg.budget, "+".join(map(str, cfg.parallel)),
                 cfg.target_auc, cfg.limit_s)
        live = None if a.no_report else LiveReport(cfg.out, min_interval_s=a.report_every)
        summary = Driver(cfg, space, store, backends, opt, on_trial_end=live,
                         on_poll=live.tick if live else None).run()
    log.info("sweep done (%s): %d trials %s", summary.stopped, summary.trials, summary.by_status)
    inc = summary.incumbent
    if inc is not None:
        print(f"incumbent: trial {inc.id} {inc.status} best AUC {inc.best_auc} time to target "
              f"{inc.time_to_target_s} s: {inc.params}")
    if a.export:
        path = Path(cfg.out) / f"trials.{a.export}"
        path.write_text(export_trials(load_sweep(cfg.out), a.export))
        print(f"wrote {path}")
    if live is not None and live.final():
        log.info("reports written to %s", Path(cfg.out) / "report")
    return 0 if not summary.stopped.startswith("more than") else 1


def _log_to(path: Path) -> None:
    root = logging.getLogger("hpcdlrm")
    if not any(isinstance(h, logging.FileHandler) for h in root.handlers):
        h = logging.FileHandler(path)
        h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        root.addHandler(h)


def status(argv: list[str]) -> int:
    from .status import status_json, status_text  # noqa: PLC0415
    from .store import load_sweep  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m hpcdlrm.sweep status")
    p.add_argument("sweep_dir")
    p.add_argument("--json", action="store_true", help="one JSON object: trials, incumbent")
    a = p.parse_args(argv)
    data = load_sweep(a.sweep_dir)
    print(status_json(data) if a.json else status_text(data))
    return 0


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="[sweep %(asctime)s] %(message)s", datefmt="%H:%M:%S")
    try:
        if argv[:1] == ["status"]:
            return status(argv[1:])
        if argv[:1] == ["space"]:
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


if __name__ == "__main__":
    _exit(main())
