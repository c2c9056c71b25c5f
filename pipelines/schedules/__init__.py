"""Scheduled batches: a pipeline on a CSV, fired by celery beat (redbeat) on a cron or interval.

``spec`` what a schedule is (parsing, validation, times, the redbeat configuration);
``store`` the schedules in Redis beside their redbeat entries; ``tasks`` the fire task;
``beat`` the hooks :mod:`pipelines.app` installs (fire-time stamp, beat-start sync).
"""
