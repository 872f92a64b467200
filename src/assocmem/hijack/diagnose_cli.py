"""`assocmem hijack diagnose` and `assocmem hijack try`: the pipelines and their thin CLI shells.

    assocmem hijack diagnose --model gemma3-270m --records 200 --n 0 1 3 --schemes not-think \\
        --counterfact ../shared/data/counterfact_reconstructed.json --out runs/diagnose
    assocmem hijack try "The Eiffel Tower is in the city of" --true Paris --false Chicago --max-n 5

`run_diagnose` writes, under its out folder: attention.{parquet,csv,png}, logit_lens.{parquet,csv,png},
embedding_spectrum.{parquet,csv,png}, summary.json and config.json (see assocmem.hijack.diagnostics
for what each measures). `try_prompt` is the paper's Fig. 1 for any fact a user types.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import typer
from typer.core import TyperCommand

from assocmem.config import check_int_range, save_config
from assocmem.errors import ConfigError, bad_option
from assocmem.hijack import diagnostics as D


# ---------------------------------------------------------------------------------------------
# diagnose

@dataclass(frozen=True)
class DiagnoseConfig:
    """What `assocmem hijack diagnose` runs; validated at construction, saved as config.json."""

    model: str = "gemma3-270m"             # bundled name, hub id, local dir or .gguf (load_causal_lm)
    counterfact: str | None = None         # CounterFact JSON; None = the official file (downloaded once)
    records: int = 200                     # stratified sample size: about records / #relations per relation
    ns: tuple[int, ...] = (0, 1, 3)        # numbers of prepended sentences
    schemes: tuple[str, ...] = ("not-think",)
    relations: tuple[str, ...] | None = None  # None = all relations in the file
    seed: int = 0                          # seeds the stratified sample
    device: str = "auto"
    dtype: str = "auto"                    # auto: float32 on CPU, the checkpoint's own dtype on GPU
    batch_tokens: int | None = None        # tokens per packed forward; None: by device
    skip_bad: bool = False                 # skip (and count) records a scheme cannot build
    template: str | None = None            # the user template of scheme "template"
    top_k_gap: int = 64                    # eigen-gap searched among the top k singular values

    def __post_init__(self):
        check_int_range("--records", self.records, 1)
        if self.batch_tokens is not None:
            check_int_range("--batch-tokens", self.batch_tokens, 1)
        check_int_range("--top-k-gap", self.top_k_gap, 1)
        if not self.ns:
            raise ConfigError("--n is invalid: give at least one n")
        for n in self.ns:
            check_int_range("--n", n, 0)
        if not self.schemes:
            raise ConfigError("--schemes is invalid: give at least one scheme")


def stratified_sample(records, n: int, relations: Sequence[str] | None = None, seed: int = 0) -> list:
    """About n / #relations records of each relation (all of a smaller one), taken round-robin across
    relations from each relation's seeded random sample, then returned in case_id order."""
    from assocmem.hijack.counterfact import select_records

    pool = select_records(records, relations=relations, seed=seed)
    n_rel = len({r.relation_id for r in pool}) or 1
    picked = select_records(pool, per_relation=math.ceil(n / n_rel), seed=seed)
    by_relation: dict[str, list] = defaultdict(list)
    for rec in picked:
        by_relation[rec.relation_id].append(rec)
    chosen, depth = [], 0
    while len(chosen) < n and any(depth < len(v) for v in by_relation.values()):
        chosen += [v[depth] for _, v in sorted(by_relation.items()) if depth < len(v)]
        depth += 1
    return sorted(chosen[:n], key=lambda r: r.case_id)


@dataclass
class _Prompts:
    case_id: list[int] = field(default_factory=list)
    scheme: list[str] = field(default_factory=list)
    n: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    true_id: list[int] = field(default_factory=list)
    false_id: list[int] = field(default_factory=list)
    masks: dict[str, list[torch.Tensor]] = field(default_factory=lambda: defaultdict(list))


def _build_prompts(lm, records, config: DiagnoseConfig) -> tuple[_Prompts, list[tuple[object, str]]]:
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
            if not config.skip_bad:
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


def run_diagnose(config: DiagnoseConfig, out_dir: str | Path, lm=None) -> dict:
    """Attention, logit lens and embedding spectrum on a stratified CounterFact sample; writes
    tables, PNGs, summary.json and config.json under `out_dir` and returns the summary.

    One forward pass per scheme serves both the attention and the lens tables. `lm` may be passed
    (a LoadedLM) to skip loading `config.model`.
    """
    import pandas as pd

    from assocmem.hijack import diagnostics_plots as plots
    from assocmem.hijack.counterfact import load_counterfact
    from assocmem.hijack.schemes import get_scheme
    from assocmem.io import write_json
    from assocmem.models.llm import load_causal_lm

    out_dir = Path(out_dir)
    for name in config.schemes:  # unknown scheme: fail before loading anything
        get_scheme(name, config.template)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    loaded = load_counterfact(config.counterfact, skip_bad=config.skip_bad)
    records = stratified_sample(loaded.records, config.records, config.relations, config.seed)
    lm = lm or load_causal_lm(config.model, device=config.device, dtype=config.dtype)
    D.find_parts(lm.model)  # fail on an unknown layout before any work
    t_load = time.perf_counter()
    prompts, skipped = _build_prompts(lm, records, config)
    if not prompts.text:
        raise ConfigError("diagnose: no usable records left (all skipped)")
    attention, lens, t_trace = [], [], 0.0
    for scheme in config.schemes:
        sel = [i for i, s in enumerate(prompts.scheme) if s == scheme]
        t = time.perf_counter()
        trace = D.trace_last_position(lm, [prompts.text[i] for i in sel], batch_tokens=config.batch_tokens,
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
    for name, table in (("attention", attention_df), ("logit_lens", lens_df), ("embedding_spectrum", spectrum)):
        table.to_parquet(out_dir / f"{name}.parquet", index=False)
        table.to_csv(out_dir / f"{name}.csv", index=False)
    plots.plot_attention(attention_df, out_dir / "attention.png", lm.name)
    plots.plot_logit_lens(lens_df, out_dir / "logit_lens.png", lm.name)
    plots.plot_spectrum(spectrum, out_dir / "embedding_spectrum.png", gap_k, erank, lm.name)
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
    save_config(config, out_dir / "config.json")
    write_json(out_dir / "summary.json", summary)
    return summary


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


# ---------------------------------------------------------------------------------------------
# try

@dataclass
class TryRow:
    """One n of `try_prompt`: the prompt, the top next tokens and both targets' probabilities."""

    n: int
    prompt: str
    top: list[tuple[str, float]]   # (decoded token, probability), most likely first
    p_true: float
    p_false: float


def user_record(text: str, target_true: str, target_false: str, subject: str | None = None,
                relation_id: str = "user"):
    """A CounterFact Record for a typed fact; the subject (if given) must occur in the text."""
    from assocmem.hijack.counterfact import Record

    if subject is not None and subject not in text:
        raise ConfigError(f"--subject={subject!r} is invalid: allowed a phrase that occurs in the prompt {text!r}")
    subject = subject or text
    template = text.replace(subject, "{}", 1)
    return Record(case_id=-1, relation_id=relation_id, prompt=template, subject=subject,
                  target_true=target_true.strip(), target_false=target_false.strip())


def try_prompt(lm, text: str, target_true: str, target_false: str, scheme: str = "not-think", max_n: int = 5,
               top_k: int = 5, mode: str = "first-token", subject: str | None = None,
               relation_id: str = "user", template: str | None = None) -> list[TryRow]:
    """For n = 0..max_n: the hijacked prompt, its top-k next tokens, and P(target_true), P(target_false)
    (first token, or the whole target with mode="full-target") — the paper's Fig. 1 for one fact."""
    from assocmem.hijack.schemes import get_scheme, prompt_parts
    from assocmem.hijack.scoring import score_targets

    check_int_range("--max-n", max_n, 0)
    check_int_range("--top-k", top_k, 1)
    entry = get_scheme(scheme, template)
    names_subject = entry.relation_form is not None or "{subject}" in (entry.sentence or "")
    if names_subject and subject is None:
        raise ConfigError(f"--scheme={scheme!r} names the subject: pass --subject (a phrase of the prompt)")
    record = user_record(text, target_true, target_false, subject, relation_id)
    shared, prompts = zip(*[prompt_parts(record, entry, n) for n in range(max_n + 1)])
    trace = D.trace_last_position(lm, prompts, attention=False, groups=[0] * len(prompts))
    logp = D.final_logprobs(lm, trace.resid)  # (prompt, d_vocab)
    top = logp.exp().topk(top_k, dim=-1)
    lp_true, lp_false = score_targets(lm, prompts, [record.target_true] * len(prompts),
                                      [record.target_false] * len(prompts), mode=mode,
                                      groups=[0] * len(prompts), shared=shared)
    rows = []
    for n, prompt in enumerate(prompts):
        tokens = [lm.tokenizer.decode([int(t)]) for t in top.indices[n]]
        rows.append(TryRow(n=n, prompt=prompt, top=list(zip(tokens, top.values[n].tolist())),
                           p_true=math.exp(float(lp_true[n])), p_false=math.exp(float(lp_false[n]))))
    return rows


def _p(p: float) -> str:
    return f"{p:.4f}" if p >= 1e-3 else f"{p:.1e}"


def print_try(rows: list[TryRow], target_true: str, target_false: str, title: str = "") -> None:
    """Render `try_prompt` rows as a rich table on stdout."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title, show_lines=True)
    table.add_column("n", justify="right")
    table.add_column("prompt")
    table.add_column("top next tokens (probability)")
    table.add_column(f"P({target_true})", justify="right")
    table.add_column(f"P({target_false})", justify="right")
    for r in rows:
        top = "\n".join(f"{tok!r} {_p(p)}" for tok, p in r.top)
        win = "[green]" if r.p_true > r.p_false else "[red]"  # green: the true target still wins
        table.add_row(str(r.n), escape(r.prompt), escape(top), f"{win}{_p(r.p_true)}", _p(r.p_false))
    Console(width=max(100, Console().width)).print(table)


# ---------------------------------------------------------------------------------------------
# CLI shells

_LIST_OPTIONS = ("--n", "--schemes", "--relations")


class DiagnoseCommand(TyperCommand):
    """`--n 0 1 3`, `--n 0,1,3` and `--n 0 --n 1 --n 3` alike, as `assocmem hijack` takes its lists."""

    def parse_args(self, ctx, args):
        from assocmem.hijack.cli import join_multi_values  # lazy: assocmem.hijack.cli imports this module

        return super().parse_args(ctx, join_multi_values(args, _LIST_OPTIONS))


def _split(values: list[str] | None) -> tuple[str, ...] | None:
    from assocmem.hijack.cli import split_list

    return split_list(values)


def _ints(option: str, values: tuple[str, ...]) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in values)
    except ValueError:
        raise bad_option(option, " ".join(values), "integers >= 0, e.g. --n 0 1 3") from None


def register(app: typer.Typer) -> None:
    """Add the `diagnose` and `try` sub-commands to the `assocmem hijack` app."""
    app.command("diagnose", cls=DiagnoseCommand)(diagnose_command)
    app.command("try")(try_command)


def diagnose_command(
    model: str = typer.Option("gemma3-270m", help="bundled name, hub id, local dir or .gguf"),
    records: int = typer.Option(200, help="stratified sample size (about records / #relations each)"),
    n: list[str] | None = typer.Option(None, "--n", help="numbers of prepended sentences (default: 0 1 3)"),
    schemes: list[str] | None = typer.Option(
        None, "--schemes", help="hijack schemes, e.g. --schemes not-think relation (default: not-think)"),
    counterfact: str | None = typer.Option(None, help="CounterFact JSON (default: the official file)"),
    relations: list[str] | None = typer.Option(None, "--relations", help="relation ids (default: all)"),
    seed: int = typer.Option(0),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto", help="auto (float32 on CPU, the checkpoint's dtype on GPU), float32, bfloat16"),
    batch_tokens: int | None = typer.Option(None, "--batch-tokens", help="tokens per packed forward (default: 2048 on CPU, 65536 on GPU)"),
    skip_bad: bool = typer.Option(False, "--skip-bad", help="skip and count records a scheme cannot build"),
    template: str | None = typer.Option(
        None, help='sentence of scheme "template", e.g. "{subject} is not {target_false}."'),
    out: Path = typer.Option(Path("runs/diagnose"), help="output folder"),
) -> None:
    """Attention to distractors, logit lens and embedding spectrum inside a causal LM (tables + PNGs)."""
    config = DiagnoseConfig(model=model, counterfact=counterfact, records=records,
                            ns=_ints("--n", _split(n) or ("0", "1", "3")),
                            schemes=_split(schemes) or ("not-think",), relations=_split(relations), seed=seed,
                            device=device, dtype=dtype, batch_tokens=batch_tokens, skip_bad=skip_bad,
                            template=template)
    summary = run_diagnose(config, out)
    typer.echo(f"diagnose: {summary['prompts']} prompts from {summary['records']} records "
               f"({summary['skipped']} skipped) in {summary['seconds']['total']:.1f} s -> {out}")


def try_command(
    prompt: str = typer.Argument(..., help='the fact\'s prompt, e.g. "The Eiffel Tower is in the city of"'),
    true: str = typer.Option(..., "--true", help="the true target, e.g. Paris"),
    false: str = typer.Option(..., "--false", help="the false target, e.g. Chicago"),
    scheme: str = typer.Option("not-think", help="hijack scheme"),
    max_n: int = typer.Option(5, help="largest number of prepended sentences"),
    model: str = typer.Option("gemma3-270m", help="bundled name, hub id, local dir, .gguf or tiny-random-<arch>"),
    subject: str | None = typer.Option(None, help="the prompt's subject (schemes that name it need it)"),
    relation: str = typer.Option("user", help="relation id (for the relation schemes), e.g. P190"),
    template: str | None = typer.Option(None, help='sentence of scheme "template"'),
    mode: str = typer.Option("first-token", help="first-token or full-target probabilities"),
    top_k: int = typer.Option(5, help="how many next tokens to show"),
    device: str = typer.Option("auto"),
    dtype: str = typer.Option("auto", help="auto (float32 on CPU, the checkpoint's dtype on GPU), float32, bfloat16"),
) -> None:
    """Fig. 1 for one fact: per n, the hijacked prompt, the top next tokens and both targets' probabilities."""
    from assocmem.models.llm import load_causal_lm

    from assocmem.config import check_choice
    from assocmem.hijack.schemes import get_scheme
    from assocmem.hijack.scoring import MODES

    check_int_range("--max-n", max_n, 0)  # cheap checks before the model loads
    check_choice("--mode", mode, MODES)
    get_scheme(scheme, template)
    lm = load_causal_lm(model, device=device, dtype=dtype)
    rows = try_prompt(lm, prompt, true, false, scheme=scheme, max_n=max_n, top_k=top_k, mode=mode,
                      subject=subject, relation_id=relation, template=template)
    print_try(rows, true, false, title=f"{lm.name}, scheme {scheme}")
