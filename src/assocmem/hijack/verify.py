"""`assocmem verify DIR`: re-compute a random sample of a finished run's rows and count agreements.

A run folder (`assocmem hijack --out DIR`, or a hijacking experiment's folder of `reproduce`) records
its config and the fingerprints of what it was computed from (provenance.py). Verify checks that the
CounterFact file and the model at hand are those (by sha256; a run older than fingerprints is checked
against the files its config names, and says so), scores `sample` of its (record, scheme, n) rows
again with the same settings, and reports how many decisions agree, the largest |Δ log-prob| and, for a
run whose rows carry them, how many rows keep both first-token ranks.

    report = verify_run("results/quick/hijack-sample", sample=200)
    report["same_decisions"] == report["rows_checked"]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from assocmem.config import option
from assocmem.errors import ConfigError
from assocmem.io import read_json


@dataclass(frozen=True)
class VerifyConfig:
    """`assocmem verify DIR`."""

    folder: str = option(None, "A run folder (config.json + rows.parquet), or a folder holding several "
                               "(a reproduce output).", flag="DIR", argument=True)
    sample: int = option(200, "Rows re-computed per run folder (a seeded random sample).")
    seed: int = option(0, "Seed of the sample.")
    device: str = option("auto", "auto | cpu | cuda | cuda:N.")
    counterfact: str | None = option(None, "The CounterFact file, where it is not at the recorded path (its sha256 "
                                           "must match).")
    tolerance: float = option(1e-3, "Largest |Δ log-prob| counted as agreeing (float32 across CPU and GPU: ~1e-4).")

    def __post_init__(self) -> None:
        from assocmem.config import check_float_range, check_int_range
        from assocmem.runtime import check_device

        if not self.folder:
            raise ConfigError("DIR is required: a run folder")
        check_int_range("sample", self.sample, 1)
        check_int_range("seed", self.seed, 0)
        check_float_range("tolerance", self.tolerance, 0.0)
        check_device(self.device)


def run_folders(root: str | Path) -> list[Path]:
    """`root` itself if it is a run folder (config.json + rows.parquet), else every run folder under it."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"DIR={str(root)!r} is invalid: no such folder")
    found = [root] if _is_run(root) else sorted(p.parent for p in root.rglob("rows.parquet") if _is_run(p.parent))
    if not found:
        raise ConfigError(f"DIR={str(root)!r} holds no run folder (a folder with config.json and rows.parquet)")
    return found


def _is_run(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / "rows.parquet").is_file() and ".partial" not in folder.parts


def verify_run(folder: str | Path, sample: int = 200, seed: int = 0, device: str = "auto",
               counterfact: str | None = None, tolerance: float = 1e-3, models: dict | None = None) -> dict[str, Any]:
    """Re-score `sample` random rows of the run in `folder`; see the module docstring.

    `models`: a dict the caller keeps between folders, so a model is loaded once per (spec, dtype)."""
    from assocmem.hijack.counterfact import load_counterfact
    from assocmem.config import flat_dict_of
    from assocmem.hijack.run import WorkItem, config_from_dict, plan_items, rows_code
    from assocmem.hijack.schemes import get_scheme, prompt_parts
    from assocmem.hijack.scoring import collect, collect_ranks, score_plan
    from assocmem.models.llm import load_causal_lm
    from assocmem.provenance import counterfact_fingerprint, model_fingerprint, what_changed

    folder = Path(folder)
    try:
        raw = read_json(folder / "config.json")
        rows = pd.read_parquet(folder / "rows.parquet")
    except Exception as err:  # noqa: BLE001
        raise ConfigError(f"{folder}: config.json or rows.parquet is unreadable ({type(err).__name__}); "
                          "the run cannot be verified") from None
    recorded = raw.get("fingerprints")
    path = counterfact or (recorded or {}).get("counterfact", {}).get("path") or flat_dict_of(raw).get("counterfact")
    if path is None or not Path(path).is_file():
        raise ConfigError(f"{folder}: the CounterFact file it was computed from ({path}) is not here; "
                          "pass `counterfact` PATH")
    config = config_from_dict(raw, device=device, counterfact=str(path))
    now = {"counterfact": counterfact_fingerprint(path), "model": model_fingerprint(config.lm.model),
           "assocmem": (recorded or {}).get("assocmem"), "code": rows_code()}
    if recorded:   # other code is what verify re-checks the rows with: not a reason to refuse
        changed = [c for c in what_changed({**recorded, "code": now["code"]}, now) if "commit" not in c]
        if changed:
            raise ConfigError(f"{folder} was computed from a different {'; '.join(changed)}: "
                              "pass the file and model it was computed from")
    summary = _read_summary(folder)
    dtype = summary.get("placement", {}).get("dtype") or config.lm.dtype
    models = {} if models is None else models
    if (config.lm.model, dtype) not in models:
        models[(config.lm.model, dtype)] = load_causal_lm(config.lm.model, device=device, dtype=dtype)
    lm = models[(config.lm.model, dtype)]
    from assocmem.provenance import tokenizer_fingerprint

    recorded_tok = (recorded or {}).get("model", {}).get("tokenizer")
    if recorded_tok and recorded_tok != tokenizer_fingerprint(lm):
        raise ConfigError(f"{folder} was scored with another tokenizer ({recorded_tok[:12]}…) than {lm.name} has here "
                          f"({tokenizer_fingerprint(lm)[:12]}…), e.g. another transformers version's GGUF conversion: "
                          "its rows cannot be re-checked with this one")
    from assocmem.hijack.controls import with_mismatched_targets

    loaded = load_counterfact(path, skip_bad=True).records
    records = {r.case_id: r for r in with_mismatched_targets(loaded, loaded)}   # as run_hijack chose them
    picked = rows.sample(n=min(sample, len(rows)), random_state=np.random.RandomState(seed)).sort_index()
    items = []
    for row in picked.itertuples():
        shared, prompt = prompt_parts(records[int(row.case_id)], get_scheme(row.scheme, config.template), int(row.n))
        items.append(WorkItem(records[int(row.case_id)], row.scheme, int(row.n), prompt, shared))
    plan = plan_items(lm.tokenizer, items, config.scoring.planning_mode)
    results = score_plan(lm, plan)
    logp_true, logp_false = collect(plan, results, config.scoring.mode)
    same_ranks = None
    if {"rank_true", "rank_false"} <= set(picked.columns):   # folders scored before ranks have none
        rank_true, rank_false = collect_ranks(plan, results)
        same_ranks = int(((picked["rank_true"].to_numpy() == rank_true.numpy()) &
                          (picked["rank_false"].to_numpy() == rank_false.numpy())).sum())
    old_t, old_f = picked["logp_true"].to_numpy(), picked["logp_false"].to_numpy()
    new_t, new_f = logp_true.numpy(), logp_false.numpy()
    same = (np.sign(old_f - old_t) == np.sign(new_f - new_t))
    delta = np.maximum(np.abs(old_t - new_t), np.abs(old_f - new_f))
    return {"folder": str(folder), "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype).removeprefix("torch."),
            "fingerprints": ("recorded, matching" + _code_note(recorded["code"] if "code" in recorded else None,
                                                               now["code"]) if recorded else
                             "not recorded (run predates them): checked against the files its config names"),
            "rows": int(len(rows)), "rows_checked": int(len(picked)), "same_decisions": int(same.sum()),
            "within_tolerance": int((delta <= tolerance).sum()), "tolerance": tolerance,
            "same_ranks": same_ranks,   # both first-token ranks equal (a near-tie may order differently elsewhere)
            "max_abs_dlogp": float(delta.max()) if len(delta) else 0.0}


def _code_note(then: str | None, now: str) -> str:
    """What verify says about the code: the rows are re-scored with today's code, whichever computed them."""
    if then is None:
        return "; the code that computed the rows was not recorded (an older assocmem)"
    return "; the code that computes rows changed since the run" if then != now else ""


def _read_summary(folder: Path) -> dict:
    try:
        return read_json(folder / "summary.json")
    except (OSError, ValueError):
        return {}
