"""assocmem.hijack."""
