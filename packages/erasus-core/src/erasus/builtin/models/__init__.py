"""Built-in models."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.models.classifier:ClassifierAdapter",
)
