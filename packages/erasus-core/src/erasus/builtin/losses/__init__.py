"""The built-in losses."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
)
