"""``memoize(store)``: a shared cache that computes each argument tuple once.

Across threads, processes and (on S3) machines, concurrent callers of one
argument tuple compute once and the others wait for that result; who
computes is decided by a claim (``memoize_claims.py``): a per-key OS lock on
FileDirDict, a thread lock on LocalDict, a lease entry on any other store.
A call goes: read the result (a hit); else claim the key, read again (a
caller may have finished meanwhile), compute, store the result, release.
The result is written before the claim is released, so a waiter that gets
the claim either finds the result or knows its computer ended without one.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import io
import math
import pickle
import threading
import time
import types
from collections.abc import Callable
from typing import Any, Generic, ParamSpec, TypeVar

from .engine.flags import ITEM_NOT_AVAILABLE
from .engine.keys import NonEmptySafeStrTuple, replace_unsafe_chars
from .engine.persidict import PersiDict
from .memoize_claims import LEASE_PREFIX, Claims, LeaseClaims, claims_for

P = ParamSpec("P")
R = TypeVar("R")

DEFAULT_LEASE_TIMEOUT = 30.0
_NAME_MAX = 200  # key components must stay under 254 characters


def _canonical(value: Any, path: frozenset[int] = frozenset()) -> Any:
    """``value`` with set and dict order made canonical, so equal arguments pickle alike.

    Iteration order of a set of str changes between runs (hash randomization);
    elements are sorted by their own canonical pickle. ``path``: the ids of
    the containers holding ``value``, so a cycle is an error, not a RecursionError.
    """
    kind = type(value)
    if kind not in (list, tuple, dict, set, frozenset):
        return value
    if id(value) in path:
        raise ValueError(f"a memoized function's argument refers to itself (a {kind.__name__})")
    path = path | {id(value)}
    if kind is dict:
        items = [(_canonical(k, path), _canonical(v, path)) for k, v in value.items()]
        return ("dict", tuple(sorted(items, key=lambda kv: _pickled(kv[0]))))
    elements = tuple(_canonical(v, path) for v in value)
    if kind in (set, frozenset):
        elements = tuple(sorted(elements, key=_pickled))
    return (kind.__name__, elements)


def _pickled(value: Any) -> bytes:
    """A pickle that depends only on the value: protocol 4, no memo.

    With a memo, two equal strings pickle differently depending on whether
    they are one object (a back-reference) or two; fast mode writes each whole.
    """
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=4)
    pickler.fast = True  # no memo (refuses self-referencing arguments)
    pickler.dump(value)
    return buffer.getvalue()


def _target(func: Callable[..., Any]) -> tuple[Callable[..., Any], tuple[Any, ...], dict[str, Any]]:
    """The function keys are named after, with the arguments ``func`` fixes before a call's.

    A partial's arguments, a bound method's object (``"abc".upper`` too)
    and a callable object itself are part of each key: ``partial(f, 1)``
    and ``partial(f, 2)`` share a qualname but not results.
    """
    if isinstance(func, functools.partial):
        inner, args, kwargs = _target(func.func)
        return inner, (*args, *func.args), {**kwargs, **func.keywords}
    if inspect.ismethod(func):
        inner, args, kwargs = _target(func.__func__)
        return inner, (func.__self__, *args), kwargs
    owner = getattr(func, "__self__", None)
    if inspect.isbuiltin(func) and owner is not None and not inspect.ismodule(owner):
        unbound = getattr(type(owner), func.__name__, None)  # "abc".upper: str.upper
        if unbound is not None and not inspect.isbuiltin(unbound):
            return unbound, (owner,), {}
    call = getattr(type(func), "__call__", None)  # noqa: B004 - the method, not callable()
    if not hasattr(func, "__qualname__") and inspect.isfunction(call):
        return _target(types.MethodType(call, func))  # a callable object: __call__ and itself
    return func, (), {}


def qualified_name(func: Callable[..., Any]) -> str:
    """``module.qualname`` of ``func``, as a safe key component.

    A script's functions are ``__main__`` in the script and ``__mp_main__``
    in its multiprocessing children: both read ``__main__``.

    Raises
    ------
    ValueError
        If ``func`` is a lambda or has no qualname: no name of its own,
        so two such functions would share keys.
    """
    qualname = getattr(func, "__qualname__", None)
    if not isinstance(qualname, str) or "<lambda>" in qualname:
        raise ValueError(
            f"memoize: {func!r} has no name of its own (two of its kind would share "
            "results); pass name=..."
        )
    module = getattr(func, "__module__", None) or "unknown"
    if module == "__mp_main__":
        module = "__main__"
    name = replace_unsafe_chars(f"{module}.{qualname}", "_")
    if len(name) > _NAME_MAX:
        name = name[: _NAME_MAX - 17] + "~" + hashlib.sha256(name.encode()).hexdigest()[:16]
    return name


_UNPICKLABLE_RESULTS = (
    (inspect.iscoroutinefunction, "coroutine"),
    (inspect.isgeneratorfunction, "generator"),
    (inspect.isasyncgenfunction, "async generator"),
)


class MemoizedFunction(Generic[P, R]):
    """A function whose results are cached in a store, computed once per argument tuple.

    Made by :func:`memoize`; call it as the function. Attributes:
    ``store``, ``expire``, ``lease_timeout``, ``name`` (the first key
    component), ``__wrapped__`` (the function).
    """

    def __init__(
        self,
        func: Callable[P, R],
        store: PersiDict[Any],
        *,
        expire: float | None,
        lease_timeout: float,
        name: str | None,
        claims: Claims | None = None,
    ) -> None:
        functools.update_wrapper(self, func)
        self.__wrapped__ = func
        self.store = store
        self.expire = expire
        self.lease_timeout = lease_timeout
        target, self._fixed_args, self._fixed_kwargs = _target(func)
        for test, kind in _UNPICKLABLE_RESULTS:
            if test(target):
                raise TypeError(f"memoize cannot cache {func!r}: it returns a {kind}, "
                                "which never pickles")
        self.name = name if name is not None else qualified_name(target)
        try:
            self._signature: inspect.Signature | None = inspect.signature(target)
        except (TypeError, ValueError):  # some builtins have none
            self._signature = None
        self._claims = claims if claims is not None else claims_for(store, lease_timeout)
        self._stats = {"hits": 0, "misses": 0, "waits": 0, "takeovers": 0}
        self._stats_lock = threading.Lock()

    def __get__(self, obj: Any, objtype: Any = None) -> Any:
        # Decorating a method: bind it like a function (``self`` becomes an argument).
        return self if obj is None else types.MethodType(self, obj)

    def __reduce__(self) -> str:
        # Pickled by reference, like the function it decorates (a module-level name).
        return str(getattr(self.__wrapped__, "__qualname__", type(self).__qualname__))

    def key_for(self, *args: P.args, **kwargs: P.kwargs) -> NonEmptySafeStrTuple:
        """The store key of the result of ``self(*args, **kwargs)``.

        Parameters
        ----------
        *args, **kwargs
            Arguments as the function takes them; they are bound to its
            signature first (defaults applied), so ``f(1)`` and ``f(x=1)``
            share one key.

        Returns
        -------
        NonEmptySafeStrTuple
            ``(name, digest)``: the function's qualified name and the first
            40 hex digits of the SHA-256 of the arguments' canonical pickle.
            Stable across processes, machines and runs (never ``hash()``).

        Raises
        ------
        TypeError
            If the arguments do not fit the signature.
        pickle.PicklingError, TypeError, ValueError
            If an argument does not pickle (or refers to itself).
        """
        positional = (*self._fixed_args, *args)
        named = {**self._fixed_kwargs, **kwargs}
        if self._signature is not None:
            bound = self._signature.bind(*positional, **named)
            bound.apply_defaults()
            positional, named = bound.args, bound.kwargs
        data = _pickled(_canonical((positional, named)))
        return NonEmptySafeStrTuple((self.name, hashlib.sha256(data).hexdigest()[:40]))

    def stats(self) -> dict[str, int]:
        """Counts of this process's calls since the decoration.

        Returns
        -------
        dict
            ``hits``: calls that found the result at once; ``misses``: calls
            that computed it (takeovers included); ``waits``: calls that
            waited while another caller computed and returned its result;
            ``takeovers``: computations started after waiting on a caller
            that ended without storing a result (it died, raised, or let
            its lease expire).
        """
        with self._stats_lock:
            return dict(self._stats)

    def _count(self, what: str) -> None:
        with self._stats_lock:
            self._stats[what] += 1

    def _fresh(self, key: NonEmptySafeStrTuple) -> tuple[bool, Any]:
        """(True, result) if a result younger than ``expire`` is stored, else (False, None)."""
        value = self.store.get_with_etag(key).new_value
        if value is ITEM_NOT_AVAILABLE:
            return False, None
        if self.expire is not None and not self._young(key):
            return False, None
        return True, value

    def _young(self, key: NonEmptySafeStrTuple) -> bool:
        try:
            return time.time() - self.store.timestamp(key) <= self.expire  # type: ignore[operator]
        except KeyError:
            return False

    def _ready(self, key: NonEmptySafeStrTuple) -> bool:
        """Whether a fresh result is stored (read cheaply while waiting)."""
        if self.expire is not None:
            return self._young(key)
        return key in self.store

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        key = self.key_for(*args, **kwargs)
        found, value = self._fresh(key)
        if found:
            self._count("hits")
            return value  # type: ignore[no-any-return]
        waited = False
        while True:
            with self._claims.claim(key, lambda: self._ready(key)) as turn:
                waited = waited or turn.waited
                found, value = self._fresh(key)
                if not found and turn.mine:
                    value = self.__wrapped__(*args, **kwargs)  # an error propagates, uncached
                    self.store[key] = value
                    self._count("misses")
                    if turn.took_over:
                        self._count("takeovers")
                    return value
            if found:
                self._count("waits" if waited else "hits")
                return value  # type: ignore[no-any-return]
            # ready() saw a result that is gone again (evicted, expired): claim again


def memoize(
    store: PersiDict[Any],
    *,
    expire: float | None = None,
    lease_timeout: float = DEFAULT_LEASE_TIMEOUT,
    name: str | None = None,
) -> Callable[[Callable[P, R]], MemoizedFunction[P, R]]:
    """A decorator caching a function's results in ``store``, each computed once.

    Concurrent callers of one argument tuple - threads, processes, and on
    S3 machines - compute once; the others wait and return that result.
    If the computing caller dies, a waiter computes instead: at once on
    FileDirDict (its lock died with it), after ``lease_timeout`` elsewhere.
    If the computation raises, that caller gets the exception, nothing is
    stored, and a waiter (or the next call) computes again.

    Where things live. Results are ordinary entries of ``store`` at
    ``f.key_for(*args, **kwargs)`` = ``(name, digest)``. On FileDirDict the
    claims are OS locks in ``@persidict/memo-lock`` of the store's lock
    root; on LocalDict, locks in this process; on every other store, lease
    entries at ``("persidict_memo_lease", name, digest)`` in ``store``
    itself (three components, so never a result's key; removed by the
    computer when done; ``evict`` skips them).

    Parameters
    ----------
    store : PersiDict
        Any store: FileDirDict, LocalDict, BasicS3Dict, S3Dict, wrappers.
        Results must suit its serialization format and base class.
    expire : float, optional
        Seconds after which a stored result is stale and recomputed (once,
        single-flight too). Ages come from ``store.timestamp`` (on S3 the
        server's clock, in whole seconds): keep ``expire`` well above a
        second plus the clock skew, or a result written while others wait
        looks stale to them and is computed again. None: never expire.
    lease_timeout : float
        Seconds a lease may go unrenewed before a waiter takes it over
        (lease stores). The computer renews it every quarter of that; one
        stalled for longer may see its key computed a second time. On
        FileDirDict with flock locks: how long a nested call waits on a
        shared lock stripe before it computes anyway.
    name : str, optional
        The first key component; default the function's qualified name
        (``module.qualname``, unsafe characters replaced). Give one when the
        function is renamed or moved and its results should carry over, and
        for a lambda (required: all lambdas of a module share a qualname).
        Closures made by one factory share a qualname, and so results: give
        each its own name. A partial's fixed arguments, a bound method's
        object and a callable object itself are part of each key.

    Returns
    -------
    Callable
        A decorator returning a :class:`MemoizedFunction` with
        ``key_for(*a, **kw)`` and ``stats()``.

    Raises
    ------
    TypeError
        If ``store`` is not a PersiDict or a number argument is not a number;
        by the decorator, if the function is async or a generator function
        (its results never pickle).
    ValueError
        If ``expire`` or ``lease_timeout`` is not positive (``lease_timeout``:
        or not finite), or the store is append-only and the claims need
        rewrites (leases, or ``expire``), or its leases (str) would violate
        its ``base_class_for_values``; by the decorator, if the function
        has no name of its own (a lambda) and ``name`` is None.
    """
    if not isinstance(store, PersiDict):
        raise TypeError(f"memoize needs a PersiDict store, got {type(store).__name__}")
    for label, seconds in (("expire", expire), ("lease_timeout", lease_timeout)):
        if seconds is None and label == "expire":
            continue
        if not isinstance(seconds, (int, float)) or isinstance(seconds, bool):
            raise TypeError(f"{label} must be a number of seconds, got {seconds!r}")
        if not seconds > 0:
            raise ValueError(f"{label} must be > 0 seconds, got {seconds!r}")
        if label == "lease_timeout" and not math.isfinite(seconds):
            raise ValueError(f"lease_timeout must be finite (it paces renewals), got {seconds!r}")
    if name is not None and (
        not isinstance(name, str) or not name or replace_unsafe_chars(name, "") != name
    ):
        raise ValueError(f"name must be a non-empty string of safe key characters, got {name!r}")
    claims = claims_for(store, float(lease_timeout))
    base = getattr(store, "base_class_for_values", None)
    if isinstance(claims, LeaseClaims) and base is not None and not issubclass(str, base):
        raise ValueError(
            f"memoize on this store needs lease entries, which are str, but it holds only "
            f"{base.__name__} values (base_class_for_values): use a store without one"
        )
    if store.append_only and (expire is not None or isinstance(claims, LeaseClaims)):
        raise ValueError(
            "memoize on an append-only store works only with file or RAM locks and no expire: "
            "expiry overwrites results and leases are rewritten and deleted"
        )

    def decorate(func: Callable[P, R]) -> MemoizedFunction[P, R]:
        return MemoizedFunction(
            func, store, expire=expire, lease_timeout=float(lease_timeout), name=name,
            claims=claims,
        )

    return decorate


__all__ = ["LEASE_PREFIX", "MemoizedFunction", "memoize", "qualified_name"]
