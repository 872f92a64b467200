"""assocmem: transformers as associative memories.

Implements Jiang, Rajendran, Ravikumar, Aragam, "Do LLMs dream of elephants (when told not to)?
Latent concept association and associative memory in transformers" (NeurIPS 2024, arXiv 2406.18400):
context hijacking of real LLMs (`assocmem.hijack`) and the latent concept association task with a
one-layer transformer (`assocmem.lca`).

From Python (`assocmem.api`; every name is imported on first use, so `import assocmem` stays cheap):

    assocmem.score_prompts(model, prompts, true, false, tokenizer=tok)   # -> DataFrame
    assocmem.evaluate_hijacking(model, tokenizer=tok, records=10, schemes=("not-think", "relation"), max_n=3)
    assocmem.train_lca(m=5, L=32, d=32, seeds=4, steps=300)             # -> TrainedModels
    assocmem.load_run("results/quick/hijack-sample/gemma3-270m")         # -> HijackResult
"""

__version__ = "0.1.0"

# name -> module that holds it
_API = {
    **dict.fromkeys(("load_model", "score_prompts", "hijack_fact", "counterfact", "evaluate_hijacking", "diagnose",
                     "mechanism", "train_lca", "load_run"), "assocmem.api"),
    "LoadedLM": "assocmem.models.llm",
    "HijackResult": "assocmem.hijack.run",
    "DiagnoseResult": "assocmem.hijack.diagnose",
    "MechanismResult": "assocmem.hijack.mechanism_report",
    "TrainedModels": "assocmem.lca.trained",
    "ConfigError": "assocmem.errors",
}
__all__ = ["__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        import importlib

        value = getattr(importlib.import_module(_API[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'assocmem' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))
