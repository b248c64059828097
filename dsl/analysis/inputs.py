"""The policies the analysis commands compare: a .plr file or folder, or a compiled .json,
reduced to the canonical JSON dump the engine runs; ``--git REV`` reads them from a revision.

The analysis always works on the compiled policy, the artefact that ships, so a .plr source
and the .json compiled from it give the same answers.
"""

from __future__ import annotations

import os
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..errors import PlrError

__all__ = ["load_side", "load_policies", "git_revision"]


def load_side(path: str) -> dict[str, Any]:
    """The canonical dump of the one policy at ``path``; PlrError (with file:line:col) on failure.
    A folder that holds several independent policies is refused: name the file."""
    policies = load_policies(path)
    if len(policies) > 1:
        raise PlrError.at(
            "a folder holds several independent policies (" + ", ".join(list(policies)[:5]) + "); name the file",
            path,
        )
    return next(iter(policies.values()))


def load_policies(path: str) -> dict[str, dict[str, Any]]:
    """Every policy at ``path`` by name, as canonical dumps: a file is one policy (named by its
    base name); a folder holds one per entry point (the files ``plr test`` would compile: those
    with tests and those no other file there imports), named by the path inside the folder."""
    if not os.path.exists(path):
        raise PlrError.at("no such file or directory", path)
    if not os.path.isdir(path):
        return {os.path.basename(path): _load_file(path)}
    from ..compiler import compile_files
    from ..tester import discover, suite_roots

    roots = suite_roots(discover([path]))
    if not roots:
        raise PlrError.at("no .plr files found", path)
    return {Path(os.path.relpath(r, path)).as_posix(): compile_files([r]).to_dict() for r in roots}


def _load_file(path: str) -> dict[str, Any]:
    if path.endswith((".json", ".yaml", ".yml")):
        from ..policy import load_policy

        return load_policy(Path(path)).to_dict()
    from ..compiler import compile_files

    return compile_files([path]).to_dict()


@contextmanager
def git_revision(rev: str, path: str) -> Iterator[str]:
    """``path`` as it is in git revision ``rev``: the repository's tree at ``rev`` exported to a
    temporary folder (so a .plr file's imports resolve inside that revision), and the path in it."""
    where = os.path.dirname(os.path.abspath(path)) if os.path.isfile(path) else os.path.abspath(path)
    while not os.path.isdir(where):
        where = os.path.dirname(where)

    def git(*argv: str) -> bytes:
        try:
            return subprocess.run(["git", "-C", where, *argv], check=True, capture_output=True).stdout
        except FileNotFoundError:
            raise PlrError.at("--git needs the git command, which is not installed") from None
        except subprocess.CalledProcessError as e:
            msg = e.stderr.decode("utf-8", "replace").strip().splitlines()
            raise PlrError.at(f"git: {msg[-1] if msg else 'failed'}", path) from None

    top = git("rev-parse", "--show-toplevel").decode().strip()
    where = top  # `git archive` in a subfolder would export that subfolder alone
    git("rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}")
    rel = os.path.relpath(os.path.realpath(path), os.path.realpath(top))
    if rel.startswith(".."):
        raise PlrError.at("not inside the git repository", path)
    with tempfile.TemporaryDirectory(prefix="plr-git-") as tmp:
        archive = os.path.join(tmp, "tree.tar")
        Path(archive).write_bytes(git("archive", "--format=tar", rev))
        root = os.path.join(tmp, "tree")
        with tarfile.open(archive) as tar:
            tar.extractall(root, filter="data")
        target = os.path.join(root, rel)
        if not os.path.exists(target):
            raise PlrError.at(f"does not exist in revision {rev}", path)
        cwd = os.getcwd()
        os.chdir(root)  # rule names (file:line) come out relative, as for the working tree
        try:
            yield rel
        finally:
            os.chdir(cwd)
