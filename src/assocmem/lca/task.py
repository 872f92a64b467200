"""The latent concept association task (paper §4.1): latent space, conditional tables, the one sampler.

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

How it is drawn (`Sampler`, the only sampler: training, evaluation and every analysis use it): both
p(z|z*) and pi(z|z*) depend on z only through the offset delta = z XOR z* (Hamming distances and
shared leading bits are XOR-invariant), so each is one V-entry table of offsets, the same for every
target. A context takes L + 1 uniform numbers u from the model's own generator: y = floor(u_0 V); for
l = 1..L-1 the offset is the inverse CDF of p at u_l, for l = L the inverse CDF of pi at u_L; and
x_l = y XOR delta_l. In the example, u_0 = 0.69 gives y = 5; u_1 = 0.20 falls in p's offset 001, so
x_1 = 101 XOR 001 = 4. Everything is vectorised over models, contexts and positions, on the device.

`extra_tokens` adds vocabulary entries that no sample ever uses (the authors' code has one: a
vocabulary of 2^m + 1 tokens): the model still embeds and can predict them, the sampler never draws them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from assocmem.config import check_choice, check_float_range, check_int_range, option
from assocmem.errors import ConfigError

Neighborhood = Literal["all", "hamming1", "cluster1", "cluster2"]
NEIGHBORHOODS: tuple[str, ...] = ("all", "hamming1", "cluster1", "cluster2")
MAX_M = 12  # V x V tables: m = 12 is 16.7 M entries (128 MiB in float64); m = 13 would be 4x that.
GUIDE_BUCKETS = 4096  # equal slices of [0, 1) in the guide table of a context CDF (see Sampler._context_offsets)
GUIDE_MAX_STEPS = 4  # at most this many CDF steps in a slice, else plain binary search


@dataclass(frozen=True)
class LCAConfig:
    """One setting of the data distribution D^L of §4.1."""

    m: int = option(8, "Number of binary latents (V = 2^m tokens), 1..12.")
    L: int = option(64, "Context length (the last position is drawn from pi alone).")
    omega: float = option(0.5, "Signal share of p(z|z*) = omega*pi + (1-omega)*Unif, in [0, 1].")
    beta: float = option(1.0, "Temperature of pi ∝ exp(-Hamming/beta), > 0.")
    neighborhood: str = option("all", "Support of pi: all | hamming1 | cluster1 | cluster2.")
    extra_tokens: int = option(0, "Vocabulary entries no sample uses (the authors' code: 1, so 2^m + 1 tokens).")

    def __post_init__(self) -> None:
        check_int_range("m", self.m, 1, MAX_M)
        check_int_range("L", self.L, 1)
        check_float_range("omega", self.omega, 0.0, 1.0)
        check_float_range("beta", self.beta, 0.0, None, lo_open=True)
        check_choice("neighborhood", self.neighborhood, NEIGHBORHOODS)
        check_int_range("extra_tokens", self.extra_tokens, 0, 2**MAX_M)
        min_m = {"all": 1, "hamming1": 1, "cluster1": 2, "cluster2": 3}[self.neighborhood]
        if self.m < min_m:
            raise ConfigError(f"neighborhood={self.neighborhood!r} is empty for m={self.m}: "
                              f"allowed m >= {min_m} for this neighborhood", field="neighborhood")

    @property
    def V(self) -> int:
        """The latent tokens: every sample's tokens and target lie in [0, V)."""
        return 2**self.m

    @property
    def vocab_size(self) -> int:
        """The model's vocabulary: the V latent tokens plus the `extra_tokens` that are never drawn."""
        return self.V + self.extra_tokens


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


def _cdf(table: torch.Tensor) -> torch.Tensor:
    """CDFs of the rows of `table`, each ending at exactly 1.0."""
    cdf = table.cumsum(dim=-1)
    return cdf / cdf[..., -1:]


def offset_tables(config: LCAConfig, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """(V,) float64 tables of the offset delta = z XOR z* of a context token, p(z* ^ delta | z*), and of
    the query token, pi(z* ^ delta | z*): the same for every target z*.

    Every neighbourhood of §4.1 and the weight exp(-D_H/beta) are invariant under z -> z XOR c, so the
    rows of the (V, V) tables are permutations of row 0. Checked on the tables, so a future neighbourhood
    without that symmetry fails here instead of sampling wrongly.
    """
    tokens = torch.arange(config.V, device=device)
    xor = tokens[:, None] ^ tokens[None, :]  # [z*, delta] -> z* ^ delta
    out = []
    for table in (context_table(config, torch.float64, device), pi_table(config, torch.float64, device)):
        by_offset = table.gather(1, xor)  # [z*, delta] = p(z* ^ delta | z*)
        if not torch.allclose(by_offset, table[:1].expand_as(table), rtol=1e-12, atol=0.0):
            raise ConfigError(f"neighborhood={config.neighborhood!r} is not XOR-symmetric: the sampler cannot draw it")
        out.append(table[0])
    return out[0], out[1]


class Sampler:
    """Draws (x, y) ~ D^L (§4.1) for E settings that share m and L, setting e's from generators[e] only.

    The settings may differ in omega, beta and neighbourhood. Model e's draws depend on nothing but its
    own generator, so E settings drawn together give each exactly what it gets drawn alone (the batched
    trainer relies on it). One call takes one (B, L + 1) block of uniform numbers per generator (see the
    module docstring) and does the rest for all E at once: two searchsorted lookups and an XOR.
    """

    def __init__(self, configs: Sequence[LCAConfig], device: torch.device | str = "cpu") -> None:
        configs = list(configs)
        if not configs:
            raise ConfigError("configs=[] is invalid: allowed at least one setting")
        if len({(c.m, c.L) for c in configs}) != 1:
            raise ConfigError("settings drawn together must share m and L")
        self.device = torch.device(device)
        self.V, self.L = configs[0].V, configs[0].L
        distinct = list(dict.fromkeys(configs))
        tables = [offset_tables(c, self.device) for c in distinct]
        index = torch.tensor([distinct.index(c) for c in configs], device=self.device)
        self.context_cdf = _cdf(torch.stack([t[0] for t in tables]))[index].contiguous()  # (E, V)
        self.query_cdf = _cdf(torch.stack([t[1] for t in tables]))[index].contiguous()  # (E, V)
        # A guide table (Chen & Asau): for slice j of [0, 1), the first offset whose CDF exceeds j/K. A u in slice j
        # has its offset between guide[j] and guide[j + 1]; `guide_steps` is the widest such gap.
        grid = torch.arange(GUIDE_BUCKETS + 1, device=self.device, dtype=torch.float64) / GUIDE_BUCKETS
        first = torch.searchsorted(self.context_cdf, grid.expand(len(configs), -1).contiguous(), right=True)
        self.guide = first[:, :-1].contiguous()  # (E, K)
        self.guide_steps = int((first[:, 1:] - first[:, :-1]).max())

    def draw(
        self, generators: Sequence[torch.Generator], batch_size: int, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x (E, B, L) and y (E, B), long, on the sampler's device; `targets` (E, B) fixes y instead of
        drawing it (its uniform number is drawn all the same, so the rest of the stream does not move)."""
        E, V, L, B = self.context_cdf.shape[0], self.V, self.L, batch_size
        if len(generators) != E:
            raise ConfigError(f"{len(generators)} generators for {E} settings: allowed one generator per setting")
        u = torch.stack([torch.rand((B, L + 1), generator=g, device=g.device, dtype=torch.float64)
                         for g in generators]).to(self.device)  # (E, B, L+1): [target | L-1 context | query]
        # u < 1 and V is a power of two, so u * V is exact and below V.
        y = (u[..., 0] * V).long() if targets is None else targets.to(self.device).reshape(E, B)
        # The first offset whose CDF exceeds u: never one of probability 0, and a CDF ends at 1.0 > u.
        context = self._context_offsets(u[..., 1:L].reshape(E, -1)).view(E, B, L - 1)
        query = torch.searchsorted(self.query_cdf, u[..., L].contiguous(), right=True).view(E, B, 1)
        delta = torch.cat([context, query], dim=-1).clamp_(max=V - 1)  # (E, B, L)
        return y[..., None] ^ delta, y

    def _context_offsets(self, u: torch.Tensor) -> torch.Tensor:
        """(E, n): for each u, the first offset whose context CDF exceeds it (searchsorted(right=True)'s answer).

        Start at the guide entry of u's slice and step forward while the CDF is ≤ u: at most `guide_steps`
        steps, each one gather for all values at once (the mixture's uniform part makes every offset at least
        (1 − omega)/V likely, so one step is typical); binary search over the whole table where a slice holds
        many CDF steps (omega close to 1). Exactly the same offsets either way, much faster on a CPU.
        """
        if self.guide_steps > GUIDE_MAX_STEPS:
            return torch.searchsorted(self.context_cdf, u.contiguous(), right=True)
        index = self.guide.gather(1, (u * GUIDE_BUCKETS).long())  # u < 1 and K a power of two: slice < K
        for _ in range(self.guide_steps):
            index += self.context_cdf.gather(1, index) <= u
        return index


def sample_batch(
    config: LCAConfig,
    batch_size: int | tuple[int, ...],
    generator: torch.Generator,
    device: torch.device | str | None = None,
    targets: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw (x, y) ~ D^L (paper §4.1) for one setting: `Sampler` with E = 1.

    Returns x of shape (*batch, L) and y of shape (*batch,), both long, on `device` (defaults to the
    generator's device). `targets` fixes y instead of drawing it uniformly.
    """
    device = torch.device(device) if device is not None else generator.device
    batch = (batch_size,) if isinstance(batch_size, int) else tuple(batch_size)
    if targets is not None:
        batch = tuple(targets.shape)
    n = math.prod(batch)
    x, y = Sampler([config], device).draw([generator], n, None if targets is None else targets.reshape(1, n))
    return x.view(*batch, config.L), y.view(batch)


def chance_accuracy(config: LCAConfig) -> float:
    """Accuracy of a uniform random guess: 1/V."""
    return 1.0 / config.V

