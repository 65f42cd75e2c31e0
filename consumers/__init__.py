"""Kafka consumers: thin entrypoints that decode a record and call a use case."""
