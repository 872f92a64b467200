"""What `assocmem hijack mechanism` and `assocmem hijack defend` run: typed configs, validated at construction.

`MechanismConfig` is the whole causal study (hijack.mechanism, hijack.defence); `DefendConfig` is the
part of it a defence needs (read-position knockout per block to find the carrying blocks, per-head
knockout there, then the defence), so `hijack defend` runs on any model with a few options.
"""

from __future__ import annotations

from dataclasses import dataclass

from assocmem.config import Composed, as_tuple, check_choice, check_float_range, check_int_range, int_tuple, option
from assocmem.errors import ConfigError, bad_option
from assocmem.hijack.counterfact import CounterFactSelection
from assocmem.hijack.schemes import scheme_names
from assocmem.hijack.scoring import Batching
from assocmem.models.spec import ModelSpec

VARIANTS = ("read", "prompt")            # knockout from the read position / from every prompt token
LAYER_SETS = ("single", "window", "all")
COMPONENTS = ("resid", "attn", "mlp")    # block output (residual stream), attention output, MLP output


def parse_head(flag: str, text: str) -> tuple[int, int]:
    """"12.1" → (12, 1): block 12, head 1 (both 0-based)."""
    try:
        block, head = (int(p) for p in str(text).split("."))
    except ValueError:
        raise bad_option(flag, text, "BLOCK.HEAD pairs of 0-based integers, e.g. 12.1") from None
    if block < 0 or head < 0:
        raise bad_option(flag, text, "BLOCK.HEAD pairs of 0-based integers, e.g. 12.1")
    return block, head


@dataclass(frozen=True)
class DefenceSettings:
    """The test-time defence: scale down the heads that carry the hijack (hijack.defence)."""

    max_heads: int = option(3, "Heads scaled: at most this many of the heads found on the choosing half (per-head "
                               "read knockout restores > 2 SE, beats its control by > 2 SE), best first.")
    scales: tuple[float, ...] = option((0.0, 0.25, 0.5, 0.75), "Candidate scales of those heads' outputs; one is "
                                                               "chosen on the choosing half.")
    min_head_restoration: float = option(0.1, "A head is found only if its knockout also restores at least this "
                                               "share of the hijack on average (choosing half).")
    extra_records: int = option(300, "More records per scheme for the defence alone (outside the mechanism's sample, "
                                     "split into halves the same way): a small model knows few facts.")
    min_recall: float = option(0.9, "A scale qualifies if at least this share of the known facts stay known at "
                                    "n = 0 (on the choosing half); none qualifies: scale 1 (no defence).")
    scale_heads: tuple[str, ...] = option((), "Scale these heads (BLOCK.HEAD, 0-based, e.g. 12.1) instead of "
                                              "the heads found; the scale is still chosen on the choosing half.")

    def __post_init__(self):
        object.__setattr__(self, "scale_heads", as_tuple("scale_heads", self.scale_heads))
        for h in self.scale_heads:
            parse_head("scale_heads", h)
        scales = as_tuple("scales", self.scales, float, "numbers in [0, 1)")
        if not scales:
            raise bad_option("scales", "", "at least one number in [0, 1)")
        for s in scales:
            check_float_range("scales", s, 0.0, 1.0, hi_open=True)
        object.__setattr__(self, "scales", tuple(sorted(set(scales))))
        check_int_range("max_heads", self.max_heads, 1)
        check_int_range("extra_records", self.extra_records, 0)
        check_float_range("min_head_restoration", self.min_head_restoration, 0.0)
        check_float_range("min_recall", self.min_recall, 0.0, 1.0)

    def given_heads(self) -> tuple[tuple[int, int], ...]:
        return tuple(parse_head("scale_heads", h) for h in self.scale_heads)


@dataclass(frozen=True)
class MechanismConfig(Composed):
    """What `assocmem hijack mechanism` runs; validated at construction, saved as config.json."""

    lm: ModelSpec = option(factory=ModelSpec)
    selection: CounterFactSelection = option(factory=lambda: CounterFactSelection(records=200, skip_bad=True))
    batching: Batching = option(factory=Batching)
    ns: tuple[int, ...] = option((1, 3), "Hijacked prompts' numbers of sentences (n >= 1; n = 0 is the clean "
                                         "prompt), e.g. --n 1 3.", flag="--n")
    schemes: tuple[str, ...] = option(("not-think", "associated"), "Hijacking schemes, each on its own sample of "
                                                                   "the records it can build.")
    variants: tuple[str, ...] = option(VARIANTS, "Knockout queries: read (the read position), prompt (every "
                                                 "prompt token: the sanity check, = deleting the distractors).")
    layer_sets: tuple[str, ...] = option(LAYER_SETS, "Knockout layers: single (each block), window, all.")
    prompt_layer_sets: tuple[str, ...] = option(("all",), "Of those, the ones the prompt variant runs (it "
                                                          "recomputes every prompt token: ~10x a read knockout).")
    window: int = option(4, "Blocks per window.")
    stride: int = option(2, "Blocks between the first blocks of consecutive windows (the last ends at the top).")
    components: tuple[str, ...] = option(COMPONENTS, "Patched at the read position, one block at a time: resid, "
                                                     "attn, mlp.")
    control: bool = option(True, "The random-token control of every knockout (--no-control skips it).",
                           flag="--control/--no-control")
    heads: bool = option(True, "Per-head knockout and patching at the read position in the carrying blocks.",
                         flag="--heads/--no-heads")
    head_blocks: int = option(2, "Carrying blocks: per scheme the K single blocks whose read-position knockout "
                                 "restores most on the choosing half (the union is analysed for every scheme).")
    defend: bool = option(True, "Scale the heads found down at test time; judged on the other half.",
                          flag="--defend/--no-defend")
    defence: DefenceSettings = option(factory=DefenceSettings)
    min_shift: float = option(0.5, "Records used: the hijack lowered the margin by more than this (nats).")
    probe_tokens: int = option(256, "New tokens per row and extension forward.")
    template: str | None = option(None, 'Sentence of scheme "template".')

    def __post_init__(self):
        for name in ("variants", "layer_sets", "prompt_layer_sets", "components"):
            object.__setattr__(self, name, as_tuple(name, getattr(self, name)))
        object.__setattr__(self, "ns", int_tuple("ns", self.ns, 1))
        object.__setattr__(self, "schemes", scheme_names(self.schemes, self.template))
        for name, values, allowed in (("variants", self.variants, VARIANTS),
                                      ("layer_sets", self.layer_sets, LAYER_SETS),
                                      ("prompt_layer_sets", self.prompt_layer_sets, LAYER_SETS),
                                      ("components", self.components, COMPONENTS)):
            for v in values:
                check_choice(name, v, allowed)
        given = bool(self.defence.scale_heads)
        if self.heads and not given and not ("read" in self.variants and "single" in self.layer_sets):
            raise ConfigError("heads needs `variants` read and `layer_sets` single (the carrying blocks are the "
                              "single blocks whose read-position knockout restores most); or turn `heads` off",
                              field="heads")
        if self.defend and not (self.heads or given):
            raise ConfigError("defend needs `heads` (the heads found) or `scale_heads` BLOCK.HEAD ...", field="defend")
        if not (self.variants and self.layer_sets) and not self.components and not self.defend:
            raise ConfigError("variants, `layer_sets` and `components` are invalid: nothing to run", field="variants")
        check_int_range("window", self.window, 1)
        check_int_range("stride", self.stride, 1)
        check_int_range("head_blocks", self.head_blocks, 1)
        check_float_range("min_shift", self.min_shift, 0.0)
        check_int_range("probe_tokens", self.probe_tokens, 1)

    @property
    def seed(self) -> int:
        """Seeds the sample, the control tokens and the split into halves."""
        return self.selection.seed

    @property
    def searches_heads(self) -> bool:
        return self.heads and ("read" in self.variants and "single" in self.layer_sets)


@dataclass(frozen=True)
class DefendConfig(Composed):
    """What `assocmem hijack defend` runs: the part of the mechanism study a defence needs."""

    lm: ModelSpec = option(factory=ModelSpec)
    selection: CounterFactSelection = option(factory=lambda: CounterFactSelection(records=200, skip_bad=True))
    batching: Batching = option(factory=Batching)
    ns: tuple[int, ...] = option((1, 3), "Hijacked prompts' numbers of sentences (n >= 1), e.g. --n 1 3.",
                                 flag="--n")
    schemes: tuple[str, ...] = option(("not-think", "associated"), "Hijacking schemes, each on its own sample of "
                                                                   "the records it can build.")
    head_blocks: int = option(2, "Carrying blocks searched for heads: per scheme the K single blocks whose "
                                 "read-position knockout restores most on the choosing half.")
    defence: DefenceSettings = option(factory=DefenceSettings)
    min_shift: float = option(0.5, "Records used to find heads: the hijack lowered the margin by more than this.")
    probe_tokens: int = option(256, "New tokens per row and extension forward.")
    template: str | None = option(None, 'Sentence of scheme "template".')

    def __post_init__(self):
        checked = self.mechanism()        # every value checked now, by the config it becomes
        object.__setattr__(self, "ns", checked.ns)
        object.__setattr__(self, "schemes", checked.schemes)

    def mechanism(self) -> MechanismConfig:
        """The mechanism study that finds the heads (skipped when --scale-heads names them) and defends."""
        given = bool(self.defence.scale_heads)
        return MechanismConfig(lm=self.lm, selection=self.selection, batching=self.batching, ns=self.ns,
                               schemes=self.schemes, variants=() if given else ("read",),
                               layer_sets=() if given else ("single",), prompt_layer_sets=(), components=(),
                               control=True, heads=not given, head_blocks=self.head_blocks, defend=True,
                               defence=self.defence, min_shift=self.min_shift, probe_tokens=self.probe_tokens,
                               template=self.template)
