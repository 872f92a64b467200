"""Log-probabilities of " " + target after a prompt, for many prompts at once.

The contract (as lm-evaluation-harness `loglikelihood`): for prompt p and target t, return
log P(" " + t | p) under the model, where the space belongs to the continuation and p is scored
with the tokenizer's own special prefix (Gemma/Llama prepend BOS; GPT-2 adds nothing).

    mode="first-token":  log P(first token of " "+t | p)              both targets read at one position
    mode="full-target":  sum_k log P(token_k of " "+t | p, tokens_<k)  each target teacher-forced
    mode="mean-target":  the same sum divided by the target's token count: ROME's efficacy rule
                         (`test_batch_prediction` compares mean per-token NLLs)

In every mode the scorer also returns the rank of each target's first token among the model's next
tokens at the prompt's end (1 + the number of logits above it; 1 = the model's top-1 answer): whether
the model knows the fact with no distractor, and whether a hijack makes the false target its answer.

Tokenisation: context and continuation are tokenised together and split at the context's length
(lm-eval `_encode_pair`), because tokenising " Paris" alone can differ from how it tokenises after
the prompt. Identical requests (e.g. n = 0 under every scheme) are scored once.

Engine: requests of one group (one record × scheme, all n) are packed as one segment, the longest
request the trunk and every other one only its tokens past the prefix it shares with the trunk
(`models.packing`); rows of segments go through the model in batches of at most `batch_tokens`
tokens (`models.packed_forward`). The numbers are those of each prompt fed alone: positions are the
prompt's own and a token sees exactly the tokens its prompt has before it.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from assocmem.config import as_tuple, check_choice, check_int_range, option
from assocmem.errors import ConfigError, bad_option
from assocmem.models.packed_forward import forward_rows, read_positions, to_device, token_scores
from assocmem.models.packing import PackingStats, Segment, iter_layouts, plan_batches, share_prefixes
from assocmem.models.llm import LoadedLM

MODES = ("first-token", "full-target", "mean-target")
# Tokens per forward when --batch-tokens is not given, by device type: the CPU gains nothing from more,
# a GPU needs tens of thousands to fill its matrix units.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 65536}
DEFAULT_ROW_TOKENS = 512


@dataclass(frozen=True)
class ScoringConfig:
    """How two targets are compared (the contract above)."""

    mode: str = option("first-token", "first-token | full-target (sum of the target's token log-probs) | "
                                      "mean-target (ROME's rule: mean per-token log-prob).")
    extra_modes: tuple[str, ...] = option((), "Also score these modes, from the same teacher-forced forward "
                                              "(e.g. --extra-modes mean-target).")

    def __post_init__(self) -> None:
        object.__setattr__(self, "extra_modes", as_tuple("extra_modes", self.extra_modes))
        check_choice("mode", self.mode, MODES)
        for extra in self.extra_modes:
            check_choice("extra_modes", extra, MODES)
        if self.mode in self.extra_modes:
            raise ConfigError(f"extra_modes={list(self.extra_modes)!r} repeats `mode`={self.mode!r}",
                              field="extra_modes")

    @property
    def planning_mode(self) -> str:
        """first-token when that is all that is asked, else full-target (which gives every mode)."""
        return "first-token" if {self.mode, *self.extra_modes} == {"first-token"} else "full-target"


@dataclass(frozen=True)
class Batching:
    """How much one packed forward holds (results do not depend on it)."""

    batch_tokens: int | None = option(None, "Tokens (not prompts) per forward: packed rows × row length. "
                                            "Default 2048 on CPU, 65536 on GPU.")
    row_tokens: int = option(DEFAULT_ROW_TOKENS, "Length of a packed row (a record's prompts for every n share "
                                                 "one segment; a longer segment gets a row of its own).")

    def __post_init__(self) -> None:
        if self.batch_tokens is not None:
            check_int_range("batch_tokens", self.batch_tokens, 1)
        check_int_range("row_tokens", self.row_tokens, 1)


@dataclass
class ScoringPlan:
    """Deduplicated requests for N (prompt, target_true, target_false) triples.

    requests[r]  token ids fed to the model (prefix + context [+ continuation minus its last token])
    gathers[r]   continuations scored at the end of request r: each a tuple of token ids whose
                 log-probs are read at the last len(g) positions (summed, and the first kept: a
                 teacher-forced plan gives all three modes from one forward)
    groups[r]    packing key: requests with one key share their common prefix in one segment
    expected[r]  tokens request r must share with its group's trunk to be packed (else it is laid
                 out alone, and counted in `fallback`)
    index[i][j]  (r, g) for triple i, target j (0 = true, 1 = false)
    """

    requests: list[tuple[int, ...]] = field(default_factory=list)
    gathers: list[list[tuple[int, ...]]] = field(default_factory=list)
    groups: list[Hashable] = field(default_factory=list)
    expected: list[int] = field(default_factory=list)
    index: list[tuple[tuple[int, int], tuple[int, int]]] = field(default_factory=list)
    mode: str = "first-token"

    def prompt_ids(self, i: int) -> tuple[int, ...]:
        """The ids of triple i's prompt as fed (prefix + context, no target token): what a reader of the
        prompt's last position, e.g. its top next tokens, must see."""
        (r, g), _ = self.index[i]
        request, gather = self.requests[r], self.gathers[r][g]
        return request[:len(request) - len(gather) + 1]

    def segments(self) -> tuple[list[Segment], list[int]]:
        """(segments, requests that fell back to their own segment)."""
        return share_prefixes(self.requests, self.groups, self.expected)


def special_prefix(tokenizer) -> list[int]:
    """The ids a tokenizer puts before the text by itself (BOS for Gemma/Llama, nothing for GPT-2)."""
    bare = tokenizer("a", add_special_tokens=False)["input_ids"]
    full = tokenizer("a")["input_ids"]
    for k in range(len(full) - len(bare) + 1):
        if full[k:k + len(bare)] == bare:
            return list(full[:k])
    return []


def encode_pairs(tokenizer, contexts: Sequence[str], continuations: Sequence[str]) -> list[tuple[list[int], list[int]]]:
    """(context ids without prefix, continuation ids) per pair, tokenised together then split.

    Trailing spaces of a context move to its continuation (lm-eval `_encode_pair`).
    """
    ctxs, wholes = [], []
    for context, continuation in zip(contexts, continuations, strict=True):
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation = context[-n_spaces:] + continuation
            context = context[:-n_spaces]
        ctxs.append(context)
        wholes.append(context + continuation)
    # Each distinct context once: a prompt is scored against two targets (and repeats across callers),
    # and tokenising is most of the CPU time of a GPU run.
    distinct = list(dict.fromkeys(ctxs))
    ids_of = dict(zip(distinct, tokenizer(distinct, add_special_tokens=False)["input_ids"]))
    whole_ids = tokenizer(wholes, add_special_tokens=False)["input_ids"]
    return [(list(ids_of[c]), list(w[len(ids_of[c]):])) for c, w in zip(ctxs, whole_ids)]


def plan_requests(tokenizer, prompts: Sequence[str], targets_true: Sequence[str], targets_false: Sequence[str],
                  mode: str = "first-token", groups: Sequence[Hashable] | None = None,
                  shared: Sequence[str] | None = None) -> ScoringPlan:
    """Tokenise and deduplicate; ConfigError naming the item if a target is empty or tokenizes to nothing.

    groups[i]: packing key of triple i (e.g. (case_id, scheme)); None: every prompt alone.
    shared[i]: the leading text of prompt i that its group's longest prompt repeats (the distractor
    sentences, "" for n = 0). Checked here, item by item: the prompt's ids must start with that text's
    ids, else the item is laid out alone (the one-prompt path).
    """
    if mode not in MODES:
        raise bad_option("mode", mode, "one of " + ", ".join(MODES))
    if not (len(prompts) == len(targets_true) == len(targets_false)):
        raise ValueError("prompts, targets_true and targets_false must have the same length")
    prefix = special_prefix(tokenizer)
    n = len(prompts)
    for i, t in enumerate(list(targets_true) + list(targets_false)):
        if not str(t).strip():
            raise ConfigError(f"target {t!r} of item {i % max(n, 1)} is empty")
    pairs = encode_pairs(tokenizer, list(prompts) * 2, [" " + str(t).strip() for t in list(targets_true) + list(targets_false)])
    expected = _expected_shared(tokenizer, pairs[:n], shared, len(prefix))
    plan, req_of = ScoringPlan(mode=mode), {}

    def add(ids: tuple[int, ...], gather: tuple[int, ...], group: Hashable, shares: int) -> tuple[int, int]:
        r = req_of.setdefault(ids, len(plan.requests))
        if r == len(plan.requests):
            plan.requests.append(ids)
            plan.gathers.append([])
            plan.groups.append(group)
            plan.expected.append(shares)
        if gather not in plan.gathers[r]:
            plan.gathers[r].append(gather)
        return r, plan.gathers[r].index(gather)

    for i in range(n):
        slots = []
        group = groups[i] if groups is not None else ("item", i)
        for j, (ctx, cont) in enumerate((pairs[i], pairs[n + i])):
            if not cont:
                which = ("target_true", "target_false")[j]
                raise ConfigError(f"{which} {(targets_true, targets_false)[j][i]!r} of item {i} tokenizes to nothing")
            if mode == "first-token":
                slots.append(add(tuple(prefix + ctx), (cont[0],), group, expected[i]))
            else:  # feed context + continuation minus its last token; read len(cont) positions
                slots.append(add(tuple(prefix + ctx + cont[:-1]), tuple(cont), group, expected[i]))
        plan.index.append((slots[0], slots[1]))
    return plan


def _expected_shared(tokenizer, pairs, shared: Sequence[str] | None, n_prefix: int) -> list[int]:
    """Per item: prefix + the shared text's tokens, or a length no request reaches (not packable) when
    the prompt's own ids do not start with them."""
    if shared is None:
        return [n_prefix] * len(pairs)
    texts = [s.rstrip() for s in shared]
    ids = tokenizer([t for t in texts if t], add_special_tokens=False)["input_ids"] if any(texts) else []
    out, k = [], 0
    for (ctx, _), text in zip(pairs, texts):
        if not text:
            out.append(n_prefix)
            continue
        s = ids[k]
        k += 1
        out.append(n_prefix + len(s) if ctx[:len(s)] == list(s) else 1 << 30)
    return out


def resolve_batch_tokens(batch_tokens: int | None, device) -> int:
    """`batch_tokens`, or the default for the device type."""
    if batch_tokens is None:
        return DEFAULT_BATCH_TOKENS.get(torch.device(device).type, DEFAULT_BATCH_TOKENS["cuda"])
    check_int_range("batch_tokens", batch_tokens, 1)
    return batch_tokens


def score_plan(lm: LoadedLM, plan: ScoringPlan, batch_tokens: int | None = None, row_tokens: int = DEFAULT_ROW_TOKENS,
               progress: bool = False, shard: tuple[int, int] = (0, 1), bar=None,
               stats: PackingStats | None = None) -> dict[int, list[tuple[float, float, int]]]:
    """Run the forwards of `plan` (this rank's share of the segments, balanced by tokens: `packing.rank_share`).

    Returns {request index: [(summed log-prob, first token's log-prob, first token's rank) per gather]}
    (rank 1 = the model's top-1 next token at the read position). The batches' results stay on the
    device until every batch is queued and are read back once (one host synchronisation per call, not
    per batch). `bar`: an outer tqdm bar to advance (per request) instead of a bar of its own; `stats`:
    a PackingStats to add this call's counts to. `queue_plan(...).result()` is the same in two steps.
    """
    return queue_plan(lm, plan, batch_tokens, row_tokens, progress, shard, bar, stats).result()


@dataclass
class QueuedPlan:
    """A plan's forwards queued on the device, not yet read back: `result()` is the one host
    synchronisation. A caller can queue the next plan's forwards first, so the device never waits
    while the host turns this one's results into rows and files."""

    plan: ScoringPlan
    parts: list[torch.Tensor]
    order: list[int]

    def result(self) -> dict[int, list[tuple[float, float, int]]]:
        values = _to_host(self.parts)
        out: dict[int, list[tuple[float, float, int]]] = {}
        s = 0
        for r in self.order:
            out[r] = [(total, first, int(rank)) for total, first, rank in values[s:s + len(self.plan.gathers[r])]]
            s += len(self.plan.gathers[r])
        return out


def queue_plan(lm: LoadedLM, plan: ScoringPlan, batch_tokens: int | None = None, row_tokens: int = DEFAULT_ROW_TOKENS,
               progress: bool = False, shard: tuple[int, int] = (0, 1), bar=None,
               stats: PackingStats | None = None) -> QueuedPlan:
    """`score_plan`'s forwards, queued (see there); the results are read back by `.result()`."""
    budget = resolve_batch_tokens(batch_tokens, lm.device)
    check_int_range("row_tokens", row_tokens, 1)
    batches = plan_batches(plan.requests, plan.groups, plan.expected, budget, row_tokens, shard)
    if stats is not None:
        stats.add(batches.stats)
    own_bar = progress and bar is None
    if own_bar:
        from tqdm.auto import tqdm

        bar = tqdm(total=batches.stats.requests, desc="scoring", unit="prompt", leave=False)
    parts, order = [], []
    for packed, members in iter_layouts(plan.requests, batches, pad_token(lm.tokenizer)):
        parts.append(_score_rows(lm, plan, packed, members))
        order += members
        if bar is not None:
            bar.update(len(members))
    if own_bar:
        bar.close()
    return QueuedPlan(plan, parts, order)


def _to_host(parts: list[torch.Tensor]) -> list[list[float]]:
    """Every batch's (gathers, 3) results as host lists: the one synchronisation of `score_plan`."""
    return torch.cat(parts).tolist() if parts else []


def pad_token(tokenizer) -> int:
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


def _score_rows(lm: LoadedLM, plan: ScoringPlan, packed, members: list[int]) -> torch.Tensor:
    """One packed forward: (gathers of the members in order, 3) float64 on the device, per gather its
    summed log-prob, its first token's log-prob and that token's rank. Queued, not read back."""
    counts = [max(len(g) for g in plan.gathers[r]) for r in members]
    read_r, read_c = read_positions(packed, members, counts)
    # Each gather g of request r reads the last len(g) of r's read positions, one token each.
    read_idx, tokens, which, firsts = [], [], [], []
    start, n_gathers = 0, 0
    for r, k in zip(members, counts):
        for g in plan.gathers[r]:
            firsts.append(len(tokens))
            read_idx.extend(range(start + k - len(g), start + k))
            tokens.extend(g)
            which.extend([n_gathers] * len(g))
            n_gathers += 1
        start += k
    hidden = forward_rows(lm, packed, read_r, read_c).hidden
    is_first = np.zeros(len(tokens), dtype=bool)
    is_first[firsts] = True                          # only first tokens are ranked (the known rule, the flip)
    logp, rank = token_scores(lm, hidden, np.array(read_idx, dtype=np.int64), np.array(tokens, dtype=np.int64),
                              ranked=is_first)
    sums = torch.zeros(n_gathers, dtype=torch.float64, device=logp.device)
    sums.index_add_(0, to_device(np.array(which, dtype=np.int64), logp.device), logp)
    first = to_device(np.array(firsts, dtype=np.int64), logp.device)
    return torch.stack([sums, logp[first], rank[first].double()], dim=1)


def collect(plan: ScoringPlan, results: dict[int, list[tuple]],
            mode: str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(logp_true, logp_false), each (N,), in the original order of the triples, under `mode`
    (default: the plan's): first-token reads the first token of each gather, full-target the sum,
    mean-target the sum over the target's token count. A plan made for first-token mode gives
    first-token values only."""
    mode = mode or plan.mode
    if mode not in MODES:
        raise bad_option("mode", mode, "one of " + ", ".join(MODES))
    if mode != "first-token" and plan.mode == "first-token":
        raise ValueError("a first-token plan has no full-target values: plan with mode='full-target'")

    def value(r: int, g: int) -> float:
        total, first = results[r][g][:2]
        if mode == "first-token":
            return first
        return total / len(plan.gathers[r][g]) if mode == "mean-target" else total

    vals = torch.tensor([[value(r, g) for (r, g) in pair] for pair in plan.index], dtype=torch.float64)
    vals = vals.reshape(len(plan.index), 2)
    return vals[:, 0].clone(), vals[:, 1].clone()


def collect_ranks(plan: ScoringPlan, results: dict[int, list[tuple[float, float, int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(rank_true, rank_false), each (N,) int64 in the original order of the triples: the rank of each
    target's first token among the model's next tokens at the read position (1 = top-1), in every mode."""
    ranks = torch.tensor([[results[r][g][2] for (r, g) in pair] for pair in plan.index], dtype=torch.int64)
    ranks = ranks.reshape(len(plan.index), 2)
    return ranks[:, 0].clone(), ranks[:, 1].clone()


@dataclass(frozen=True)
class Scores:
    """Both targets' log-probabilities (under the mode asked) and their first tokens' ranks, (N,) each."""

    logp_true: torch.Tensor
    logp_false: torch.Tensor
    rank_true: torch.Tensor
    rank_false: torch.Tensor


def score_with_ranks(lm: LoadedLM, prompts: Sequence[str], targets_true: Sequence[str], targets_false: Sequence[str],
                     mode: str = "first-token", batch_tokens: int | None = None, progress: bool = False,
                     groups: Sequence[Hashable] | None = None, shared: Sequence[str] | None = None,
                     row_tokens: int = DEFAULT_ROW_TOKENS) -> Scores:
    """`score_targets` and the first tokens' ranks, from the same forwards."""
    plan = plan_requests(lm.tokenizer, prompts, targets_true, targets_false, mode, groups, shared)
    results = score_plan(lm, plan, batch_tokens=batch_tokens, row_tokens=row_tokens, progress=progress)
    return Scores(*collect(plan, results), *collect_ranks(plan, results))


def score_targets(lm: LoadedLM, prompts: Sequence[str], targets_true: Sequence[str], targets_false: Sequence[str],
                  mode: str = "first-token", batch_tokens: int | None = None, progress: bool = False,
                  groups: Sequence[Hashable] | None = None, shared: Sequence[str] | None = None,
                  row_tokens: int = DEFAULT_ROW_TOKENS) -> tuple[torch.Tensor, torch.Tensor]:
    """log P(" "+target_true | prompt) and log P(" "+target_false | prompt), each a float64 tensor (N,).

    `groups` / `shared` let prompts that repeat each other's leading sentences share them (see
    `plan_requests`); the numbers do not depend on them.
    """
    scores = score_with_ranks(lm, prompts, targets_true, targets_false, mode, batch_tokens, progress, groups, shared,
                              row_tokens)
    return scores.logp_true, scores.logp_false


def token_counts(plan: ScoringPlan) -> np.ndarray:
    """(N, 2) number of target tokens each triple's two scores cover (1 in first-token mode)."""
    return np.array([[len(plan.gathers[r][g]) for (r, g) in pair] for pair in plan.index], dtype=np.int64)
