"""Job and backup ids: derived from the request's event id, one token per request, parsed back."""

import pytest

from domain.job_ids import (
    IdKind,
    JobId,
    archive_id_for,
    backup_id_for,
    erase_job_id,
    parse_job_id,
    restore_job_id,
)


def test_ids_are_deterministic_per_event_and_distinct_across_events() -> None:
    for make in (backup_id_for, restore_job_id, erase_job_id):
        assert make("event-1") == make("event-1")
        assert make("event-1") != make("event-2")


def test_ids_are_those_already_stored_for_an_event() -> None:
    # Pinned: a change here renames the job of every redelivered request, which then runs twice.
    assert backup_id_for("event-1") == "b-a0f08c2d21d15f6e8de8"
    assert restore_job_id("event-1") == "r-a0f08c2d21d15f6e8de8"
    assert erase_job_id("event-1") == "e-a0f08c2d21d15f6e8de8"
    assert archive_id_for(erase_job_id("event-1")) == "a-a0f08c2d21d15f6e8de8"


def test_the_ids_of_one_request_share_its_token() -> None:
    tokens = {parse_job_id(make("event-1")).token
              for make in (backup_id_for, restore_job_id, erase_job_id)}
    assert tokens == {parse_job_id(archive_id_for(erase_job_id("event-1"))).token}


@pytest.mark.parametrize(("make", "kind"), [
    (backup_id_for, IdKind.BACKUP),
    (restore_job_id, IdKind.RESTORE),
    (erase_job_id, IdKind.ERASE),
])
def test_an_id_parses_back_to_its_kind_and_round_trips(make: object, kind: IdKind) -> None:
    made = make("some-event")  # type: ignore[operator]
    parsed = parse_job_id(made)
    assert parsed.kind == kind and len(parsed.token) == 20
    assert str(parsed) == made
    assert parse_job_id(str(JobId(kind, "0123abcd"))) == JobId(kind, "0123abcd")


@pytest.mark.parametrize("bad", [
    "", "b-", "-0123", "b0123", "x-0123", "B-0123", "b-0123ABCD", "b-01 23", " b-0123",
    "b-0123\n", "b-pending-0123", "b-" + "0" * 65,
])
def test_text_that_is_not_an_id_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="not a job or backup id"):
        parse_job_id(bad)


@pytest.mark.parametrize("not_erase", ["b-0123abcd", "r-0123abcd", "a-0123abcd"])
def test_only_an_erase_job_has_an_archive(not_erase: str) -> None:
    with pytest.raises(ValueError, match="not an erase job id"):
        archive_id_for(not_erase)
