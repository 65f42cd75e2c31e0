"""tenantctl's grammar, help, output and exit codes, without a stack."""

import sys
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from domain.errors import PermanentError, TransientError
from tenantctl import common, dlq_ops, watch_ops
from tenantctl.cli import ROLES, app
from tenantctl.output import CliError, ExitCode, describe, jsonable, rfc3339

runner = CliRunner()


def _commands(group: Any, prefix: str = "tenantctl") -> list[tuple[str, Any]]:
    found = []
    for name, command in group.commands.items():
        if getattr(command, "commands", None):
            found.extend(_commands(command, f"{prefix} {name}"))
        else:
            found.append((f"{prefix} {name}", command))
    return found


def test_every_parameter_has_help_and_boolean_options_are_flags() -> None:
    root = get_command(app)
    for name, command in [("tenantctl", root), *_commands(root)]:
        for param in command.params:
            if param.name == "help":
                continue
            assert param.help, f"{name} {param.name} has no help"
            if param.param_type_name == "option" and param.type_descriptor.annotation is bool:
                assert param.is_flag, f"{name} {param.name} is a boolean but not a flag"


def test_boolean_flags_show_no_value_in_help() -> None:
    text = runner.invoke(app, ["request", "--help"]).output
    assert "--wait " in text and "<bool>" not in text


def test_run_help_lists_every_worker_role() -> None:
    from runtime.roles import ROLE_BUILDERS

    assert ROLES == tuple(ROLE_BUILDERS)
    text = runner.invoke(app, ["run", "--help"]).output
    for role in ROLES:
        assert role in text


def test_backup_subcommands_are_never_read_as_tenant_ids() -> None:
    missing = runner.invoke(app, ["backup", "verify"])
    assert missing.exit_code == ExitCode.USAGE
    old_form = runner.invoke(app, ["backup", "acme"])
    assert old_form.exit_code == ExitCode.USAGE
    assert "tenantctl backup create acme" in old_form.output


def test_times_are_rfc3339_in_utc() -> None:
    local = datetime(2026, 12, 1, 16, 16, 25, tzinfo=timezone(timedelta(hours=2)))
    assert rfc3339(local) == "2026-12-01T14:16:25Z"
    assert rfc3339(datetime(2026, 12, 1, 14, 16, 25, 5)) == "2026-12-01T14:16:25.000005Z"
    nested = jsonable({"a": [local], "b": {"c": datetime(2026, 1, 1, tzinfo=UTC)}, "n": 1})
    assert nested == {"a": ["2026-12-01T14:16:25Z"], "b": {"c": "2026-01-01T00:00:00Z"}, "n": 1}


def _validation_error() -> Exception:
    from contracts.events import RestoreRequested

    try:
        RestoreRequested(tenant_id="acme", backup_id="b" * 500)
    except ValueError as e:
        return e
    raise AssertionError("a 500-character backup id was accepted")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermanentError("backup_not_found", "b-x"), ExitCode.NOT_FOUND),
        (PermanentError("unknown_tenant", "t"), ExitCode.NOT_FOUND),
        (PermanentError("key_destroyed"), ExitCode.FAILED),
        (TransientError("pg down"), ExitCode.FAILED),
        (ConnectionRefusedError("refused"), ExitCode.FAILED),
        (CliError("late", ExitCode.TIMEOUT), ExitCode.TIMEOUT),
        (RuntimeError("boom\nsecond line"), ExitCode.FAILED),
        (_validation_error(), ExitCode.USAGE),
    ],
)
def test_errors_become_one_line_and_an_exit_code(error: Exception, code: ExitCode) -> None:
    got, line = describe(error)
    assert got == code and "\n" not in line and line


def test_a_settings_error_says_where_env_was_looked_for(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TENANT_PG_DSN", raising=False)
    with pytest.raises(CliError) as caught:
        common.settings()
    assert caught.value.code == ExitCode.USAGE
    assert "TENANT_PG_DSN" in str(caught.value) and f"no .env in {tmp_path}" in str(caught.value)


def test_dead_letter_ids_are_partition_offset() -> None:
    assert dlq_ops.parse_id("3:1200") == (3, 1200)
    for bad in ("bogus", "3:", ":1", "a:1", "1:-2"):
        with pytest.raises(ValueError, match="partition:offset"):
            dlq_ops.parse_id(bad)


def _envelope() -> Any:
    return SimpleNamespace(type="TenantRequested", id="e-1")


def test_a_dead_lettered_request_fails_at_once_naming_its_entry(
    capsys: pytest.CaptureFixture[str],
) -> None:
    letter = dlq_ops.DeadLetter(
        2,
        17,
        b"acme",
        b'{"id": "e-1"}',
        [("x-dlq-reason", b"time_out_of_range"), ("x-dlq-source-topic", b"tenants.backups")],
    )
    with pytest.raises(CliError) as caught:
        common.print_result(_envelope(), dlq_ops.DeadLettered(letter), True, 60)
    assert caught.value.code == ExitCode.FAILED
    assert "2:17" in str(caught.value) and "time_out_of_range" in str(caught.value)
    out, err = capsys.readouterr()
    assert '"id": "2:17"' in out and "published TenantRequested id=e-1" in err


def test_without_wait_stdout_is_the_event_id_and_no_result_is_exit_3(
    capsys: pytest.CaptureFixture[str],
) -> None:
    common.print_result(_envelope(), None, False, 60)
    assert capsys.readouterr().out == "e-1\n"
    with pytest.raises(CliError) as caught:
        common.print_result(_envelope(), None, True, 60)
    assert caught.value.code == ExitCode.TIMEOUT


def test_watch_details_are_readable_pairs() -> None:
    env = SimpleNamespace(data={"tenant_id": "acme", "plan": "pro", "schema_version": 2})
    assert watch_ops.details(env) == "plan=pro schema_version=2"  # type: ignore[arg-type]


def test_the_readme_cli_tables_are_generated_from_the_cli() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))
    from lib.readme_tables import README_FILE, cli_table, exit_codes_table

    readme = README_FILE.read_text()
    assert cli_table() in readme and exit_codes_table() in readme
    assert "`--wait`" in cli_table() and "`--limit N`" in cli_table()


def test_a_conflict_says_which_conflict_it_is() -> None:
    from domain.lifecycle import TenantStatus
    from domain.provisioning import ExistingTenant, conflict_detail

    assert "'free', not 'pro'" in conflict_detail(
        ExistingTenant("free", TenantStatus.ACTIVE), "pro"
    )
    assert "erased" in conflict_detail(ExistingTenant("pro", TenantStatus.ERASED), "pro")


def test_metrics_times_print_alike_from_redis_and_postgres() -> None:
    from tenantctl.metrics_ops import _with_datetimes

    redis = {
        "window_start": "2026-12-01T14:15:00+00:00",
        "last_vacuum": "2026-12-01 14:16:25+00:00",
    }
    assert jsonable(_with_datetimes(redis)) == {
        "window_start": "2026-12-01T14:15:00Z",
        "last_vacuum": "2026-12-01T14:16:25Z",
    }


def test_the_next_metrics_tick_is_the_next_aligned_window() -> None:
    from tenantctl.metrics_ops import next_tick

    s = SimpleNamespace(metrics_interval=300)
    now = datetime(2026, 12, 1, 14, 16, 25, tzinfo=UTC)
    assert next_tick(s, now) == datetime(2026, 12, 1, 14, 20, tzinfo=UTC)  # type: ignore[arg-type]
