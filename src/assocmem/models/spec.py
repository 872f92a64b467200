"""Which causal LM, where and in what precision: one config, checked once at construction."""

from __future__ import annotations

from dataclasses import dataclass

from assocmem.config import option


@dataclass(frozen=True)
class ModelSpec:
    """A causal LM to load (models.llm.load_causal_lm); every value is checked here, before any data
    is read or weights are loaded."""

    model: str = option("gemma3-270m", "gemma3-270m (bundled), smollm2-135m (bundled), a hub id, a local dir, "
                                       "a .gguf file or tiny-random-<gpt2|llama|gemma3>.")
    device: str = option("auto", "auto | cpu | cuda | cuda:N.")
    dtype: str = option("auto", "auto (float32 on CPU; on GPU the checkpoint's own, bfloat16 for the bundled "
                                "models; bf16 vs float32 agreement in benchmarks/RESULTS.md) | float32 | bfloat16 | float16.")
    device_map: str | None = option(None, "e.g. auto: spread a large model over GPUs (accelerate).")
    max_memory: str | None = option(None, 'With --device-map: cap per device, e.g. "0=20GiB,1=20GiB,cpu=64GiB".')
    trust_remote_code: bool = option(False, "Allow a hub model's own code.")

    def __post_init__(self) -> None:
        from assocmem.models.llm import check_max_memory, parse_max_memory, resolve_model
        from assocmem.runtime import check_device, check_dtype

        resolve_model(self.model, locate=False)
        check_device(self.device)
        check_dtype(self.dtype)
        check_max_memory(parse_max_memory(self.max_memory), self.device_map)

    def load(self, device: str | None = None):
        """The loaded model (`device` overrides this spec's, e.g. a torchrun rank's own GPU)."""
        from assocmem.models.llm import load_causal_lm, parse_max_memory

        return load_causal_lm(self.model, device=device or self.device, dtype=self.dtype, device_map=self.device_map,
                              trust_remote_code=self.trust_remote_code, max_memory=parse_max_memory(self.max_memory))
