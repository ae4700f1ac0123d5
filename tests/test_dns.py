"""loop.getaddrinfo / loop.getnameinfo give exactly what the socket module gives.

'localhost' is resolved from /etc/hosts; asking for it as AF_INET6 goes on to the DNS
servers when /etc/hosts has no IPv6 entry for it, which takes the resolver's timeout (5 s)
on a machine without DNS. Those combinations are left out of the matrix (not skipped:
they are never generated) because they test the machine's resolver, not the loop.
"""

import itertools
import socket

import pytest

from loop_helpers import run, xfail_on

HOSTS = [None, "127.0.0.1", "::1", "localhost", b"127.0.0.1"]
PORTS = [None, 0, 80, "80", "http"]
FAMILIES = [0, socket.AF_INET, socket.AF_INET6]
TYPES = [0, socket.SOCK_STREAM, socket.SOCK_DGRAM]
FLAGS = [0, socket.AI_PASSIVE, socket.AI_NUMERICHOST, socket.AI_CANONNAME]


def _outcome(fn):
    try:
        return ("ok", fn())
    except Exception as exc:  # compared by type and args
        return ("error", type(exc), exc.args)


async def _aoutcome(coro):
    try:
        return ("ok", await coro)
    except Exception as exc:
        return ("error", type(exc), exc.args)


@pytest.mark.parametrize("port", PORTS, ids=repr)
@pytest.mark.parametrize("host", HOSTS, ids=repr)
def test_getaddrinfo_matches_socket(loop, host, port):
    combos = [
        (family, type_, flags)
        for family, type_, flags in itertools.product(FAMILIES, TYPES, FLAGS)
        if not (host == "localhost" and family == socket.AF_INET6 and flags != socket.AI_NUMERICHOST)
    ]

    async def main():
        got = []
        for family, type_, flags in combos:
            got.append(
                await _aoutcome(
                    loop.getaddrinfo(host, port, family=family, type=type_, flags=flags)
                )
            )
        return got

    got = run(loop, main())
    for (family, type_, flags), result in zip(combos, got):
        expected = _outcome(lambda: socket.getaddrinfo(host, port, family, type_, 0, flags))  # noqa: B023  (called at once)
        assert result == expected, (family, type_, flags)


def test_getaddrinfo_proto(loop):
    async def main():
        return await loop.getaddrinfo("127.0.0.1", 80, proto=socket.IPPROTO_TCP)

    assert run(loop, main()) == socket.getaddrinfo("127.0.0.1", 80, 0, 0, socket.IPPROTO_TCP)


def test_getaddrinfo_positional_only_host_port(loop):
    async def main():
        return await loop.getaddrinfo("127.0.0.1", "8080", family=socket.AF_INET,
                                      type=socket.SOCK_STREAM)

    res = run(loop, main())
    assert res == socket.getaddrinfo("127.0.0.1", "8080", socket.AF_INET, socket.SOCK_STREAM)
    assert res[0][4] == ("127.0.0.1", 8080)


@pytest.mark.parametrize(
    "host, port",
    [
        ("no-such-host.invalid", 80),
        ("127.0.0.1", "no-such-service"),
        (None, None),
        ("", None),
        ("::1", "no-such-service"),
    ],
)
def test_getaddrinfo_errors_same_as_socket(loop, host, port):
    expected = _outcome(lambda: socket.getaddrinfo(host, port))
    assert expected[0] == "error"
    got = run(loop, _aoutcome(loop.getaddrinfo(host, port)))
    assert got == expected


@xfail_on("uvloop", "uvloop differs: a bad host/port type raises another exception type")
def test_getaddrinfo_type_errors(loop):
    for host, port in [(123, 80), ("127.0.0.1", 1.5)]:
        expected = _outcome(lambda: socket.getaddrinfo(host, port))  # noqa: B023  (called at once)
        got = run(loop, _aoutcome(loop.getaddrinfo(host, port)))
        assert got[0] == "error" and got[1] is expected[1]


def test_getaddrinfo_many_concurrent(loop):
    import asyncio

    async def main():
        return await asyncio.gather(
            *(loop.getaddrinfo("127.0.0.1", p, type=socket.SOCK_STREAM) for p in range(1000, 1200))
        )

    res = run(loop, main())
    assert [r[0][4][1] for r in res] == list(range(1000, 1200))


@pytest.mark.parametrize(
    "sockaddr, flags",
    [
        (("127.0.0.1", 80), 0),
        (("127.0.0.1", 80), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        (("127.0.0.1", 80), socket.NI_NUMERICHOST),
        (("127.0.0.1", 53), socket.NI_DGRAM),
        (("::1", 443, 0, 0), 0),
        (("::1", 443, 0, 0), socket.NI_NUMERICHOST | socket.NI_NUMERICSERV),
        (("127.0.0.1", 12345), socket.NI_NAMEREQD | socket.NI_NUMERICSERV),
    ],
    ids=repr,
)
def test_getnameinfo_matches_socket(loop, sockaddr, flags):
    expected = _outcome(lambda: socket.getnameinfo(sockaddr, flags))
    got = run(loop, _aoutcome(loop.getnameinfo(sockaddr, flags)))
    assert got == expected


_UV_NI = xfail_on("uvloop", "uvloop differs: a malformed sockaddr raises another exception type")


@pytest.mark.parametrize(
    "sockaddr",
    [pytest.param(("127.0.0.1",), marks=_UV_NI), "127.0.0.1",
     pytest.param(("127.0.0.1", "x"), marks=_UV_NI)],
    ids=repr,
)
def test_getnameinfo_errors(loop, sockaddr):
    expected = _outcome(lambda: socket.getnameinfo(sockaddr, 0))
    assert expected[0] == "error"
    got = run(loop, _aoutcome(loop.getnameinfo(sockaddr, 0)))
    assert got[0] == "error" and got[1] is expected[1]
