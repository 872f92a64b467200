"""assocmem.lca."""
