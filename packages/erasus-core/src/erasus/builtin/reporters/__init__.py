"""Built-in reporters."""

#: The components this subpackage registers, as "module:Class" paths.
CATALOG: tuple[str, ...] = (
    "erasus.builtin.reporters.markdown:MarkdownReporter",
)
