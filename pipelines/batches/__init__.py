"""CSV batches: input, submit, state in Redis (``scripts/*.lua``), feeding, row ends, reports.

``csvinput`` reads rows, ``submit`` validates and records a batch, ``state`` holds the
atomic moves of rows, ``feeder`` admits rows as capacity allows (``admission``
decodes what the admit script says), ``tasks`` are the row-completion tasks,
``settle`` / ``failures`` / ``cancel`` / ``stale`` end rows, ``status`` and
``manifest`` report. ``ledger_reads`` is the one place that reads ledger records.
"""
