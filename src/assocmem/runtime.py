"""Device, dtype and seed handling shared by both halves."""

from __future__ import annotations

import torch

from assocmem.errors import bad_option

_DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
           "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """`auto` → cuda if available else cpu; otherwise validate the requested device exists."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise bad_option("device", device, "auto, cpu, cuda, cuda:N, mps") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise bad_option("device", str(device), "cpu here (no CUDA device is visible)")
    return dev


def check_device(device: str) -> None:
    """`device` names a device this machine has (or auto)."""
    resolve_device(device)


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in _DTYPES:
        raise bad_option("dtype", dtype, "one of auto, " + ", ".join(_DTYPES))
    return _DTYPES[dtype]


def check_dtype(dtype: str) -> None:
    """`dtype` is auto (resolved when the model loads) or a dtype name."""
    if dtype != "auto":
        resolve_dtype(dtype)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """An explicit generator: nothing in the package reads global random state."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen
