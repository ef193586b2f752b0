"""Robustness to relearning: the metrics again after a few fine-tuning steps on forget data."""

from __future__ import annotations

from typing import Any

from erasus.components import Paper
from erasus.errors import IncompatibleComponentError
from pydantic import Field

from erasus_llm.metrics._reevaluate import AttackedReevaluation, ReevaluationParams

__all__ = ["RelearnRobustness", "RelearnRobustnessParams"]


class RelearnRobustnessParams(ReevaluationParams):
    """Parameters of the relearning robustness check."""

    split: str = Field("forget", description="Split fine-tuned on (question/answer items).")
    steps: int = Field(10, ge=1, description="Optimizer steps of relearning.")
    lr: float = Field(1e-4, gt=0, description="Adam learning rate.")
    batch_size: int = Field(8, ge=1, description="Examples per step (drawn in a seeded "
                            "shuffled order, repeated as needed).")
    seed: int = Field(0, description="Seed of the batch order.")


class RelearnRobustness(AttackedReevaluation):
    """Relearning attack (Hu et al. 2025): ``metrics`` recomputed on a copy of the
    unlearned model fine-tuned for ``steps`` Adam steps (``lr``) on the answer loss of
    ``split`` (default the forget set itself, the strongest case). Knowledge that was only
    suppressed comes back within a few steps; values are ``relearn_<value>`` (compare
    ``relearn_forget_answer_prob`` with ``forget_answer_prob`` and with the oracle after
    the same steps, ``roles: [unlearned, oracle]``). A run metric; the evaluated models
    are not modified.
    """

    name = "relearn_robustness"
    Params = RelearnRobustnessParams
    paper = Paper(title="Unlearning or Obfuscating? Jogging the Memory of Unlearned LLMs "
                  "via Benign Relearning", authors="Shengyuan Hu, Yiwei Fu, Zhiwei Steven "
                  "Wu, Virginia Smith", year=2025, url="https://arxiv.org/abs/2406.13356",
                  venue="ICLR")
    outputs = ("relearn_forget_answer_prob",
               "relearn_forget_perturbed_truth_ratio_closer_to_one",
               "relearn_forget_perturbed_truth_ratio_true_better")

    def prefix(self) -> str:
        return "relearn"

    def attack(self, adapter: Any, ctx: Any) -> None:
        import torch

        from erasus_llm.metrics._cache import split_items

        p: RelearnRobustnessParams = self.params  # type: ignore[assignment]
        items = split_items(ctx, p.split, self.name)
        bad = next((i for i, it in enumerate(items) if not isinstance(it.get("question"), str)
                    or not isinstance(it.get("answer"), str)), None)
        if bad is not None:
            raise IncompatibleComponentError(
                f"metric '{self.name}' relearns on question/answer items, but item {bad} of "
                f"'{p.split}' has {', '.join(sorted(items[bad]))}; set split to a QA split")
        model = adapter.model
        params = [q for q in model.parameters() if q.is_floating_point()]
        for q in params:
            q.requires_grad_(True)
        opt = torch.optim.Adam(params, lr=p.lr)
        g = torch.Generator().manual_seed(int(p.seed))
        order: list[int] = []
        model.train()
        for _ in range(p.steps):
            while len(order) < p.batch_size:
                order += torch.randperm(len(items), generator=g).tolist()
            chosen, order = order[:p.batch_size], order[p.batch_size:]
            batch = adapter.prepare_batch([{"question": items[i]["question"],
                                            "answer": items[i]["answer"]} for i in chosen])
            loss = adapter.per_example_loss(batch).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        opt.zero_grad(set_to_none=True)
        model.eval()
