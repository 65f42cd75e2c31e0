"""Helpers shared by the test suites: polling, worker processes, Kafka and Postgres probes."""
