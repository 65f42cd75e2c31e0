"""The operator console in a real browser: Debian's chromium, driven by playwright-core (never a
downloaded browser), clicking through a provision and a backup with a token typed into the page.
Screenshots are kept in the test's log dir."""

import os
from collections.abc import AsyncIterator
from pathlib import Path

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

        await row.locator("a").click()
        await expect(page.locator("#tenant-status")).to_have_text("active")
        await expect(page.locator('#timeline li[data-type="TenantProvisioned"]')).to_have_count(1)
        await expect(page.locator("#view")).to_contain_text("Metrics")
        await page.click("#backup")
        await _operation_done(page, "BackupDue")
        await expect(page.locator("#operation")).to_contain_text("BackupCompleted")
        await expect(page.locator("#backups tr")).to_have_count(1)
        await expect(page.locator('#timeline li[data-type="BackupCompleted"]')).to_have_count(1)
        await page.screenshot(path=shots / "2-backed-up.png", full_page=True)
    assert errors == []
    assert (shots / "1-provisioned.png").stat().st_size > 0
