"""Shared boundary of the project: the experiment config schema, YAML I/O, atomic writes, records."""
