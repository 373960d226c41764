"""Settings of the offline tiny model."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["TinyModelConfig"]


class TinyModelConfig(BaseModel):
    """Shape of the offline Llama-architecture model.

    The defaults keep ``head_dim`` at 64: vLLM's CPU attention rejects smaller heads.
    """

    model_config = ConfigDict(extra="forbid")

    vocab_size: int = Field(2048, ge=300, description="Tokenizer vocabulary size (BPE merges).")
    hidden_size: int = Field(128, description="Model width.")
    intermediate_size: int = Field(256, description="MLP width.")
    num_hidden_layers: int = Field(2, description="Decoder layers.")
    num_attention_heads: int = Field(2, description="Attention heads (head_dim = hidden / heads).")
    num_key_value_heads: int = Field(1, description="KV heads (grouped-query attention).")
    max_position_embeddings: int = Field(2048, description="Longest sequence.")
    seed: int = Field(0, description="Seed for the weights: equal seeds give identical files.")
