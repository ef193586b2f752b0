"""Test helpers for Erasus and its plugins: tiny models and conformance suites.

Plugins reuse the conformance suites in :mod:`erasus.testing.conformance` so that every
component they register is tested the moment it is registered.
"""

from __future__ import annotations

from erasus.testing.tiny import tiny_classification_data, tiny_classifier_problem

__all__ = ["tiny_classification_data", "tiny_classifier_problem"]
