"""Papers cited by more than one built-in component (each written once here)."""

from __future__ import annotations

from erasus.components import Paper

__all__ = ["FAN_2024", "GRAVES_2021", "JIA_2023", "KOH_2017", "KURMANJI_2023", "PAUL_2021"]

#: SalUn: the ``salun`` strategy and the ``avg_gap`` metric.
FAN_2024 = Paper(
    title="SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency in "
    "Both Image Classification and Generation",
    authors="Chongyu Fan, Jiancheng Liu, Yihua Zhang, Eric Wong, Dennis Wei, Sijia Liu",
    year=2024,
    url="https://arxiv.org/abs/2310.12508",
    venue="ICLR",
)

#: Amnesiac unlearning and random relabelling: the ``amnesiac`` and ``random_label``
#: strategies.
GRAVES_2021 = Paper(
    title="Amnesiac Machine Learning",
    authors="Laura Graves, Vineel Nagisetty, Vijay Ganesh",
    year=2021,
    url="https://arxiv.org/abs/2010.10981",
    venue="AAAI",
)

#: Sparsity-aware unlearning: the ``l1_sparse`` and ``sparse_aware`` strategies and the
#: ``accuracy`` and ``mia_efficacy`` metrics.
JIA_2023 = Paper(
    title="Model Sparsity Can Simplify Machine Unlearning",
    authors="Jinghan Jia, Jiancheng Liu, Parikshit Ram, Yuguang Yao, Gaowen Liu, Yang Liu, "
    "Pranay Sharma, Sijia Liu",
    year=2023,
    url="https://arxiv.org/abs/2304.04934",
    venue="NeurIPS",
)

#: Influence functions: the ``influence`` selector and the ``influence_update`` strategy.
KOH_2017 = Paper(
    title="Understanding Black-box Predictions via Influence Functions",
    authors="Pang Wei Koh, Percy Liang",
    year=2017,
    url="https://arxiv.org/abs/1703.04730",
    venue="ICML",
)

#: SCRUB and NegGrad+: the ``scrub`` and ``negative_gradient`` strategies.
KURMANJI_2023 = Paper(
    title="Towards Unbounded Machine Unlearning",
    authors="Meghdad Kurmanji, Peter Triantafillou, Jamie Hayes, Eleni Triantafillou",
    year=2023,
    url="https://arxiv.org/abs/2302.09880",
    venue="NeurIPS",
)

#: GraNd and EL2N: the ``gradient_norm`` and ``el2n`` selectors.
PAUL_2021 = Paper(
    title="Deep Learning on a Data Diet: Finding Important Examples Early in Training",
    authors="Mansheej Paul, Surya Ganguli, Gintare Karolina Dziugaite",
    year=2021,
    url="https://arxiv.org/abs/2107.07075",
    venue="NeurIPS",
)
