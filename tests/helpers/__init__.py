"""Helpers for the pool tests: task functions workers import by reference
(``tasks``), a Ctrl-C script (``sigint_map``) and test-side utilities
(``util``)."""
