"""The latent concept association task (paper §4.1): latent space, conditional tables, sampler.

A worked example with m = 3 (V = 8 tokens), neighbourhood `all`, omega = 0.5, beta = 1, L = 4:

* latents are bit vectors z = (z_1, z_2, z_3); the tokenizer iota reads them as a binary number with
  z_1 the most significant bit, so z = (1, 0, 1) is token 5 and the "first latent" z_1 splits the
  vocabulary into the contiguous halves [0, V/2) and [V/2, V) (this makes cluster heatmaps blocks);
* the target z* is drawn uniformly, say token 5 = 101; y = 5;
* positions 1..L-1 are drawn from p(z|z*) = omega * pi(z|z*) + (1 - omega) * Unif: with probability
  1/2 a token near 101 (pi ∝ exp(-D_H/beta) over the neighbourhood, so 100, 111, 001 are the most
  likely, never 101 itself), otherwise any of the 8 tokens, 101 included;
* position L is drawn from pi(z|z*) alone, so the query token is always informative;
* a draw might be x = (4, 2, 7, 1), y = 5.

Everything is a (V, V) table indexed [z*, z] and sampling is inverse-CDF lookup on the device,
vectorised over the whole batch (no Python loop over samples or positions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from assocmem.config import check_choice, check_float_range, check_int_range
from assocmem.errors import ConfigError

Neighborhood = Literal["all", "hamming1", "cluster1", "cluster2"]
NEIGHBORHOODS: tuple[str, ...] = ("all", "hamming1", "cluster1", "cluster2")
MAX_M = 12  # V x V tables: m = 12 is 16.7 M entries (128 MiB in float64); m = 13 would be 4x that.


@dataclass(frozen=True)
class LCAConfig:
    """One setting of the data distribution D^L of §4.1."""

    m: int = 8  # number of binary latents; V = 2^m tokens
    L: int = 64  # context length (the last position is drawn from pi alone)
    omega: float = 0.5  # signal share of the mixture p(z|z*) = omega*pi + (1-omega)*Unif
    beta: float = 1.0  # temperature of pi ∝ exp(-Hamming/beta)
    neighborhood: str = "all"  # support of pi: all | hamming1 | cluster1 | cluster2

    def __post_init__(self) -> None:
        check_int_range("m", self.m, 1, MAX_M)
        check_int_range("L", self.L, 1)
        check_float_range("omega", self.omega, 0.0, 1.0)
        check_float_range("beta", self.beta, 0.0, None, lo_open=True)
        check_choice("neighborhood", self.neighborhood, NEIGHBORHOODS)
        min_m = {"all": 1, "hamming1": 1, "cluster1": 2, "cluster2": 3}[self.neighborhood]
        if self.m < min_m:
            raise ConfigError(
                f"neighborhood={self.neighborhood!r} is empty for m={self.m}: "
                f"allowed m >= {min_m} for this neighborhood"
            )

    @property
    def V(self) -> int:
        return 2**self.m


def latent_bits(m: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, m) int tensor: row t holds iota^{-1}(t), most significant bit first (z_1 = column 0)."""
    tokens = torch.arange(2**m, device=device)
    shifts = torch.arange(m - 1, -1, -1, device=device)
    return (tokens[:, None] >> shifts[None, :]) & 1


def hamming_matrix(m: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) long tensor of Hamming distances D_H(t, t') between token latents."""
    tokens = torch.arange(2**m, device=device)
    xor = tokens[:, None] ^ tokens[None, :]
    return _popcount(xor)


def _popcount(x: torch.Tensor) -> torch.Tensor:
    count = torch.zeros_like(x)
    while bool((x > 0).any()):
        count += x & 1
        x = x >> 1
    return count


def neighborhood_mask(m: int, neighborhood: str, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) bool tensor, entry [z*, z] true iff z ∈ N(z*) (never z = z*)."""
    check_choice("neighborhood", neighborhood, NEIGHBORHOODS)
    V = 2**m
    bits = latent_bits(m, device)
    off_diagonal = ~torch.eye(V, dtype=torch.bool, device=device)
    if neighborhood == "all":
        return off_diagonal
    if neighborhood == "hamming1":
        return hamming_matrix(m, device) == 1
    n_shared = 1 if neighborhood == "cluster1" else 2
    same = (bits[:, None, :n_shared] == bits[None, :, :n_shared]).all(-1)
    return same & off_diagonal


def pi_table(config: LCAConfig, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) table of the informative conditional pi(z|z*) ∝ exp(-D_H(z,z*)/beta) on N(z*)."""
    mask = neighborhood_mask(config.m, config.neighborhood, device)
    logits = -hamming_matrix(config.m, device).to(dtype) / config.beta
    weights = torch.where(mask, torch.exp(logits - logits.max()), torch.zeros((), dtype=dtype, device=device))
    return weights / weights.sum(dim=1, keepdim=True)


def context_table(config: LCAConfig, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> torch.Tensor:
    """(V, V) table of p(z|z*) = omega * pi(z|z*) + (1 - omega) / V (paper Eq. in §4.1)."""
    pi = pi_table(config, dtype, device)
    return config.omega * pi + (1.0 - config.omega) / config.V


def _sample_rows(cdf: torch.Tensor, rows: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """Draw n tokens for each entry of `rows` from the distributions whose CDFs are cdf[rows]."""
    u = torch.rand((*rows.shape, n), generator=generator, device=cdf.device, dtype=cdf.dtype)
    # right=True returns the first index whose CDF exceeds u, which can never be a zero-probability
    # token; the CDFs end at exactly 1.0 so u < 1 always finds an index.
    return torch.searchsorted(cdf[rows], u, right=True).clamp_(max=cdf.shape[-1] - 1)


def _cdf(table: torch.Tensor) -> torch.Tensor:
    cdf = table.cumsum(dim=-1)
    return cdf / cdf[:, -1:]


def sample_batch(
    config: LCAConfig,
    batch_size: int | tuple[int, ...],
    generator: torch.Generator,
    device: torch.device | str | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (x, y) ~ D^L (paper §4.1).

    Returns x of shape (*batch, L) and y of shape (*batch,), both long, on `device` (defaults to the
    generator's device). `targets` fixes y instead of drawing it uniformly.
    """
    device = torch.device(device) if device is not None else generator.device
    batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
    V = config.V
    if targets is None:
        y = torch.randint(0, V, batch, generator=generator, device=device)
    else:
        y = targets.to(device)
        batch = tuple(y.shape)
    pi_cdf = _cdf(pi_table(config, torch.float64, device))
    last = _sample_rows(pi_cdf, y, 1, generator)
    if config.L == 1:
        return last, y
    # Mixture: each position is informative with probability omega, else uniform over all V tokens.
    informative = _sample_rows(pi_cdf, y, config.L - 1, generator)
    uniform = torch.randint(0, V, (*batch, config.L - 1), generator=generator, device=device)
    use_pi = torch.rand((*batch, config.L - 1), generator=generator, device=device) < config.omega
    head = torch.where(use_pi, informative, uniform)
    return torch.cat([head, last], dim=-1), y


def chance_accuracy(config: LCAConfig) -> float:
    """Accuracy of a uniform random guess: 1/V."""
    return 1.0 / config.V

