"""The names an HTTP listener answers to: which ``Host`` and ``Origin`` values name it (the
DNS-rebinding check of the proxy's HTTP front and of `plr console`), and whether an address
listens on loopback only (serving beyond it needs tokens).

Pure functions but for ``is_loopback_listener``, which resolves a host name. Both the proxy's
front (``dsl.proxy.http``) and the console use them, so the console need not reach into the
proxy's private code.
"""

from __future__ import annotations

import ipaddress
import re
import socket

__all__ = ["allowed_names", "is_loopback_listener", "parse_allow_host", "split_host"]


def _is_loopback_address(text: str) -> bool | None:
    """Whether an IP literal is loopback (127.0.0.0/8, ::1, or either mapped into IPv6); None if
    ``text`` is not an IP literal."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(addr, "ipv4_mapped", None)
    return addr.is_loopback or bool(mapped is not None and mapped.is_loopback)


def _is_unspecified(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_unspecified
    except ValueError:
        return False


def is_loopback_listener(host: str) -> bool:
    """Whether listening on ``host`` listens on loopback only: ``localhost`` in any case, any IP
    literal in 127.0.0.0/8 or ``::1``, or a name every address of which is loopback. A wildcard
    (``0.0.0.0``, ``::``) or a name that does not resolve is not."""
    host = host.strip()
    if host.lower().rstrip(".") == "localhost":
        return True
    literal = _is_loopback_address(host)
    if literal is not None:
        return literal
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        return False
    return bool(infos) and all(_is_loopback_address(str(info[4][0])) for info in infos)


def split_host(entry: str) -> tuple[str, str]:
    """``HOST[:PORT]`` (IPv6 in brackets) -> (HOST, PORT or "")."""
    if entry.startswith("["):
        inner, _, rest = entry.partition("]")
        return inner + "]", rest[1:] if rest.startswith(":") else rest
    name, _, port = entry.partition(":")
    return name, port


def allowed_names(host: str, ports: set[int], allow_hosts: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """The ``Host`` and ``Origin`` values (the MCP SDK's exact or ``name:*`` patterns) that name
    this listener: its address as given with each bound port; on loopback, or on a wildcard
    address (which serves loopback too), ``localhost``, ``127.0.0.1`` and ``[::1]``; and
    ``allow_hosts`` (``--allow-host`` values, lower case; without a port: on any port)."""
    names: list[str] = []
    if not _is_unspecified(host):
        names.append(host.lower())
    if _is_unspecified(host) or is_loopback_listener(host):
        names += ["localhost", "127.0.0.1", "::1"]
    hosts: list[str] = []
    origins: list[str] = []
    for name in dict.fromkeys(names):
        shown = f"[{name}]" if ":" in name else name
        for port in sorted(ports):
            hosts.append(f"{shown}:{port}")
            origins.append(f"http://{shown}:{port}")
            if port == 80:  # the default port is left out of Host and Origin
                hosts.append(shown)
                origins.append(f"http://{shown}")
    for entry in allow_hosts:
        patterns = [entry] if split_host(entry)[1] else [entry, f"{entry}:*"]
        hosts += patterns
        origins += [f"{scheme}://{p}" for p in patterns for scheme in ("http", "https")]
    return hosts, origins


_HOST_NAME = re.compile(r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9_])?\.?")


def parse_allow_host(value: str) -> str:
    """An ``--allow-host`` value, ``HOST`` or ``HOST:PORT`` (IPv6 in brackets), in lower case;
    ValueError with a readable message for anything else (a wildcard, a URL, a path)."""
    text = value.strip().lower()
    usage = (
        f"`{value}` is not HOST or HOST:PORT (a host name, an IPv4 address or an IPv6 address in brackets: "
        "[::1]:8765)"
    )
    name, port = split_host(text)
    if name.startswith("["):
        try:
            ipaddress.IPv6Address(name[1:-1])
        except ValueError:
            raise ValueError(usage) from None
        if text != name and not text[len(name) :].startswith(":"):
            raise ValueError(usage)
    elif not _HOST_NAME.fullmatch(name):
        raise ValueError(usage)
    if text != name:  # a port was given
        if not port.isdigit():
            raise ValueError(usage)
        if not 0 < int(port) <= 65535:
            raise ValueError(f"the port in `{value}` is not from 1 to 65535")
        return f"{name}:{int(port)}"
    return name
