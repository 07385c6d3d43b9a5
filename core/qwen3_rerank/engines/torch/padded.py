"""The reference path (``fast=False``): transformers' own model on left-padded batches."""

from __future__ import annotations

from typing import Any

import torch

from .loading import Checkpoint

__all__ = ["PaddedForward"]


class PaddedForward:
    """transformers' Qwen3 body on a device, scoring left-padded batches of pair ids."""

    def __init__(self, checkpoint: Checkpoint, device: torch.device) -> None:
        self.body = checkpoint.body.to(device)
        self.device = device
        self.direction = checkpoint.direction
        self.offset = checkpoint.offset
        self.pad_id = checkpoint.pad_id

    def activation_bytes_per_token(self, dtype: torch.dtype) -> int:
        """Rough transient bytes per token, for sizing batches: one decoder layer's, four
        times over (padding, full attention)."""
        config: Any = self.body.config
        heads = config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
        qkv = (heads + 2 * config.num_key_value_heads) * head_dim
        size = 4 if dtype == torch.float32 else 2
        per_layer = size * (4 * config.hidden_size + 2 * qkv + 4 * config.intermediate_size)
        return int(4 * per_layer)

    def __call__(self, ids: list[list[int]]) -> torch.Tensor:
        """fp32 scores of the pairs ``ids``, on the host."""
        width = max(len(x) for x in ids)
        input_ids = torch.full((len(ids), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(ids), width), dtype=torch.long)
        for row, x in enumerate(ids):  # left padding: the last column is every row's last token
            input_ids[row, width - len(x) :] = torch.tensor(x, dtype=torch.long)
            mask[row, width - len(x) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        with torch.inference_mode():
            hidden = self.body(
                input_ids=input_ids.to(self.device),
                attention_mask=mask.to(self.device),
                position_ids=positions.to(self.device),
                use_cache=False,
            ).last_hidden_state[:, -1, :]
            logits = hidden.float() @ self.direction + self.offset
            scores: torch.Tensor = torch.sigmoid(logits).cpu()
            return scores
