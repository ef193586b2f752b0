"""The ``llm`` plugin of Erasus (entry point ``llm = "erasus_llm.plugin"``).

Registers three model adapters on question/answer pairs, ``causal_lm`` (any Hugging Face
causal LM), ``masked_lm`` (a Hugging Face masked LM such as BERT, predicting the masked
answer tokens) and ``seq2seq_lm`` (an encoder-decoder LM such as T5), and the text
classifier adapter ``sequence_classification``; the question/answer data sets
``synthetic_qa`` (fictitious facts generated in code), ``qa_json`` (records from a local
JSON/JSONL file) and the ``tofu``, ``muse`` and ``wmdp`` benchmarks, and the labelled
texts of ``text_classification``; the LLM unlearning strategies and the TOFU / MUSE-style
metrics; and the command ``erasus llm tofu-finetune`` (:mod:`erasus_llm.recipe`: TOFU's
original and retain oracle fine-tuned from one pretrained model). Each hook imports its
component modules when called; those import torch and transformers only inside
functions, so building the registry (``erasus list-plugins``) stays light.
"""

from __future__ import annotations

from typing import Any

from erasus.hookspecs import hookimpl


@hookimpl
def erasus_register_models(register: Any) -> None:
    from erasus_llm.causal_lm import CausalLMAdapter
    from erasus_llm.masked_lm import MaskedLMAdapter
    from erasus_llm.seq2seq_lm import Seq2SeqLMAdapter
    from erasus_llm.sequence_classification import SequenceClassificationAdapter

    register(CausalLMAdapter)
    register(MaskedLMAdapter)
    register(Seq2SeqLMAdapter)
    register(SequenceClassificationAdapter)


@hookimpl
def erasus_register_datasets(register: Any) -> None:
    from erasus_llm.datasets import QAJson, SyntheticQA
    from erasus_llm.muse import Muse
    from erasus_llm.text_classification import TextClassification
    from erasus_llm.tofu import Tofu
    from erasus_llm.wmdp import Wmdp

    register(SyntheticQA)
    register(QAJson)
    register(Tofu)
    register(Muse)
    register(Wmdp)
    register(TextClassification)


@hookimpl
def erasus_register_strategies(register: Any) -> None:
    from erasus_llm.strategies import (
        CEU,
        DPO,
        RMU,
        UNDIAL,
        CausalTracing,
        EmbeddingAlignment,
        IdkDPO,
        SatImp,
        TokenMasking,
    )

    for strategy in (DPO, IdkDPO, RMU, UNDIAL, CEU, SatImp, EmbeddingAlignment, TokenMasking,
                     CausalTracing):
        register(strategy)


@hookimpl
def erasus_register_metrics(register: Any) -> None:
    from erasus_llm.metrics import METRICS

    for metric in METRICS:
        register(metric)


@hookimpl
def erasus_register_commands(register: Any) -> None:
    from erasus_llm.recipe import cli

    register(cli, name="llm")  # erasus llm tofu-finetune: TOFU's original and oracle
