"""OverlappingMultiDict: one store per serialization format over shared storage."""

from __future__ import annotations

from typing import Any, NoReturn

from ..engine.persidict import PersiDict


class OverlappingMultiDict:
    """Several stores that share parameters (e.g. ``base_dir``) and differ only
    by ``serialization_format``; each is an attribute named after its format.

    ``multi.json["k"] = v`` and ``multi.txt["k"] = "text"`` write side by side
    in one directory or bucket. The container itself has no items: item access
    pickling and ``__setstate__`` raise TypeError (use its sub-dicts).

    Parameters
    ----------
    dict_type : type of PersiDict
        The store class of every sub-dict (FileDirDict, S3Dict...).
    shared_subdicts_params : dict
        Constructor parameters common to all sub-dicts (``base_dir``...).
    **individual_subdicts_params : dict
        One entry per sub-dict: its name is its ``serialization_format``,
        its value the parameters it adds or overrides.

    Raises
    ------
    TypeError
        ``dict_type`` is not a PersiDict subclass, or a parameter set is not
        a dict. With no sub-dict at all it is an empty container.

    Notes
    -----
    Each sub-dict is an ordinary store, as atomic as ``dict_type``; nothing
    spans two of them.
    """

    def __init__(
        self,
        *,
        dict_type: type[PersiDict[Any]],
        shared_subdicts_params: dict[str, Any],
        **individual_subdicts_params: dict[str, Any],
    ) -> None:
        if not (isinstance(dict_type, type) and issubclass(dict_type, PersiDict)):
            raise TypeError(f"dict_type must be a PersiDict subclass, got {dict_type!r}")
        if not isinstance(shared_subdicts_params, dict):
            raise TypeError(
                "shared_subdicts_params must be a dict, got "
                f"{type(shared_subdicts_params).__name__}"
            )
        self.dict_type = dict_type
        self.shared_subdicts_params = dict(shared_subdicts_params)
        self.individual_subdicts_params = dict(individual_subdicts_params)
        self.subdicts_names = list(individual_subdicts_params)
        for name, params in individual_subdicts_params.items():
            if not isinstance(params, dict):
                raise TypeError(f"parameters of sub-dict {name!r} must be a dict")
            merged = {**self.shared_subdicts_params, **params, "serialization_format": name}
            setattr(self, name, dict_type(**merged))

    def __getattr__(self, name: str) -> PersiDict[Any]:
        # Only reached for names that are not sub-dicts (typing aid for mypy).
        raise AttributeError(f"{type(self).__name__} has no sub-dict {name!r}")

    def _no_items(self, *args: Any) -> NoReturn:
        """Refuse item access: the container has no items of its own.

        Raises
        ------
        TypeError
            Always; the message names a sub-dict to use instead.
        """
        example = self.subdicts_names[0] if self.subdicts_names else "json"
        raise TypeError(
            f"{type(self).__name__} has no items of its own; use a sub-dict such as .{example}"
        )

    __getitem__ = _no_items
    __setitem__ = _no_items
    __delitem__ = _no_items

    def __getstate__(self) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be pickled; pickle its sub-dicts")

    def __setstate__(self, state: object) -> NoReturn:
        raise TypeError(f"{type(self).__name__} cannot be unpickled; pickle its sub-dicts")

    def __reduce__(self) -> NoReturn:
        self.__getstate__()

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(dict_type={self.dict_type.__name__}, "
            f"subdicts={self.subdicts_names!r})"
        )
