"""The ``llm`` plugin of Erasus (entry point ``llm = "erasus_llm.plugin"``).

It will register model adapters for Hugging Face causal LMs, encoders and seq2seq
models, LLM unlearning strategies (DPO, RMU, NPO on tokens...), TOFU/MUSE/WMDP metrics
and dataset providers through the ``erasus_register_*`` hooks of
:mod:`erasus.hookspecs`. It implements no hook yet, so it registers no component: it
loads, and ``erasus list-plugins`` shows it, with nothing under it.
"""
