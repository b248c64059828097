"""`plr check --format github|sarif`: the same diagnostics, for CI.

* ``github``: one GitHub Actions workflow command per diagnostic (``::error file=…,line=…::msg``),
  which the Actions runner turns into an annotation on the pull request's diff. Every field is
  escaped the way the runner unescapes it, so a message (which may quote a tool name or a path
  the policy's author chose) can never end its line and start a workflow command of its own.
* ``sarif``: one SARIF 2.1.0 log (OASIS) with one run of the driver ``plr``, for GitHub code
  scanning and any other SARIF viewer. Columns are Unicode code points, as plr counts them
  (``columnKind: unicodeCodePoints``); ``endColumn`` is exclusive, as SARIF defines it.

Both take the ``Diagnostic`` list ``plr check`` already builds, so a format never changes what
is reported, only how.
"""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path
from typing import Any, Iterable

from ..errors import Diagnostic

__all__ = ["FORMATS", "SARIF_SCHEMA", "github_annotations", "render", "sarif_log"]

FORMATS = ("text", "json", "github", "sarif")
SARIF_SCHEMA = "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
_TITLE = "plr check"
# One SARIF rule per severity: plr's messages carry no stable codes, and GitHub groups alerts by
# rule, so "error" and "warning" are the two kinds a reviewer triages differently.
_RULES = {
    "error": ("plr-error", "The policy does not compile: plr check reports an error."),
    "warning": ("plr-warning", "The policy compiles, but plr check warns (a rule that cannot matter, a likely typo)."),
}


# --- GitHub Actions ------------------------------------------------------------------------


def _escape_data(text: str) -> str:
    """A workflow command's message, as the runner's ``EscapeData`` writes it."""
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    """A workflow command's property value, as the runner's ``EscapeProperty`` writes it."""
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github_annotation(d: Diagnostic) -> str:
    """``::error file=F,line=L,col=C,endColumn=E,title=plr check::MESSAGE`` (one line)."""
    props = [f"file={_escape_property(_posix(d.file))}"]
    if d.line:
        props.append(f"line={d.line}")
        if d.col:
            props.append(f"col={d.col}")
            props.append(f"endColumn={d.col + max(1, d.width)}")
    props.append(f"title={_escape_property(_TITLE)}")
    command = "error" if d.severity == "error" else "warning"
    return f"::{command} {','.join(props)}::{_escape_data(d.message)}"


def github_annotations(diags: Iterable[Diagnostic]) -> str:
    """Every diagnostic as a workflow command, one per line ("" when there are none)."""
    return "".join(github_annotation(d) + "\n" for d in diags)


# --- SARIF 2.1.0 -----------------------------------------------------------------------------


def _posix(file: str) -> str:
    return file.replace(os.sep, "/") if os.sep != "/" else file


def _is_path(file: str) -> bool:
    """Whether a diagnostic's file is a file (not ``<stdin>`` or another named text)."""
    return bool(file) and not (file.startswith("<") and file.endswith(">"))


def _artifact(file: str) -> dict[str, Any]:
    """A relative file as a URI reference against ``%SRCROOT%`` (the working directory), an
    absolute one (outside the working directory) as a ``file:`` URI."""
    if os.path.isabs(file):
        return {"uri": Path(file).as_uri()}
    return {"uri": urllib.parse.quote(_posix(file)), "uriBaseId": "%SRCROOT%"}


def _result(d: Diagnostic) -> dict[str, Any]:
    rule_id = _RULES[d.severity][0]
    result: dict[str, Any] = {
        "ruleId": rule_id,
        "ruleIndex": list(_RULES).index(d.severity),
        "level": "error" if d.severity == "error" else "warning",
        "message": {"text": d.message},
    }
    if _is_path(d.file):
        physical: dict[str, Any] = {"artifactLocation": _artifact(d.file)}
        if d.line:
            region: dict[str, Any] = {"startLine": d.line}
            if d.col:
                region["startColumn"] = d.col
                region["endColumn"] = d.col + max(1, d.width)
            if d.source_line is not None:
                region["snippet"] = {"text": d.source_line}
            physical["region"] = region
        result["locations"] = [{"physicalLocation": physical}]
    return result


def sarif_log(diags: Iterable[Diagnostic], *, version: str | None = None, base_dir: str | None = None) -> dict[str, Any]:
    """The SARIF 2.1.0 log of one ``plr check`` run: the driver, its two rules, every result."""
    if version is None:
        version = _plr_version()
    base = Path(base_dir or os.getcwd()).resolve().as_uri().rstrip("/") + "/"
    driver: dict[str, Any] = {
        "name": "plr",
        "rules": [
            {
                "id": rule_id,
                "name": "PolicyError" if severity == "error" else "PolicyWarning",
                "shortDescription": {"text": text},
                "defaultConfiguration": {"level": "error" if severity == "error" else "warning"},
            }
            for severity, (rule_id, text) in _RULES.items()
        ],
    }
    if version:
        driver["version"] = version
        driver["semanticVersion"] = version
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": driver},
                "originalUriBaseIds": {"%SRCROOT%": {"uri": base}},
                "columnKind": "unicodeCodePoints",
                "results": [_result(d) for d in diags],
            }
        ],
    }


def _plr_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("plr")
    except PackageNotFoundError:
        return ""


# --- one entry point for `plr check` --------------------------------------------------------


def render(fmt: str, diags: list[Diagnostic]) -> str:
    """The report of ``plr check --format FMT`` on stdout (``text`` is the caret form)."""
    if fmt == "json":
        return json.dumps([d.to_dict() for d in diags], indent=2) + "\n"
    if fmt == "github":
        return github_annotations(diags)
    if fmt == "sarif":
        return json.dumps(sarif_log(diags), indent=2) + "\n"
    if fmt == "text":
        from ..errors import format_diagnostics

        return format_diagnostics(diags) + ("\n" if diags else "")
    raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
