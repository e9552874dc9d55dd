"""``persidict``: command-line tools for FileDirDict directories.

``persidict check PATH [--fix]`` reports what a crash or an outside hand left
in a store directory - temp files (journal intents) of dead writers,
unreadable values, stray files, empty directories - and with ``--fix``
repairs it without losing data (see ``concurrency/repair.py``). Exit code:
0 when clean, 1 when problems were found (repaired or not), 2 on bad usage.

PATH must be inside a store: a root marker (``@persidict``) at PATH or
above it, or else PATH holds stores as subdirectories (a directory kept by
``persidict-stress --dir``), each checked in turn, the rest left alone.
Anything else is refused: a directory that was never a store holds no junk
of ours. The store's digest_len is read from the nearest store marker at
or above PATH (a root, or a sub marker of a store opened inside another);
only stores made by versions that did not record it get it detected from
file names.

It does not open the store as a FileDirDict: opening recovers the journal,
and a check without ``--fix`` must report, not repair.

``persidict evict PATH --older-than SECONDS [--max-items N]`` keeps a cache
bounded: it removes the entries of the store at PATH last written more than
SECONDS ago, then the oldest of the rest beyond N, never undoing a
concurrent write (see ``eviction.py``). Exit code: 0, or 2 on bad usage.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

from . import __version__
from .backends.files import FileDirDict
from .concurrency.lock_tree import LockTree
from .concurrency.locks import META_DIR
from .concurrency.marker import find_markers, is_root, layout_of, read_params
from .concurrency.repair import CheckReport, check_tree, detect_digest_len
from .eviction import evict


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="persidict",
        description="Command-line tools for FileDirDict directories.",
        epilog="Exit codes of check: 0 clean, 1 problems found (repaired with --fix), "
        "2 bad usage or not a store. Of evict: 0 done, 2 bad usage or not a store.",
    )
    parser.add_argument("--version", action="version", version=f"persidict {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser(
        "check",
        help="report (and with --fix repair) what crashes left in a FileDirDict directory",
    )
    check.add_argument("path", help="the store's base_dir (or a directory of stores)")
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
        help="override the store's digest_len (default: as recorded in its marker)",
    )
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    evict_cmd = sub.add_parser(
        "evict",
        help="remove the oldest entries of a FileDirDict store (safe while others use it)",
    )
    evict_cmd.add_argument("path", help="the store's base_dir")
    evict_cmd.add_argument(
        "--older-than", type=float, required=True, metavar="SECONDS",
        help="remove entries last written more than SECONDS ago",
    )
    evict_cmd.add_argument(
        "--max-items", type=int, default=None, metavar="N",
        help="then remove the oldest entries until at most N remain",
    )
    evict_cmd.add_argument(
        "--serialization-format", default="pkl",
        help="which values: the store's file suffix (default: pkl)",
    )
    return parser


def _check(
    path: str, root: str, store: str, args: argparse.Namespace
) -> tuple[CheckReport, int, str]:
    """Check the store directory ``path``: its root ``root``, its nearest marker ``store``."""
    if args.digest_len is not None:
        digest_len, source = args.digest_len, "--digest-len"
    else:
        recorded = (read_params(store) or {}).get("digest_len")
        if isinstance(recorded, int) and not isinstance(recorded, bool):
            digest_len, source = recorded, "recorded in the store's marker"
        else:
            digest_len, source = detect_digest_len(path), "detected: no recorded digest_len"
    # The same locks as FileDirDict(base_dir=path), so a fix never moves a
    # value a live writer is replacing.
    locks = LockTree(os.path.realpath(path), root)
    report = check_tree(
        path,
        meta_dir=os.path.join(root, META_DIR),
        digest_len=digest_len,
        lock_for=locks.hold,
        markers_lock_for=locks.hold_markers,
        fix=args.fix,
        layout=layout_of(read_params(store)),
    )
    return report, digest_len, source


def _stores_in(directory: str) -> list[str]:
    """The subdirectories of ``directory`` that are roots of stores."""
    try:
        entries = sorted(os.scandir(directory), key=lambda e: e.name)
    except OSError:
        return []
    return [
        e.path
        for e in entries
        if e.is_dir(follow_symlinks=False) and is_root(os.path.realpath(e.path))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``persidict`` command line; return the exit code."""
    args = _parser().parse_args(argv)
    path = os.path.abspath(args.path)
    if not os.path.isdir(path):
        print(f"persidict {args.command}: {path} is not a directory", file=sys.stderr)
        return 2
    if args.command == "evict":
        return _evict(args, path)
    if args.digest_len is not None and args.digest_len < 0:
        print("persidict check: --digest-len must be >= 0", file=sys.stderr)
        return 2
    try:
        return _main(args, path)
    except OSError as exc:  # e.g. a --fix on a read-only store
        print(f"persidict check: {exc}", file=sys.stderr)
        return 2


def _evict(args: argparse.Namespace, path: str) -> int:
    """Run ``persidict evict`` on the store at ``path``."""
    if args.older_than < 0 or (args.max_items is not None and args.max_items < 0):
        print("persidict evict: --older-than and --max-items must be >= 0", file=sys.stderr)
        return 2
    store = find_markers(os.path.realpath(path))[1]
    if store is None:
        print(f"persidict evict: {path} is not a persidict store (no {META_DIR} marker)",
              file=sys.stderr)
        return 2
    params = read_params(store) or {}
    digest_len = params.get("digest_len", 4)
    try:
        report = evict(
            FileDirDict(base_dir=path, digest_len=digest_len,
                        serialization_format=args.serialization_format),
            older_than=args.older_than, max_items=args.max_items,
        )
    except (OSError, ValueError) as exc:
        print(f"persidict evict: {exc}", file=sys.stderr)
        return 2
    print(report)
    return 0


def _main(args: argparse.Namespace, path: str) -> int:
    root, store, _ = find_markers(os.path.realpath(path))
    if root is not None:
        targets = [(path, root, store or root)]
    else:
        targets = [(p, os.path.realpath(p), os.path.realpath(p)) for p in _stores_in(path)]
        if not targets:
            print(
                f"persidict check: {path} is not a persidict store: there is no {META_DIR} "
                "marker at it or above it, nor stores below it; refusing to judge its files",
                file=sys.stderr,
            )
            return 2
    dirty = False
    out: list[dict[str, object]] = []
    for target, target_root, target_store in targets:
        report, digest_len, source = _check(target, target_root, target_store, args)
        dirty = dirty or not report.clean
        if args.json:
            out.append({**report.to_dict(), "digest_len": digest_len})
        else:
            print(f"(digest_len={digest_len}, {source})")
            print(report)
    if args.json:
        print(json.dumps(out[0] if root is not None else out, indent=2))
    return 1 if dirty else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
