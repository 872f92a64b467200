"""assocmem: transformers as associative memories.

Implements Jiang, Rajendran, Ravikumar, Aragam, "Do LLMs dream of elephants (when told not to)?
Latent concept association and associative memory in transformers" (NeurIPS 2024, arXiv 2406.18400):
context hijacking of real LLMs (`assocmem.hijack`) and the latent concept association task with a
one-layer transformer (`assocmem.lca`).
"""

__version__ = "0.1.0"
