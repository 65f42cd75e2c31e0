"""Builders shared by the use-case tests on fakes."""

from typing import TypeVar

from contracts.codec import Decoded, envelope_for
from contracts.events import Event
from domain.migrations import Migration
from service.event_transaction import EventTransaction
from tests.unit.fakes import FakeStores, FakeUnitOfWork

E = TypeVar("E", bound=Event)
SOURCE = "urn:tests:use-cases"
TEMPLATE = [Migration(1, "m1", "-- 1"), Migration(2, "m2", "-- 2"), Migration(3, "m3", "-- 3")]


def decoded(event: E) -> Decoded[E]:
    """The event as a consumer hands it to a use case: a fresh envelope (a new event id)."""
    return Decoded(envelope=envelope_for(event), event=event)


def transaction(stores: FakeStores, group: str = "tenant-provisioner") -> EventTransaction[FakeUnitOfWork]:
    return EventTransaction(stores, group)


def result_types(stores: FakeStores) -> list[str]:
    return [e.type for e in stores.results]
