"""memoize keys, attacked: callables whose qualname is not theirs alone, odd arguments.

A key is (name, digest of the bound arguments). Two different computations
must never share one (a wrong result, silently), and one computation must
get the same key in every process (else nothing is shared).
"""

from __future__ import annotations

import functools
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from persidict import FileDirDict, LocalDict
from persidict.memoization import memoize


def base(a: int, b: int, c: int = 0) -> int:
    return 100 * a + 10 * b + c


class Adder:
    def __init__(self, n: int) -> None:
        self.n = n

    def add(self, x: int) -> int:
        return x + self.n

    def __call__(self, x: int) -> int:
        return x * self.n


@pytest.fixture
def store(tmp_path: pathlib.Path) -> FileDirDict:
    return FileDirDict(base_dir=str(tmp_path / "store"))


def test_two_lambdas_need_names_of_their_own(store: FileDirDict) -> None:
    with pytest.raises(ValueError, match="name="):
        memoize(store)(lambda x: x * x)
    square = memoize(store, name="square")(lambda x: x * x)
    cube = memoize(store, name="cube")(lambda x: x**3)
    assert (square(2), cube(2)) == (4, 8)


def test_partials_of_one_function_keep_their_fixed_arguments(store: FileDirDict) -> None:
    one, two = (memoize(store)(functools.partial(base, a)) for a in (1, 2))
    assert (one(3), two(3), one(3), two(3)) == (130, 230, 130, 230)
    assert one.key_for(3) == memoize(store)(base).key_for(1, 3)  # the same computation
    later = memoize(store)(functools.partial(base, c=5))
    assert later(1, 2) == 125 and later(1, 2, c=7) == 127


def test_bound_methods_and_callable_objects_key_on_their_object(store: FileDirDict) -> None:
    add1, add2 = memoize(store)(Adder(1).add), memoize(store)(Adder(2).add)
    assert (add1(10), add2(10)) == (11, 12)
    times2, times3 = memoize(store)(Adder(2)), memoize(store)(Adder(3))
    assert (times2(10), times3(10)) == (20, 30)


_PRINT_KEYS = """
import functools, sys
sys.path.insert(0, {tests!r})
from persidict import LocalDict
from persidict.memoization import memoize
import test_memoize_adversary_keys as t
s = LocalDict()
print(memoize(s)(functools.partial(t.base, 1)).key_for(2))
print(memoize(s)(t.Adder(4).add).key_for(2))
print(memoize(s)(t.Adder(4)).key_for(2))
"""


def test_keys_of_partials_and_objects_agree_between_processes() -> None:
    code = _PRINT_KEYS.format(tests=str(pathlib.Path(__file__).parent))
    runs = [subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           timeout=60, check=True).stdout for _ in range(2)]
    assert runs[0] == runs[1] and runs[0].count("NonEmptySafeStrTuple") == 3, runs


@pytest.mark.parametrize("make", [list, dict, tuple])
def test_a_self_referencing_argument_is_a_clear_error(make: Any) -> None:
    f = memoize(LocalDict(), name="f")(lambda x: 1)
    if make is list:
        arg: Any = []
        arg.append(arg)
    elif make is dict:
        arg = {}
        arg["me"] = arg
    else:  # a cycle through a dict inside a tuple
        inner: dict[str, Any] = {}
        arg = (1, inner)
        inner["back"] = arg
    with pytest.raises(ValueError, match="refers to itself"):
        f(arg)


def test_an_infinite_lease_timeout_is_refused(store: FileDirDict) -> None:
    with pytest.raises(ValueError, match="lease_timeout"):
        memoize(store, lease_timeout=float("inf"))
    assert memoize(store, expire=float("inf"))(base)(1, 2) == 120  # never expires: fine


async def _coroutine(x: int) -> int:
    return x


def _generator(x: int) -> Any:
    yield x


@pytest.mark.parametrize("func", [_coroutine, _generator])
def test_functions_whose_results_never_pickle_are_refused_up_front(
    store: FileDirDict, func: Any
) -> None:
    with pytest.raises(TypeError, match=r"coroutine|generator"):
        memoize(store)(func)  # not at each call, after running it (and an unawaited coroutine)


def test_one_qualname_in_two_modules_does_not_collide(store: FileDirDict) -> None:
    import types

    made = []
    for module, body in (("adv_mod_a", "x + 1"), ("adv_mod_a_", "x + 2")):
        namespace = types.ModuleType(module).__dict__
        exec(f"def f(x):\n    return {body}\n", namespace)
        made.append(memoize(store)(namespace["f"]))
    assert [f(1) for f in made] == [2, 3] and [f(1) for f in made] == [2, 3]
    assert made[0].key_for(1) != made[1].key_for(1)


def test_builtin_bound_methods_key_on_their_object(store: FileDirDict) -> None:
    upper_abc, upper_xyz = memoize(store)("abc".upper), memoize(store)("xyz".upper)
    assert (upper_abc(), upper_xyz()) == ("ABC", "XYZ")
    append_to = memoize(store)([1].count), memoize(store)([1, 1].count)
    assert (append_to[0](1), append_to[1](1)) == (1, 2)
    assert memoize(store)(len)("abcd") == 4 and memoize(store)(dict.fromkeys)("ab") == {
        "a": None, "b": None}
