"""Papers cited by more than one built-in metric."""

from __future__ import annotations

from erasus.components import Paper

JIA_2023 = Paper(
    title="Model Sparsity Can Simplify Machine Unlearning",
    authors="Jinghan Jia, Jiancheng Liu, Parikshit Ram, Yuguang Yao, Gaowen Liu, Yang Liu, "
    "Pranay Sharma, Sijia Liu",
    year=2023,
    url="https://arxiv.org/abs/2304.04934",
    venue="NeurIPS",
)
