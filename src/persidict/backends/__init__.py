"""Stores and wrappers built on the engine's contract."""
