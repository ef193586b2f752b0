"""Built-in datasets."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.datasets.digits:Digits",
    "erasus.builtin.datasets.mnist5000:MNIST5000",
)
