"""Configuration of the recurrent-depth Huginn-0125 ("raven") model.

Field names and ``model_type`` follow the published ``config.json`` of
huginn-0125 so that a downloaded checkpoint directory is read as-is. Fields
the published code derives (``head_dim``, ``effective_expected_depth``,
``init_values``, ...) are recomputed here when the file does not carry them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from transformers import PretrainedConfig

HUGINN_MODEL_TYPE = "huginn_raven"


class HuginnConfig(PretrainedConfig):
    """Hyper-parameters of a prelude / recurrent core / coda transformer.

    The published checkpoint uses ``n_embd=5280``, 55 heads, 2 prelude,
    4 core and 2 coda blocks and ``mean_recurrence=32`` core iterations.
    """

    model_type: ClassVar[str] = HUGINN_MODEL_TYPE
    keys_to_ignore_at_inference: ClassVar[list[str]] = ["past_key_values"]
    # Generic transformers code reads hidden_size / num_attention_heads; the
    # published file stores n_embd / n_heads (and sometimes num_attention_heads).
    attribute_map: ClassVar[dict[str, str]] = {
        "num_attention_heads": "n_heads",
        "hidden_size": "n_embd",
        "num_hidden_layers": "n_layers",
    }

    n_embd: int = 5280
    n_heads: int = 55
    n_layers: int | None = None  # prelude + core + coda blocks (distinct modules)
    block_size: int = 4096
    vocab_size: int = 65536
    padding_multiple: int = 4096
    tie_embeddings: bool = True
    intermediate_size: int = 17920
    bias: bool = False
    architecture_class_name: str = "RecurrentGPT"
    block_class_name: str = "SandwichBlock"
    norm_class_name: str = "RMSNorm_llama"
    norm_eps: float | int = 1e-6
    mlp_class_name: str = "GatedMLP"
    nonlin_name: str = "SiLU"
    init_strategy: str = "takase"
    init_orthogonal: bool = False
    state_init: str = "like-init"
    injection_type: str = "linear"
    n_layers_in_recurrent_block: int = 4
    mean_recurrence: int = 32
    sampling_scheme: str = "poisson-lognormal-filling"
    mean_backprop_depth: int = 8
    n_layers_in_prelude: int = 2
    n_layers_in_coda: int = 2
    qk_bias: bool = True
    activation_checkpoint_impl: str = "per-iteration"
    rope_base: float | int = 50_000
    test_time_noise: float | int = 0
    test_time_noise_type: str = "fixed"
    # Derived by the published code; accepted when present in config.json.
    num_key_value_heads: int | None = None
    head_dim: int | None = None
    padded_vocab_size: int | None = None
    effective_expected_depth: int | None = None
    init_values: dict[str, float] | None = None
    tie_word_embeddings: bool | None = None
    use_cache: bool = True
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None

    def __post_init__(self, **kwargs: Any) -> None:
        # Aliases (num_attention_heads, hidden_size, ...) must land before the
        # derived sizes are computed, not after as the base class would do.
        for alias in list(kwargs):
            if alias in self.attribute_map:
                setattr(self, alias, kwargs.pop(alias))
        if self.n_layers is None:
            self.n_layers = self.n_layers_in_prelude + self.n_layers_in_recurrent_block + self.n_layers_in_coda
        if self.num_key_value_heads is None:
            self.num_key_value_heads = self.n_heads
        if self.num_key_value_heads != self.n_heads:
            raise ValueError(
                "huginn_raven uses one key/value head per query head "
                f"(num_key_value_heads={self.num_key_value_heads}, n_heads={self.n_heads})"
            )
        if self.n_embd % self.n_heads:
            raise ValueError(f"n_embd={self.n_embd} is not divisible by n_heads={self.n_heads}")
        self.head_dim = self.n_embd // self.n_heads
        if self.padded_vocab_size is None:
            self.padded_vocab_size = self.vocab_size
        self.effective_expected_depth = (
            self.n_layers_in_prelude
            + self.n_layers_in_coda
            + self.n_layers_in_recurrent_block * self.mean_recurrence
        )
        std = math.sqrt(2 / (5 * self.n_embd))
        self.init_values = {
            "std": std,
            "out_proj": std / math.sqrt(2 * self.effective_expected_depth),
            "embedding": std,
            "embed_scale": math.sqrt(self.n_embd),
        }
        if self.tie_word_embeddings is None:
            self.tie_word_embeddings = self.tie_embeddings
        super().__post_init__(**kwargs)

    @property
    def num_visits(self) -> int:
        """Number of block visits (= flat layers) at the default recurrence."""
        return self.effective_expected_depth


# The published class name, for code written against the official files.
RavenConfig = HuginnConfig
