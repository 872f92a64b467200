"""Shared fixtures for the hijacking tests: a small CounterFact fixture and tiny random LMs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
COUNTERFACT_SMALL = FIXTURES / "counterfact_small.json"
# shared/ lies beside the checkout, here and in CI (which copies it beside its fresh clone).
RECONSTRUCTED = Path(__file__).resolve().parents[3] / "shared" / "data" / "counterfact_reconstructed.json"


@pytest.fixture(scope="session")
def counterfact_small() -> Path:
    return COUNTERFACT_SMALL


@pytest.fixture(scope="session")
def tiny_lms():
    """{arch: LoadedLM} for gpt2 (no BOS), llama and gemma3 (BOS). One thread: tiny models run
    fastest without thread hand-offs, and the test machine's cores are shared."""
    from assocmem.models.llm import tiny_random_lm

    torch.set_num_threads(1)
    return {arch: tiny_random_lm(arch, seed=0) for arch in ("gpt2", "llama", "gemma3")}

