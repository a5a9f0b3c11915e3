"""The paper's small GPT-NeoX transformers, one per setting, and their checkpoint files.

All share one backbone recipe (1 attention head, hidden 64, MLP width
64 × ``mlp_expansion_factor``, sequential residual, no attention bias):

* categorical: ``GPTNeoXForCausalLM`` over D+1 tokens (D colours + start), 1 layer;
* regression: 8 layers; a linear read-in D→64 on the interleaved sequence
  x_1, (y_1, 0…), x_2, … and a linear read-out 64→1 at every x position;
* classification: 1 layer; a linear read-in (D+1)→64 on [item, label] tokens
  (query label −1) and a read-out 64→2 at the last position.

A checkpoint is a folder with ``config.json`` (backbone config + setting) and
``model.safetensors`` (the wrapper's state dict).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from plugins.icl_strategies.data import Batch
from runner.atomic import atomic_path

HIDDEN = 64
LAYERS = {"categorical-sequence": 1, "linear-regression": 8, "classification": 1}


def backbone_config(setting: str, num_dims: int, context_length: int, mlp_expansion_factor: float) -> Any:
    from transformers import GPTNeoXConfig

    positions = {"categorical-sequence": context_length + 1, "linear-regression": 2 * context_length,
                 "classification": context_length}[setting]
    return GPTNeoXConfig(
        vocab_size=num_dims + 1 if setting == "categorical-sequence" else 1,
        hidden_size=HIDDEN, num_hidden_layers=LAYERS[setting], num_attention_heads=1,
        intermediate_size=max(1, int(round(HIDDEN * mlp_expansion_factor))),
        max_position_embeddings=positions, use_parallel_residual=False, attention_bias=False,
        use_cache=False, attention_dropout=0.0, hidden_dropout=0.0, tie_word_embeddings=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


class ICLTransformer(nn.Module):
    """One model for every setting: ``loss_and_predictions(batch)`` hides the read-in/read-out."""

    def __init__(self, setting: str, num_dims: int, config: Any):
        super().__init__()
        from transformers import GPTNeoXForCausalLM, GPTNeoXModel

        self.setting, self.num_dims, self.config = setting, num_dims, config
        if setting == "categorical-sequence":
            self.backbone = GPTNeoXForCausalLM(config)
        else:
            self.backbone = GPTNeoXModel(config)
            width_in = num_dims if setting == "linear-regression" else num_dims + 1
            self.read_in = nn.Linear(width_in, HIDDEN)
            self.read_out = nn.Linear(HIDDEN, 1 if setting == "linear-regression" else 2)

    def loss_and_predictions(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """Training loss and the prediction in the predictors' format (probabilities or ŷ)."""
        device = self.read_out.weight.device if hasattr(self, "read_out") else self.backbone.device
        if self.setting == "categorical-sequence":
            tokens = torch.as_tensor(batch.tokens, device=device)
            logits = self.backbone(input_ids=tokens).logits
            loss = nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]),
                                               tokens[:, 1:].reshape(-1))
            return loss, torch.softmax(logits[..., : self.num_dims].double(), dim=-1)
        x, y = torch.as_tensor(batch.x, device=device), torch.as_tensor(batch.y, device=device)
        if self.setting == "linear-regression":
            y_tokens = torch.zeros_like(x)
            y_tokens[..., 0] = y
            seq = torch.stack([x, y_tokens], dim=2).reshape(x.shape[0], -1, x.shape[-1])
            hidden = self.backbone(inputs_embeds=self.read_in(seq)).last_hidden_state
            pred = self.read_out(hidden[:, ::2])[..., 0]
            return nn.functional.mse_loss(pred, y), pred.double()
        labels = y.to(x.dtype).clone()
        labels[:, -1] = -1.0
        hidden = self.backbone(inputs_embeds=self.read_in(torch.cat([x, labels[..., None]], dim=-1))).last_hidden_state
        logits = self.read_out(hidden[:, -1])
        return nn.functional.cross_entropy(logits, y[:, -1]), torch.softmax(logits.double(), dim=-1)


def build_model(setting: str, num_dims: int, context_length: int, mlp_expansion_factor: float,
                seed: int) -> ICLTransformer:
    torch.manual_seed(seed)
    return ICLTransformer(setting, num_dims, backbone_config(setting, num_dims, context_length, mlp_expansion_factor))


def save_checkpoint(model: ICLTransformer, folder: Path, step: int) -> None:
    """``folder`` (config.json + model.safetensors), written atomically."""
    from safetensors.torch import save_file

    with atomic_path(folder, directory=True) as tmp:
        meta = {"setting": model.setting, "num_dims": model.num_dims, "step": step,
                "backbone": model.config.to_dict()}
        (tmp / "config.json").write_text(json.dumps(meta, indent=1) + "\n")
        save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
                  str(tmp / "model.safetensors"))


def load_checkpoint(folder: Path) -> ICLTransformer:
    from safetensors.torch import load_file
    from transformers import GPTNeoXConfig

    meta = json.loads((Path(folder) / "config.json").read_text())
    model = ICLTransformer(meta["setting"], meta["num_dims"], GPTNeoXConfig.from_dict(meta["backbone"]))
    model.load_state_dict(load_file(str(Path(folder) / "model.safetensors")))
    return model.eval()


@torch.no_grad()
def predict(model: ICLTransformer, batch: Batch, chunk: int = 256) -> np.ndarray:
    """The model's predictions for a (large) batch, in chunks, as float64 numpy."""
    was_training = model.training
    model.eval()
    size = len(batch.task_index)
    parts = []
    for start in range(0, size, chunk):
        part = Batch(batch.task_index[start:start + chunk],
                     *(None if a is None else a[start:start + chunk] for a in (batch.tokens, batch.x, batch.y)))
        parts.append(model.loss_and_predictions(part)[1].cpu().numpy())
    model.train(was_training)
    return np.concatenate(parts)
