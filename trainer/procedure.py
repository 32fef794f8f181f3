"""The paper's Fig. 6 procedure, one phase per method, state kept for checkpoints.

(1) pre-train the autoencoder on X -> X; (2) each round: re-fit EncReg on the latent,
DecReg (one or more adversaries) and ActReg on X', measure on the validation segments,
stop once identity is near chance and activity holds; else train the AAE against the frozen
regularisers with L = bd*MSE + bi_enc*Li(EncReg) + bi_dec*Li(DecReg) + ba*CE(ActReg).
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import TrainConfig
from trainer.errors import RunError
from trainer.fitting import accuracy, batches, fit_classifier, macro_f1, new_classifier, predict, transform
from trainer.losses import activity_loss, distortion_loss, identity_loss
from trainer.models import build_anonymiser
from trainer.preparation import Prepared

log = logging.getLogger(__name__)
Bar = Callable[[str, int], Any]  # makes a progress bar: (description, total) -> tqdm-like
RAW_NETS = ("raw_attacker", "raw_act")  # fitted once on raw windows: the references


class Procedure:
    def __init__(self, config: TrainConfig, data: Prepared, device: torch.device, bar: Bar) -> None:
        self.config, self.data, self.device, self.bar = config, data, device, bar
        self.gen = torch.Generator().manual_seed(config.seed)
        torch.manual_seed(config.seed)
        self.model = build_anonymiser(config.arch, data.channels, config.window).to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        self.regs: dict[str, nn.Module] = {}  # enc, act, adv0..advK-1, raw_attacker, raw_act
        self.history: dict[str, Any] = {"raw": None, "pretrain": [], "rounds": [], "states": [],
                                        "pretrained": False, "rounds_done": 0, "stopped": None,
                                        "best_round": None}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.snapshots: dict[int, dict[str, torch.Tensor]] = {}  # round -> weights, for choosing
        # the activity fold of each training user: users dealt to folds in a seeded order
        folds = max(1, config.activity_folds)
        order = torch.randperm(self.n_users, generator=torch.Generator().manual_seed(config.seed + 7))
        self.user_fold = order % folds

    # -- shapes and helpers ---------------------------------------------------------------
    @property
    def n_users(self) -> int:
        return len(self.data.users)

    @property
    def n_classes(self) -> int:
        return len(self.data.class_names)

    def _latent_shape(self) -> tuple[int, int]:
        return self.model.latent_shape

    def _x_shape(self) -> tuple[int, int]:
        return (self.data.channels, self.config.window)

    def _reg(self, name: str, shape: tuple[int, int], n: int) -> nn.Module:
        if self.config.reinit_adversaries or name not in self.regs:
            self.regs[name] = new_classifier(shape, n, self.gen).to(self.device)
        return self.regs[name]

    def _fit(self, name: str, net: nn.Module, x: torch.Tensor, y: torch.Tensor, epochs: int) -> float:
        steps = epochs * -(-len(x) // self.config.reg_batch_size)
        with self.bar(f"fit {name}", steps) as bar:
            return fit_classifier(net, x, y, epochs=epochs, batch_size=self.config.reg_batch_size,
                                  lr=self.config.reg_lr, gen=self.gen, device=self.device, progress=bar.update)

    def _act_names(self) -> list[str]:
        k = self.config.activity_folds
        return ["act"] if k < 2 else [f"act{f}" for f in range(k)]

    def _fold_of(self, user: torch.Tensor) -> torch.Tensor:
        """The activity fold of each window's user."""
        return self.user_fold.to(user.device)[user]

    def _reader_of(self, user: torch.Tensor) -> torch.Tensor:
        """The fold whose activity regulariser reads each window: the NEXT fold after its
        user's, one that never saw that user."""
        return (self._fold_of(user) + 1) % max(1, self.config.activity_folds)

    def _activity_logits(self, nets: list[nn.Module], x: torch.Tensor, user: torch.Tensor) -> torch.Tensor:
        """Activity logits of ``x``, each window read by a regulariser that never saw its user:
        only activity cues that carry over to other people earn credit."""
        if len(nets) == 1:
            return nets[0](x)
        reader = self._reader_of(user)
        out = None
        for f, net in enumerate(nets):
            mine = reader == f
            if mine.any():
                logits = net(x[mine])
                out = logits.new_zeros((len(x), logits.shape[1])) if out is None else out
                out[mine] = logits
        return out

    def _predict_activity(self, nets: list[nn.Module], x: torch.Tensor, user: torch.Tensor) -> np.ndarray:
        if len(nets) == 1:
            return predict(nets[0], x, self.device)
        preds = np.empty(len(x), dtype=np.int64)
        reader = self._reader_of(user).cpu().numpy()
        for f, net in enumerate(nets):
            mine = reader == f
            if mine.any():
                preds[mine] = predict(net, x[torch.from_numpy(mine)], self.device)
        return preds

    def _fit_activity(self, prefix: str, x: torch.Tensor, part, names: list[str]) -> dict[str, float]:
        """Fit the activity network(s) on ``x``: one on every window, or one per user fold."""
        losses = {}
        fold = self._fold_of(part.user)
        for f, name in enumerate(names):
            net = self._reg(name, self._x_shape(), self.n_classes)
            mine = torch.ones_like(fold, dtype=torch.bool) if len(names) == 1 else fold == f
            losses[f"{name}_reg_loss"] = self._fit(f"{prefix} {name}", net, x[mine], part.activity[mine],
                                                   self.config.reg_epochs)
        return losses

    def _l2(self) -> torch.Tensor:
        return self.config.l2 * sum((w * w).sum() for w in self.model.hidden_conv_weights())

    def _anonymised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        z = transform(self.model.encode, x, self.device)
        return z, transform(self.model.decode, z, self.device)

    # -- phases -----------------------------------------------------------------------------
    def measure_raw(self) -> dict[str, float]:
        """Fit ActReg and an identity attacker on the raw windows: the reference figures,
        and the paper's attacker (trained on raw, fed X') for every later state."""
        tr, va, c = self.data.train, self.data.val, self.config
        act = self._reg("raw_act", self._x_shape(), self.n_classes)
        self._fit("raw ActReg", act, tr.x, tr.activity, c.reg_epochs)
        attacker = self._reg("raw_attacker", self._x_shape(), self.n_users)
        self._fit("raw attacker", attacker, tr.x, tr.user, c.reg_epochs)
        if c.activity_folds > 1:
            # the reference for the cross-fold validation figure below: raw windows, same folds
            names = [f"raw_{n}" for n in self._act_names()]
            self._fit_activity("raw", tr.x, tr, names)
            pred_act = self._predict_activity([self.regs.pop(n) for n in names], va.x, va.user)
        else:
            pred_act = predict(act, va.x, self.device)
        raw = {"activity_acc": accuracy(pred_act, va.activity),
               "activity_f1": macro_f1(pred_act, va.activity, self.n_classes),
               "identity_acc": accuracy(predict(attacker, va.x, self.device), va.user),
               "chance": 1.0 / self.n_users}
        self.history["raw"] = raw
        log.info("raw validation: activity acc %.3f F1 %.3f, identity acc %.3f (chance %.3f)",
                 raw["activity_acc"], raw["activity_f1"], raw["identity_acc"], raw["chance"])
        return raw

    def pretrain(self) -> None:
        c, x = self.config, self.data.train.x
        for epoch in range(c.pretrain_epochs):
            self.model.train()
            total, count = 0.0, 0
            n_batches = -(-max(1, round(c.epoch_fraction * len(x))) // c.batch_size)
            with self.bar(f"pretrain {epoch + 1}/{c.pretrain_epochs}", n_batches) as bar:
                for idx in batches(len(x), c.batch_size, self.gen, c.epoch_fraction):
                    xb = x[idx].to(self.device)
                    mse = distortion_loss(self.model(xb), xb)
                    self._step(mse + self._l2())
                    total, count = total + mse.item() * idx.numel(), count + idx.numel()
                    bar.update(1)
            self.history["pretrain"].append({"epoch": epoch + 1, "mse": total / max(count, 1)})
            log.info("pretrain epoch %d: mse %.4f", epoch + 1, total / max(count, 1))
        self.history["pretrained"] = True

    def _step(self, loss: torch.Tensor) -> None:
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def fit_regularisers_and_measure(self) -> dict[str, float]:
        """Re-fit every regulariser on the current anonymiser's output and score it on the
        validation segments: the state after ``rounds_done`` AAE rounds."""
        c, tr, va = self.config, self.data.train, self.data.val
        z_tr, xp_tr = self._anonymised(tr.x)
        z_va, xp_va = self._anonymised(va.x)
        enc = self._reg("enc", self._latent_shape(), self.n_users)
        fitted = {"enc_reg_loss": self._fit("EncReg", enc, z_tr, tr.user, c.reg_epochs)}
        for k in range(c.adversaries):
            adv = self._reg(f"adv{k}", self._x_shape(), self.n_users)
            fitted[f"dec_reg{k}_loss"] = self._fit(f"DecReg {k + 1}", adv, xp_tr, tr.user, c.reg_epochs)
        if c.reinit_adversaries:
            probe = self.regs["adv0"]
        else:
            # warm adversaries have followed the AAE for rounds; the figure that matters is what
            # a newcomer learns from X' alone, as the evaluation's adaptive attacker does
            probe = new_classifier(self._x_shape(), self.n_users, self.gen).to(self.device)
            self._fit("identity probe", probe, xp_tr, tr.user, c.reg_epochs)
        fitted.update(self._fit_activity("ActReg", xp_tr, tr, self._act_names()))
        pred_act = self._predict_activity([self.regs[n] for n in self._act_names()], xp_va, va.user)
        with torch.no_grad():
            mse = float(F.mse_loss(xp_va, va.x))
        val = {
            "round": self.history["rounds_done"],
            "identity_acc": accuracy(predict(probe, xp_va, self.device), va.user),
            "adversary_identity_acc": max(accuracy(predict(self.regs[f"adv{k}"], xp_va, self.device), va.user)
                                          for k in range(c.adversaries)),
            "latent_identity_acc": accuracy(predict(enc, z_va, self.device), va.user),
            "raw_attacker_identity_acc": accuracy(predict(self.regs["raw_attacker"], xp_va, self.device), va.user),
            "activity_acc": accuracy(pred_act, va.activity),
            "activity_f1": macro_f1(pred_act, va.activity, self.n_classes),
            "mse": mse,
            **fitted,
        }
        self.history["states"].append(val)
        log.info("after round %d: identity acc %.3f (adversaries %.3f, latent %.3f, raw attacker %.3f), "
                 "activity acc %.3f, mse %.3f", val["round"], val["identity_acc"], val["adversary_identity_acc"],
                 val["latent_identity_acc"], val["raw_attacker_identity_acc"], val["activity_acc"], mse)
        self._snapshot(val)
        return val

    def converged(self, val: dict[str, float]) -> bool:
        raw, c = self.history["raw"], self.config
        return (val["round"] >= 1 and val["identity_acc"] <= c.target_identity_chance * raw["chance"]
                and val["activity_acc"] >= raw["activity_acc"] - c.max_activity_drop)

    def _snapshot(self, val: dict[str, float]) -> None:
        if val["round"] >= 1:  # round 0 is the plain autoencoder, never released
            self.snapshots[val["round"]] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}

    def choose(self) -> int | None:
        """The released state: among AAE states whose activity accuracy is within
        ``max_activity_drop`` of raw (or, if none is, of the best state's), the one with the
        largest activity accuracy minus identity accuracy -- a point of utility weighs as much
        as a point of privacy. Lowest identity alone chases differences within the probes' noise
        (a point or two on a few thousand validation windows) at any cost in activity."""
        states = [s for s in self.history["states"] if s["round"] in self.snapshots]
        if not states:
            return None
        drop = self.config.max_activity_drop
        floor = self.history["raw"]["activity_acc"] - drop
        if not any(s["activity_acc"] >= floor for s in states):
            floor = max(s["activity_acc"] for s in states) - drop
        chosen = max((s for s in states if s["activity_acc"] >= floor),
                     key=lambda s: (round(s["activity_acc"] - s["identity_acc"], 6), s["round"]))
        self.history["best_round"] = chosen["round"]
        self.best_state = self.snapshots[chosen["round"]]
        return chosen["round"]

    def train_round(self) -> None:
        c, tr = self.config, self.data.train
        # the raw-trained networks stay as they were fitted: no online updates, ever
        fixed = {name: self.regs[name] for name in RAW_NETS if name in self.regs}
        if c.beta_a_raw > 0 and "raw_act" not in fixed:
            raise RunError("this checkpoint predates the raw activity classifier that beta_a_raw needs; "
                           "train the run again from the start")
        frozen = {name: net for name, net in self.regs.items() if name not in RAW_NETS}
        for net in (*frozen.values(), *fixed.values()):
            net.eval()
            net.requires_grad_(False)
        online = self._online_optimisers(frozen)
        advs = [frozen[f"adv{k}"] for k in range(c.adversaries)]
        r = self.history["rounds_done"] + 1
        records = []
        for epoch in range(c.aae_epochs):
            sums: dict[str, float] = {}
            count = 0
            n_batches = -(-max(1, round(c.epoch_fraction * len(tr))) // c.batch_size)
            with self.bar(f"AAE round {r} epoch {epoch + 1}/{c.aae_epochs}", n_batches) as bar:
                for idx in batches(len(tr), c.batch_size, self.gen, c.epoch_fraction):
                    xb, ub, ab = (t[idx].to(self.device) for t in (tr.x, tr.user, tr.activity))
                    self.model.train()
                    z = self.model.encode(xb)
                    xp = self.model.decode(z)
                    terms = {"mse": distortion_loss(xp, xb)}
                    loss = c.beta_d * terms["mse"] + self._l2()
                    if c.beta_i_enc > 0:
                        terms["li_enc"] = identity_loss(frozen["enc"](z), ub)
                        loss = loss + c.beta_i_enc * terms["li_enc"]
                    if c.variant == "aae" and c.beta_i_dec > 0:
                        terms["li_dec"] = sum(identity_loss(a(xp), ub) for a in advs) / len(advs)
                        loss = loss + c.beta_i_dec * terms["li_dec"]
                    if c.variant == "aae" and c.beta_a > 0:
                        acts = [frozen[n] for n in self._act_names()]
                        terms["ce_act"] = activity_loss(self._activity_logits(acts, xp, ub), ab)
                        loss = loss + c.beta_a * terms["ce_act"]
                    if c.variant == "aae" and c.beta_a_raw > 0:
                        terms["ce_act_raw"] = activity_loss(fixed["raw_act"](xp), ab)
                        loss = loss + c.beta_a_raw * terms["ce_act_raw"]
                    terms["loss"] = loss
                    self._step(loss)
                    if online:
                        self._online_updates(online, z.detach(), xp.detach(), ub, ab)
                    for k, v in terms.items():
                        sums[k] = sums.get(k, 0.0) + v.item() * idx.numel()
                    count += idx.numel()
                    bar.update(1)
            record = {"round": r, "epoch": epoch + 1, **{k: v / max(count, 1) for k, v in sums.items()}}
            records.append(record)
            log.info("AAE round %d epoch %d: %s", r, epoch + 1,
                     ", ".join(f"{k} {v:.4f}" for k, v in record.items() if k not in ("round", "epoch")))
        for net in (*frozen.values(), *fixed.values()):
            net.requires_grad_(True)
        self.history["rounds"].append(records)
        self.history["rounds_done"] = r

    def _online_optimisers(self, frozen: dict[str, nn.Module]) -> dict[str, torch.optim.Optimizer]:
        if self.config.online_adversary_steps < 1:
            return {}
        return {name: torch.optim.Adam(net.parameters(), lr=self.config.reg_lr) for name, net in frozen.items()}

    def _online_updates(self, opts, z, xp, ub, ab) -> None:
        """Keep the adversaries current while the AAE moves, so it cannot settle on fooling
        networks that an attacker retrained on its output would no longer be."""
        fold = self._fold_of(ub) if self.config.activity_folds > 1 else None
        for name, opt in opts.items():
            net = self.regs[name]
            inp, target = (z, ub) if name == "enc" else (xp, ab if name.startswith("act") else ub)
            if fold is not None and name.startswith("act"):
                mine = fold == int(name[3:])  # each fold's network keeps learning its own users only
                if int(mine.sum()) < 2:
                    continue
                inp, target = inp[mine], target[mine]
            net.train()
            net.requires_grad_(True)
            for _ in range(self.config.online_adversary_steps):
                loss = F.cross_entropy(net(inp), target)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
            net.eval()
            net.requires_grad_(False)

    # -- checkpoint state ---------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "opt": self.opt.state_dict(),
            "regs": {name: net.state_dict() for name, net in self.regs.items()},
            "history": self.history,
            "snapshots": self.snapshots,
            "gen": self.gen.get_state(),
            "torch_rng": torch.get_rng_state(),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["opt"])
        for name, sd in state["regs"].items():
            n = self.n_classes if name.startswith(("act", "raw_act")) else self.n_users
            shape = self._latent_shape() if name == "enc" else self._x_shape()
            self.regs[name] = new_classifier(shape, n, self.gen).to(self.device)
            self.regs[name].load_state_dict(sd)
        self.history = state["history"]
        self.snapshots = {int(k): v for k, v in state["snapshots"].items()}
        self.gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
