"""Connect-level faults on loopback, which no running server can produce per request.

python-ecosystem-notes §4 lists what httpx raises for each; both of these are NOT SENT for
misbridge (the request provably never left), so its client retries them within the window
and then gives up with ``BackendNotSent``:

* :func:`refusing_port`: nothing listens, the kernel answers the SYN with RST at once:
  ``httpx.ConnectError``;
* :func:`blackhole_listener`: a socket listens with ``backlog`` 0 and never accepts; one
  filler connection fills its accept queue, so Linux drops every further SYN and the client's
  connect hangs until its connect timeout: ``httpx.ConnectTimeout``.

A backend that is down for a while and then comes back: stop the simulator and start it again
on the same port (docs/backend.md, "Outages").
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator

#: How long one filler connect may take before the accept queue counts as full.
_FILL_PROBE_S = 0.2
#: Most filler connections tried (Linux needs one for backlog 0; other kernels may need more).
_MAX_FILLERS = 64


def refusing_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` where nothing listens, so a connect is refused at once.

    The port is bound for a moment and released, so the kernel just gave it out as free;
    nothing but another ``bind(0)`` on this host could take it in between.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
    return port


@contextlib.asynccontextmanager
async def blackhole_listener(host: str = "127.0.0.1") -> AsyncIterator[tuple[str, int]]:
    """A ``(host, port)`` that listens but never accepts, its accept queue already full.

    Connects to it time out (SYN dropped) for as long as the ``async with`` block lasts.

    Raises:
        RuntimeError: the accept queue never filled (a kernel that does not drop SYNs).
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    fillers: list[socket.socket] = []
    try:
        listener.bind((host, 0))
        listener.listen(0)
        address = listener.getsockname()
        await _fill_backlog(family, address, fillers)
        yield host, address[1]
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


async def _fill_backlog(family: socket.AddressFamily, address: tuple[str, int], fillers: list[socket.socket]) -> None:
    loop = asyncio.get_running_loop()
    for _ in range(_MAX_FILLERS):
        filler = socket.socket(family, socket.SOCK_STREAM)
        filler.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(filler, address), _FILL_PROBE_S)
        except TimeoutError:
            filler.close()  # this SYN was dropped: the queue is full
            return
        except BaseException:
            filler.close()
            raise
        fillers.append(filler)
    raise RuntimeError(f"the accept queue of {address} never filled after {_MAX_FILLERS} connections")
