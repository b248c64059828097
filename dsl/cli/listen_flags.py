"""The flags of a command that listens on HTTP (`plr proxy --listen`, `plr console`): the
address, the extra names it answers to, and the bearer-token file. Checked before anything is
opened, each mistake a usage error in one line (exit 2), never a traceback from the server later.
"""

from __future__ import annotations

import sys

import click

from .output import EXIT_INPUT

__all__ = ["check_bindable", "load_tokens", "parse_allow_host", "parse_listen"]


def parse_listen(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (IPv6 in brackets) that this machine can listen on now."""
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise click.BadParameter("expected HOST:PORT, e.g. 127.0.0.1:8765", param_hint="--listen")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        p = int(port)
    except ValueError:
        raise click.BadParameter(f"port `{port}` is not a number", param_hint="--listen") from None
    if not 0 <= p <= 65535:
        raise click.BadParameter(f"port {p} is out of range", param_hint="--listen")
    check_bindable(host, p)
    return host, p


def check_bindable(host: str, port: int) -> None:
    """A port in use or an address this machine does not have is a usage error now, in one line,
    not a traceback from the web server later (its socket is bound the same way)."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as e:
        raise click.BadParameter(f"cannot resolve `{host}`: {getattr(e, 'strerror', None) or e}", param_hint="--listen") from None
    family, _, _, _, addr = infos[0]
    try:
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(addr)
    except OSError as e:
        raise click.BadParameter(f"cannot listen on {host}:{port}: {e.strerror or e}", param_hint="--listen") from None


def parse_allow_host(value: str) -> str:
    """An ``--allow-host`` value, checked (``dsl.listener_names.parse_allow_host``)."""
    from ..listener_names import parse_allow_host as checked

    try:
        return checked(value)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--allow-host") from None


def load_tokens(path: str, who: str) -> dict[str, str]:
    """The ``--auth-tokens`` file (token -> identity); an unreadable or malformed one stops
    ``who`` (``plr proxy``, ``plr console``) with exit 2."""
    from ..proxy.http import load_tokens as read_tokens

    try:
        return read_tokens(path)
    except (OSError, ValueError) as e:
        click.echo(f"{who}: {path}: {e}", err=True)
        sys.exit(EXIT_INPUT)
