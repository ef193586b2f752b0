"""Built-in datasets."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.datasets.digits:Digits",
)
