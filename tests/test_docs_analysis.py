"""docs/analysis.md stays true: its ``python`` blocks run, in order and in one namespace, against a
real server (the blocks before "A stopped server's data directory") and then, the server stopped,
against its data directory, over the stream of tests/test_client.py; each block must print the
``text`` block that follows it."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT, in_process
from tests.test_client import prepare

DOC = ROOT / "docs" / "analysis.md"
STOPPED = "### A stopped server's data directory"
EXAMPLE = "## Example"
#: A fenced block and its language.
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.M | re.S)


def blocks(text: str) -> list[tuple[str, str | None]]:
    """(code, the output it must print, or None) of every python block of ``text``, in order."""
    found = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    out = []
    for i, (language, body) in enumerate(found):
        if language != "python":
            continue
        following = found[i + 1] if i + 1 < len(found) else None
        out.append((body, following[1] if following and following[0] == "text" else None))
    return out


def run(code: str, namespace: dict[str, object]) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(DOC), "exec"), namespace)  # noqa: S102 - the doc's own example
    return printed.getvalue()


def test_the_examples_blocks_split_into_a_server_part_and_a_data_directory_part() -> None:
    text = DOC.read_text()
    example = text[text.index(EXAMPLE) :]
    running, stopped = example.split(STOPPED)
    assert len(blocks(running)) >= 3 and len(blocks(stopped)) >= 1
    assert all(output is not None for _, output in blocks(example))
    assert 'Client("http://127.0.0.1:8080")' in running
    assert 'Client.open(".sloscope-data", slos="slos.yaml")' in stopped


def test_the_examples_run_and_print_what_the_doc_says(tmp_path: Path) -> None:
    prepared = prepare(tmp_path)
    text = DOC.read_text()
    example = text[text.index(EXAMPLE) :].split("\n## ")[0]  # the section, up to the next one
    running, stopped = example.split(STOPPED)
    namespace: dict[str, object] = {"__name__": "docs_analysis"}
    with in_process(prepared.data_dir, slos=str(prepared.spec), retention_days=0) as server:
        for code, output in blocks(running):
            code = code.replace('"http://127.0.0.1:8080"', repr(server.api))
            assert run(code, namespace) == output, code
    for code, output in blocks(stopped):
        code = code.replace('".sloscope-data"', repr(str(prepared.data_dir)))
        code = code.replace('"slos.yaml"', repr(str(prepared.spec)))
        assert run(code, namespace) == output, code


@pytest.mark.parametrize("broken", ["print(1)\n", "raise ValueError('no')\n"])
def test_a_block_that_prints_otherwise_or_fails_is_caught(broken: str) -> None:
    """The check above can fail: another output, or an exception, does not pass."""
    with pytest.raises((AssertionError, ValueError)):
        assert run(broken, {}) == "2\n"
