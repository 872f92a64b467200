"""The bundled Gemma 3 270M, end to end on three CounterFact records (slow: loads a real LLM).

Golden numbers: the hijacking example of /work/shared/research/bundled-llm.md (fp32, CPU).
"""

from pathlib import Path

import pandas as pd
import pytest

from assocmem.hijack.run import HijackConfig, run_hijack
from assocmem.hijack.scoring import score_targets

FIXTURE = str(Path(__file__).resolve().parent.parent / "fixtures" / "counterfact_small.json")
EIFFEL = "The Eiffel Tower is located in the city of"


@pytest.fixture(scope="module")
def gemma():
    from assocmem.models.llm import load_causal_lm

    return load_causal_lm("gemma3-270m", device="cpu")


@pytest.mark.slow
def test_bundled_gemma_golden_numbers_and_a_small_run(gemma, tmp_path):
    prompts = [EIFFEL, "Do not think of Guam. " + EIFFEL]
    logp_paris, logp_guam = score_targets(gemma, prompts, ["Paris"] * 2, ["Guam"] * 2)
    assert logp_paris.tolist() == pytest.approx([-0.28, -4.08], abs=0.01)
    assert logp_guam.tolist() == pytest.approx([-17.3, -1.51], abs=0.02)   # hijacked by one sentence

    config = HijackConfig.of(model="gemma3-270m", schemes=("not-think", "reverse"), max_n=1, relations=("P190",),
                          counterfact=FIXTURE, device="cpu", batch_tokens=128)
    summary = run_hijack(config, tmp_path, progress=False, lm=gemma).summary
    rows = pd.read_parquet(tmp_path / "rows.parquet")
    assert summary["records"] == 3 and len(rows) == 3 * 2 * 2
    assert rows["logp_true"].between(-40, 0).all() and rows["logp_false"].between(-40, 0).all()
    rates = pd.DataFrame(summary["rates"]).set_index(["scheme", "n"])["hijacked_share"]
    assert rates.to_dict() == pytest.approx(rows.groupby(["scheme", "n"])["hijacked"].mean().to_dict())
    assert (tmp_path / "rates.png").read_bytes()[:4] == b"\x89PNG"
