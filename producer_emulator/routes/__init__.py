"""The emulator's HTTP side: the gateway and one module per endpoint group.

``gateway`` runs every ``/producer/...`` request through auth, limits and faults
and hands it to ``audios``, ``tasks`` or ``quick`` (upload, lyrics, wav, videos;
``uploads`` fetches reference audio); ``media`` serves ``/media/...`` and
``admin`` the ``/_emulator/...`` endpoints. ``calls`` is what a handler gets.
"""
