"""The hybrid ranker: scores (user, item) over the whole catalog, warm and cold items alike.

Item side: a trainable projection of the item's frozen text vector, plus an ID embedding for warm items (items seen
in training). During training the ID part is dropped at random (DropoutNet-style), so the model learns to rank
from text alone, which is all it has for a cold-start item.
User side: the user's recent history, pooled by attention over the item representations, so a new user with a
few events is served as well as a regular one.
Score: the dot product of the two.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class RankerConfig:
    n_items: int  # items are 1..n_items; 0 pads histories
    text_dim: int = 384
    dim: int = 128
    history: int = 50  # most recent items a user representation looks at
    id_dropout: float = 0.5  # share of training examples whose item IDs are hidden
    dropout: float = 0.1


class HybridRanker(nn.Module):
    def __init__(self, config: RankerConfig, item_text: torch.Tensor, warm: torch.Tensor):
        super().__init__()
        if item_text.shape != (config.n_items + 1, config.text_dim) or warm.shape != (config.n_items + 1,):
            raise ValueError("item_text must be (n_items + 1, text_dim) and warm (n_items + 1,), row 0 for padding")
        self.config = config
        self.register_buffer("item_text", item_text.float())
        self.register_buffer("warm", warm.bool())
        self.text_proj = nn.Sequential(nn.Linear(config.text_dim, config.dim), nn.GELU(), nn.Linear(config.dim, config.dim))
        self.item_id = nn.Embedding(config.n_items + 1, config.dim, padding_idx=0)
        nn.init.normal_(self.item_id.weight, std=0.01)
        self.attention = nn.Linear(config.dim, 1)
        self.user_proj = nn.Sequential(nn.Dropout(config.dropout), nn.Linear(config.dim, config.dim))

    def items(self, ids: torch.Tensor, hide_ids: torch.Tensor | None = None) -> torch.Tensor:
        """Representations of item `ids`; the ID part is used for warm items unless `hide_ids` says otherwise."""
        use_id = self.warm[ids]
        if hide_ids is not None:
            use_id = use_id & ~hide_ids
        return self.text_proj(self.item_text[ids]) + self.item_id(ids) * use_id.unsqueeze(-1)

    def users(self, history: torch.Tensor, item_table: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, history) item ids, most recent last, 0-padded on the left -> (batch, dim).

        `item_table` (all item representations) saves projecting the same items again for every history slot.
        """
        present = history > 0
        reps = (self.all_items() if item_table is None else item_table)[history]
        logits = self.attention(reps).squeeze(-1).masked_fill(~present, float("-inf"))
        weights = torch.softmax(logits, dim=-1).nan_to_num(0.0)  # a user with no history gets zeros
        return self.user_proj((weights.unsqueeze(-1) * reps).sum(dim=1))

    def all_items(self) -> torch.Tensor:
        return self.items(torch.arange(self.config.n_items + 1, device=self.item_text.device))

    def forward(self, history: torch.Tensor, candidates: torch.Tensor | None = None) -> torch.Tensor:
        """Scores of the candidate items (batch, n) or of every item (batch, n_items + 1)."""
        table = self.all_items()
        users = self.users(history, table)
        if candidates is None:
            return users @ table.T
        return torch.einsum("bd,bnd->bn", users, self.items(candidates))
