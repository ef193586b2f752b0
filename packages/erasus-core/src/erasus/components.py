"""Component metadata: what every registered class declares about itself.

A component is a class registered through one of the ``erasus_register_*`` hooks. It
declares, as class attributes:

- ``name``: the registry name users write in a config (``strategy: {name: npo}``);
- ``modalities``: the model modalities it supports (``("any",)`` for generic ones);
- ``needs``: what it needs the pipeline to provide (``"retain"``, ``"reference_model"``,
  ``"training_history"``...);
- ``Params``: a pydantic model of its parameters, with types, defaults and descriptions;
- ``paper``: the :class:`Paper` it implements, or ``None`` when it implements no paper
  (this must be set explicitly on every component class);
- a docstring whose first line is its one-line summary.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ANY_MODALITY",
    "KINDS",
    "Component",
    "ComponentInfo",
    "Paper",
    "ParamInfo",
    "Params",
    "describe_params",
]

#: The modality a generic component declares: it runs on any adapter with a per-example loss.
ANY_MODALITY = "any"

#: Component kinds, in the order they appear in listings, with their hook names.
KINDS: dict[str, str] = {
    "model": "erasus_register_models",
    "selector": "erasus_register_selectors",
    "strategy": "erasus_register_strategies",
    "loss": "erasus_register_losses",
    "metric": "erasus_register_metrics",
    "dataset": "erasus_register_datasets",
    "reporter": "erasus_register_reporters",
    "tracker": "erasus_register_trackers",
}


@dataclass(frozen=True)
class Paper:
    """A citation of the paper a component implements."""

    title: str
    authors: str
    year: int
    url: str
    venue: str = ""

    def __str__(self) -> str:
        venue = f", {self.venue}" if self.venue else ""
        return f"{self.authors} ({self.year}). {self.title}{venue}. {self.url}"


class Params(BaseModel):
    """Base of every component's parameter model: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class Component:
    """Base class of registered components (using it is optional; the attributes are not)."""

    name: ClassVar[str]
    kind: ClassVar[str]
    modalities: ClassVar[tuple[str, ...]] = (ANY_MODALITY,)
    needs: ClassVar[frozenset[str]] = frozenset()
    #: Registry names of the only model adapters the component runs on (empty: any
    #: adapter of a supported modality), for components that need one family's model
    #: structure (SISA's ensemble, certified removal's linear classifier).
    adapters: ClassVar[tuple[str, ...]] = ()
    Params: ClassVar[type[BaseModel]] = Params
    paper: ClassVar[Paper | None]

    def __init__(self, params: BaseModel | None = None, **kwargs: Any) -> None:
        if params is None:
            params = type(self).Params(**kwargs)
        elif kwargs:
            params = params.model_copy(update=kwargs)
        self.params = params

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params!r})"


@dataclass(frozen=True)
class ParamInfo:
    """One declared parameter of a component."""

    name: str
    type: str
    default: Any
    required: bool
    doc: str


def _type_name(annotation: Any) -> str:
    if annotation is None:
        return "None"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def describe_params(params_model: type[BaseModel]) -> list[ParamInfo]:
    """List the parameters a pydantic parameter model declares, in declaration order."""
    out = []
    for pname, f in params_model.model_fields.items():
        required = f.is_required()
        default = None if required else f.get_default(call_default_factory=True)
        if isinstance(default, BaseModel):
            default = default.model_dump()
        out.append(
            ParamInfo(
                name=f.alias or pname,
                type=_type_name(f.annotation),
                default=default,
                required=required,
                doc=f.description or "",
            )
        )
    return out


@dataclass(frozen=True)
class ComponentInfo:
    """A registry entry: a component class and where it came from."""

    kind: str
    name: str
    cls: type
    plugin: str
    package: str | None = None
    version: str | None = None

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @property
    def doc(self) -> str:
        return inspect.getdoc(self.cls) or ""

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(getattr(self.cls, "modalities", (ANY_MODALITY,)))

    @property
    def needs(self) -> frozenset[str]:
        return frozenset(getattr(self.cls, "needs", frozenset()))

    @property
    def paper(self) -> Paper | None:
        return getattr(self.cls, "paper", None)

    @property
    def params_model(self) -> type[BaseModel]:
        return getattr(self.cls, "Params", Params)

    @property
    def params(self) -> list[ParamInfo]:
        return describe_params(self.params_model)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly description (used by ``describe --json`` and the docs)."""
        paper = self.paper
        return {
            "kind": self.kind,
            "name": self.name,
            "plugin": self.plugin,
            "package": self.package,
            "version": self.version,
            "class": f"{self.cls.__module__}.{self.cls.__qualname__}",
            "summary": self.summary,
            "modalities": list(self.modalities),
            "needs": sorted(self.needs),
            "paper": str(paper) if paper else None,
            "params": [
                {
                    "name": p.name,
                    "type": p.type,
                    "default": p.default,
                    "required": p.required,
                    "doc": p.doc,
                }
                for p in self.params
            ],
        }
