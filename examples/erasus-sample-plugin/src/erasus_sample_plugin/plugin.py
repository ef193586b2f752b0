"""The ``sample`` plugin: registers the ``highest_loss`` selector and the ``forget_loss`` metric.

Each hook receives a ``register`` callback and calls it once per component class. The
component modules are imported inside the hooks (and import torch only inside their
methods), so loading the plugin for ``erasus list-plugins`` stays fast.
"""

from __future__ import annotations

from typing import Any

import erasus


@erasus.hookimpl
def erasus_register_selectors(register: Any) -> None:
    from erasus_sample_plugin.highest_loss import HighestLoss

    register(HighestLoss)


@erasus.hookimpl
def erasus_register_metrics(register: Any) -> None:
    from erasus_sample_plugin.forget_loss import ForgetLoss

    register(ForgetLoss)
