"""assocmem.models."""
