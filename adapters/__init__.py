"""Adapters: one module per technology and role; library errors are translated here."""
