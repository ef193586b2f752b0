"""erasus-llm: the Erasus plugin for large language models.

The plugin itself is :mod:`erasus_llm.plugin`, loaded by the core through the ``erasus``
entry-point group; nothing is registered by importing this package. Importing it does
not import torch or transformers.
"""

from __future__ import annotations

from importlib.metadata import version

from erasus_llm.causal_lm import CausalLMAdapter, CausalLMParams, answer_nll
from erasus_llm.datasets import QADataset, QAJson, SyntheticQA

__all__ = [
    "CausalLMAdapter",
    "CausalLMParams",
    "QADataset",
    "QAJson",
    "SyntheticQA",
    "__version__",
    "answer_nll",
]

__version__ = version("erasus-llm")
