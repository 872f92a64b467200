"""DIR/report.md: every finished experiment's figures, our numbers beside the paper's, and a verdict
on each of the paper's claims computed from our numbers.

The report is a pure function of the folders under DIR (each experiment's result.json) and the
paper's reference values (`assocmem/data/paper_reference.json`), so it can be rewritten at any time
without running anything.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from assocmem.experiments.claims import CLAIMS
from assocmem.experiments.registry import Registry
from assocmem.experiments.runner import Outcome, load_result
from assocmem.io import write_text

REFERENCE_FILE = Path(__file__).resolve().parent.parent / "data" / "paper_reference.json"
PAPER = ('Jiang, Rajendran, Ravikumar, Aragam, "Do LLMs dream of elephants (when told not to)? Latent concept '
         'association and associative memory in transformers", NeurIPS 2024, arXiv 2406.18400')


def load_reference() -> dict[str, Any]:
    """The paper's statements per experiment id (see the file's `_about`)."""
    with open(REFERENCE_FILE) as fh:
        return json.load(fh)


def write_report(
    out_dir: str | Path,
    registry: Registry,
    profile: str,
    outcomes: list[Outcome] | None = None,
    command: str | None = None,
    run_wall_s: float | None = None,
) -> Path:
    """Write DIR/report.md; returns its path.

    It lists the experiments of this invocation (`outcomes`: those selected and what they require) and every
    other experiment with a finished folder in DIR, so `--only fig3a` in a new folder gives a report of fig3a
    alone, and in a folder of a whole profile keeps every finished experiment in it."""
    out_dir = Path(out_dir)
    reference = load_reference()
    by_outcome = {o.id: o for o in outcomes or []}
    results = {exp.id: load_result(out_dir / exp.id) if (out_dir / exp.id).is_dir() else None for exp in registry}
    listed = Registry(exp for exp in registry if exp.id in by_outcome or results[exp.id] is not None)
    results = {exp.id: results[exp.id] for exp in listed}
    lines = _header(out_dir, profile, results, command, run_wall_s, len(listed), len(registry))
    lines += _claims_section(listed, results, by_outcome)
    lines += _index(listed, results, by_outcome)
    for exp in listed:
        lines += _experiment_section(exp, results[exp.id], by_outcome.get(exp.id), reference.get(exp.id, {}))
    return write_text(out_dir / "report.md", "\n".join(lines) + "\n")


def _header(out_dir: Path, profile: str, results: dict, command: str | None, run_wall_s: float | None,
            listed: int, registered: int) -> list[str]:
    from assocmem.provenance import package_fingerprint

    finished = [r for r in results.values() if r]
    devices = sorted({r["device"] for r in finished})
    compute = sum(r["wall_s"] for r in finished)
    synthetic = sum(r["wall_s"] for r in finished if not r.get("llm"))
    lines = [
        "# Reproduction report",
        "",
        f"Paper: {PAPER}.",
        "",
        f"- profile: `{profile}`" + (f"; command: `{command}`" if command else ""),
        f"- code: commit `{_git_commit()}`; package source `{package_fingerprint()}`; python {sys.version.split()[0]} "
        "(each experiment's own code fingerprint is in its row and section: a cached result is reused only by the "
        "code that made it)",
        f"- experiments: {listed} of the {registered} registered (those this command ran or reused, and every other "
        "finished folder here; `assocmem reproduce --list` names them all)",
        f"- device(s): {', '.join(devices) or 'none yet'}",
        f"- written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        f"- compute time of the finished experiments (sum of their own wall times): {compute / 60:.1f} min"
        + (f"; this invocation took {run_wall_s / 60:.1f} min (cached experiments cost nothing)" if run_wall_s else ""),
        f"- of which the synthetic (LCA) experiments: {synthetic / 60:.1f} min; the LLM experiments: "
        f"{(compute - synthetic) / 60:.1f} min",
    ]
    lines += _provenance(results) + [
        "",
        "Paper values: the 208 values that Fig. 3(a)/C.1, C.2, C.3 and C.4 plot are taken from the authors' released "
        "code of the synthetic half (`assocmem/data/paper_figure_values.json`, source named there); the "
        "paper-protocol experiments (`paper-*`, trained with the authors' own protocol) set ours beside each of "
        "them, with a match verdict per point and a line `paper values: K of N points match` per figure. Elsewhere "
        "the 'paper' column gives the paper's stated qualitative result and its direction (from "
        "`assocmem/data/paper_reference.json`). Error bars and ± are over seeds (mean ± standard deviation unless "
        "a row says otherwise; the paper-protocol tables give the SEM, as the authors' figures); hijacking rates "
        "carry 95% Wilson intervals.",
        "",
    ]
    return lines


RECONSTRUCTED_NOTE = ("our offline reconstruction of CounterFact (every record, official layout): relation ids were "
                      "inferred from the prompts' templates, so a few hundred records of look-alike relations "
                      "(P27/P495/P17, P103/P1412/P37, P413/P1303/P641) may carry a neighbouring id")


def _provenance(results: dict) -> list[str]:
    """The data and the models the hijacking experiments ran on (from hijack-sample's record)."""
    record = next((r["data"]["provenance"] for r in results.values() if r and "provenance" in r.get("data", {})), None)
    if record is None:
        return []
    cf = record["counterfact"]
    copy = {"official": "the official file (ROME's, by its sha256)", "reconstructed": RECONSTRUCTED_NOTE}.get(
        cf.get("copy"), "another copy (its sha256 matches neither the official file nor our reconstruction)")
    lines = [f"- CounterFact: `{cf.get('path')}`, sha256 `{cf.get('sha256')}`, {cf.get('bytes')} bytes: {copy}"]
    from assocmem.models.llm import checkpoint_description

    for m in record["models"]:
        params = f"{m['parameters'] / 1e6:.1f} M parameters" if m.get("parameters") else "parameters unknown"
        what = checkpoint_description(m["name"]) if m.get("kind") == "bundled" else None
        lines.append(f"- model `{m['name']}`: {m.get('kind')} (`{m.get('source')}`)" + (f": {what}" if what else "")
                     + f"; run in {m.get('dtype')}, {params}, weights {str(m.get('weights'))[:16]}…")
    return lines


def _note(exp, result: dict, claim: dict) -> str:
    """The claim's own note, else for a failed claim the experiment's explanation of its numbers; then, for a
    quick-profile result, how the quick settings differ from the full ones where that can change the verdict."""
    note = claim.get("note") or (exp.explain(result) if not claim["supported"] and exp.explain is not None else "")
    differs = exp.quick_differs.get(claim["claim"]) if result.get("profile") == "quick" else None
    if differs:
        other = "paper" if exp.protocol == "paper" else "full"
        note = (note + "; " if note else "") + f"quick profile differs from {other}: {differs}"
    return note


_PROTOCOL = {"ours": "our protocol", "paper": "paper protocol"}


def _criterion(exp, claim: dict) -> str:
    """The criterion, with its revision history where it was changed after a first result."""
    history = exp.criterion_history.get(claim["claim"])
    return claim["criterion"] + (f" [criterion revised after a first result: {history}]" if history else "")


def _claims_section(registry: Registry, results: dict, outcomes: dict[str, Outcome]) -> list[str]:
    lines = ["## Claims", "",
             "Each verdict is computed from our numbers by the criterion shown. Criteria were written before the "
             "first run of their experiment, except where a row says 'criterion revised after a first result' (it "
             "names the earlier criterion and what changed). 'our protocol' rows come from the project's own "
             "training settings, 'paper protocol' rows from the authors' (their released code): the two regimes "
             "side by side.", "",
             "| claim | paper | experiment | criterion | our numbers | verdict |", "|---|---|---|---|---|---|"]
    counts = {"supported": 0, "not supported": 0, "not run": 0}
    by_protocol = {p: {"supported": 0, "not supported": 0} for p in _PROTOCOL}
    regimes: dict[str, dict[str, list[tuple[str, bool]]]] = {}  # claim -> protocol -> [(experiment, verdict)]
    for claim in CLAIMS:
        testers = [exp for exp in registry if claim.id in exp.claims]
        if not testers:  # no experiment of this report tests it (e.g. the hijacking claims in the paper profile)
            continue
        verdicts = []
        for exp in testers:
            result = results[exp.id]
            outcome = outcomes.get(exp.id)
            if result is None:
                status = "failed" if outcome and outcome.status == "failed" else "not run"
                verdicts.append((f"`{exp.id}`", "—", "—", status))
                continue
            for c in result["claims"]:
                if c["claim"] == claim.id:
                    verdict = "**supported**" if c["supported"] else "**NOT supported**"
                    note = _note(exp, result, c)
                    numbers = c["numbers"] + (f" — {note}" if note else "")
                    verdicts.append((f"`{exp.id}` ({_PROTOCOL[exp.protocol]})", _criterion(exp, c), numbers, verdict))
                    by_protocol[exp.protocol]["supported" if c["supported"] else "not supported"] += 1
                    regimes.setdefault(claim.id, {}).setdefault(exp.protocol, []).append((exp.id, c["supported"]))
        if not verdicts:
            verdicts = [("—", "—", "—", "not run")]
        for exp_id, criterion, numbers, verdict in verdicts:
            key = verdict.strip("*").lower()
            key = key if key in counts else "not run"
            counts[key] += 1
            lines.append(f"| {claim.statement} | {claim.source} | {exp_id} | {_cell(criterion)} | "
                         f"{_cell(numbers)} | {verdict} |")
    split = "; ".join(f"{_PROTOCOL[p]}: {c['supported']} supported, {c['not supported']} not supported"
                      for p, c in by_protocol.items() if sum(c.values()))
    lines += ["", f"Summary: {counts['supported']} supported, {counts['not supported']} not supported, "
                  f"{counts['not run']} not run or failed" + (f" ({split})." if split else "."), ""]
    return lines + _disagreements(regimes)


def _disagreements(regimes: dict[str, dict[str, list[tuple[str, bool]]]]) -> list[str]:
    """The claims whose verdict differs between our protocol and the paper's, with the experiments to read."""
    lines = []
    for claim_id, by in regimes.items():
        if len(by) < 2 or len({ok for verdicts in by.values() for _, ok in verdicts}) < 2:
            continue
        parts = [f"{_PROTOCOL[p]} " + ", ".join(f"`{e}` {'supported' if ok else 'NOT supported'}" for e, ok in v)
                 for p, v in by.items()]
        lines.append(f"- `{claim_id}`: " + "; ".join(parts) + " — the settings differ (each experiment's section gives "
                     "them), and the rows above give the numbers of each regime")
    if not lines:
        return []
    return ["Where the two protocols disagree:", "", *lines, ""]


def _index(registry: Registry, results: dict, outcomes: dict[str, Outcome]) -> list[str]:
    lines = ["## Experiments", "", "| id | title | paper | status | wall time | code |", "|---|---|---|---|---|---|"]
    for exp in registry:
        result, outcome = results[exp.id], outcomes.get(exp.id)
        if outcome is not None and outcome.status == "failed":
            status, wall = f"failed: {_cell(outcome.error)}", "—"
        elif result is None:
            status, wall = "not run", "—"
        else:
            status = "ran now" if outcome and outcome.status == "ran" else "cached"
            status += f" ({result['profile']})"
            wall = _seconds(result["wall_s"])
        code = f"`{result['code']}`" if result and result.get("code") else "—"
        names = ", ".join([exp.id, *exp.aliases])
        lines.append(f"| [{names}](#{exp.id.lower()}) | {exp.title} | {exp.paper} | {status} | {wall} | {code} |")
    return lines + [""]


def _experiment_section(exp, result: dict | None, outcome: Outcome | None, ref: dict) -> list[str]:
    names = " / ".join([exp.id, *exp.aliases])
    lines = [f'<a id="{exp.id.lower()}"></a>', f"### {names}: {exp.title}", "", f"Paper: {exp.paper}."]
    if ref.get("statement"):   # our summary of what the paper states, not a quotation
        lines.append(f"What the paper reports, in our words ({ref.get('source', exp.paper)}): {ref['statement']}")
    lines.append("")
    if result is None:
        if outcome is not None and outcome.status == "failed":
            lines += [f"**Failed**: {outcome.error} (traceback in `{outcome.folder}/error.txt`).", ""]
        else:
            lines += ["Not run yet.", ""]
        return lines
    lines += [f"![{exp.id}]({exp.id}/{fig})" for fig in result["figures"]]
    lines += [""] + _table(result["rows"], ref) + [""]
    for note in result.get("notes", []):
        lines.append(f"- {note}")
    for c in result["claims"]:
        verdict = "supported" if c["supported"] else "NOT supported"
        note = _note(exp, result, c)
        lines.append(f"- claim `{c['claim']}` ({_PROTOCOL[exp.protocol]}): **{verdict}** — {_criterion(exp, c)}: "
                     f"{c['numbers']}"
                     + (f". Why: {note}" if note else ""))
    lines.append(f"- wall time: {_seconds(result['wall_s'])} on {result['device']}; profile `{result['profile']}`; "
                 f"settings hash `{result['hash']}`; code `{result.get('code') or 'not recorded'}`")
    settings = json.dumps(result["settings"], separators=(", ", ": "))
    lines.append(f"- settings: `{settings}`")
    chosen = ref.get("chosen_settings", {})
    if chosen:
        lines.append("- chosen by us where the paper (as available to us) is silent: "
                     + "; ".join(_chosen(k, v, result["settings"]) for k, v in chosen.items()))
    tables = result.get("tables", [])
    if tables:
        lines.append("- tables: " + ", ".join(f"[{t}.csv]({exp.id}/{t}.csv)" for t in tables))
    return lines + [""]


_MISSING = object()


def _chosen(key: str, why: str, settings: dict) -> str:
    """`training.seeds = 5: why` with the value this result ran with (read from its settings, so the text
    always matches the profile), or `key: why` for a choice that is no single setting."""
    value: Any = settings
    for part in key.split("."):
        value = value.get(part, _MISSING) if isinstance(value, dict) else _MISSING
    if value is _MISSING:
        return f"{key}: {why}"
    shown = ", ".join(map(str, value)) if isinstance(value, list) else "none" if value is None else value
    return f"{key} = {shown}: {why}"


def _table(rows: list[dict], ref: dict) -> list[str]:
    """Our numbers beside the paper's; a gap-to-Bayes column where rows carry a Bayes-optimal accuracy."""
    if not rows:
        return []
    expectations = {v["quantity"]: v for v in ref.get("values", [])}
    has_bayes = any(r.get("bayes") is not None for r in rows)
    has_err = any(r.get("err") is not None for r in rows)
    has_model = any("model" in r for r in rows)
    header = ["setting"] + (["model"] if has_model else []) + ["quantity", "ours"] + (["±"] if has_err else [])
    header += ["Bayes-optimal", "gap to Bayes-optimal"] if has_bayes else []
    known = {"setting", "model", "quantity", "ours", "err", "bayes", "n"}
    extra = list(dict.fromkeys(k for row in rows for k in row if k not in known))
    own_paper = "paper value" in extra  # rows that carry the paper's value (paper protocol) need no reference column
    header += extra + ([] if own_paper else ["paper"])
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [str(row.get("setting", ""))] + ([str(row.get("model", ""))] if has_model else [])
        cells += [str(row["quantity"]), _num(row.get("ours"))]
        if has_err:
            cells.append(_num(row.get("err")))
        if has_bayes:
            bayes, ours = row.get("bayes"), row.get("ours")
            gap = bayes - ours if isinstance(bayes, (int, float)) and isinstance(ours, (int, float)) else None
            cells += [_num(bayes), _num(gap)]
        cells += [_num(row.get(k)) for k in extra]
        if not own_paper:
            cells.append(_paper_cell(expectations.get(row["quantity"])))
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _paper_cell(entry: dict | None) -> str:
    if entry is None:
        return "—"
    if entry.get("value") is not None:
        return f"{entry['value']} ({entry.get('source', '')})".strip()
    return f"{entry.get('expectation', '')} (no value available)"


def _num(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return f"{value:.3f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _seconds(s: float) -> str:
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


def _git_commit() -> str:
    """$ASSOCMEM_GIT_COMMIT when set (a copy of the checkout, as on a lent GPU machine, whose .git may
    be stale), else HEAD of the checkout (marked when files differ), else "unknown"."""
    if os.environ.get("ASSOCMEM_GIT_COMMIT"):
        return os.environ["ASSOCMEM_GIT_COMMIT"] + " (set by $ASSOCMEM_GIT_COMMIT)"
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).parent, timeout=5)
        commit = out.stdout.strip()
        if not commit:
            return "unknown (no .git)"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, cwd=Path(__file__).parent, timeout=5).stdout.strip()
        return commit + ("+uncommitted changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
