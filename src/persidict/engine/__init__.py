"""The contract: keys, flags, results, errors, codecs and PersiDict itself.

This package imports no backend.
"""
