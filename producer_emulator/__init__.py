"""A local twin of the Producer music API: a real HTTP server for tests and demos.

It speaks the contract in ``producer_api/CONTRACT.md`` over HTTP/JSON only:
bearer auth and gateway errors, the six ``/producer/...`` endpoints with
sync / callback / async modes, task records with an in-progress phase,
per-token rate limits and an in-flight cap, seeded fault injection, and
media (WAV, PNG, MP4, stems zip) rendered on demand under ``/media/...``.

>>> from producer_emulator import EmulatorConfig, EmulatorServer
>>> with EmulatorServer(EmulatorConfig(tokens=["t"], time_scale=0.01)) as emu:  # doctest: +SKIP
...     emu.url, emu.counters()["tasks_total"]

``serve()`` runs it in the foreground (``producer-batch emulator``).

It is a server, not client code, so it lives beside ``producer_client`` rather
than inside it, and it imports only the client's public names. The layout:

* core: ``app`` (routes and lifespan), ``server`` (uvicorn thread / ``serve``),
  ``config``, ``state`` (everything remembered), ``errors``, ``records`` (JSON
  shapes), ``limits`` (token buckets, in-flight cap), ``validation`` (its own
  judge of requests);
* ``routes/``: the gateway every ``/producer/...`` request passes, one module per
  endpoint group, the ``/media`` CDN side and the ``/_emulator`` admin side;
* ``faults/``: fault rules and probabilities, and the injector that draws a plan;
* ``jobs/``: generation timers and webhook delivery;
* ``render/``: songs, stems, cover art, video and made-up titles and lyrics.
"""

from producer_emulator.app import create_app
from producer_emulator.config import EmulatorConfig
from producer_emulator.faults.rules import FaultConfig, FaultRule
from producer_emulator.server import EmulatorServer, serve

__all__ = [
    "EmulatorConfig",
    "EmulatorServer",
    "FaultConfig",
    "FaultRule",
    "create_app",
    "serve",
]
