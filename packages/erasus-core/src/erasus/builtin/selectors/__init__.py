"""Built-in selectors."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.selectors.full:FullSelector",
    "erasus.builtin.selectors.random:RandomSelector",
)
