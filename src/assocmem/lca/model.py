"""The one-layer transformer of §4.2, batched over a leading model dimension E.

    f^L(x) = [W_E^T W_V attn(W_E chi(x))]_{:,L},   attn(U) = U sigma((W_K U)^T (W_Q U) / sqrt(d_a))

sigma is a column-wise softmax, there is no residual, no normalisation, no positional embedding, and
the embedding is tied (W_E embeds and unembeds, as in Gemma). Only the last position matters to the
task, so only its query column is computed. A single model is the case E = 1: there is one
implementation of the maths, and `forward_last` is a pure function so that an analysis can swap any
matrix (e.g. W_V by the Theorem 1 construction, Eq. 5.1) without touching a module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from assocmem.config import check_choice, check_float_range, check_int_range, option
from assocmem.errors import bad_option

WEIGHT_NAMES: tuple[str, ...] = ("W_E", "W_Q", "W_K", "W_V")
INITS: tuple[str, ...] = ("gaussian", "torch")


class LastPosition(NamedTuple):
    logits: torch.Tensor  # (E, B, V)  f^L(x)
    attention: torch.Tensor  # (E, B, L)  sigma(...)_{:, L}: the last column of the attention matrix
    hidden: torch.Tensor  # (E, B, d)  h(x) = [attn(W_E chi(x))]_{:, L}


def forward_last(
    W_E: torch.Tensor, W_Q: torch.Tensor, W_K: torch.Tensor, W_V: torch.Tensor, x: torch.Tensor
) -> LastPosition:
    """Evaluate E models at once on token contexts (paper Eq. 4.1, last position only).

    W_E: (E, d, V); W_Q, W_K: (E, d_a, d); W_V: (E, d, d); x: (E, B, L) or (B, L) long (the same
    contexts for every model).

    Computed through the one-hot matrix chi(x) as the paper writes it, never materialising the
    (E, B, L, d) embedded contexts U = W_E chi(x):
      score of position l = (W_K u_l) . (W_Q u_L) = [W_E^T W_K^T W_Q u_L]_{x_l}  (a lookup in a V-vector);
      h(x) = U sigma_{:,L} = W_E (chi(x) sigma_{:,L})  (an attention-weighted token histogram).
    Every product is then a (B, d) x (d, V) matrix product; on CPU this is 5-20x faster than
    gathering U (m = 5..10, L = 32..64), and it needs (E, B, V) memory instead of (E, B, L, d).
    """
    E, d, V = W_E.shape
    if x.dim() == 2:
        x = x.unsqueeze(0).expand(E, *x.shape)
    B = x.shape[1]
    d_a = W_Q.shape[1]
    u_last = torch.gather(W_E, 2, x[:, :, -1].unsqueeze(1).expand(-1, d, -1))  # (E, d, B)
    query = torch.bmm(W_Q, u_last)  # (E, d_a, B)
    pulled = torch.bmm(W_K.transpose(1, 2), query)  # (E, d, B): W_K^T W_Q u_L
    token_scores = torch.bmm(pulled.transpose(1, 2), W_E)  # (E, B, V): u_t . W_K^T W_Q u_L for every t
    scores = token_scores.gather(2, x) / math.sqrt(d_a)  # (E, B, L)
    attention = scores.softmax(dim=-1)  # the column softmax sigma_{:, L}
    histogram = torch.zeros(E, B, V, dtype=attention.dtype, device=attention.device)
    histogram = histogram.scatter_add(2, x, attention)  # (E, B, V): chi(x) sigma_{:, L}
    hidden = torch.bmm(histogram, W_E.transpose(1, 2))  # (E, B, d)
    logits = _readout(W_E, W_V, hidden)
    return LastPosition(logits, attention, hidden)


def _readout(W_E: torch.Tensor, W_V: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """W_E^T W_V h: (E, B, V)."""
    values = torch.bmm(hidden, W_V.transpose(1, 2))  # (E, B, d)
    return torch.bmm(values, W_E)


@dataclass(frozen=True)
class ModelConfig:
    """Shape and training switches of the one-layer transformer (§4.2); V comes from the task."""

    d: int = option(128, "Embedding dimension (d < V: under-parameterised, d > V: over-, §5.3).")
    d_a: int | None = option(None, "Attention head size (default d).")
    freeze_value: bool = option(False, "Fix W_V to the identity (the fixed-W_V arm of §6.1, Fig. 3a).")
    freeze_embedding: bool = option(False, "Keep W_E at its initial values (the frozen arm of §6.2).")
    init_std: float | None = option(None, "Std of every Gaussian entry (init gaussian; default 1/sqrt(d)).")
    # "gaussian": every matrix N(0, std²) (ours); "torch": PyTorch's defaults as in the authors' code,
    # nn.Embedding's N(0, 1) for W_E and nn.Linear(bias=False)'s U(-1/sqrt(d), 1/sqrt(d)) for W_Q, W_K, W_V.
    init: str = option("gaussian", "gaussian (ours: N(0, std²) everywhere) | torch (PyTorch's defaults, as the "
                                   "authors' code).")

    def __post_init__(self) -> None:
        check_int_range("d", self.d, 1)
        if self.d_a is not None:
            check_int_range("d_a", self.d_a, 1)
        for name in ("freeze_value", "freeze_embedding"):
            if not isinstance(getattr(self, name), bool):
                raise bad_option(name, getattr(self, name), "true or false")
        if self.init_std is not None:
            check_float_range("init_std", self.init_std, 0.0, None, lo_open=True)
        check_choice("init", self.init, INITS)
        if self.init == "torch" and self.init_std is not None:
            raise bad_option("init_std", self.init_std, "None with init='torch' (PyTorch's defaults fix every scale)")

    @property
    def shape(self) -> tuple[int, int]:
        """(d, d_a): models of equal shape (and vocabulary) can be held and trained as one batch."""
        return self.d, self.head_size

    @property
    def head_size(self) -> int:
        """d_a, resolved."""
        return self.d if self.d_a is None else self.d_a

    @property
    def std(self) -> float:
        """The Gaussian init std, resolved.

        1/sqrt(d) gives every embedding column a norm close to 1 and pairwise inner products of
        order 1/sqrt(d), so for d > V the frozen embeddings are the near-orthonormal basis that
        Theorem 1 assumes (§5.3). The same scale on W_Q and W_K makes the initial attention scores
        O(1/d), i.e. attention starts uniform, as in the Theorem 1 model (W_K = W_Q = 0); on W_V it
        keeps ||W_V h|| close to ||h||, so the initial logits are small and the loss starts at log V.
        """
        return 1.0 / math.sqrt(self.d) if self.init_std is None else float(self.init_std)


class OneLayerTransformer(nn.Module):
    """E independent one-layer transformers held as batched parameters.

    W_E (E, d, V), W_Q and W_K (E, d_a, d), W_V (E, d, d). `config` is one ModelConfig for all E models
    or a sequence of E configs of one shape (d, d_a): each model then has its own init law and its own
    freeze switches (a frozen W_V is the identity; `trainable` says per model which matrices train), so
    the trained and frozen arms of a figure can train in one batch. `generator` is either one generator,
    from which the E models are drawn one after another, or a sequence of E generators, one per
    model: then model e is exactly the model built alone from generators[e] (use `from_seeds`);
    None means one generator seeded 0.
    The draws are made on the generator's device and moved to `device`, so a CPU generator gives the
    same initial weights on every device.
    """

    def __init__(
        self,
        V: int,
        config: ModelConfig | Sequence[ModelConfig],
        E: int = 1,
        generator: torch.Generator | Sequence[torch.Generator] | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        super().__init__()
        check_int_range("V", V, 1)
        check_int_range("E", E, 1)
        configs = [config] * E if isinstance(config, ModelConfig) else list(config)
        if len(configs) != E:
            raise bad_option("config", f"{len(configs)} configs", f"one config or exactly E={E}")
        if len({c.shape for c in configs}) != 1:
            raise bad_option("config", "configs of different shapes", "one (d, d_a) for every model of a batch")
        self.config, self.configs, self.V, self.E = configs[0], configs, V, E
        if generator is None:
            generator = torch.Generator().manual_seed(0)
        gens = [generator] * E if isinstance(generator, torch.Generator) else list(generator)
        if len(gens) != E:
            raise bad_option("generator", f"{len(gens)} generators", f"one generator or exactly E={E}")
        draws = [_draw_one(V, c, g) for c, g in zip(configs, gens)]
        for name in WEIGHT_NAMES:
            stacked = torch.stack([w[name] for w in draws]).to(device)
            self.register_parameter(name, nn.Parameter(stacked))
        frozen_value = torch.tensor([c.freeze_value for c in configs], device=device)
        if bool(frozen_value.any()):
            with torch.no_grad():
                eye = torch.eye(self.config.d, device=device, dtype=self.W_V.dtype)
                self.W_V[frozen_value] = eye
        self._trainable = {
            "W_E": torch.tensor([not c.freeze_embedding for c in configs], device=device),
            "W_Q": torch.ones(E, dtype=torch.bool, device=device),
            "W_K": torch.ones(E, dtype=torch.bool, device=device),
            "W_V": ~frozen_value,
        }
        for name in ("W_E", "W_V"):  # a matrix no model trains gets no gradient at all
            getattr(self, name).requires_grad_(bool(self._trainable[name].any()))

    def trainable(self, name: str) -> torch.Tensor:
        """(E,) bool: which models train matrix `name` (an optimizer leaves the others exactly as they are)."""
        return self._trainable[name] & getattr(self, name).requires_grad

    @classmethod
    def from_seeds(
        cls, V: int, config: ModelConfig | Sequence[ModelConfig], seeds: Sequence[int],
        device: torch.device | str = "cpu",
    ) -> OneLayerTransformer:
        """One model per seed (and config); model e equals `from_seeds(V, configs[e], [seeds[e]])`."""
        gens = [torch.Generator().manual_seed(int(s)) for s in seeds]
        return cls(V, config, E=len(gens), generator=gens, device=device)

    def forward(self, x: torch.Tensor) -> LastPosition:
        """x: (E, B, L) or (B, L) long → LastPosition with logits (E, B, V)."""
        return forward_last(self.W_E, self.W_Q, self.W_K, self.W_V, x)

    def weights(self) -> dict[str, torch.Tensor]:
        """{"W_E", "W_Q", "W_K", "W_V"} as detached tensors (sharing storage with the module)."""
        return {name: getattr(self, name).detach() for name in WEIGHT_NAMES}

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def set_weight(self, name: str, tensor: torch.Tensor, trainable: bool = True) -> None:
        """Overwrite one matrix, e.g. with a construction of §5, and freeze it unless `trainable`.

        `tensor` has the batched shape (E, ...) or the shape of one model's matrix, which is then
        copied into all E models. A frozen matrix gets no gradient, so an optimizer built after this
        call never updates it (and AdamW's weight decay skips parameters without a gradient).
        """
        if name not in WEIGHT_NAMES:
            raise bad_option("name", name, "one of " + ", ".join(WEIGHT_NAMES))
        param: nn.Parameter = getattr(self, name)
        if tuple(tensor.shape) not in (tuple(param.shape), tuple(param.shape[1:])):
            raise bad_option(
                name, f"a tensor of shape {tuple(tensor.shape)}",
                f"shape {tuple(param.shape)} or {tuple(param.shape[1:])}",
            )
        with torch.no_grad():
            param.copy_(tensor.to(param.device, param.dtype).expand_as(param))
        param.requires_grad_(trainable)
        if not trainable:
            param.grad = None
        self._trainable[name] = torch.full((self.E,), trainable, dtype=torch.bool, device=param.device)


def _draw_one(V: int, config: ModelConfig, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """One model's init; every matrix is always drawn, in a fixed order, so that the freeze switches
    never change the other matrices of the same seed.

    "torch" is PyTorch's default init of the authors' modules: nn.Embedding(V, d) is N(0, 1) (its
    (V, d) weight is our W_E transposed, the same law), and nn.Linear(d, d_out, bias=False) is
    kaiming_uniform(a=sqrt(5)), i.e. U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with fan_in = d for all three.
    """
    d, d_a = config.d, config.head_size
    shapes = {"W_E": (d, V), "W_Q": (d_a, d), "W_K": (d_a, d), "W_V": (d, d)}
    out = {}
    for name in WEIGHT_NAMES:
        if config.init == "gaussian":
            out[name] = torch.randn(shapes[name], generator=generator, device=generator.device) * config.std
        elif name == "W_E":
            out[name] = torch.randn(shapes[name], generator=generator, device=generator.device)
        else:
            bound = 1.0 / math.sqrt(d)
            out[name] = (torch.rand(shapes[name], generator=generator, device=generator.device) * 2 - 1) * bound
    return out
