"""The report's figures (matplotlib, Agg backend, PNG): raw vs anonymised windows per
activity (the paper's Fig. 8), their spectrograms (Fig. 9) and the privacy-utility scatter."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from trainer.evaluation.protocol import Showcase

log = logging.getLogger(__name__)

WINDOWS_PNG = "windows.png"
SPECTROGRAMS_PNG = "spectrograms.png"
SCATTER_PNG = "privacy_utility.png"
COLOURS = {"raw": "0.35", "aae": "tab:red", "rep": "tab:blue", "resample_10hz": "tab:green",
           "resample_5hz": "tab:olive", "ssa_1": "tab:purple", "ssa_12": "tab:pink"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display on a build machine or in CI
    import matplotlib.pyplot as plt

    return plt


def _shown_channels(showcase: Showcase) -> list[int]:
    """Both magnitudes, or for the six axes the first accelerometer and gyroscope axis."""
    c = len(showcase.channel_names)
    return [0, 1] if c == 2 else [0, min(3, c - 1)]


def plot_windows(showcase: Showcase, labels: dict[str, str], path: Path) -> Path:
    plt = _pyplot()
    chans = _shown_channels(showcase)
    n_act = len(showcase.class_names)
    fig, axes = plt.subplots(n_act, len(chans), figsize=(5 * len(chans), 2.2 * n_act), squeeze=False)
    for a, name in enumerate(showcase.class_names):
        for j, c in enumerate(chans):
            ax = axes[a, j]
            for method, stretches in showcase.signals.items():
                y = stretches[a][c]
                w = min(y.size, int(round(2.56 * showcase.rate_hz)))  # one model window
                t = np.arange(w) / showcase.rate_hz
                ax.plot(t, y[:w], color=COLOURS.get(method, None), lw=1.4 if method == "aae" else 1.0,
                        label=labels.get(method, method))
            ax.set_title(f"{name} (user {showcase.users[a]}): {showcase.channel_names[c]}", fontsize=9)
            ax.set_ylabel(showcase.channel_units[c], fontsize=8)
            ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    axes[0, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Raw vs anonymised windows of held-out users (cf. the paper's Fig. 8)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_spectrograms(showcase: Showcase, labels: dict[str, str], path: Path) -> Path:
    from scipy.signal import spectrogram

    plt = _pyplot()
    chans = _shown_channels(showcase)
    methods = list(showcase.signals)
    rows = [(a, c) for a in range(len(showcase.class_names)) for c in chans]
    fig, axes = plt.subplots(len(rows), len(methods), figsize=(3.6 * len(methods), 1.9 * len(rows)),
                             squeeze=False, sharey=True)
    nperseg = 64
    for r, (a, c) in enumerate(rows):
        # one colour scale per row, the raw signal's, so a method that removes energy shows dark
        ref = None
        for m, method in enumerate(methods):
            y = showcase.signals[method][a][c]
            y = y - y.mean()  # the offset (gravity, mean rotation) would swamp the 0 Hz bin
            seg = min(nperseg, y.size)
            f, t, s = spectrogram(y, fs=showcase.rate_hz, nperseg=seg, noverlap=seg * 3 // 4)
            db = 10 * np.log10(s + 1e-12)
            if ref is None:
                ref = (db.max() - 50, db.max())
            ax = axes[r, m]
            ax.pcolormesh(t, f, db, shading="auto", vmin=ref[0], vmax=ref[1], cmap="magma")
            ax.set_title(f"{labels.get(method, method)}: {showcase.class_names[a]}, "
                         f"{showcase.channel_names[c]}", fontsize=8)
            ax.tick_params(labelsize=7)
            if m == 0:
                ax.set_ylabel("Hz", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("time (s)", fontsize=8)
    fig.suptitle("Spectrograms of held-out users' signals, dB (cf. the paper's Fig. 9)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_privacy_utility(metrics: dict, path: Path) -> Path:
    plt = _pyplot()
    rows, labels = metrics["methods"], metrics["labels"]
    panels = [("identity_acc_raw_attacker", "paper's attacker (trained on raw)"),
              ("identity_acc_adaptive", "adaptive attacker (retrained on transformed)")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), sharey=True)
    for ax, (key, title) in zip(axes, panels):
        for name, row in rows.items():
            ax.scatter(row[key], row["activity_f1"], s=60 if name == "aae" else 36,
                       color=COLOURS.get(name, "k"), zorder=3, edgecolor="k", linewidth=0.5)
            ax.annotate(labels.get(name, name), (row[key], row["activity_f1"]), textcoords="offset points",
                        xytext=(5, 4), fontsize=8)
        ax.axvline(metrics["chance_identity"], color="0.5", ls="--", lw=1)
        ax.text(metrics["chance_identity"], ax.get_ylim()[0], " chance", fontsize=7, color="0.4", va="bottom")
        ax.set_xlabel(f"identity accuracy, {metrics['n_users']} users, time split (%)", fontsize=9)
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_xlim(left=0)
    axes[0].set_ylabel("activity macro-F1, held-out users (%)", fontsize=9)
    fig.suptitle("Privacy-utility: up and to the left is better", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_plots(metrics: dict, showcase: Showcase | None, out_dir: Path) -> list[Path]:
    """Every figure into ``out_dir``; returns the paths written."""
    out_dir = Path(out_dir)
    written = [plot_privacy_utility(metrics, out_dir / SCATTER_PNG)]
    if showcase is None:
        log.warning("no held-out user has every activity: skipping the window and spectrogram plots")
        return written
    labels = metrics["labels"]
    written.append(plot_windows(showcase, labels, out_dir / WINDOWS_PNG))
    written.append(plot_spectrograms(showcase, labels, out_dir / SPECTROGRAMS_PNG))
    return written
