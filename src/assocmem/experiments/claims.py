"""The paper's claims that `reproduce` checks, and small statistics shared by the criteria.

Each claim is judged by the experiments that list it, from our own numbers, with a criterion fixed in
the experiment's code (and printed in the report) — never adjusted to the outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from assocmem.experiments.registry import ClaimResult  # noqa: F401  (re-exported for the experiment modules)


@dataclass(frozen=True)
class Claim:
    id: str
    statement: str  # the paper's claim, in our words
    source: str  # where the paper makes it


CLAIMS: tuple[Claim, ...] = (
    Claim("hijack-examples", "Prepending a sentence that keeps the fact true can flip an LLM's answer to the false target",
          "Fig. 1, §3"),
    Claim("hijack-raises-es", "Hijacking raises the efficacy score (share with P(false) > P(true)) as more sentences are "
          "prepended (on all records, known facts or not)", "Fig. 2(a), 2(b), §3"),
    Claim("hijack-overrides-known", "Hijacking overrides facts the model knows: where the model answers the true "
          "target with no distractor (its top-1 next token), one prepended sentence makes it prefer the false target "
          "for a substantial share of those facts", "§1, §3, Fig. 1 (the known-fact subset is ours)"),
    Claim("hijack-exceeds-control", "The effect is the false target's, not any extra sentence's: the hijacking "
          "sentence raises ES more than its control (the same sentence naming another target of the relation, or a "
          "neutral sentence) on the same records", "§3 (the controls are ours)"),
    Claim("hijack-all-models", "Hijacking works on every LLM tried, not one model's quirk (GPT-2, Gemma, Gemma-IT, LLaMA-2 in the paper)",
          "Fig. 1, Fig. 2, §3"),
    Claim("associated-hijacks", "Words merely associated with the false target hijack too: not just copying a token",
          "§3, App. B (P1412)"),
    Claim("reverse-lowers-es", "Reverse hijacking (sentences stating the true target) lowers the efficacy score",
          "§5.5, App. B"),
    Claim("thm1-construction", "Theorem 1: with ω = 1 and orthonormal W_E, the Eq. 5.1 construction's error falls to 0 "
          "as the context grows", "Theorem 1, Eq. 5.1, §5.1"),
    Claim("lemma2-bayes", "Lemma 2: on the Hamming-1 neighbourhood the construction has error 0 (it is the Bayes "
          "classifier); W_V = I has error > 0", "Lemma 2, §5.2"),
    Claim("thm4-eq52", "Theorem 4: with Eq. 5.2 embeddings and the Eq. 5.1 W_V built on them, the error falls to 0 "
          "when b0 and L are large", "Theorem 4, Eq. 5.2, §5.3"),
    Claim("lemma5-rank", "Lemma 5: Eq. 5.2 embeddings with b0 = b have rank ≤ m + 2", "Lemma 5, §5.3"),
    Claim("lemma6-gradient", "Lemma 6 (α_t on both terms): the loss gradient with respect to an attention score "
          "u_(t, t_L) is ∇ℓᵀW_EᵀW_V(α_t p̂_t W_E(t) − α_t p̂_t Σ_l p̂_(t_l) W_E(t_l))", "Lemma 6, §5.4"),
    Claim("lemma6-printed", "Lemma 6 as printed: the same gradient with α_t on the first term only",
          "Lemma 6, §5.4 (printed form)"),
    Claim("value-matters", "The value matrix matters: fixing W_V = I lowers accuracy, notably at small context length",
          "Fig. 3(a), Fig. C.1, §6.1, Lemma 2"),
    Claim("construction-replaces", "Replacing the trained W_V by the Theorem 1 construction keeps accuracy (unlike a random construction)",
          "Fig. C.2, §6.1"),
    Claim("construction-closest", "The trained W_V's rank-m approximation is closest (smallest principal angle) to the construction's",
          "Fig. C.3, §6.1"),
    Claim("embedding-under", "Embedding training is needed when d < V", "Fig. C.4, §6.2"),
    Claim("embedding-over", "Embedding training matters less as d grows past V: frozen Gaussian embeddings catch up "
          "with trained ones as d/V grows (the paper: not needed when d > V)", "Fig. C.4, §6.2"),
    Claim("eq52", "Trained embeddings follow Eq. 5.2: inner product decreasing linearly in Hamming distance, with b0 > b",
          "Fig. 3(b), Fig. C.5, §5.3"),
    Claim("thm3-linear", "With W_V = I the inner product is linear in Hamming distance (Theorem 3)", "Fig. C.6, Thm 3"),
    Claim("eigengap", "W_E has an eigen-gap between top and bottom singular values (approximately low rank)",
          "Fig. C.9–C.12, Lemma 5"),
    Claim("attention-cluster", "Attention selects tokens of the last token's cluster", "Fig. 3(c), Fig. C.7, C.8, §5.4, §6.3"),
    Claim("mixing-hijacks", "Mixing in tokens of another concept makes the transformer answer that concept",
          "§5.5, App. C.5"),
    Claim("length-helps", "Longer contexts give higher recall accuracy", "§5.5, App. C.6, Thm 1/4"),
    Claim("hijack-through-attention", "Inside the LLM the hijack travels through attention to the distractor tokens: "
          "blocking that attention restores the true target, beyond blocking as many random prompt tokens",
          "§5.5, Theorem 1 (tested causally on a real LLM: an extension)"),
    Claim("hijack-attention-carries", "At the answer position the false target is carried in by attention, not by "
          "the MLP: patching the attention output from the clean prompt restores more than patching the MLP output",
          "§5.5, Theorem 1 (attention + value matrix; tested causally on a real LLM: an extension)"),
    Claim("hijack-heads", "A single attention head carries most of the hijack into the answer position: blocking "
          "its attention to the distractors restores at least half of what blocking its whole block does",
          "§5.5, Theorem 1 (per head, on a real LLM: an extension)"),
    Claim("hijack-same-heads", "The same heads carry the hijack whether the false word is in the prompt (not-think) "
          "or only a word associated with it (associated)",
          "§5.5, Theorem 1 (the concept, not the token, is read out: an extension)"),
    Claim("hijack-defence", "Scaling those heads down at test time lowers the efficacy score of facts the model knows, "
          "at a small cost to clean recall", "§5.5 (a first defence: an extension)"),
)

CLAIMS_BY_ID: dict[str, Claim] = {c.id: c for c in CLAIMS}


def mean_se(values: Sequence[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (0 for a single value)."""
    from scipy.stats import sem

    vals = [float(v) for v in values]
    if not vals:
        return float("nan"), float("nan")
    return sum(vals) / len(vals), (float(sem(vals)) if len(vals) > 1 else 0.0)


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    mean, se = mean_se(values)
    return mean, se * math.sqrt(max(len(values), 1))


def exceeds(values: Sequence[float], threshold: float = 0.0, n_se: float = 2.0) -> tuple[bool, str]:
    """Is mean(values) > threshold + n_se standard errors? Returns the verdict and the numbers."""
    mean, se = mean_se(values)
    ok = mean > threshold + n_se * se
    return ok, f"mean {mean:+.3f} ± {se:.3f} SE (n = {len(values)})"


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (average ranks for ties)."""
    from scipy.stats import spearmanr

    if len(x) < 2:
        return float("nan")
    return float(spearmanr(x, y).statistic)


def fmt(value: float, digits: int = 3) -> str:
    return "nan" if value != value else f"{value:.{digits}f}"
