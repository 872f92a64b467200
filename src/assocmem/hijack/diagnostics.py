"""Inside a real LM under context hijacking: the synthetic theory's three parts, measured.

The paper explains hijacking with a one-layer transformer in which attention gathers the context
tokens that share the answer's cluster (§5.4, "attention selects"), the value matrix W_V acts as an
associative memory read through the unembedding (§5.1), and trained embeddings are low-rank (§5.3,
Lemma 5: an eigen-gap between top and bottom singular values). Three diagnostics look for the same
things in any Hugging Face causal LM (GPT-2, Llama, Gemma/Gemma 3 layouts and the others listed in
`_BLOCKS` / `_LN_FINAL`), on CPU or GPU, batched over prompts with no loop over tokens:

- `attention_to_distractors`: per layer, the attention mass that the answer (last) position puts on
  the prepended distractor sentences, averaged over heads and prompts, against n;
- `logit_lens`: per layer, log P(target_true) and log P(target_false) read from the residual stream
  at the last position through the model's own final norm and unembedding: where the false target
  takes over;
- `embedding_spectrum`: singular values of the token embedding W_E, its effective rank and eigen-gap.

Both forward diagnostics come from one pass, `trace_last_position`, which keeps only the last
position of each prompt (its residual stream after every block and its attention pattern).

Conventions. Residual-stream index `layer` in the lens counts the blocks applied: 0 is the
embedding output (TransformerLens `hook_embed`, scaled by sqrt(d_model) in Gemma), l is
`blocks.{l-1}.hook_resid_post`; the last one read through the final norm is exactly the model's own
logits (tested). Attention `layer` is the block index (0-based). Targets are read at their first
token, " " + target tokenised after the prompt exactly as the scorer does (`first_token_ids`).
Gemma 2/3 `final_logit_softcapping` is applied after the unembedding when set, as the model does;
Gemma's sqrt(d_model) embedding scale needs nothing: it is part of the residual stream the hooks
read, and the final RMSNorm makes the lens blind to the overall scale.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from assocmem import linalg
from assocmem.errors import ConfigError
from assocmem.linalg import effective_rank  # noqa: F401  (re-exported for diagnose)
from assocmem.models.anatomy import find_parts
from assocmem.models.llm import LoadedLM
from assocmem.models.readout import unembed

# ---------------------------------------------------------------------------------------------
# Tokens: one encoding for the forward pass and for the masks, so positions always agree.

def _encode(tokenizer, text: str) -> tuple[list[int], list[tuple[int, int]] | None, list[int]]:
    """(input_ids, character offsets or None, special-token flags), with the tokenizer's own BOS policy."""
    try:
        enc = tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
        offsets = [tuple(o) for o in enc["offset_mapping"]]
    except (NotImplementedError, TypeError, ValueError):  # slow tokenizers have no offsets
        enc = tokenizer(text, return_special_tokens_mask=True)
        offsets = None
    return list(enc["input_ids"]), offsets, list(enc["special_tokens_mask"])


def token_mask(tokenizer, text: str, spans: Sequence[tuple[int, int]]) -> torch.Tensor:
    """(pos,) bool: the tokens of `tokenizer(text)` that overlap any character span [start, end).

    Special tokens (BOS) never count. Uses the fast tokenizer's offset mapping; without one, each
    span's prefix is tokenised alone and its tokens counted (exact for tokenizers that do not merge
    across the span boundary).
    """
    ids, offsets, special = _encode(tokenizer, text)
    mask = torch.zeros(len(ids), dtype=torch.bool)
    for start, end in spans:
        if offsets is not None:
            for pos, (a, b) in enumerate(offsets):
                if not special[pos] and b > a and a < end and b > start:
                    mask[pos] = True
        else:
            n_special = next((i for i, s in enumerate(special) if not s), len(ids))
            lo = n_special + len(tokenizer(text[:start], add_special_tokens=False)["input_ids"])
            hi = n_special + len(tokenizer(text[:end], add_special_tokens=False)["input_ids"])
            mask[lo:hi] = True
    return mask


def distractor_span(hijacked_prompt: str, base_prompt: str) -> tuple[int, int]:
    """Characters [0, end) of `hijacked_prompt` that are prepended distractor sentences.

    `base_prompt` is the same record's prompt with n = 0; the hijacked prompt must end with it. The
    separator between the sentences and the prompt is not counted.
    """
    if not hijacked_prompt.endswith(base_prompt):
        raise ConfigError(f"diagnostics: hijacked prompt {hijacked_prompt!r} does not end with its n=0 prompt "
                          f"{base_prompt!r}")
    prefix = hijacked_prompt[: len(hijacked_prompt) - len(base_prompt)]
    return 0, len(prefix.rstrip())


def distractor_token_mask(tokenizer, hijacked_prompt: str, base_prompt: str) -> torch.Tensor:
    """(pos,) bool: which tokens of `hijacked_prompt` belong to the prepended distractor sentences."""
    return token_mask(tokenizer, hijacked_prompt, [distractor_span(hijacked_prompt, base_prompt)])


def word_spans(text: str, word: str, end: int | None = None) -> list[tuple[int, int]]:
    """Whole-word, case-insensitive occurrences of `word` in text[:end], as character spans."""
    pattern = re.compile(rf"(?<!\w){re.escape(word)}(?!\w)", re.IGNORECASE)
    return [m.span() for m in pattern.finditer(text[:end] if end is not None else text)]


def first_token_ids(tokenizer, prompts: Sequence[str], targets: Sequence[str]) -> list[int]:
    """Per prompt, the id of the first token of " " + target as the scorer tokenises it: context and
    continuation together, then split (assocmem.hijack.scoring.encode_pairs), so the lens's last
    layer reads exactly the scorer's first-token log-probability."""
    from assocmem.hijack.scoring import encode_pairs

    pairs = encode_pairs(tokenizer, list(prompts), [" " + str(t).strip() for t in targets])
    ids = []
    for (_, continuation), target in zip(pairs, targets):
        if not continuation:
            raise ConfigError(f"diagnostics: target {target!r} tokenizes to nothing")
        ids.append(int(continuation[0]))
    return ids


# ---------------------------------------------------------------------------------------------
# One forward pass, last position only

@dataclass
class LastPositionTrace:
    """The last position of each prompt, after every block; prompts in the order given."""

    resid: torch.Tensor              # (prompt, layer+1, d_model): [:, 0] embeddings, [:, l] after block l-1
    pattern: torch.Tensor | None     # (prompt, layer, head, key_pos) last query's attention; 0 past the prompt
    lengths: torch.Tensor            # (prompt,) number of tokens


def _first_tensor(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@torch.inference_mode()
def trace_last_position(lm: LoadedLM, prompts: Sequence[str] | None, batch_tokens: int | None = None,
                        attention: bool = True, groups: Sequence[object] | None = None,
                        encoded: Sequence[Sequence[int]] | None = None) -> LastPositionTrace:
    """Run `lm` on `prompts` and keep the last position's residual stream and attention pattern.

    `encoded`: the prompts' token ids as a caller already has them (special prefix included), instead of
    `prompts`, so that the trace reads exactly the tokens another computation on the same prompts reads.

    Through the scorer's packed engine (models.packing, models.packed_forward): prompts of one group
    (e.g. one record × scheme at several n) share the sentences they repeat, every prompt keeps its
    own positions, and the original order is kept. The residual stream is captured with forward
    hooks on the blocks rather than `output_hidden_states`, whose last entry is already normalised
    in transformers. Attention weights come from eager attention, the only kind that returns them.
    """
    from assocmem.hijack.scoring import DEFAULT_ROW_TOKENS, pad_token, resolve_batch_tokens
    from assocmem.models.packed_forward import forward_rows
    from assocmem.models.packing import iter_layouts, plan_batches

    if encoded is None:
        encoded = [_encode(lm.tokenizer, p)[0] for p in prompts]
    encoded = [tuple(e) for e in encoded]
    lengths = torch.tensor([len(e) for e in encoded])
    budget = resolve_batch_tokens(batch_tokens, lm.device)
    plan = plan_batches(encoded, groups, None, budget, DEFAULT_ROW_TOKENS)
    resid: list[torch.Tensor | None] = [None] * len(encoded)
    T_max = int(lengths.max())
    pattern = None
    for packed, members in iter_layouts(encoded, plan, pad_token(lm.tokenizer)):
        reads = [packed.last_columns(i, 1) for i in members]
        out = forward_rows(lm, packed, np.array([r for r, _ in reads]), np.concatenate([c for _, c in reads]),
                           resid=True, attention=attention)
        for k, i in enumerate(members):
            resid[i] = out.resid[k].cpu()
        if attention:
            # each read query's weights over its own prompt's columns, in the prompt's token order
            view = torch.zeros(len(members), T_max, dtype=torch.long)
            for k, i in enumerate(members):
                view[k, : len(encoded[i])] = torch.from_numpy(packed.columns(i, np.arange(len(encoded[i])))[1])
            valid = torch.arange(T_max)[None, :] < lengths[members][:, None]             # (R, T_max)
            per_layer = [a.cpu().gather(2, view[:, None, :].expand(-1, a.shape[1], -1)) * valid[:, None, :]
                         for a in out.attention]                                     # each (R, head, T_max)
            if pattern is None:
                pattern = torch.zeros(len(encoded), len(per_layer), per_layer[0].shape[1], T_max)
            pattern[members] = torch.stack(per_layer, dim=1)
    return LastPositionTrace(resid=torch.stack(resid), pattern=pattern, lengths=lengths)


@torch.inference_mode()
def lens_logprobs(lm: LoadedLM, resid: torch.Tensor, token_ids: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """Logit lens: log-softmax of ln_final(resid) @ W_U (softcapped if the model is) at `token_ids`.

    resid: (prompt, layer+1, d_model); token_ids: (prompt, k) → (prompt, layer+1, k). Chunked over
    residual vectors so a 262k vocabulary never materialises more than `chunk` rows of logits.
    """
    parts = find_parts(lm.model)
    P, L1, d = resid.shape
    device = parts.W_U.weight.device
    flat = resid.reshape(P * L1, d)
    ids = token_ids.repeat_interleave(L1, dim=0)  # (prompt*(layer+1), k)
    out = []
    for s in range(0, flat.shape[0], chunk):
        logits = unembed(parts, flat[s:s + chunk], normed=False)  # (chunk, d_vocab)
        # gather - logsumexp: reads the chunk of logits once more instead of writing a log_softmax copy
        picked = logits.gather(1, ids[s:s + chunk].to(device)) - torch.logsumexp(logits, dim=-1, keepdim=True)
        out.append(picked.cpu())
    return torch.cat(out).reshape(P, L1, -1)


@torch.inference_mode()
def final_logprobs(lm: LoadedLM, resid: torch.Tensor) -> torch.Tensor:
    """(prompt, d_vocab) next-token log-probabilities from the last block's output (= the model's)."""
    return torch.log_softmax(unembed(find_parts(lm.model), resid[:, -1], normed=False), dim=-1).cpu()


def attention_mass(pattern: torch.Tensor, key_masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """(prompt, layer, head): attention of the last position summed over the masked keys."""
    mask = torch.zeros(pattern.shape[0], pattern.shape[-1])
    for i, m in enumerate(key_masks):
        mask[i, : m.shape[0]] = m.float()
    return torch.einsum("plhk,pk->plh", pattern, mask)


# ---------------------------------------------------------------------------------------------
# Tables

def _sem(x: np.ndarray) -> float:
    return float(x.std(ddof=1) / math.sqrt(len(x))) if len(x) > 1 else float("nan")


def attention_table(trace: LastPositionTrace, distractor_masks: Sequence[torch.Tensor], ns: Sequence[int],
                    extra_masks: dict[str, Sequence[torch.Tensor]] | None = None) -> pd.DataFrame:
    """Per (layer, n): mean attention mass on distractor tokens, with baselines.

    Columns: layer, n, n_prompts, mean_mass (mean over heads and prompts), sem_mass (over prompts),
    max_head_mass / max_head (the head with the largest mean mass: §5.4 predicts selection by some
    heads, not all), uniform_mass (mass if attention were uniform over the visible positions: what
    "gathers" has to beat), sink_mass (mass on position 0, the BOS attention sink), and one
    `mean_<name>_mass` per entry of `extra_masks` (e.g. the false target's own tokens).
    """
    mass = attention_mass(trace.pattern, distractor_masks)  # (prompt, layer, head)
    n_keys = torch.tensor([float(m.sum()) for m in distractor_masks])
    uniform = (n_keys / trace.lengths.float()).numpy()
    sink = trace.pattern[..., 0].mean(dim=2).numpy()  # (prompt, layer)
    extra = {k: attention_mass(trace.pattern, v).mean(dim=2).numpy() for k, v in (extra_masks or {}).items()}
    ns = np.asarray(ns)
    rows = []
    for n in sorted(set(ns.tolist())):
        sel = np.flatnonzero(ns == n)
        per_head = mass[sel].mean(dim=0)  # (layer, head)
        for layer in range(mass.shape[1]):
            m = mass[sel, layer].mean(dim=1).numpy()
            row = {"layer": layer, "n": n, "n_prompts": len(sel), "mean_mass": float(m.mean()),
                   "sem_mass": _sem(m), "max_head_mass": float(per_head[layer].max()),
                   "max_head": int(per_head[layer].argmax()), "uniform_mass": float(uniform[sel].mean()),
                   "sink_mass": float(sink[sel, layer].mean())}
            row.update({f"mean_{k}_mass": float(v[sel, layer].mean()) for k, v in extra.items()})
            rows.append(row)
    return pd.DataFrame(rows)


def lens_table(logp_true: torch.Tensor, logp_false: torch.Tensor, ns: Sequence[int]) -> pd.DataFrame:
    """Per (layer, n) from (prompt, layer+1) lens log-probs: mean log-probs, mean_diff = mean of
    log P(false) - log P(true) (the normaliser cancels: a logit difference), SEMs over prompts, and
    false_preferred_share, the share of prompts with P(false) > P(true) at that layer."""
    ns = np.asarray(ns)
    t, f = logp_true.numpy(), logp_false.numpy()
    rows = []
    for n in sorted(set(ns.tolist())):
        sel = np.flatnonzero(ns == n)
        for layer in range(t.shape[1]):
            a, b = t[sel, layer], f[sel, layer]
            rows.append({"layer": layer, "n": n, "n_prompts": len(sel), "logp_true": float(a.mean()),
                         "logp_false": float(b.mean()), "sem_true": _sem(a), "sem_false": _sem(b),
                         "mean_diff": float((b - a).mean()), "sem_diff": _sem(b - a),
                         "false_preferred_share": float((b > a).mean())})
    return pd.DataFrame(rows)


def attention_to_distractors(lm: LoadedLM, prompts: Sequence[str], distractor_masks: Sequence[torch.Tensor],
                             ns: Sequence[int], batch_tokens: int | None = None) -> pd.DataFrame:
    """Per layer and n, the attention mass the answer position puts on the distractor tokens (§5.4).

    `distractor_masks[i]` marks prompt i's distractor tokens (`distractor_token_mask`), `ns[i]` its
    number of prepended sentences. See `attention_table` for the columns.
    """
    trace = trace_last_position(lm, prompts, batch_tokens=batch_tokens, attention=True)
    return attention_table(trace, distractor_masks, ns)


def logit_lens(lm: LoadedLM, prompts: Sequence[str], target_true_ids: Sequence[int], target_false_ids: Sequence[int],
               ns: Sequence[int], batch_tokens: int | None = None) -> pd.DataFrame:
    """Per layer and n, mean log P(target_true) and log P(target_false) read through the final norm
    and unembedding at the last position (layer 0 = embeddings, last = the model's own output)."""
    trace = trace_last_position(lm, prompts, batch_tokens=batch_tokens, attention=False)
    ids = torch.tensor([list(target_true_ids), list(target_false_ids)]).T
    logp = lens_logprobs(lm, trace.resid, ids)
    return lens_table(logp[..., 0], logp[..., 1], ns)


# ---------------------------------------------------------------------------------------------
# Embedding geometry (§5.3)

def eigengap(s, top_k: int = 64) -> tuple[int, float]:
    """(k, σ_k / σ_{k+1}) for the largest consecutive ratio among the top `top_k` singular values:
    k values sit above the gap (Lemma 5 predicts about m + 2 for the synthetic embedding)."""
    s = torch.tensor(np.array(s, dtype=np.float64))
    if len(s) < 2:
        return len(s), float("nan")
    k, ratio = linalg.eigengap(s, top_k)
    return int(k), float(ratio)


def embedding_spectrum(lm: LoadedLM) -> pd.DataFrame:
    """Singular value spectrum of the token embedding W_E (model.get_input_embeddings().weight).

    Columns: index (1-based), singular_value, singular_value_centered (of W_E minus its mean row: a
    shared offset of all embeddings shows as one large σ_1 that is not "low rank" structure). These
    are the stored weights: Gemma multiplies the
    looked-up rows by sqrt(d_model) in the forward pass, which scales every σ alike and leaves the
    effective rank and eigen-gap unchanged.
    """
    W_E = lm.model.get_input_embeddings().weight  # (d_vocab, d_model)
    if W_E.shape[0] >= W_E.shape[1]:  # one pass over the 262k rows serves both spectra
        gram, total, rows = linalg.gram_and_sums(W_E, 16384)
        s, s_centered = linalg.sqrt_eigenvalues(gram), linalg.sqrt_eigenvalues(gram - torch.outer(total, total) / rows)
    else:
        s, s_centered = linalg.gram_singular_values(W_E), linalg.gram_singular_values(W_E, center=True)
    return pd.DataFrame({"index": np.arange(1, len(s) + 1), "singular_value": s.numpy(),
                         "singular_value_centered": s_centered.numpy()})
