"""``train``: run the Fig. 6 procedure into a run directory, with checkpoints and resume.

A checkpoint is written after every phase (raw reference, pre-training, each AAE round),
so an interrupted run continues with ``resume=True`` from the last finished phase and,
because the generator state travels with it, ends with the same weights.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from pathlib import Path

import torch

from trainer.checkpoint import (CHECKPOINT_FILE, CONFIG_FILE, HISTORY_FILE, MODEL_FILE, TrainedRun, load_run,
                                model_record, save_torch, write_json)
from trainer.config import TrainConfig
from trainer.errors import RunError
from trainer.preparation import prepare
from trainer.procedure import Procedure

log = logging.getLogger(__name__)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def _bar_factory(enabled: bool):
    if not enabled:
        return lambda desc, total: contextlib.nullcontext(_NoBar())
    from tqdm import tqdm

    return lambda desc, total: tqdm(total=total, desc=desc, unit="batch", leave=False, dynamic_ncols=True)


def _check_out_dir(out_dir: Path, config: TrainConfig, resume: bool) -> dict | None:
    """The checkpoint to resume from, or None for a fresh run; refuses to overwrite a run."""
    ckpt = out_dir / CHECKPOINT_FILE
    existing = [p.name for p in (out_dir / MODEL_FILE, ckpt) if p.exists()]
    if not resume:
        if existing:
            raise RunError(f"{out_dir} already holds a run ({', '.join(existing)}); pass --resume to "
                           "continue it or choose another --out")
        return None
    if not ckpt.is_file():
        raise RunError(f"{out_dir}: nothing to resume (no {CHECKPOINT_FILE}); start it without --resume")
    try:
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        saved = TrainConfig.from_dict(state["config"])
    except Exception as exc:  # a truncated file raises many types inside torch
        raise RunError(f"{ckpt}: corrupt checkpoint ({type(exc).__name__}: {exc}); delete the run "
                       "directory and train again") from None
    if saved != config:
        diff = {k: (v, getattr(config, k)) for k, v in saved.to_dict().items() if getattr(config, k) != v}
        raise RunError(f"{out_dir}: the run was started with a different config "
                       f"(saved vs now: {diff}); resume with the same options or use another --out")
    return state


def _set_threads(threads: int | None) -> None:
    """Default: one core less than the machine has. On a shared two-core machine a second
    thread halved the AAE's throughput whenever another process ran; on a big machine
    leaving one core free costs little."""
    cores = os.cpu_count() or 1
    torch.set_num_threads(max(1, min(threads or cores - 1, cores)))


def train(config: TrainConfig, out_dir: Path, resume: bool = False, *, progress: bool | None = None,
          device: str = "cpu", threads: int | None = None, max_phases: int | None = None) -> TrainedRun | None:
    """Train an anonymiser; writes RUN_DIR/config.json, checkpoint.pt, history.json and
    model.pt, and returns the loaded run.

    ``max_phases`` pauses after that many phases (raw reference, pre-training, each round)
    with a checkpoint and returns None; ``resume=True`` continues from there to the same
    weights an uninterrupted run reaches (time-boxed training on a shared machine)."""
    out_dir = Path(out_dir)
    state = _check_out_dir(out_dir, config, resume)
    if state is not None and state["history"].get("finished") and (out_dir / MODEL_FILE).is_file():
        log.info("%s already finished; nothing to resume", out_dir)
        return load_run(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _set_threads(threads)
    started = time.monotonic()
    data = prepare(config)
    bar = _bar_factory(sys.stderr.isatty() if progress is None else progress)
    proc = Procedure(config, data, torch.device(device), bar)
    if state is not None:
        proc.load_state(state)
        log.info("resuming %s after %d of %d rounds", out_dir, proc.history["rounds_done"], config.rounds)
    write_json(out_dir / CONFIG_FILE, config.to_dict())
    elapsed = float(proc.history.get("wall_s", 0.0))

    phases = 0

    def checkpoint() -> bool:
        """Save; True when the phase budget says to pause here."""
        nonlocal phases
        proc.history["wall_s"] = elapsed + time.monotonic() - started
        save_torch(out_dir / CHECKPOINT_FILE, {**proc.state(), "config": config.to_dict()})
        write_json(out_dir / HISTORY_FILE, proc.history)
        phases += 1
        if max_phases is not None and phases >= max_phases and not proc.history.get("finished"):
            log.info("%s: paused after %d phases; continue with --resume", out_dir, phases)
            return True
        return False

    h = proc.history
    if h["raw"] is None:
        proc.measure_raw()
        if checkpoint():
            return None
    if not h["pretrained"]:
        proc.pretrain()
        if checkpoint():
            return None
    while h["stopped"] is None:
        val = proc.fit_regularisers_and_measure()
        if proc.converged(val):
            h["stopped"] = f"converged after round {val['round']}"
        elif h["rounds_done"] >= config.rounds:
            h["stopped"] = f"ran all {config.rounds} rounds"
        else:
            proc.train_round()
        if checkpoint() and h["stopped"] is None:
            return None
    best_round = proc.choose()
    if proc.best_state is not None:
        proc.model.load_state_dict(proc.best_state)
    h["finished"] = True
    log.info("%s: %s; keeping the state after round %s", out_dir, h["stopped"], best_round)
    proc.model.eval()
    save_torch(out_dir / MODEL_FILE, model_record(
        proc.model, config, data.standardiser, rate_hz=data.rate_hz, split=data.split,
        class_names=data.class_names, train_users=data.users))
    checkpoint()
    return load_run(out_dir)
