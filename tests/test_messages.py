"""Error messages say what was wrong and what to do (issue 15.3)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from persidict import BackendError, LocalDict, NonEmptySafeStrTuple
from persidict.backends.s3_transport import Transport


def test_unsafe_key_names_the_allowed_characters_and_the_fix() -> None:
    with pytest.raises(ValueError) as info:
        LocalDict()["a b/c"] = 1
    text = str(info.value)
    assert "' '" in text and "'/'" in text
    assert "letters, digits and ()_-~.=" in text
    assert "replace_unsafe_chars" in text


def _denied(**kwargs: Any) -> Any:
    raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"},
                       "ResponseMetadata": {"HTTPStatusCode": 403}}, "ListObjectsV2")


@pytest.mark.parametrize("key", [None, "k"])
def test_s3_errors_read_well_with_and_without_a_key(key: str | None) -> None:
    transport = Transport(lambda object_key: f"s3://bucket/{object_key}")
    k = None if key is None else NonEmptySafeStrTuple(key)
    with pytest.raises(BackendError) as info:
        transport.call("list_objects_v2", _denied, key=k, object_key="prefix/")
    text = str(info.value)
    assert " of at " not in text
    expected = "S3 list_objects_v2 of key ('k',) at" if key else "S3 list_objects_v2 at"
    assert text.startswith(f"{expected} s3://bucket/prefix/ failed"), text
    assert "AccessDenied" in text


def test_cli_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    from persidict.cli import main

    for argv in (["--help"], ["check", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert "``" not in out and "usage: persidict" in out
