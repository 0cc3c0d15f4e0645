"""The blocking facade on a real VM, for callers without an event loop."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import Exited, Stdout, SyncSandbox

pytestmark = pytest.mark.vm


def test_sync_facade_end_to_end(corral_home: Path) -> None:
    with SyncSandbox.builder("sync").memory(128).create() as sandbox:
        output = sandbox.exec("sh", ["-c", "read line; echo got $line; exit 3"], stdin=b"x\n")
        assert (output.stdout, output.exit_code) == (b"got x\n", 3)
        with sandbox.exec_stream("cat") as process:
            process.write_stdin(b"streamed", eof=True)
            events = list(process)
        assert events[1:] == [Stdout(b"streamed"), Exited(0, None, False)]
        sandbox.fs.write("/tmp/f", b"data")
        assert sandbox.fs.read("/tmp/f") == b"data"
        assert sandbox.info()["status"] == "running"
    assert SyncSandbox.list() == []
