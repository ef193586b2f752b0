"""LLM unlearning strategies of the ``llm`` plugin, one method per module.

Each needs the ``causal_lm`` adapter (tokenised question/answer batches, decoder layers).
The modules import torch only inside functions.
"""

from __future__ import annotations

from erasus_llm.strategies.causal_tracing import (
    CausalTracing,
    CausalTracingParams,
    TraceResult,
    trace_layers,
)
from erasus_llm.strategies.ce_u import CEU, CEUParams, ce_u_token_loss
from erasus_llm.strategies.dpo import DPO, DPOParams, dpo_loss
from erasus_llm.strategies.embedding_alignment import (
    EmbeddingAlignment,
    EmbeddingAlignmentParams,
)
from erasus_llm.strategies.idk_dpo import IdkDPO, IdkDPOParams
from erasus_llm.strategies.rmu import RMU, RMUParams, control_vector
from erasus_llm.strategies.satimp import SatImp, SatImpParams, satimp_weights
from erasus_llm.strategies.token_masking import (
    TokenMasking,
    TokenMaskingParams,
    context_gain,
    select_tokens,
)
from erasus_llm.strategies.undial import UNDIAL, UNDIALParams, adjusted_targets

__all__ = [
    "CEU",
    "DPO",
    "RMU",
    "UNDIAL",
    "CEUParams",
    "CausalTracing",
    "CausalTracingParams",
    "DPOParams",
    "EmbeddingAlignment",
    "EmbeddingAlignmentParams",
    "IdkDPO",
    "IdkDPOParams",
    "RMUParams",
    "SatImp",
    "SatImpParams",
    "TokenMasking",
    "TokenMaskingParams",
    "TraceResult",
    "UNDIALParams",
    "adjusted_targets",
    "ce_u_token_loss",
    "context_gain",
    "control_vector",
    "dpo_loss",
    "satimp_weights",
    "select_tokens",
    "trace_layers",
]
