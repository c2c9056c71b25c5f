"""Content the emulator makes up: decodable songs and stems, cover art, video, texts.

``media`` is the entry point (``SongSpec`` and the ``render_*`` functions);
``_synth`` and ``_pictures`` are its sample- and byte-level helpers.
"""
