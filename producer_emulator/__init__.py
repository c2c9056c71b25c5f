"""A local twin of the Producer music API: a real HTTP server for tests and demos.

It speaks the contract in ``producer_api/CONTRACT.md`` over HTTP/JSON only:
bearer auth and gateway errors, the six ``/producer/...`` endpoints with
sync / callback / async modes, task records with an in-progress phase,
per-token rate limits and an in-flight cap, seeded fault injection, and
media (WAV, PNG, MP4, stems zip) rendered on demand under ``/media/...``.

>>> from producer_client.emulator import EmulatorConfig, EmulatorServer
>>> with EmulatorServer(EmulatorConfig(tokens=["t"], time_scale=0.01)) as emu:  # doctest: +SKIP
...     emu.url, emu.counters()["tasks_total"]

``serve()`` runs it in the foreground (``producer-batch emulator``).
"""

from producer_client.emulator.app import create_app
from producer_client.emulator.config import EmulatorConfig, FaultConfig, FaultRule
from producer_client.emulator.server import EmulatorServer, serve

__all__ = [
    "EmulatorConfig",
    "EmulatorServer",
    "FaultConfig",
    "FaultRule",
    "create_app",
    "serve",
]
