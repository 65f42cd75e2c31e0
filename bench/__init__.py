"""Benchmarks: measured against a floor taken in the same run, never asserted.

Each run is a deployment namespace of its own (bench/run sets a fresh TENANT_NAMESPACE), so every
``python -m bench.<module>`` and every bench worker sees the same private topics, groups, control
schema and locks through the product's own setting.
"""
