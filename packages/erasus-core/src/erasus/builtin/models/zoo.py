"""A small zoo of classifier networks for the bundled benchmarks: MLP, small CNN, ResNet.

Each network exposes ``features(x)`` (the penultimate activations) and ``head`` (the last
linear layer), so metrics can read features without hooks.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ARCHS", "build_network"]

ARCHS = ("mlp", "small_cnn", "resnet")


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

    if arch == "mlp":
        n_in = 1
        for d in input_shape:
            n_in *= int(d)
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
