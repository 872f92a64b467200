"""assocmem.experiments."""
