"""Tiny in-memory causal LMs of every architecture the built-in adapters know.

Each is built from its transformers config with 3 blocks and width 16, so
the whole models test-suite runs in seconds on a CPU.
"""

from __future__ import annotations

import torch

# Tiny matmuls are slower with several threads when the machine is busy
# (thread hand-off dominates: 0.5 s instead of 3 ms per forward).
torch.set_num_threads(1)

VOCAB = 64
HIDDEN = 16
N_LAYERS = 3


def _configs() -> dict:
    from transformers import (GemmaConfig, GPT2Config, GPTNeoXConfig, LlamaConfig, MistralConfig, Olmo2Config,
                              OlmoConfig, Qwen2Config)

    common = dict(vocab_size=VOCAB, hidden_size=HIDDEN, intermediate_size=32, num_hidden_layers=N_LAYERS,
                  num_attention_heads=2, max_position_embeddings=64, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2)
    return {
        "llama": lambda: LlamaConfig(num_key_value_heads=1, **common),
        "mistral": lambda: MistralConfig(num_key_value_heads=1, sliding_window=None, **common),
        "qwen2": lambda: Qwen2Config(num_key_value_heads=1, **common),
        "gemma": lambda: GemmaConfig(num_key_value_heads=1, head_dim=8, **common),
        "gpt2": lambda: GPT2Config(vocab_size=VOCAB, n_embd=HIDDEN, n_layer=N_LAYERS, n_head=2, n_positions=64,
                                   pad_token_id=0, bos_token_id=1, eos_token_id=2),
        "gpt_neox": lambda: GPTNeoXConfig(rotary_pct=0.5, **common),
        "olmo": lambda: OlmoConfig(**common),
        "olmo2": lambda: Olmo2Config(**common),
    }


ARCHITECTURES = tuple(_configs())
# Block output = block input + attention output + MLP output (no norms after
# attention or MLP), so the attn/mlp hook points can be checked exactly.
ADDITIVE = {"llama", "mistral", "qwen2", "gemma", "gpt2", "gpt_neox", "olmo"}


def tiny_model(arch: str, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised tiny causal LM of ``arch`` in eval mode."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = _configs()[arch]()
    model = AutoModelForCausalLM.from_config(config)
    # Random init makes tiny models' activations very small; widen them a bit.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if param.dim() >= 2:
                param.normal_(0, 0.3)
    return model.eval()


def padded_batch(padding_side: str, lengths=(7, 5, 3), seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask) with pad id 0 on the given side."""
    g = torch.Generator().manual_seed(seed)
    width = max(lengths)
    ids = torch.zeros(len(lengths), width, dtype=torch.long)
    mask = torch.zeros(len(lengths), width, dtype=torch.long)
    for row, n in enumerate(lengths):
        tokens = torch.randint(3, VOCAB, (n,), generator=g)
        cols = slice(0, n) if padding_side == "right" else slice(width - n, width)
        ids[row, cols] = tokens
        mask[row, cols] = 1
    return ids, mask


def all_hooks(model: torch.nn.Module) -> dict[str, tuple]:
    """Every forward (pre-)hook id on every module, to compare before/after a context."""
    return {name: (tuple(m._forward_hooks), tuple(m._forward_pre_hooks)) for name, m in model.named_modules()}
