"""``python -m pipelines`` is the ``producer-batch`` command."""

from pipelines.cli import main

main()
