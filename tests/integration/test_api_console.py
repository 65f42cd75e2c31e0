"""The operator console in a real browser: Debian's chromium, driven by playwright-core (never a
downloaded browser), clicking through a provision and a backup with a token typed into the page.
Screenshots are kept in the test's log dir."""

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support import backups as bk
from tests.support.api import ApiProcess, DevKeys

pytestmark = pytest.mark.stack

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DONE_TIMEOUT_MS = 90_000


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    # Fails, not skips: the console's only check is this one (scripts/lib/setup.sh installs it).
    assert os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} is missing: apt-get install -y chromium"
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        await browser.close()


async def _metrics_history(pg: asyncpg.Connection, schema: str, tenant_id: str) -> list[Any]:
    """Three windows of growing size for the chart (a tick per window, as the metrics worker
    writes them), at odd instants that no real tick uses."""
    windows = []
    for n in range(3):
        window = await pg.fetchval(
            f"INSERT INTO {schema}.metrics_ticks (window_start, event_id, collected_at, tenants,"
            " statements, duration_s) VALUES (date_trunc('hour', now()) - make_interval("
            " hours => 3 - $1, secs => 1.234567), $2, now(), 1, 1, 0.1) RETURNING window_start",
            n,
            uuid.uuid4().hex,
        )
        await pg.execute(
            f"INSERT INTO {schema}.tenant_metrics (tenant_id, window_start, collected_at, plan,"
            " size_bytes, table_count, live_tuples, dead_tuples, bloat_bytes, seq_scans,"
            " idx_scans, connections, redis_bytes, redis_keys, redis_estimated)"
            " VALUES ($1, $2, now(), 'free', $3, 1, 0, 0, 0, 0, 0, 0, 0, 0, false)",
            tenant_id,
            window,
            (n + 1) * 100_000,
        )
        windows.append(window)
    return windows


async def _operation_done(page: Page, kind: str) -> None:
    box = page.locator("#operation .op")
    await expect(box).to_contain_text(kind)
    await expect(box).to_have_attribute("data-state", "done", timeout=DONE_TIMEOUT_MS)


async def test_console_provisions_and_backs_up_a_tenant(
    browser: Browser,
    api: ApiProcess,
    api_keys: DevKeys,
    settings,  # type: ignore[no-untyped-def]
    log_dir: Path,
    tmp_path: Path,
    tenants,  # type: ignore[no-untyped-def]
    pg: asyncpg.Connection,
) -> None:
    shots = log_dir / "console"
    shots.mkdir(exist_ok=True)
    tenant_id = tenants.new()
    async with bk.backup_workers(settings, log_dir) as pool:
        await pool.start("console-backup", {"TENANT_BACKUP_LOCAL_DIR": str(tmp_path / "backups")})
        page = await browser.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        await page.goto(f"{api.url}/console")
        # Without a token the page asks for one and shows nothing.
        await expect(page.locator("#view")).to_contain_text("Enter a token")
        await page.fill("#token", api_keys.token("console-operator"))
        await page.click("#save-token")
        await expect(page.locator("#tenants")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 1

        await page.fill("#new-tenant", tenant_id)
        await page.click("#provision")
        await _operation_done(page, "TenantRequested")
        await expect(page.locator("#operation")).to_contain_text("TenantProvisioned")
        row = page.locator(f'#tenants tr[data-tenant="{tenant_id}"]')
        await expect(row).to_contain_text("active")
        await page.screenshot(path=shots / "1-provisioned.png", full_page=True)

        windows = await _metrics_history(pg, settings.names.control_schema, tenant_id)
        await row.locator("a").click()
        await expect(page.locator("#tenant-status")).to_have_text("active")
        await expect(page.locator('#timeline li[data-type="TenantProvisioned"]')).to_have_count(1)
        await expect(page.locator("#metrics-chart circle")).to_have_count(len(windows))
        await page.click("#backup")
        await _operation_done(page, "BackupDue")
        await expect(page.locator("#operation")).to_contain_text("BackupCompleted")
        await expect(page.locator("#backups tr")).to_have_count(1)
        await expect(page.locator('#timeline li[data-type="BackupCompleted"]')).to_have_count(1)
        await page.screenshot(path=shots / "2-backed-up.png", full_page=True)
    await pg.execute(
        f"DELETE FROM {settings.names.control_schema}.metrics_ticks WHERE window_start = ANY($1)", windows
    )
    assert errors == []
    assert (shots / "1-provisioned.png").stat().st_size > 0
