"""A small zoo of classifier networks for the bundled benchmarks: linear, MLP, small CNN,
ResNet.

Each network exposes ``features(x)`` (the penultimate activations) and ``head`` (the last
linear layer), so metrics can read features without hooks.

The ``linear`` arch is logistic / softmax regression: one ``nn.Linear`` (``head``, weights
in float64, inputs and outputs in the input's dtype) on the flattened input, whose
features are the flattened input itself. It also carries
``perturbation``, the objective-perturbation state of certified training (Guo et al.,
2020): the random linear term ``b``, the L2 strength, the noise scale of ``b``, the
gradient-residual bound spent by certified removals since training and the size of the
training set. ``certified_training`` writes it and ``certified_removal`` reads and updates
it; it is all zeros for a model that was not trained with ``certified_training`` (and
``reset_parameters`` zeroes it again). It travels with the weights (``save``/``load``/
``clone``), so keep a saved linear model private: ``b`` is part of its privacy guarantee.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARCHS", "build_network"]

ARCHS = ("linear", "mlp", "small_cnn", "resnet")


def build_network(arch: str, input_shape: tuple[int, ...], num_classes: int, *,
                  hidden: int = 64, dropout: float = 0.0) -> Any:
    """A freshly initialised network of ``arch`` for inputs of ``input_shape``."""
    import torch
    from torch import nn

    class _Net(nn.Module):
        def __init__(self, body: nn.Module, width: int) -> None:
            super().__init__()
            self.body = body
            self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
            self.head = nn.Linear(width, num_classes)

        def features(self, x: torch.Tensor) -> torch.Tensor:
            return self.body(x)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.dropout(self.features(x)))

    n_in = 1
    for d in input_shape:
        n_in *= int(d)

    if arch == "linear":
        class _Perturbation(nn.Module):
            """Objective-perturbation state of certified training (buffers, float64)."""

            def __init__(self) -> None:
                super().__init__()
                # one row per binary logistic regression (one for two classes, else one
                # per class, one-vs-rest) over (weight | bias)
                rows = 1 if num_classes == 2 else num_classes
                self.register_buffer("b", torch.zeros(rows, n_in + 1, dtype=torch.float64))
                for name in ("l2", "sigma", "spent", "n_train"):
                    self.register_buffer(name, torch.zeros((), dtype=torch.float64))

            def reset_parameters(self) -> None:
                for buffer in self.buffers():
                    buffer.zero_()

        class _Float64Linear(nn.Linear):
            """A linear layer kept in float64 (certified removal's Newton steps and residual
            bounds need the exact optimum, which float32 weights would round away); it takes
            and returns the input's dtype."""

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return super().forward(x.to(self.weight.dtype)).to(x.dtype)

        class _Linear(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.flatten = nn.Flatten()
                self.head = _Float64Linear(n_in, num_classes, dtype=torch.float64)
                self.perturbation = _Perturbation()

            def features(self, x: torch.Tensor) -> torch.Tensor:
                return self.flatten(x)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return self.head(self.features(x))

        return _Linear()

    if arch == "mlp":
        body = nn.Sequential(nn.Flatten(), nn.Linear(n_in, hidden), nn.ReLU(),
                             nn.Linear(hidden, hidden), nn.ReLU())
        return _Net(body, hidden)

    if len(input_shape) != 3:
        raise ValueError(
            f"arch '{arch}' needs image inputs of shape (channels, height, width); got "
            f"{tuple(input_shape)}. Use arch 'mlp' for flat features.")
    channels = int(input_shape[0])

    if arch == "small_cnn":
        body = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(32 * 4, hidden), nn.ReLU(),
        )
        return _Net(body, hidden)

    if arch == "resnet":
        class _Block(nn.Module):
            def __init__(self, width: int) -> None:
                super().__init__()
                self.conv1 = nn.Conv2d(width, width, 3, padding=1, bias=False)
                self.bn1 = nn.BatchNorm2d(width)
                self.conv2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
                self.bn2 = nn.BatchNorm2d(width)

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                out = torch.relu(self.bn1(self.conv1(x)))
                return torch.relu(x + self.bn2(self.conv2(out)))

        width = 32
        body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(), _Block(width), _Block(width), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
            nn.Linear(width, hidden), nn.ReLU(),
        )
        return _Net(body, hidden)

    raise ValueError(f"unknown arch '{arch}'; choose one of {', '.join(ARCHS)}")
