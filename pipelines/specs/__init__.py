"""Pipeline specs: named step lists, their templates, and the Celery canvas of one row.

``spec`` (the models and their checks), ``loader`` (built-in ``pipelines.toml`` plus a
user file), ``refs`` (``{row.X}`` / ``{steps.NAME.FIELD}`` templates) and ``canvas``
(the only place canvases are built or walked).
"""
