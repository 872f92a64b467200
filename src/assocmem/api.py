"""The notebook API: each of the paper's computations in one call, on a model already in memory.

    import assocmem
    model, tok = AutoModelForCausalLM.from_pretrained(...), AutoTokenizer.from_pretrained(...)   # or "gemma3-270m"
    assocmem.score_prompts(model, ["The Eiffel Tower is in the city of"], "Paris", "Rome", tokenizer=tok)
    result = assocmem.evaluate_hijacking(model, tokenizer=tok, records=10, schemes=("not-think", "relation"), max_n=3)
    result.rows                                   # long: record × scheme × n (a pandas DataFrame); result.rates
    models = assocmem.train_lca(m=5, L=32, d=32, seeds=range(4), steps=300)
    models.W_V, models.table                      # (4, d, d); one row per model with its accuracies
    assocmem.load_run("results/quick/hijack-sample/gemma3-270m")

A model is what `models.llm.as_lm` takes: a LoadedLM, a name or path (`load_causal_lm`), or a Hugging Face
causal LM with its `tokenizer=` (or a (model, tokenizer) pair). The settings of each call are the leaves of
the pipeline's config (`HijackConfig`, `DiagnoseConfig`, `MechanismConfig`, `LCATrainConfig`), checked at
construction: a bad one is a one-line ConfigError naming the setting, before any work. Each call returns the
pipeline's typed result; with `out=` it also writes the run folder that `load_run` reads back.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from assocmem.errors import ConfigError
from assocmem.models.llm import LoadedLM


def load_model(model: Any = "gemma3-270m", tokenizer: Any = None, device: str = "auto",
               dtype: str = "auto") -> LoadedLM:
    """The LoadedLM every call below scores with: `model` a name or path (loaded on `device` in `dtype`), a
    LoadedLM, or a Hugging Face causal LM with its `tokenizer` (taken as it is, where it is)."""
    from assocmem.models.llm import load_causal_lm

    return load_causal_lm(model, device=device, dtype=dtype, tokenizer=tokenizer)   # a model in memory: `as_lm`


def score_prompts(model: Any, prompts: str | Sequence[str], true: str | Sequence[str], false: str | Sequence[str],
                  tokenizer: Any = None, mode: str = "first-token", batch_tokens: int | None = None) -> pd.DataFrame:
    """log P(" " + true | prompt) and log P(" " + false | prompt) of your own prompts (`hijack.scoring`'s
    contract; a single target stands for every prompt). One row per prompt: prompt, target_true, target_false,
    logp_true, logp_false, p_true, p_false, rank_true, rank_false (each target's first token among the next
    tokens, 1 = the model's answer), hijacked (P(false) > P(true))."""
    import numpy as np

    from assocmem.hijack.scoring import MODES, score_with_ranks
    from assocmem.config import check_choice

    check_choice("mode", mode, MODES)
    prompts = [prompts] if isinstance(prompts, str) else list(prompts)
    trues, falses = (_per_prompt(name, value, len(prompts)) for name, value in (("true", true), ("false", false)))
    scores = score_with_ranks(load_model(model, tokenizer), prompts, trues, falses, mode=mode,
                              batch_tokens=batch_tokens)
    t, f = scores.logp_true.numpy(), scores.logp_false.numpy()
    return pd.DataFrame({"prompt": prompts, "target_true": trues, "target_false": falses, "logp_true": t,
                         "logp_false": f, "p_true": np.exp(t), "p_false": np.exp(f),
                         "rank_true": scores.rank_true.numpy(), "rank_false": scores.rank_false.numpy(),
                         "hijacked": f > t})


def hijack_fact(model: Any, prompt: str, true: str, false: str, tokenizer: Any = None, scheme: str = "not-think",
                max_n: int = 5, **settings: Any) -> pd.DataFrame:
    """The paper's Fig. 1 for one fact (`assocmem hijack try`): per n = 0..max_n the hijacked prompt, both
    targets' probabilities and ranks, and the top next tokens (`top`: (token, probability) pairs). `settings`:
    subject, relation_id, template, mode, top_k (hijack.try_prompt.TryConfig's)."""
    from assocmem.hijack.try_prompt import TryConfig

    config = TryConfig.of(text=prompt, target_true=true, target_false=false, scheme=scheme, max_n=max_n, **settings)
    return pd.DataFrame([vars(r) for r in config.run(load_model(model, tokenizer))])


def counterfact(records: int | None = None, path: str | Path | None = None, **selection: Any) -> list:
    """CounterFact records (hijack.counterfact.Record, ROME's field names): about `records` of them spread over
    the relations, or the selection `selection` names (relations, per_relation, limit, seed, skip_bad:
    `CounterFactSelection`'s); `path` the file (default: the one every command finds)."""
    from assocmem.hijack.counterfact import CounterFactSelection

    chosen = CounterFactSelection(counterfact=None if path is None else str(path), records=records, **selection)
    return chosen.load()[1]


def evaluate_hijacking(model: Any, tokenizer: Any = None, records: int | Sequence | None = 10,
                       schemes: str | Sequence[str] = ("not-think", "relation"), max_n: int = 10,
                       out: str | Path | None = None, progress: bool = False, **settings: Any):
    """The benchmark (paper §3, Fig. 2): CounterFact records × schemes × n = 0..max_n scored by `model`, as a
    HijackResult (`rows`: one row per record × scheme × n; `rates`: both shares with 95% intervals per
    scheme × n; `summary`). `records`: how many, spread over the relations, or your own Records (e.g. from
    `counterfact`); `settings`: any other HijackConfig setting (relations, per_relation, mode, extra_modes,
    template, skip_bad, counterfact, batch_tokens, ...). In memory, unless `out` names a run folder: then it is
    `assocmem hijack --out`'s (resumable, fingerprinted, `assocmem verify` re-checks it)."""
    from assocmem.hijack.run import HijackConfig, run_hijack, score_hijack

    lm = load_model(model, tokenizer)
    given = None if records is None or isinstance(records, int) else list(records)
    count = records if isinstance(records, int) else None
    config = HijackConfig.of(**_model_spec(lm), schemes=schemes, max_n=max_n, **settings,
                             **({"records": count} if count is not None else {}))
    if out is None:
        return score_hijack(lm, config, records=given, progress=progress)
    if given is not None:
        raise ConfigError("records is invalid with out: a run folder scores a selection of its CounterFact file "
                          "(records=<how many>, relations=..., per_relation=...), not records given", field="records")
    return run_hijack(config, out, progress=progress, lm=lm)


def diagnose(model: Any, tokenizer: Any = None, records: int = 20, ns: Sequence[int] = (0, 1, 3),
             schemes: str | Sequence[str] = ("not-think",), out: str | Path | None = None, **settings: Any):
    """Inside the model (`assocmem hijack diagnose`): per layer the attention the answer position puts on the
    distractors and the logit lens of both targets, and the embedding's spectrum, as a DiagnoseResult.
    `settings`: any other DiagnoseConfig setting."""
    from assocmem.hijack.diagnose import DiagnoseConfig, run_diagnose

    lm = load_model(model, tokenizer)
    config = DiagnoseConfig.of(**_model_spec(lm), records=records, ns=ns, schemes=schemes, **settings)
    return run_diagnose(config, out, lm=lm)


def mechanism(model: Any, tokenizer: Any = None, records: int = 40, ns: Sequence[int] = (1, 3),
              schemes: str | Sequence[str] = ("not-think", "associated"), out: str | Path | None = None,
              **settings: Any):
    """The causal tests of §5.5 (`assocmem hijack mechanism`): attention knockout, activation patching, heads
    and a test-time defence, as a MechanismResult. `settings`: any other MechanismConfig setting (components,
    heads, defend, window, ...)."""
    from assocmem.hijack.mechanism_config import MechanismConfig
    from assocmem.hijack.mechanism_report import run_mechanism

    lm = load_model(model, tokenizer)
    config = MechanismConfig.of(**_model_spec(lm), records=records, ns=ns, schemes=schemes, **settings)
    return run_mechanism(config, out, lm=lm)


def train_lca(protocol: str = "ours", seeds: int | Sequence[int] = (0,), out: str | Path | None = None,
              progress: bool = False, **settings: Any):
    """One-layer transformers trained on the latent concept association task (§4), one per seed, all at once,
    as TrainedModels (`W_V` etc. stacked over the models, `table` with the final and the Bayes-optimal
    accuracy, `history`). `protocol`: "ours" or "paper" (the authors' released protocol) as the preset;
    `settings`: any LCATrainConfig setting on top (m, L, omega, beta, neighborhood, d, freeze_value, steps,
    batch_size, lr, device, ...). `seeds`: a count (seeds 0..k-1) or the seeds. With `out`, the folder
    `assocmem lca train` writes."""
    from assocmem.lca.run import LCATrainConfig, run_training

    seeds = tuple(range(seeds)) if isinstance(seeds, int) else tuple(seeds)
    return run_training(LCATrainConfig.of(protocol, seeds=seeds, **settings), out, progress=progress)


def load_run(folder: str | Path):
    """A finished run folder as its typed result: a hijacking run (HijackResult), a diagnose or mechanism run
    (DiagnoseResult, MechanismResult), trained LCA models (TrainedModels); a folder holding several runs (e.g.
    a `reproduce` experiment's, one per model) as {name: result}."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"folder={str(folder)!r} is invalid: allowed a run folder (no such folder)", field="folder")
    kind = _kind(folder)
    if kind is not None:
        return kind.load(folder)
    runs = {p.name: _kind(p).load(p) for p in sorted(folder.iterdir()) if p.is_dir() and _kind(p) is not None}
    if not runs:
        raise ConfigError(f"folder={str(folder)!r} is invalid: allowed a folder written by a hijack, diagnose, "
                          "mechanism or lca train run (or one holding such folders)", field="folder")
    return runs


def _kind(folder: Path):
    """The result type of a run folder, or None."""
    from assocmem.hijack.diagnose import DiagnoseResult
    from assocmem.hijack.mechanism_report import MechanismResult
    from assocmem.hijack.run import HijackResult
    from assocmem.lca.trained import TrainedModels
    from assocmem.lca.weights import folder_files

    if folder_files(folder):
        return TrainedModels
    marks = {"interventions.parquet": MechanismResult, "logit_lens.parquet": DiagnoseResult,
             "rows.parquet": HijackResult}
    return next((kind for name, kind in marks.items() if (folder / name).is_file() and
                 (folder / "config.json").is_file()), None)


def _per_prompt(name: str, value: str | Sequence[str], n: int) -> list[str]:
    """One target per prompt: a single target stands for all."""
    values = [value] * n if isinstance(value, str) else list(value)
    if len(values) != n:
        raise ConfigError(f"{name} has {len(values)} targets for {n} prompts: allowed one target, or one per prompt",
                          field=name)
    return values


def _model_spec(lm: LoadedLM) -> dict[str, Any]:
    """The config's model leaves for a model in memory: the spec it was loaded from, or its own folder, where it
    has one (else the run records it by its weights' hash); its device."""
    folder = getattr(lm.model, "name_or_path", None)
    spec = lm.spec or (folder if folder and Path(folder).is_dir() else None)
    return {"device": str(lm.device), **({"model": spec} if spec else {})}
