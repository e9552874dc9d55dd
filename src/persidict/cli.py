"""``persidict``: command-line tools for FileDirDict directories.

``persidict check PATH [--fix]`` reports what a crash or an outside hand left
in a store directory - temp files (journal intents) of dead writers,
unreadable values, stray files, empty directories - and with ``--fix``
repairs it without losing data (see ``concurrency/repair.py``). Exit code:
0 when clean, 1 when problems were found (repaired or not), 2 on bad usage.

It does not open the store as a FileDirDict: opening recovers the journal,
and a check without ``--fix`` must report, not repair.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from .concurrency.locks import META_DIR, LockTree, find_lock_root
from .concurrency.repair import check_tree, detect_digest_len


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="persidict", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="report (and with --fix repair) what crashes left in a FileDirDict directory",
    )
    check.add_argument("path", help="the store's base_dir")
    check.add_argument(
        "--fix",
        action="store_true",
        help="remove dead writers' temp files, quarantine unreadable values and strays "
        "into @persidict/quarantine/, prune empty directories",
    )
    check.add_argument(
        "--digest-len",
        type=int,
        default=None,
        help="the store's digest_len (default: detected from the file names)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``persidict`` command line; return the exit code."""
    args = _parser().parse_args(argv)
    root = os.path.abspath(args.path)
    if not os.path.isdir(root):
        print(f"persidict check: {root} is not a directory", file=sys.stderr)
        return 2
    digest_len = args.digest_len if args.digest_len is not None else detect_digest_len(root)
    if digest_len < 0:
        print("persidict check: --digest-len must be >= 0", file=sys.stderr)
        return 2
    real = os.path.realpath(root)
    home = find_lock_root(real) or real
    meta = os.path.join(home, META_DIR)
    # The same locks as FileDirDict(base_dir=root), so a fix never moves a
    # value a live writer is replacing.
    locks = LockTree(real, home)
    report = check_tree(
        root, meta_dir=meta, digest_len=digest_len, lock_for=locks.hold, fix=args.fix
    )
    if args.json:
        print(json.dumps({**report.to_dict(), "digest_len": digest_len}, indent=2))
    else:
        print(f"(digest_len={digest_len})")
        print(report)
    return 0 if report.clean else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
