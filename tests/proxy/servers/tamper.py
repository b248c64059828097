"""A hostile MCP server for the reliability tests: the real fake codex worker behind a byte-level
fault injector on its stdout.

``python tamper.py -- CMD...`` starts ``CMD`` (normally ``python fake_codex.py``), passes this
process's stdin to it unchanged, and copies its stdout back line by line. A line from the server
that contains one of these markers is tampered with before it reaches the proxy (the fake
server echoes a ``get-task`` call's ``task_id`` in its answer, so a test puts the marker there):

- ``@@BADUTF8@@``: the marker is replaced by bytes that are not UTF-8 (``\\xff\\xfe\\xc3``);
- ``@@BINARY@@``: a line of random bytes (no JSON, no UTF-8) is written before the answer;
- ``@@DEEP@@``: two lines nested 100,000 deep (an array, and a notification's params) come first;
- ``@@DROP@@``: the answer is never sent (the server "hangs" on that one call);
- ``@@DUP@@``: the answer is sent twice (a second answer to an id the proxy no longer waits for);
- ``@@WRONGID@@``: the answer is sent with an id nobody asked for, then never the right one;
- ``@@DIE@@``: the server process and this wrapper die (SIGKILL) instead of answering.

Nothing here speaks MCP itself: the answers are the fake server's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading


def main() -> None:
    argv = sys.argv[1:]
    if argv and argv[0] == "--":
        argv = argv[1:]
    child = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert child.stdin is not None and child.stdout is not None
    out = sys.stdout.buffer

    def pump_in() -> None:
        fd = sys.stdin.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                child.stdin.write(chunk)
                child.stdin.flush()
        except OSError:
            pass
        try:
            child.stdin.close()
        except OSError:
            pass

    threading.Thread(target=pump_in, daemon=True).start()
    for line in child.stdout:
        if b"@@DIE@@" in line:
            child.kill()
            os.kill(os.getpid(), signal.SIGKILL)
        if b"@@DROP@@" in line:
            continue
        if b"@@DEEP@@" in line:
            out.write(b"[" * 200_000 + b"]" * 200_000 + b"\n")
            out.write(b'{"jsonrpc": "2.0", "method": "notifications/message", "params": ' + b'{"a":' * 100_000 + b"1" + b"}" * 100_000 + b"}\n")
        if b"@@BINARY@@" in line:
            out.write(b"\x00\xff\x81garbage\xfe\xc0\x80 {{{ \xed\xa0\x80\n")
        if b"@@BADUTF8@@" in line:
            line = line.replace(b"@@BADUTF8@@", b"\xff\xfe\xc3")
        if b"@@WRONGID@@" in line:
            msg = json.loads(line)
            msg["id"] = 987654321
            line = json.dumps(msg).encode() + b"\n"
        out.write(line)
        if b"@@DUP@@" in line:
            out.write(line)
        out.flush()
    sys.exit(child.wait())


if __name__ == "__main__":
    main()
