"""One worker of a study: recover dead trials, claim the next trial, train it, report it.

Start any number of workers (processes, nodes, Slurm array tasks) with the same arguments; they share the
study through its storage and its output folder, and run trials asynchronously. TPE with
``constant_liar`` keeps workers from proposing the same point while others are still training it.

A worker that dies (SIGKILL, node failure) leaves its trial RUNNING in the storage. The next worker to
claim a trial finds it (its ``.trial.lock`` is no longer held), marks it FAIL with ``worker_died``, and
enqueues a retry with the same parameters that *resumes* the dead trial's run folder from its last saved
state (exactly, see :mod:`elasticnet.training.trainer`). Other workers are not disturbed.

``--trials N`` is the study's total: trials complete, pruned, running, or failed with an error (a
configuration that cannot train counts; a dead worker's trial does not, its retry does).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from elasticnet.config import DataConfig, build_config
from elasticnet.data.build import split_sizes
from elasticnet.errors import UserError
from elasticnet.files import check_outside_data, exclusive_lock, lock_is_held
from elasticnet.run_files import CHECKPOINT_NAME, CONFIG_NAME, TABLE_NAME
from elasticnet.subnet_row import read_table
from elasticnet.tune.folder import CLAIM_LOCK, SUMMARY, TRIAL_LOCK, check_study_folder, check_study_name
from elasticnet.tune.objective import check_objective, final_values, intermediate_value
from elasticnet.tune.space import load_space, suggest
from elasticnet.tune.storage import open_storage


@dataclass
class TuneSettings:
    study: str
    storage: str
    trials: int
    out: Path
    config: str | None = None
    profile: str | None = None
    overrides: dict[str, Any] = field(default_factory=dict)  # fixed config keys for every trial
    objective: str = "mean"
    multi: bool = False  # also minimise MFLOPs
    prune: bool = True
    startup_trials: int = 0  # random trials before TPE (0: min(10, max(2, trials // 3)))

    def directions(self) -> list[str]:
        return ["maximize", "minimize"] if self.multi else ["maximize"]


def open_study(s: TuneSettings):
    """Create or join the study; refuse a worker whose objective differs from the study's."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    startup = s.startup_trials or min(10, max(2, s.trials // 3))
    sampler = optuna.samplers.TPESampler(constant_liar=True, n_startup_trials=startup)
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
        if s.prune and not s.multi
        else optuna.pruners.NopPruner()
    )
    try:
        study = optuna.create_study(
            study_name=s.study,
            storage=open_storage(s.storage),
            load_if_exists=True,
            directions=s.directions(),
            sampler=sampler,
            pruner=pruner,
        )
    except ValueError as e:  # e.g. the stored study has other directions
        raise UserError(f"cannot join study {s.study!r}: {e}") from None
    identity = {"objective": s.objective, "multi": s.multi, "config": s.config, "profile": s.profile}
    stored = study.user_attrs.get("identity")
    if stored is None:
        study.set_user_attr("identity", identity)
    elif stored != identity:
        raise UserError(
            f"study {s.study!r} was started with {stored}; this worker has {identity}. Start workers "
            "with the same --config/--profile/--objective, or choose another --study"
        )
    return study


def _counted(trial) -> bool:
    from optuna.trial import TrialState

    if trial.state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING):
        return True
    return trial.state == TrialState.FAIL and not trial.user_attrs.get("worker_died")


def recover_dead_trials(study, echo: Callable[[str], None]) -> list[int]:
    """Mark RUNNING trials whose worker is gone as FAIL and enqueue a resuming retry of each (call it
    holding the claim lock: a live worker's trial then always has its run folder and lock)."""
    from optuna.trial import TrialState

    dead = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_dir = t.user_attrs.get("run_dir")
        if run_dir is not None and lock_is_held(Path(run_dir) / TRIAL_LOCK):
            continue
        study._storage.set_trial_user_attr(t._trial_id, "worker_died", True)
        study.tell(t.number, state=TrialState.FAIL)
        attrs = {"retry_of": t.number} | ({"resume_dir": run_dir} if run_dir else {})
        study.enqueue_trial(t.params, user_attrs=attrs)
        echo(
            f"trial {t.number}: its worker is gone; marked failed and queued a retry"
            + (f" that resumes {run_dir}" if run_dir else "")
        )
        dead.append(t.number)
    return dead


def claim_gpu(folder: Path, stack: ExitStack) -> str | None:
    """A GPU of its own for this worker, when several are visible: the first ``cuda:i`` whose lock file in the
    study folder no other live worker holds (held until ``stack`` closes; the kernel frees it if the worker
    dies). None with fewer than two GPUs; with more workers than GPUs they share, by process id."""
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2:
        return None
    for i in range(count):
        if stack.enter_context(exclusive_lock(folder / f".gpu-{i}.lock", wait=False)) is not None:
            return f"cuda:{i}"
    return f"cuda:{os.getpid() % count}"


DATA_KEYS = {f.name for f in dataclasses.fields(DataConfig)}


def run_worker(s: TuneSettings, echo: Callable[[str], None] = print, progress: bool = False) -> int:
    """Run trials until the study has ``s.trials``; returns how many this worker ran. Parallel workers on a
    machine with several GPUs (device ``auto`` or ``cuda``) each take a GPU of their own (:func:`claim_gpu`)."""
    check_objective(s.objective)
    if s.trials < 1:
        raise UserError("--trials must be >= 1")
    space = load_space(s.config)
    fixed = sorted(set(space) & set(s.overrides))
    if fixed:  # a key given on the command line is fixed for every trial, not searched
        space = {k: v for k, v in space.items() if k not in fixed}
        echo(f"fixed on the command line, not searched: {', '.join(fixed)}")
    if not space:
        raise UserError("the search space is empty: every searched key is fixed on the command line")
    base = build_config(s.config, s.overrides, s.profile)  # refuse a bad base config early
    # the rest before the study is opened: a refused worker leaves nothing behind
    check_study_name(s.study)
    check_study_folder(s.out)
    check_outside_data(s.out, base.data.data, "the study folder", "--tune-out")
    if not any(key in DATA_KEYS for key in space):
        split_sizes(base.data)  # a data set every trial would refuse (no folder, no groups) is refused once
    study = open_study(s)
    s.out.mkdir(parents=True, exist_ok=True)
    with ExitStack() as gpu:
        device = s.overrides.get("device", "auto")
        claimed = claim_gpu(s.out, gpu) if device in ("auto", "cuda") else None
        if claimed is not None:
            s = dataclasses.replace(s, overrides={**s.overrides, "device": claimed})
            echo(f"this worker trains on {claimed}")
        return _trials(study, space, s, echo, progress)


def _trials(study, space: dict, s: TuneSettings, echo: Callable[[str], None], progress: bool) -> int:
    ran = 0
    while True:
        with ExitStack() as trial_lock:
            with exclusive_lock(s.out / CLAIM_LOCK):
                recover_dead_trials(study, echo)
                if sum(_counted(t) for t in study.get_trials(deepcopy=False)) >= s.trials:
                    break
                trial = study.ask()
                run_dir = Path(trial.user_attrs.get("resume_dir") or s.out / f"trial-{trial.number:04d}")
                run_dir.mkdir(parents=True, exist_ok=True)
                trial_lock.enter_context(exclusive_lock(run_dir / TRIAL_LOCK))
                trial.set_user_attr("run_dir", str(run_dir))
            _run_trial(study, trial, run_dir, space, s, echo, progress)
            ran += 1
    from elasticnet.tune.summary import write_summary

    write_summary(study, s.out / SUMMARY, s)
    echo(f"study {s.study}: {len(study.trials)} trial(s) recorded; this worker ran {ran}; summary in {s.out / SUMMARY}")
    return ran


def _run_trial(
    study, trial, run_dir: Path, space: dict, s: TuneSettings, echo: Callable[[str], None], progress: bool
) -> None:
    import optuna
    from optuna.trial import TrialState

    from elasticnet.training.signals import TrainingInterrupted
    from elasticnet.training.trainer import resume, train

    params = suggest(trial, space)
    echo(f"trial {trial.number}: {', '.join(f'{k}={_short(v)}' for k, v in params.items())} -> {run_dir}")

    def report(row: dict) -> None:
        if s.multi:  # Optuna prunes single-objective studies only
            return
        trial.report(intermediate_value(row, s.objective), step=int(row["epoch"]))
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {row['epoch']}")

    quiet = lambda line: None
    try:
        if not (run_dir / CHECKPOINT_NAME).exists():
            if (run_dir / CONFIG_NAME).exists():  # a dead worker's trial: continue where it stopped
                resume(run_dir, echo=quiet, progress=progress, on_epoch=report)
            else:
                cfg = build_config(s.config, {**s.overrides, **params, "out": str(run_dir)}, s.profile)
                train(cfg, echo=quiet, progress=progress, on_epoch=report)
        values = final_values(read_table(run_dir / TABLE_NAME), s.objective, s.multi)
    except optuna.TrialPruned as e:
        study.tell(trial, state=TrialState.PRUNED)
        echo(f"trial {trial.number}: {e}")
        return
    except UserError as e:  # a configuration that cannot train (non-finite loss, ...): record why
        trial.set_user_attr("error", str(e)[:500])
        study.tell(trial, state=TrialState.FAIL)
        echo(f"trial {trial.number}: failed: {e}")
        return
    except TrainingInterrupted:  # SIGTERM/SIGINT (a job's time limit): the state is saved; leave the trial
        raise  # RUNNING, so the next worker finds it dead and resumes it
    except BaseException:
        study.tell(trial, state=TrialState.FAIL)
        raise
    study.tell(trial, values)
    echo(f"trial {trial.number}: {s.objective} Dice {values[0]:.4f}" + (f", {values[1]:.0f} MFLOPs" if s.multi else ""))


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
