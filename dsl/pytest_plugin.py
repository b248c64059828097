"""pytest plugin (entry point ``pytest11``): ``pytest --plr`` runs .plr test blocks too.

Each test block becomes a pytest item, run exactly as `plr test` runs it: against the
compiled policy JSON loaded back. A policy that does not compile is one failing item that
shows the compiler's errors.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import pytest


def pytest_addoption(parser: Any) -> None:
    group = parser.getgroup("plr")
    group.addoption(
        "--plr",
        action="store_true",
        default=False,
        help="collect the test blocks of .plr files as pytest items (run against the compiled policy)",
    )


def pytest_collect_file(file_path: Path, parent: Any) -> Any:
    if file_path.suffix == ".plr" and parent.config.getoption("plr"):
        text = file_path.read_text(encoding="utf-8", errors="replace")
        from .tester import suite_roots

        if "test" in text and suite_roots([str(file_path)]):
            return PlrFile.from_parent(parent, path=file_path)
    return None


class PlrFile(pytest.File):
    def collect(self) -> Iterator[pytest.Item]:
        from .tester import load_suite

        suite = load_suite(str(self.path))
        if not suite.ok:
            yield PlrCompileItem.from_parent(self, name="compile", suite=suite)
            return
        for test in suite.tests:
            yield PlrItem.from_parent(self, name=test.name, suite=suite, test=test)


class PlrTestFailed(Exception):
    pass


class PlrItem(pytest.Item):
    def __init__(self, *, suite: Any, test: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.suite = suite
        self.test = test

    def runtest(self) -> None:
        from .tester import run_test

        result = run_test(self.suite, self.test, trace=True)
        if not result.passed:
            raise PlrTestFailed(result)

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:  # type: ignore[override]
        if isinstance(excinfo.value, PlrTestFailed):
            result = excinfo.value.args[0]
            lines = [f'{result.file}:{result.line}: test "{result.name}" failed']
            if result.error:
                lines.append(f"  error: {result.error}")
            for f in result.failures:
                lines += [f"  {f.location()}: {f.step}", f"    expected: {f.expected}", f"    actual:   {f.actual}"]
                lines += [f"      {t}" for t in f.trace]
            return "\n".join(lines)
        return str(super().repr_failure(excinfo))

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, self.test.span.line - 1, f"plr test: {self.test.name}"


class PlrCompileItem(pytest.Item):
    def __init__(self, *, suite: Any, **kw: Any) -> None:
        super().__init__(**kw)
        self.suite = suite

    def runtest(self) -> None:
        from .errors import PlrError

        raise PlrError([d for d in self.suite.diagnostics if d.severity == "error"])

    def repr_failure(self, excinfo: Any, style: Any = None) -> str:  # type: ignore[override]
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int, str]:
        return self.path, 0, "plr compile"
