"""The built-in plugin: the core's own components, registered through the same hooks."""
