"""Per-key locks, store roots, the atomic write, the crash journal, listings and repair."""
