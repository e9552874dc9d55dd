"""Every Python block of README.md runs as written (issue 15.5).

Each block runs in a fresh working directory, in a subprocess with only the
environment a user would have; S3 blocks get the test server's endpoint and
credentials in place of the README's example endpoint.
"""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from s3_server import ACCESS_KEY, REGION, SECRET_KEY, S3Server

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.S | re.M)
EXAMPLE_ENDPOINT = "http://127.0.0.1:8333"


def test_readme_has_python_blocks() -> None:
    assert len(BLOCKS) >= 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(
    index: int, tmp_path: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    code = BLOCKS[index]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    if "S3Dict" in code:
        server: S3Server = request.getfixturevalue("s3_server")
        assert EXAMPLE_ENDPOINT in code, "an S3 block must name the example endpoint"
        code = code.replace(EXAMPLE_ENDPOINT, server.endpoint_url)
        env.update(AWS_ACCESS_KEY_ID=ACCESS_KEY, AWS_SECRET_ACCESS_KEY=SECRET_KEY,
                   AWS_DEFAULT_REGION=REGION)
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=100)
    assert result.returncode == 0, f"README block {index} failed:\n{result.stderr}"
