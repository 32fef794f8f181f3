"""The evaluation protocol: every method through the same classifiers, splits and scores.

For each method (raw, the anonymiser, the baselines) the windows of the setting are
transformed once, then scored:

- activity macro-F1 on the held-out users, by a classifier trained on the method's
  transformed training users (``activity_f1``; ``activity_f1_raw_classifier`` is the same
  test through a classifier trained on raw data, an app that was never retrained);
- identity accuracy and macro-F1 by the paper's attacker, trained ONCE on raw data and fed
  the method's transformed test windows (``identity_*_raw_attacker*``), and by an adaptive
  attacker retrained on the method's transformed training windows (``identity_*_adaptive*``),
  for the time and cross-session splits, over all users and over the held-out users only;
- distortion: MSE to the raw windows in standardised units, on the held-out users;
- the DTW k-NN rank of the true user (see :mod:`trainer.evaluation.dtw`): transformed test
  windows queried against raw training windows of every user, on a bounded subsample.

Every classifier of a task starts from the same seed whatever the method, so two methods'
figures differ by their data, not by their luck.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field

import numpy as np

from edge_runtime.layout import model_channels, to_model_channels
from edge_runtime.windowing import gather_windows
from trainer.data import ImuDataset, Standardiser, WindowSet, get_setting, load_dataset, make_windows
from trainer.errors import ConfigError, RunError
from trainer.evaluation.baselines import SSA_LAG
from trainer.evaluation.classifiers import ClassifierConfig, Fitter, FitJob, predict, stratified_subset
from trainer.evaluation.dtw import dtw_matrix, true_user_rank
from trainer.evaluation.methods import METHODS, MODEL_METHODS, Method, build_methods, check_methods
from trainer.evaluation.metrics import accuracy, chance, macro_f1
from trainer.evaluation.subjects import Subject
from trainer.evaluation.tasks import SUFFIX, Task, build_tasks, dtw_sample, labels_of

log = logging.getLogger(__name__)

SHOWCASE_WINDOWS = 4  # consecutive windows per activity in the plots: 10 s at 50 Hz


@dataclass(frozen=True, slots=True, kw_only=True)
class EvalConfig:
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    methods: tuple[str, ...] = METHODS
    seed: int = 0
    hop: int | None = None  # evaluation hop; None: the model's own
    max_windows: int | None = None  # cap on all windows of the setting (quick runs, tests)
    dtw_queries_per_user: int = 5
    dtw_refs_per_user: int = 10
    dtw_band: int = 16  # Sakoe-Chiba half-width in samples: 0.32 s at 50 Hz
    # activity classifiers per method, each from its own seed; activity_f1 is their mean. One
    # seed scatters by +-1.3 points on raw HAPT walk3 (97.9 / 98.5 / 95.9), more than the
    # 1-point margin the anonymiser is held to.
    activity_seeds: int = 3
    # classifier trainings run this many at a time, one process and one core each; the
    # figures do not depend on it
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))

    def __post_init__(self) -> None:
        object.__setattr__(self, "methods", check_methods(self.methods))
        if self.hop is not None and not (isinstance(self.hop, int) and self.hop >= 1):
            raise ConfigError(f"evaluation hop must be a positive integer, got {self.hop!r}")
        if self.max_windows is not None and not (isinstance(self.max_windows, int) and self.max_windows >= 500):
            raise ConfigError(f"max_windows must be at least 500 (or unset), got {self.max_windows!r}")
        for name in ("dtw_queries_per_user", "dtw_refs_per_user", "activity_seeds"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ConfigError(f"{name} must be a positive integer, got {getattr(self, name)!r}")
        if not (isinstance(self.workers, int) and self.workers >= 1):
            raise ConfigError(f"workers must be a positive integer, got {self.workers!r}")
        if not (isinstance(self.dtw_band, int) and self.dtw_band >= 0):
            raise ConfigError(f"dtw_band must be an integer >= 0, got {self.dtw_band!r}")

    def describe(self) -> dict:
        c = self.classifier
        return {"classifier_epochs": c.epochs, "classifier_batch_size": c.batch_size, "classifier_lr": c.lr,
                "max_train_windows": c.max_train_windows, "activity_seeds": self.activity_seeds, "seed": self.seed, "max_windows": self.max_windows,
                "dtw_queries_per_user": self.dtw_queries_per_user, "dtw_refs_per_user": self.dtw_refs_per_user,
                "dtw_band": self.dtw_band, "ssa_lag": SSA_LAG, "baseline_units": "standardised"}


# About a minute on two cores: a smoke test of the whole protocol, not figures to quote.
QUICK = EvalConfig(classifier=ClassifierConfig(epochs=2, batch_size=128, max_train_windows=3000), hop=40,
                   dtw_queries_per_user=2, dtw_refs_per_user=4, activity_seeds=1)


@dataclass(frozen=True, slots=True)
class Showcase:
    """Contiguous stretches of one held-out user per activity, raw and transformed, in
    physical units: what the window and spectrogram plots draw."""

    class_names: tuple[str, ...]
    channel_names: tuple[str, ...]
    channel_units: tuple[str, ...]
    rate_hz: float
    signals: dict[str, list[np.ndarray]]  # method -> per activity [C, T]
    users: tuple[int, ...]  # whose stretch each activity shows


@dataclass(frozen=True, slots=True)
class Evaluation:
    metrics: dict
    showcase: Showcase | None


def _round(v: float, digits: int = 2) -> float:
    return float(round(float(v), digits))


class Protocol:
    """One evaluation: the setting's windows, its tasks, and the raw-trained models shared by
    every method. ``run()`` scores each method in turn."""

    def __init__(self, subject: Subject, config: EvalConfig, rep: Subject | None = None) -> None:
        self.subject, self.config, self.rep = subject, config, rep
        self.setting = get_setting(subject.setting)
        self.ds: ImuDataset = load_dataset(subject.dataset, subject.data_path)
        if abs(self.ds.rate_hz - subject.rate_hz) > 1e-6:
            raise RunError(f"{subject.path} expects {subject.rate_hz} Hz but the {self.ds.name} data is "
                           f"{self.ds.rate_hz} Hz; evaluate it on the data it was trained for")
        hop = config.hop or subject.hop
        ws = make_windows(self.ds, self.setting, subject.window, hop)
        if config.max_windows and len(ws) > config.max_windows:
            strata = ws.user * 1000 + ws.activity
            ws = ws.subset(stratified_subset(strata, config.max_windows, np.random.default_rng(config.seed)))
        self.ws: WindowSet = ws
        self.tasks: dict[str, Task] = build_tasks(ws, self.setting, config.seed)
        train_raw = to_model_channels(ws.x[self.tasks["activity"].train], subject.channel_mode)
        self.standardiser = Standardiser.fit(train_raw)
        self.methods: dict[str, Method] = build_methods(
            config.methods, subject=subject, rep=rep, standardiser=self.standardiser, rate_hz=ws.rate_hz)
        self.dtw_queries, self.dtw_refs = dtw_sample(
            ws, self.tasks["identity_time"], config.dtw_queries_per_user, config.dtw_refs_per_user, config.seed)
        log.info("%s: %d windows of %d users (hop %d); tasks %s", self.setting.name, len(ws), len(ws.users), hop,
                 ", ".join(f"{t.name} {t.train.size}/{t.test.size}" for t in self.tasks.values()))

    # -- scoring ----------------------------------------------------------------------------

    def _transform(self, method: Method) -> np.ndarray:
        z = method.standardised(self.ws.x)
        bad = ~np.isfinite(z).all(axis=(1, 2))
        if bad.any():
            raise RunError(f"method {method.name}: {int(bad.sum())} of {len(z)} windows came out NaN or infinite; "
                           "the model is broken, re-train or re-export it")
        return z

    def _fit_all(self, fitter: Fitter, z: np.ndarray) -> dict[str, list]:
        """Per task, its classifiers trained on the windows ``z`` of its training side: one
        per identity task, ``activity_seeds`` for activity."""
        names, jobs = [], []
        for t in self.tasks.values():
            y = t.codec.encode(labels_of(t.name, self.ws)[t.train])
            for k in range(self.config.activity_seeds if t.name == "activity" else 1):
                names.append(t.name)
                jobs.append(FitJob(z[t.train], y, t.n_classes, t.seed + k))
        out: dict[str, list] = {}
        for name, net in zip(names, fitter.fit_many(jobs)):
            out.setdefault(name, []).append(net)
        return out

    def _score_method(self, name: str, z: np.ndarray, z_raw: np.ndarray, raw_models: dict, adaptive: dict) -> dict:
        row: dict[str, float] = {}
        held = self.tasks["activity"].test
        row["mse"] = _round(np.mean((z[held] - z_raw[held]) ** 2), 4)
        if self.subject.channel_mode == "mag":
            # a magnitude below zero is no signal a sensor could have produced: an app that
            # takes the output at its word gets nonsense, and a reader spots the anonymiser
            physical = self.standardiser.invert(z[held])
            row["negative_magnitude_pct"] = _round(np.mean(physical < 0) * 100.0, 3)
        device = self.config.classifier.device
        for task in self.tasks.values():
            truth = task.codec.encode(labels_of(task.name, self.ws)[task.test])
            if task.name == "activity":
                preds = [predict(net, z[task.test], device) for net in adaptive["activity"]]
                f1s = [macro_f1(truth, p) for p in preds]
                row["activity_f1"] = _round(np.mean(f1s))
                row["activity_f1_std"] = _round(np.std(f1s))
                row["activity_f1_seeds"] = [_round(f) for f in f1s]
                row["activity_acc"] = _round(np.mean([accuracy(truth, p) for p in preds]))
                by_raw = preds if name == "raw" else [predict(net, z[task.test], device)
                                                     for net in raw_models["activity"]]
                row["activity_f1_raw_classifier"] = _round(np.mean([macro_f1(truth, p) for p in by_raw]))
                continue
            by_adaptive = predict(adaptive[task.name][0], z[task.test], device)
            by_raw = by_adaptive if name == "raw" else predict(raw_models[task.name][0], z[task.test], device)
            sfx = SUFFIX[task.name]
            row[f"identity_acc_raw_attacker{sfx}"] = _round(accuracy(truth, by_raw))
            row[f"identity_f1_raw_attacker{sfx}"] = _round(macro_f1(truth, by_raw))
            row[f"identity_acc_adaptive{sfx}"] = _round(accuracy(truth, by_adaptive))
            row[f"identity_f1_adaptive{sfx}"] = _round(macro_f1(truth, by_adaptive))
        q, r = self.dtw_queries, self.dtw_refs
        ranks = true_user_rank(dtw_matrix(z[q], z_raw[r], self.config.dtw_band), self.ws.user[q], self.ws.user[r])
        row["dtw_rank"] = _round(ranks.mean())
        row["dtw_top1"] = _round(np.mean(ranks == 1) * 100.0)
        return row

    def run(self) -> Evaluation:
        started = time.monotonic()
        rows: dict[str, dict] = {}
        timings: dict[str, float] = {}
        with Fitter(self.config.classifier, self.config.workers) as fitter:
            z_raw = self._transform(self.methods["raw"])
            raw_models = self._fit_all(fitter, z_raw)  # the paper's attackers, and the raw row's own
            for name, method in self.methods.items():
                t0 = time.monotonic()
                z = z_raw if name == "raw" else self._transform(method)
                adaptive = raw_models if name == "raw" else self._fit_all(fitter, z)
                rows[name] = self._score_method(name, z, z_raw, raw_models, adaptive)
                timings[name] = _round(time.monotonic() - t0, 1)
                log.info("%s scored in %.1f s: activity F1 %.1f, identity %.1f (paper's attacker) / %.1f (adaptive)",
                         method.label, timings[name], rows[name]["activity_f1"],
                         rows[name]["identity_acc_raw_attacker"], rows[name]["identity_acc_adaptive"])
        metrics = self._summary(rows, timings)
        metrics["elapsed_s"] = _round(time.monotonic() - started, 1)
        return Evaluation(metrics=metrics, showcase=self.showcase())

    def _summary(self, rows: dict, timings: dict) -> dict:
        ws, setting = self.ws, self.setting
        unseen = [u for u in setting.test_users if u in ws.users]
        n_refs = len(np.unique(ws.user[self.dtw_refs]))
        names, _ = model_channels(self.subject.channel_mode)
        return {
            "dataset": self.subject.dataset,
            "setting": setting.name,
            "channel_mode": self.subject.channel_mode,
            "channels": list(names),
            "class_names": list(ws.class_names),
            "n_users": len(ws.users),
            "n_users_unseen": len(unseen),
            "unseen_users": unseen,
            "chance_identity": _round(chance(len(ws.users))),
            "chance_identity_unseen": _round(chance(max(1, len(unseen)))),
            "chance_activity": _round(chance(ws.n_classes)),
            "dtw_chance_rank": _round((n_refs + 1) / 2),
            "methods": rows,
            "labels": {name: m.label for name, m in self.methods.items()},
            "windows": {"total": len(ws), "window": ws.window, "hop": ws.hop, "rate_hz": ws.rate_hz,
                        "dtw_queries": int(self.dtw_queries.size), "dtw_refs": int(self.dtw_refs.size)},
            "tasks": {name: t.describe() for name, t in self.tasks.items()},
            "protocol": self.config.describe() | {"standardiser": self.standardiser.to_dict()},
            "subject": self.subject.describe(),
            "train_config": self.subject.train_config,
            "rep": self.rep.describe() if self.rep and "rep" in self.methods else None,
            "notes": list(self.subject.notes),
            "method_seconds": timings,
        }

    # -- plots' data ------------------------------------------------------------------------

    def showcase(self) -> Showcase | None:
        """Per activity, up to SHOWCASE_WINDOWS consecutive windows of the held-out user with
        the longest stretch of it, raw and through raw + the trained anonymisers."""
        ws, w = self.ws, self.ws.window
        held = self.tasks["activity"].test
        starts, users = [], []
        for k in range(ws.n_classes):
            mine = held[ws.activity[held] == k]
            if mine.size == 0:
                return None
            segs, counts = np.unique(ws.segment[mine], return_counts=True)
            seg = segs[np.argmax(counts)]
            in_seg = mine[ws.segment[mine] == seg]
            first, last = ws.start[in_seg].min(), ws.start[in_seg].max()
            n = int(max(1, min(SHOWCASE_WINDOWS, (last - first) // w + 1)))
            starts.append(first + w * np.arange(n))
            users.append(int(ws.user[in_seg[0]]))
        shown = [m for m in ("raw",) + MODEL_METHODS if m in self.methods]
        signals: dict[str, list[np.ndarray]] = {m: [] for m in shown}
        for s in starts:
            x = gather_windows(self.ds.signals, s, w).astype(np.float32)
            for m in shown:
                phys = self.standardiser.invert(self.methods[m].standardised(x))  # [n, C, W]
                signals[m].append(np.concatenate(list(phys), axis=-1))  # [C, n W]
        names, units = model_channels(self.subject.channel_mode)
        return Showcase(class_names=ws.class_names, channel_names=names, channel_units=units,
                        rate_hz=ws.rate_hz, signals=signals, users=tuple(users))


def evaluate(subject: Subject, config: EvalConfig, rep: Subject | None = None) -> Evaluation:
    return Protocol(subject, config, rep).run()
