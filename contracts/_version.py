"""The version of the ``tenant-service-contracts`` distribution (clients/python/pyproject.toml
reads it from here). Its major number is ``events.CONTRACT_VERSION``; a release adds an entry to
contracts/CHANGELOG.md and a copy of the schemas under contracts/released/<version>/."""

__version__ = "1.3.0"
