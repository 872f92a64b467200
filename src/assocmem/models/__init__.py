"""assocmem.models: loading causal LMs (llm.py)."""
