"""The ``llm`` plugin of Erasus (entry point ``llm = "erasus_llm.plugin"``).

Registers the ``causal_lm`` model adapter (any Hugging Face causal LM on question/answer
pairs) and two question/answer data sets, ``synthetic_qa`` (fictitious facts generated
in code) and ``qa_json`` (records from a local JSON/JSONL file). Each hook imports its
component modules when called; those import torch and transformers only inside
functions, so building the registry (``erasus list-plugins``) stays light.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus_llm.causal_lm import CausalLMAdapter

    register(CausalLMAdapter)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus_llm.datasets import QAJson, SyntheticQA
    from erasus_llm.muse import Muse
    from erasus_llm.tofu import Tofu
    from erasus_llm.wmdp import Wmdp

    register(SyntheticQA)
    register(QAJson)
    register(Tofu)
    register(Muse)
    register(Wmdp)


@hookimpl
def erasus_register_strategies(register: Any) -> None:
    from erasus_llm.strategies import (
        CEU,
        DPO,
        RMU,
        UNDIAL,
        EmbeddingAlignment,
        IdkDPO,
        SatImp,
    )

    for strategy in (DPO, IdkDPO, RMU, UNDIAL, CEU, SatImp, EmbeddingAlignment):
        register(strategy)


@hookimpl
def erasus_register_metrics(register: Any) -> None:
    from erasus_llm.metrics import METRICS

    for metric in METRICS:
        register(metric)
