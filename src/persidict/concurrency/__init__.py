"""Per-key locks, the atomic write, and (later) the crash journal."""
