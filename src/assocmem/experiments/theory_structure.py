"""The theorems on structure (§5.2–§5.4): Theorem 3 at its own ω = 1 (embeddings trained with W_V = I are
linear in Hamming distance), Lemma 5 (the rank of the Eq. 5.2 Gram matrix against the bound m + 2), Lemma 6
(the gradient of the loss with respect to an attention score: derived, as printed, and by autograd).

As in `theory.py`, each `run_*` computes tables and a `judge_*` (pure) turns them into rows, claims and plot data.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from assocmem.experiments.claims import ClaimResult, exceeds, fmt, mean_se, mean_std
from assocmem.experiments.common import training, accuracy_row, keep_best_lr, specs_for, train_grid
from assocmem.experiments.lca_embedding import R2_MIN, TaskGrid, plot_geometry
from assocmem.experiments.registry import Context, Experiment, Result
from assocmem.lca.analysis import fit_eq52, inner_product_by_hamming, line_r2, numerical_rank, singular_values
from assocmem.lca.constructions import eq52_embedding
from assocmem.lca.model import ModelConfig, forward_last
from assocmem.lca.task import LCAConfig, latent_bits, sample_batch
from assocmem.lca.theory import attention_scores, eq52_rank, last_logits_from_scores, score_gradients
from assocmem.plotting import new_figure, save_figure
from assocmem.tables import values as column

EXACT_RTOL = 1e-9  # float64 agreement: "equal" for Lemma 6's closed form against autograd
Table = list[dict[str, Any]]


# ---------------------------------------------------------------- Theorem 3 at ω = 1


@dataclass(frozen=True)
class IdentityValueStudy(TaskGrid):
    """Theorem 3's setting: W_V = I trained, ω = 1, 𝒩 = all (c6 reads fig3b's models at ω = 0.5)."""


def theorem3_table(s: IdentityValueStudy, ctx: Context) -> Table:
    """Per trained model (d, seed): mean inner product at each Hamming distance, the Eq. 5.2 fit, accuracy."""
    specs = []
    for d in s.ds:
        specs += specs_for(s.task(), ModelConfig(d=d, freeze_value=True), s.training, f"d={d}, W_V = I")
    models = sorted(keep_best_lr(train_grid(specs, s.training, ctx)), key=lambda m: (m.spec.model.d, m.spec.seed))
    table: Table = []
    for tm in models:
        key = {"d": tm.spec.model.d, "seed": tm.spec.seed, "lr": tm.spec.lr}
        means = inner_product_by_hamming(tm.weights["W_E"], s.m)["mean"].tolist()
        table += [{**key, "quantity": "mean inner product", "hamming": h, "value": v} for h, v in enumerate(means)]
        fit = fit_eq52(tm.weights["W_E"], s.m)
        values = {"a": fit["a"], "b": fit["b"], "b0": fit["b0"], "R² over all pairs": fit["r2"],
                  "accuracy": tm.final_accuracy, "bayes": tm.bayes_optimal_accuracy}
        table += [{**key, "quantity": q, "hamming": None, "value": v} for q, v in values.items()]
    return table


def judge_theorem3(table: Table, s: IdentityValueStudy) -> Result:
    rows, panels, verdicts, numbers = [], [], [], []
    for d in s.ds:
        seeds = sorted(set(column(table, "seed", d=d)))
        get = {q: [column(table, d=d, seed=e, quantity=q)[0] for e in seeds]
               for q in ("a", "b", "b0", "R² over all pairs", "accuracy", "bayes")}
        means = [column(table, d=d, seed=e, quantity="mean inner product") for e in seeds]
        r2 = [line_r2(mu[1:]) for mu in means]
        setting = f"m={s.m}, L={s.L}, d={d}, ω={s.omega:g}, W_V = I"
        rows.append(accuracy_row(setting, "accuracy", get["accuracy"], get["bayes"]))
        for name, values in (("slope a of Eq. 5.2", get["a"]), ("R² of a line through the means (D_H ≥ 1)", r2),
                             ("R² over all pairs", get["R² over all pairs"])):
            mean, std = mean_std(values)
            rows.append({"setting": setting, "quantity": name, "ours": mean, "err": std})
        ok_a, text_a = exceeds(get["a"])
        r2_mean, _ = mean_se(r2)
        verdicts.append(ok_a and r2_mean >= R2_MIN)
        pairs, _ = mean_se(get["R² over all pairs"])
        numbers.append(f"d={d}: a {text_a}; R² {fmt(r2_mean)} (over all pairs {fmt(pairs)})")
        panels.append({"setting": setting, "models": [{"means": mu, "a": a, "b": b}
                                                      for mu, a, b in zip(means, get["a"], get["b"])]})
    claim = ClaimResult("thm3-linear", bool(verdicts) and all(verdicts),
                        f"as c6, at Theorem 3's ω = 1 and 𝒩 = all: per d, a > 0 by > 2 SE over seeds and mean R² of a "
                        f"line through the mean inner products at D_H = 1..m ≥ {R2_MIN}", "; ".join(numbers))
    return Result(rows=rows, claims=[claim], tables={"theorem3": table}, data={"panels": panels, "m": s.m})


def run_theorem3(s: IdentityValueStudy, ctx: Context) -> Result:
    return judge_theorem3(theorem3_table(s, ctx), s)


def plot_theorem3(result: Result, folder: Path) -> list[Path]:
    return plot_geometry(result, folder, "theorem3.png", "Theorem 3 at ω = 1: embeddings trained with W_V = I")


# ---------------------------------------------------------------- Lemma 5


@dataclass(frozen=True)
class RankStudy:
    """Lemma 5: W_E realising Eq. 5.2 (`eq52_embedding`), rank by SVD against the bound and the closed form."""

    ms: tuple[int, ...]
    a: float = 1.0
    offsets: tuple[float, ...] = (0.0, 1.0)  # b − a·m/2 with b0 = b: 0 is the PSD edge
    excess: float = 2.0  # b0 − b of the contrast case b0 > b (full rank)
    rtol: float = 1e-9  # singular values above rtol × the largest count towards the rank
    seed: int = 0  # of the random rotation of W_E's rows (the rank does not depend on it)


def _cases(s: RankStudy, m: int) -> dict[str, tuple[float, float]]:
    """case name → (b0, b)."""
    half = s.a * m / 2
    cases = {f"b0 = b = am/2 + {o:g}": (half + o, half + o) for o in s.offsets}
    cases[f"b0 = b + {s.excess:g}, b = am/2 + {max(s.offsets):g}"] = (half + max(s.offsets) + s.excess,
                                                                      half + max(s.offsets))
    return cases


def lemma5_table(s: RankStudy) -> Table:
    gen = torch.Generator().manual_seed(s.seed)
    table: Table = []
    for m in s.ms:
        for case, (b0, b) in _cases(s, m).items():
            W_E = eq52_embedding(m, b0, b, s.a, generator=gen, dtype=torch.float64)  # (1, V, V)
            svals = singular_values(W_E)[0]  # (V,)
            key = {"m": m, "case": case, "b0_equals_b": b0 == b}
            table += [{**key, "quantity": "rank by SVD", "k": None, "value": int(numerical_rank(svals, s.rtol))},
                      {**key, "quantity": "rank, closed form", "k": None, "value": eq52_rank(m, b0, b, s.a)}]
            if m == max(s.ms):
                table += [{**key, "quantity": "singular value", "k": k + 1, "value": float(v)}
                          for k, v in enumerate(svals)]
    return table


def judge_lemma5(table: Table, s: RankStudy) -> Result:
    def value(m, case, q):
        return column(table, m=m, case=case, quantity=q)[0]

    rows, holds, found = [], [], []
    for m in s.ms:
        for case, (b0, b) in _cases(s, m).items():
            svd, closed = value(m, case, "rank by SVD"), value(m, case, "rank, closed form")
            rows.append({"setting": f"m={m}, {case}", "quantity": "rank of W_E", "ours": svd, "closed_form": closed,
                         "bound": m + 2 if b0 == b else 2**m})
            if b0 == b:
                holds.append(svd <= m + 2)
                found.append(f"m={m}, {case}: {svd}")
    agree = all(value(r["m"], r["case"], "rank by SVD") == value(r["m"], r["case"], "rank, closed form")
                for r in table if r["quantity"] == "rank by SVD")
    claim = ClaimResult("lemma5-rank", all(holds),
                        f"at every m and b (b0 = b, 𝒩 = all): the rank of W_E realising Eq. 5.2 (singular values above "
                        f"{s.rtol:g} × the largest) is ≤ m + 2", "rank found: " + "; ".join(found)
                        + f"; the closed form agrees everywhere: {agree}",
                        note="the bound holds and is not tight: D_H(t, t') = (m − x_t·x_t')/2 with x = 2z − 1 makes the "
                             "Gram matrix (b − am/2)·J + (a/2)·X Xᵀ, of rank m + 1 (m when b = am/2); with b0 > b it "
                             "has full rank V, with a gap after the top m + 1 values")
    m = max(s.ms)
    spectra = {case: column(table, m=m, case=case, quantity="singular value") for case in _cases(s, m)}
    ranks = {case: [value(mm, case, "rank by SVD") for mm in s.ms] for case, (b0, b) in _cases(s, m).items() if b0 == b}
    return Result(rows=rows, claims=[claim], tables={"lemma5": table},
                  data={"ms": list(s.ms), "m": m, "spectra": spectra, "ranks": ranks})


def run_lemma5(s: RankStudy, ctx: Context) -> Result:
    return judge_lemma5(lemma5_table(s), s)


def plot_lemma5(result: Result, folder: Path) -> list[Path]:
    data = result.data
    ms = np.array(data["ms"])
    fig, axes = new_figure(4.2, 3.4, ncols=2)
    ax = axes[0][0]
    ax.plot(ms, ms + 2, "k--", linewidth=1.2, label="Lemma 5 bound m + 2")
    for i, (case, ranks) in enumerate(data["ranks"].items()):
        ax.plot(ms, ranks, marker="os"[i % 2], linestyle="none", label=f"found, {case}")
    ax.set_xlabel("m")
    ax.set_ylabel("rank of W_E (b0 = b)")
    ax.set_title("Rank against the bound", fontsize=9)
    ax.legend(fontsize=7)
    ax = axes[0][1]
    for case, svals in data["spectra"].items():
        sv = np.maximum(np.array(svals), 1e-18)
        ax.plot(np.arange(1, len(sv) + 1), sv / sv[0], marker="o", markersize=2, label=case)
    ax.axvline(data["m"] + 2 + 0.5, color="grey", linestyle="--", linewidth=1, label="m + 2")
    ax.set_yscale("log")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("index k")
    ax.set_ylabel("s_k / s_1")
    ax.set_title(f"Spectrum of Eq. 5.2 W_E, m={data['m']}", fontsize=9)
    ax.legend(fontsize=7)
    return [save_figure(fig, folder / "lemma5.png")]


# ---------------------------------------------------------------- Lemma 6


@dataclass(frozen=True)
class GradientStudy:
    """Lemma 6 on random one-layer models and contexts of its cluster task (𝒩(z) = {z: z_1 = z*_1} ∖ {z*})."""

    m: int
    L: int
    d: int  # embedding dimension (d_a = d)
    instances: int = 64  # (model, context) pairs, each with its own Gaussian weights
    omega: float = 0.5
    beta: float = 1.0
    neighborhood: str = "cluster1"  # Lemma 6's setting
    seed: int = 0

    def task(self) -> LCAConfig:
        return LCAConfig(m=self.m, L=self.L, omega=self.omega, beta=self.beta, neighborhood=self.neighborhood)


def lemma6_table(s: GradientStudy) -> Table:
    """One row per (instance, token t): α_t, whether t shares t_L's cluster, and the three gradients; plus one
    row per instance with the largest difference between the score-based logits and the model's forward."""
    gen = torch.Generator().manual_seed(s.seed)
    task, V, d = s.task(), 2**s.m, s.d
    x_all, y_all = sample_batch(task, s.instances, gen)
    cluster = latent_bits(s.m)[:, 0]  # (V,) first latent
    table: Table = []
    for i in range(s.instances):  # a loop over independent instances, each a handful of (V,) vectors
        W_E, W_V = (torch.randn(shape, generator=gen, dtype=torch.float64) / math.sqrt(d) for shape in ((d, V), (d, d)))
        W_Q, W_K = (torch.randn(d, d, generator=gen, dtype=torch.float64) for _ in range(2))  # O(1) scores
        x, y = x_all[i], int(y_all[i])
        u = attention_scores(W_E, W_Q, W_K, int(x[-1]))  # (V,)
        model = forward_last(W_E[None], W_Q[None], W_K[None], W_V[None], x[None]).logits[0, 0]  # (V,)
        table.append({"instance": i, "token": None, "quantity": "max |logits from u − model logits|",
                      "value": float((last_logits_from_scores(W_E, W_V, u, x) - model).abs().max())})
        g = score_gradients(W_E, W_V, u, x, y)
        same = cluster == cluster[x[-1]]
        table += [{"instance": i, "token": t, "quantity": "gradient", "alpha": int(g.alpha[t]), "same_cluster":
                   bool(same[t]), "autograd": float(g.autograd[t]), "closed": float(g.closed[t]),
                   "printed": float(g.printed[t])} for t in range(V)]
    return table


def _relative_errors(table: Table, form: str, alphas: set[int] | None) -> list[float]:
    """Per instance: max |form − autograd| / max |autograd| over its tokens (with α_t in `alphas` if given)."""
    by_instance: dict[int, list[dict]] = {}
    for r in table:
        if r["quantity"] == "gradient":
            by_instance.setdefault(r["instance"], []).append(r)
    out = []
    for tokens in by_instance.values():
        scale = max(abs(r["autograd"]) for r in tokens) or 1.0
        chosen = [r for r in tokens if alphas is None or (r["alpha"] in alphas)]
        if chosen:
            out.append(max(abs(r[form] - r["autograd"]) for r in chosen) / scale)
    return out


def judge_lemma6(table: Table, s: GradientStudy) -> Result:
    closed = _relative_errors(table, "closed", None)
    # The printed form is judged on tokens of the context (α_t ≥ 1), the ones the lemma speaks of. (A first
    # version of this criterion also took α_t = 0, where the printed formula is nonzero and the gradient 0:
    # relative error 1.4 on the quick run; that figure stays in the rows as "tokens absent from x".)
    printed_once = _relative_errors(table, "printed", {1})
    printed_absent = _relative_errors(table, "printed", {0})
    repeated = set(range(2, s.L + 1))
    printed_rep = _relative_errors(table, "printed", repeated)
    forward = max(r["value"] for r in table if r["quantity"].startswith("max |logits"))
    grads = [r for r in table if r["quantity"] == "gradient"]
    alpha_same = np.mean([r["alpha"] for r in grads if r["same_cluster"]])
    alpha_other = np.mean([r["alpha"] for r in grads if not r["same_cluster"]])
    setting = f"m={s.m}, L={s.L}, d={s.d}, {s.neighborhood}, {s.instances} random models × contexts"
    rows = [{"setting": setting, "quantity": "max relative error, derived form (α_t on both terms)",
             "ours": max(closed)},
            {"setting": setting, "quantity": "max relative error, printed form, tokens with α_t = 1",
             "ours": max(printed_once)},
            {"setting": setting, "quantity": "max relative error, printed form, tokens absent from x (α_t = 0)",
             "ours": max(printed_absent)},
            {"setting": setting, "quantity": "median relative error, printed form, tokens with α_t ≥ 2",
             "ours": float(np.median(printed_rep))},
            {"setting": setting, "quantity": "max |logits from u − model's forward|", "ours": forward},
            {"setting": setting, "quantity": "mean α_t, tokens in t_L's cluster", "ours": float(alpha_same)},
            {"setting": setting, "quantity": "mean α_t, tokens in the other cluster", "ours": float(alpha_other)}]
    derived = ClaimResult(
        "lemma6-gradient", max(closed) < EXACT_RTOL and forward < EXACT_RTOL,
        f"on every instance the derived ∇_u ℓ = ∇ℓᵀW_EᵀW_V(α_t p̂_t W_E(t) − α_t p̂_t Σ_l p̂_(t_l) W_E(t_l)) is within "
        f"{EXACT_RTOL:g} (relative to max |∇|) of autograd through the model's own forward",
        f"max relative error {max(closed):.1e} over {len(closed)} instances; forward check {forward:.1e}; mean α_t "
        f"{fmt(float(alpha_same), 2)} in t_L's cluster vs {fmt(float(alpha_other), 2)} outside (the lemma's reading)")
    printed = ClaimResult(
        "lemma6-printed", max(printed_once + printed_rep) < EXACT_RTOL,
        f"the printed form (α_t on the first term only) is within {EXACT_RTOL:g} of autograd at every token of "
        "the context (α_t ≥ 1)",
        f"tokens with α_t = 1: max relative error {max(printed_once):.1e}; tokens with α_t ≥ 2 (in "
        f"{len(printed_rep)} of {len(closed)} instances): median {fmt(float(np.median(printed_rep)))}, "
        f"max {fmt(max(printed_rep))}",
        note="erratum: each of the α_t positions holding t contributes −p̂_t ∇ℓᵀW_EᵀW_V h(x), so the second term "
             "needs α_t too; the printed form is right only for tokens that occur once. (This criterion was first "
             "written over α_t ≤ 1; tokens absent from x are not the lemma's: their row keeps that figure.)")
    return Result(rows=rows, claims=[derived, printed], tables={"lemma6": table})


def run_lemma6(s: GradientStudy, ctx: Context) -> Result:
    return judge_lemma6(lemma6_table(s), s)


def plot_lemma6(result: Result, folder: Path) -> list[Path]:
    grads = [r for r in result.tables["lemma6"] if r["quantity"] == "gradient" and r["alpha"] > 0]
    auto = np.array([r["autograd"] for r in grads])
    repeated = np.array([r["alpha"] >= 2 for r in grads])
    fig, axes = new_figure(3.8, 3.4, ncols=2)
    for ax, form, title in ((axes[0][0], "closed", "derived (α_t on both terms)"),
                            (axes[0][1], "printed", "as printed (α_t on the first only)")):
        values = np.array([r[form] for r in grads])
        ax.scatter(auto[~repeated], values[~repeated], s=6, label="α_t = 1")
        ax.scatter(auto[repeated], values[repeated], s=6, label="α_t ≥ 2")
        lim = float(np.abs(auto).max()) * 1.1
        ax.plot([-lim, lim], [-lim, lim], "k--", linewidth=1)
        ax.set_xlabel("autograd ∂ℓ/∂u_(t, t_L)")
        ax.set_ylabel("closed form")
        ax.set_title(f"Lemma 6, {title}", fontsize=9)
        ax.legend(fontsize=7)
    return [save_figure(fig, folder / "lemma6.png")]


# ---------------------------------------------------------------- entries

THM3_QUICK = IdentityValueStudy(LCAConfig(m=8, L=64, omega=1.0), ds=(32,), training=training(seeds=3, steps=1500, batch_size=128))
THM3_FULL = IdentityValueStudy(LCAConfig(m=8, L=64, omega=1.0), ds=(32, 128),
                               training=training(seeds=5, steps=4000, batch_size=256, lrs=(0.01, 0.001),
                                                 warmup_steps=200, eval_samples=16384))
RANK = RankStudy(ms=(3, 4, 5, 6, 7, 8))
LEMMA6_QUICK = GradientStudy(m=5, L=32, d=16, instances=64)
LEMMA6_FULL = GradientStudy(m=5, L=32, d=16, instances=256)

EXPERIMENTS = [
    Experiment("thm3", "Theorem 3 at ω = 1: embeddings trained with W_V = I", "Theorem 3, Fig. C.6", THM3_QUICK,
               THM3_FULL, run_theorem3, plot_theorem3, claims=("thm3-linear",),
               quick_differs={"thm3-linear": "quick trains d = 32 only (3 seeds, 1500 steps); full adds d = 128, "
                                             "where c6's R² at ω = 0.5 was lowest (5 seeds, 4000 steps)"}),
    Experiment("lemma5", "Lemma 5: rank of the Eq. 5.2 embeddings against the bound m + 2", "Lemma 5, Eq. 5.2, §5.3",
               RANK, RANK, run_lemma5, plot_lemma5, claims=("lemma5-rank",)),
    Experiment("lemma6", "Lemma 6: gradient of the loss with respect to an attention score", "Lemma 6, §5.4",
               LEMMA6_QUICK, LEMMA6_FULL, run_lemma6, plot_lemma6, claims=("lemma6-gradient", "lemma6-printed"),
               version=2),  # 2: its contexts come from the one sampler (lca.task.Sampler)
]
