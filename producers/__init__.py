"""Producers: the outbox relay and (later) the scheduler."""
