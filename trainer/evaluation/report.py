"""What an evaluation leaves behind: ``metrics.json``, a Markdown ``README.md`` with the
table, the targets and the plots, and the same table for the terminal."""

from __future__ import annotations

import json
import os
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from trainer.evaluation.plots import SCATTER_PNG, SPECTROGRAMS_PNG, WINDOWS_PNG

METRICS_JSON = "metrics.json"
README_MD = "README.md"
TRAIN_TOML = "train.toml"
# A baseline counts as "useful" when its activity F1 is within this many points of raw.
USEFUL_WITHIN = 3.0
SOURCES = {
    "hapt": "UCI HAPT (Reyes-Ortiz, Oneto, Samà, Parra, Anguita, Neurocomputing 2016), CC BY 4.0; "
            "the bundled copy is data/hapt.npz",
    "uci-hapt-raw": "UCI HAPT RawData (Reyes-Ortiz et al., Neurocomputing 2016), CC BY 4.0",
    "motionsense": "MotionSense (Malekzadeh et al., 2019)",
}


def _commit() -> str | None:
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=repo, capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() or None


def pareto_front(rows: dict[str, dict], identity_key: str) -> list[str]:
    """Methods no other method dominates (activity F1 at least as high AND identity accuracy
    at least as low, one of them strictly)."""
    front = []
    for name, row in rows.items():
        f1, ident = row["activity_f1"], row[identity_key]
        dominated = any(
            o["activity_f1"] >= f1 and o[identity_key] <= ident and (o["activity_f1"] > f1 or o[identity_key] < ident)
            for other, o in rows.items() if other != name
        )
        if not dominated:
            front.append(name)
    return front


def assess_targets(metrics: dict) -> dict:
    """The issue's four targets for the anonymiser, each with its figures and a verdict."""
    rows = metrics["methods"]
    if "aae" not in rows or "raw" not in rows:
        return {}
    aae, raw = rows["aae"], rows["raw"]
    chance = metrics["chance_identity"]
    useful = [n for n, r in rows.items()
              if n not in ("raw", "aae") and r["activity_f1"] >= raw["activity_f1"] - USEFUL_WITHIN]
    front = pareto_front(rows, "identity_acc_adaptive")
    return {
        "activity_within_1_point_of_raw": {
            "aae": aae["activity_f1"], "raw": raw["activity_f1"],
            "met": aae["activity_f1"] >= raw["activity_f1"] - 1.0},
        "paper_attacker_at_most_2x_chance": {
            "aae": aae["identity_acc_raw_attacker"], "limit": round(2 * chance, 2),
            "met": aae["identity_acc_raw_attacker"] <= 2 * chance},
        "adaptive_below_useful_baselines": {
            "aae": aae["identity_acc_adaptive"],
            "baselines": {n: rows[n]["identity_acc_adaptive"] for n in useful},
            "met": all(aae["identity_acc_adaptive"] < rows[n]["identity_acc_adaptive"] for n in useful)},
        "aae_on_pareto_front": {"front": front, "met": "aae" in front},
    }


# (metrics key, column title, chance key or None)
MAIN_COLUMNS = (
    ("activity_f1", "Activity F1", None),
    ("identity_acc_raw_attacker", "Identity, paper's attacker", "chance_identity"),
    ("identity_acc_adaptive", "Identity, adaptive", "chance_identity"),
    ("identity_acc_adaptive_unseen", "Identity, adaptive, held-out users", "chance_identity_unseen"),
    ("identity_acc_adaptive_cross_session", "Identity, adaptive, cross-session", "chance_identity"),
    ("mse", "MSE", None),
    ("dtw_rank", "DTW rank", "dtw_chance_rank"),
)
MORE_COLUMNS = (
    ("activity_f1_raw_classifier", "Activity F1, raw-trained classifier", None),
    ("identity_f1_raw_attacker", "Identity F1, paper's attacker", None),
    ("identity_f1_adaptive", "Identity F1, adaptive", None),
    ("identity_acc_raw_attacker_unseen", "Identity, paper's attacker, held-out users", "chance_identity_unseen"),
    ("identity_acc_raw_attacker_cross_session", "Identity, paper's attacker, cross-session", "chance_identity"),
    ("identity_acc_adaptive_cross_session_unseen", "Identity, adaptive, cross-session, held-out users",
     "chance_identity_unseen"),
    ("dtw_top1", "DTW 1-NN identity", None),
    ("negative_magnitude_pct", "Magnitude samples below 0", None),
)


def _cell(row: dict, key: str) -> str:
    v = row.get(key)
    if v is None:
        return "–"
    if key == "mse":
        return f"{v:.4f}"
    if key == "activity_f1" and row.get("activity_f1_std") is not None and len(row.get("activity_f1_seeds", ())) > 1:
        return f"{v:.1f} ± {row['activity_f1_std']:.1f}"  # mean and spread over the classifier seeds
    return f"{v:.2f}" if key == "negative_magnitude_pct" else f"{v:.1f}"


def _header(metrics: dict, key: str, title: str, chance_key: str | None) -> str:
    if chance_key and metrics.get(chance_key) is not None:
        return f"{title} (chance {metrics[chance_key]:.1f})"
    return title


def markdown_table(metrics: dict, columns=MAIN_COLUMNS) -> str:
    rows, labels = metrics["methods"], metrics["labels"]
    heads = ["Method"] + [_header(metrics, k, t, c) for k, t, c in columns]
    lines = ["| " + " | ".join(heads) + " |", "|" + "|".join(["---"] + ["---:"] * len(columns)) + "|"]
    for name, row in rows.items():
        label = f"**{labels.get(name, name)}**" if name == "aae" else labels.get(name, name)
        lines.append("| " + " | ".join([label] + [_cell(row, k) for k, _, _ in columns]) + " |")
    return "\n".join(lines)


def text_table(metrics: dict) -> str:
    """The main table for a terminal: fixed-width columns, chance on the last line."""
    short = {"activity_f1": "act F1", "identity_acc_raw_attacker": "id paper", "identity_acc_adaptive": "id adapt",
             "identity_acc_adaptive_unseen": "id unseen", "identity_acc_adaptive_cross_session": "id x-sess",
             "mse": "MSE", "dtw_rank": "DTW rank"}
    rows, labels = metrics["methods"], metrics["labels"]
    keys = [k for k, _, _ in MAIN_COLUMNS]
    width = max(len(labels.get(n, n)) for n in rows) + 2
    out = [f"{'method':<{width}}" + "".join(f"{short[k]:>11}" for k in keys)]
    for name, row in rows.items():
        out.append(f"{labels.get(name, name):<{width}}" + "".join(f"{_cell(row, k):>11}" for k in keys))
    chances = {k: metrics.get(c) for k, _, c in MAIN_COLUMNS if c}
    out.append(f"{'chance':<{width}}" + "".join(
        f"{(f'{chances[k]:.1f}' if chances.get(k) is not None else ''):>11}" for k in keys))
    return "\n".join(out)


def _targets_md(targets: dict) -> list[str]:
    if not targets:
        return []
    mark = {True: "met", False: "NOT met"}
    t = targets
    lines = ["## Targets", ""]
    a = t["activity_within_1_point_of_raw"]
    lines.append(f"- AAE activity F1 {a['aae']:.1f} >= raw {a['raw']:.1f} - 1.0: **{mark[a['met']]}**")
    p = t["paper_attacker_at_most_2x_chance"]
    lines.append(f"- AAE identity accuracy, paper's attacker, {p['aae']:.1f} <= 2 x chance = {p['limit']:.1f}: "
                 f"**{mark[p['met']]}**")
    d = t["adaptive_below_useful_baselines"]
    listed = ", ".join(f"{n} {v:.1f}" for n, v in d["baselines"].items()) or "none within 3 points of raw"
    lines.append(f"- AAE identity accuracy, adaptive attacker, {d['aae']:.1f} below every baseline whose "
                 f"activity F1 is within {USEFUL_WITHIN:.0f} points of raw ({listed}): **{mark[d['met']]}**")
    f = t["aae_on_pareto_front"]
    lines.append(f"- AAE on the Pareto front (activity F1 vs adaptive identity accuracy; front: "
                 f"{', '.join(f['front'])}): **{mark[f['met']]}**")
    return lines + [""]


def train_toml(config: dict) -> str:
    """The evaluated model's training config as a file for 'imu-anon train --config'
    (unset keys are left out: TOML has no null, and unset is their default)."""
    lines = ["# The configuration the evaluated model was trained with.", "[train]"]
    for key, value in sorted(config.items()):
        if value is None:
            continue
        lines.append(f"{key} = {json.dumps(value)}")  # JSON scalars are valid TOML scalars
    return "\n".join(lines) + "\n"


def _reproduce(m: dict, out_name: str | None) -> list[str]:
    lines = ["Reproduce with:", "", "```"]
    subj = m["subject"]
    if m.get("train_config") and out_name:
        target = subj["path"] if subj["kind"] == "run" else "runs/NAME"
        lines.append(f"imu-anon train --config {out_name}/{TRAIN_TOML} --out {target}")
        if subj["kind"] == "onnx":
            lines.append(f"imu-anon export runs/NAME --out {subj['path']}")
    lines += [m.get("command", "imu-anon evaluate ..."), "```", ""]
    if m.get("train_config"):
        lines += [f"`{TRAIN_TOML}` holds the configuration the model was trained with; the REP baseline is "
                  "trained with the same one and `variant = \"rep\"`.", ""]
    return lines


def readme(metrics: dict, plots: list[str], out_name: str | None = None) -> str:
    m = metrics
    subj, proto = m["subject"], m["protocol"]
    lines = [
        f"# Evaluation: {m['dataset']} / {m['setting']}",
        "",
        f"Evaluated `{subj['path']}` ({subj['kind']}, {subj['arch']}, {subj['precision']}, channels "
        f"{', '.join(m['channels'])}) on {m['windows']['total']} windows of {m['windows']['window']} samples "
        f"(hop {m['windows']['hop']}, {m['windows']['rate_hz']:g} Hz) from {m['n_users']} users; the "
        f"{m['n_users_unseen']} held-out users {m['unseen_users']} were never seen by the anonymiser.",
        f"Data: {SOURCES.get(m['dataset'], m['dataset'])}.",
        "",
        *_reproduce(m, out_name),
        "Accuracies and F1 scores in percent; chance beside each identity column. MSE is in "
        "standardised units (training users' raw mean/std). DTW rank: rank of the true user (1 = found) "
        "among users ordered by their nearest raw reference window; higher is more private.",
        "",
        markdown_table(m),
        "",
        "More figures:",
        "",
        markdown_table(m, MORE_COLUMNS),
        "",
    ]
    lines += _targets_md(m.get("targets", {}))
    lines += [
        "## Protocol",
        "",
        "- Activity: macro-F1 on the held-out users by the paper's CNN trained on the method's transformed "
        "windows of the training users (the raw-trained column feeds them to a classifier trained on raw data).",
        "- Identity, paper's attacker: the CNN trained once on RAW windows of the training part, tested on "
        "each method's transformed test windows. Adaptive: retrained on each method's transformed training "
        "windows. Time split: inside every recording and activity segment the first 2/3 train and the rest "
        "test, one window apart. Cross-session: each user's first session trains, the later ones test.",
        f"- Classifiers: {proto['classifier_epochs']} epochs, batch {proto['classifier_batch_size']}, Adam "
        f"lr {proto['classifier_lr']:g}, at most {proto['max_train_windows']} training windows each (a "
        f"stratified random subset), seed {proto['seed']}; every task's classifier starts from the same seed "
        f"for every method. Activity F1 is the mean (± standard deviation) of {proto.get('activity_seeds', 1)} "
        "activity classifiers from consecutive seeds: one seed alone scatters by more than a point.",
        f"- Baselines work on the model channels in standardised units; SSA uses a trajectory matrix of "
        f"{proto['ssa_lag']} rows; resampling is scipy.signal.resample down and back up to "
        f"{m['windows']['window']} samples.",
        f"- DTW k-NN rank: {m['windows']['dtw_queries']} transformed test windows ({proto['dtw_queries_per_user']} "
        f"per user) against {m['windows']['dtw_refs']} raw training windows ({proto['dtw_refs_per_user']} per "
        f"user), Sakoe-Chiba band {proto['dtw_band']} samples; chance rank {m['dtw_chance_rank']:.1f}.",
        "",
    ]
    if m.get("notes"):
        lines += ["Notes:", ""] + [f"- {n}" for n in m["notes"]] + [""]
    titles = {SCATTER_PNG: "Privacy-utility", WINDOWS_PNG: "Windows (cf. Fig. 8)",
              SPECTROGRAMS_PNG: "Spectrograms (cf. Fig. 9)"}
    for p in plots:
        lines += [f"## {titles.get(p, p)}", "", f"![{titles.get(p, p)}]({p})", ""]
    lines += [f"Created {m.get('created', '')} with imu-anon {m.get('code_version', '')} in "
              f"{m.get('elapsed_s', 0):.0f} s.", ""]
    return "\n".join(lines)


def finalise(metrics: dict, command: str) -> dict:
    """Add the targets, the reproducing command and provenance to the protocol's metrics."""
    from imu_anon import __version__

    commit = _commit()
    return metrics | {
        "targets": assess_targets(metrics),
        "command": command,
        "created": datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z"),
        "code_version": __version__ + (f"+g{commit}" if commit else ""),
    }


def write_json(path: Path, data: dict) -> Path:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)  # never a half-written metrics.json for the exporter to embed
    return path


def write_report(metrics: dict, out_dir: Path, plots: list[Path]) -> tuple[Path, Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = write_json(out_dir / METRICS_JSON, metrics)
    md_path = out_dir / README_MD
    if metrics.get("train_config"):
        (out_dir / TRAIN_TOML).write_text(train_toml(metrics["train_config"]), encoding="utf-8")
    md_path.write_text(readme(metrics, [p.name for p in plots], _display(out_dir)), encoding="utf-8")
    return json_path, md_path


def _display(out_dir: Path) -> str:
    """The output folder as the reproducing commands should name it: relative to the
    current folder when inside it."""
    try:
        return str(out_dir.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(out_dir)
