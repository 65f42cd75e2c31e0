"""Benchmarks: measured against a floor taken in the same run, never asserted.

Importing this package first puts the process in the run's namespace (see ``isolation``), so
every ``python -m bench.<module>`` and every bench worker sees the same private topics and groups.
"""

from bench import isolation

isolation.apply()
