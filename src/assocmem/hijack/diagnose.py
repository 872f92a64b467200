"""`assocmem hijack diagnose`: attention to the distractors, a logit lens of both targets and the
embedding spectrum inside a causal LM, on a CounterFact sample spread over the relations.

    result = run_diagnose(DiagnoseConfig.of(records=200, ns=(0, 1, 3)), "runs/diagnose")
    result.attention, result.logit_lens, result.embedding_spectrum, result.summary     # a DiagnoseResult

Writes, under its out folder (if one is given): attention.{parquet,csv,png}, logit_lens.{parquet,csv,png},
embedding_spectrum.{parquet,csv,png}, summary.json and config.json (see assocmem.hijack.diagnostics
for what each measures); `DiagnoseResult.load(folder)` reads them back.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from assocmem.config import Composed, check_int_range, int_tuple, option, read_config, save_config
from assocmem.errors import ConfigError
from assocmem.hijack import diagnostics as D
from assocmem.hijack.controls import load_selection
from assocmem.hijack.counterfact import CounterFactSelection
from assocmem.hijack.schemes import scheme_names
from assocmem.hijack.scoring import Batching
from assocmem.models.spec import ModelSpec
from assocmem.models.llm import LoadedLM


@dataclass(frozen=True)
class DiagnoseConfig(Composed):
    """What `assocmem hijack diagnose` runs; validated at construction, saved as config.json."""

    lm: ModelSpec = option(factory=ModelSpec)
    selection: CounterFactSelection = option(factory=lambda: CounterFactSelection(records=200))
    batching: Batching = option(factory=Batching)
    ns: tuple[int, ...] = option((0, 1, 3), "Numbers of prepended sentences, e.g. --n 0 1 3.", flag="--n")
    schemes: tuple[str, ...] = option(("not-think",), "Hijack schemes, e.g. --schemes not-think relation.")
    template: str | None = option(None, 'Sentence of scheme "template", e.g. "{subject} is not {target_false}."')
    top_k_gap: int = option(64, "Eigen-gap searched among the top k singular values.")

    def __post_init__(self):
        object.__setattr__(self, "ns", int_tuple("ns", self.ns, 0))
        object.__setattr__(self, "schemes", scheme_names(self.schemes, self.template))
        check_int_range("top_k_gap", self.top_k_gap, 1)


@dataclass
class _Prompts:
    case_id: list[int] = field(default_factory=list)
    scheme: list[str] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    true_id: list[int] = field(default_factory=list)
    false_id: list[int] = field(default_factory=list)
    masks: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))


def _build_prompts(lm: LoadedLM, records, config: DiagnoseConfig) -> tuple[_Prompts, list[tuple[object, str]]]:
    from assocmem.hijack.counterfact import BadRecord
    from assocmem.hijack.schemes import build_prompt, get_scheme

    schemes = {name: get_scheme(name, config.template) for name in config.schemes}
    out, skipped = _Prompts(), []
    for rec in records:
        try:
            built = [(name, n, build_prompt(rec, s, n), rec.filled_prompt) for name, s in schemes.items()
                     for n in config.ns]
            texts = [text for _, _, text, _ in built]
            try:
                ids = list(zip(D.first_token_ids(lm.tokenizer, texts, [rec.target_true] * len(texts)),
                               D.first_token_ids(lm.tokenizer, texts, [rec.target_false] * len(texts))))
            except ConfigError as err:
                raise BadRecord(rec.case_id, str(err).removeprefix("diagnostics: ")) from None
        except BadRecord as bad:
            if not config.selection.skip_bad:
                raise
            skipped.append((bad.case_id, bad.reason))
            continue
        for (scheme, n, text, base), (true_id, false_id) in zip(built, ids):
            start, end = D.distractor_span(text, base)
            out.case_id.append(rec.case_id)
            out.scheme.append(scheme)
            out.n.append(n)
            out.text.append(text)
            out.true_id.append(true_id)
            out.false_id.append(false_id)
            tok = lm.tokenizer
            out.masks["distractor"].append(D.token_mask(tok, text, [(start, end)]))
            out.masks["target_false"].append(D.token_mask(tok, text, D.word_spans(text, rec.target_false, end)))
            out.masks["target_true"].append(D.token_mask(tok, text, D.word_spans(text, rec.target_true, end)))
    return out, skipped


TABLES = ("attention", "logit_lens", "embedding_spectrum")


@dataclass
class DiagnoseResult:
    """What `run_diagnose` gives: per (scheme, layer, n) the attention to the distractors and the logit lens of
    both targets, the embedding's spectrum, the summary (the takeover layer, the attention peak, the
    embedding's effective rank and eigen-gap) and the config. `save`/`load` keep it in a folder."""

    attention: pd.DataFrame
    logit_lens: pd.DataFrame
    embedding_spectrum: pd.DataFrame
    summary: dict
    config: DiagnoseConfig | dict

    def save(self, folder: str | Path) -> Path:
        from assocmem.io import write_json, write_tables

        folder = Path(folder)
        write_tables(folder, {name: getattr(self, name) for name in TABLES}, csv=TABLES)
        save_config(self.config, folder / "config.json")
        write_json(folder / "summary.json", self.summary)
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "DiagnoseResult":
        from assocmem.io import read_json, read_tables

        folder = Path(folder)
        tables = read_tables(folder, TABLES)
        return cls(**tables, summary=read_json(folder / "summary.json"),
                   config=read_config(DiagnoseConfig, read_json(folder / "config.json")))


def run_diagnose(config: DiagnoseConfig, out_dir: str | Path | None = None,
                 lm: LoadedLM | None = None) -> DiagnoseResult:
    """Attention, logit lens and embedding spectrum on a stratified CounterFact sample; with `out_dir`,
    writes tables, PNGs, summary.json and config.json there.

    One forward pass per scheme serves both the attention and the lens tables. `lm` may be passed
    (a LoadedLM, or what `models.llm.as_lm` takes) to skip loading `config.lm`.
    """
    from assocmem.hijack import diagnostics_plots as plots
    from assocmem.models.llm import as_lm

    t0 = time.perf_counter()
    loaded, records = load_selection(config.selection)
    lm = as_lm(lm) if lm is not None else config.lm.load()
    D.find_parts(lm.model)  # fail on an unknown layout before any work
    t_load = time.perf_counter()
    prompts, skipped = _build_prompts(lm, records, config)
    if not prompts.text:
        raise ConfigError("diagnose: no usable records left (all skipped)")
    attention, lens, t_trace = [], [], 0.0
    for scheme in config.schemes:
        sel = [i for i, s in enumerate(prompts.scheme) if s == scheme]
        t = time.perf_counter()
        trace = D.trace_last_position(lm, [prompts.text[i] for i in sel], batch_tokens=config.batching.batch_tokens,
                                      groups=[prompts.case_id[i] for i in sel])
        t_trace += time.perf_counter() - t
        ns = [prompts.n[i] for i in sel]
        masks = {k: [v[i] for i in sel] for k, v in prompts.masks.items()}
        extra = {k: masks[k] for k in ("target_false", "target_true")}
        attention.append(D.attention_table(trace, masks["distractor"], ns, extra).assign(scheme=scheme))
        ids = torch.tensor([[prompts.true_id[i], prompts.false_id[i]] for i in sel])
        logp = D.lens_logprobs(lm, trace.resid, ids)
        lens.append(D.lens_table(logp[..., 0], logp[..., 1], ns).assign(scheme=scheme))
    t_forward = time.perf_counter()
    attention_df = pd.concat(attention, ignore_index=True)
    lens_df = pd.concat(lens, ignore_index=True)
    spectrum = D.embedding_spectrum(lm)
    s = spectrum["singular_value"].to_numpy()
    gap_k, gap_ratio = D.eigengap(s, config.top_k_gap)
    erank = D.effective_rank(s)
    s_c = spectrum["singular_value_centered"].to_numpy()
    gap_k_c, gap_ratio_c = D.eigengap(s_c, config.top_k_gap)
    t_spectrum = time.perf_counter()
    summary = {
        "model": lm.name, "records": len(records) - len(skipped), "prompts": len(prompts.text),
        "skipped": len(skipped), "skipped_examples": skipped[:20], "skipped_in_file": len(loaded.skipped),
        "relations": len({r.relation_id for r in records}),
        "takeover_layer": _takeover(lens_df),
        "peak_attention": _peak(attention_df),
        "embedding": {"shape": list(lm.model.get_input_embeddings().weight.shape), "effective_rank": erank,
                      "eigengap_k": gap_k, "eigengap_ratio": gap_ratio,
                      "effective_rank_centered": D.effective_rank(s_c), "eigengap_k_centered": gap_k_c,
                      "eigengap_ratio_centered": gap_ratio_c,
                      "embed_scale": float(getattr(lm.model.get_input_embeddings(), "scalar_embed_scale", 1.0))},
        "seconds": {"load": t_load - t0, "forward": t_trace, "lens_and_tables": t_forward - t_load - t_trace,
                    "spectrum": t_spectrum - t_forward,
                    "total": time.perf_counter() - t0},
    }
    result = DiagnoseResult(attention_df, lens_df, spectrum, summary, config)
    if out_dir is not None:   # only once the input is checked: a refused run leaves nothing
        out_dir = result.save(out_dir)
        plots.plot_attention(attention_df, out_dir / "attention.png", lm.name)
        plots.plot_logit_lens(lens_df, out_dir / "logit_lens.png", lm.name)
        plots.plot_spectrum(spectrum, out_dir / "embedding_spectrum.png", gap_k, erank, lm.name)
    return result


def _takeover(lens_df) -> dict:
    """Per scheme and n: `from_layer`, the layer from which on the false target leads significantly
    (mean of log P(false) - log P(true) above 0 by its 95% band) through the last layer (None when it
    does not lead at the end), and `largest_jump_layer`, where that mean rises most from one layer to
    the next (where the false target takes over; None unless it leads at the end)."""
    out: dict = defaultdict(dict)
    for (scheme, n), g in lens_df.groupby(["scheme", "n"]):
        g = g.sort_values("layer")
        diff = g["mean_diff"].to_numpy()
        leads = diff - 1.96 * np.nan_to_num(g["sem_diff"].to_numpy()) > 0
        behind = np.flatnonzero(~leads)
        start = None if not leads[-1] else int(g["layer"].iloc[behind[-1] + 1]) if len(behind) else 0
        jump = int(g["layer"].iloc[int(np.argmax(np.diff(diff))) + 1]) if start is not None and len(diff) > 1 else None
        out[scheme][int(n)] = {"from_layer": start, "largest_jump_layer": jump}
    return dict(out)


def _peak(attention_df) -> dict:
    """Per scheme and n > 0: the layer with the largest mean mass on distractors, and that mass."""
    out: dict = defaultdict(dict)
    for (scheme, n), g in attention_df[attention_df["n"] > 0].groupby(["scheme", "n"]):
        top = g.loc[g["mean_mass"].idxmax()]
        out[scheme][int(n)] = {"layer": int(top["layer"]), "mean_mass": float(top["mean_mass"]),
                               "uniform_mass": float(top["uniform_mass"])}
    return dict(out)
