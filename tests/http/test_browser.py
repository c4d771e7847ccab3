"""The customer's page in a real browser (issue 18 §3): Debian's chromium, headless, driven by
Selenium through Debian's chromedriver. It logs in, sees the quota bar and the settings, reads
the guide, turns a vacation reply on, changes the password, logs out, fails with the old
password and logs in with the new one. A screenshot of each page is kept under var/test-artifacts/customer-page/ (or
$CASELLA_TEST_ARTIFACTS) and the directory is printed."""

from __future__ import annotations

import imaplib
import os
import shutil
from collections.abc import Callable, Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest

from tests.conftest import RunningServer
from tests.http.conftest import PASSWORD, base_url

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]


def artifacts_dir() -> Path:
    base = Path(os.environ.get("CASELLA_TEST_ARTIFACTS") or ROOT / "var" / "test-artifacts")
    out = base / "customer-page"
    out.mkdir(parents=True, exist_ok=True)
    return out


@pytest.fixture
def browser() -> Iterator[object]:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (apt-get install chromium "
                    "chromium-driver; .ci/run installs them when it runs as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu",
                "--disable-background-networking", "--disable-component-update",
                "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--lang=en-US"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _fill_mailbox(srv: RunningServer) -> None:
    """A mailbox that looks used: messages in several folders, 84 % of a 10 MB quota."""
    srv.run(srv.store.set_quota("alice@example.test", 10 * 1024 * 1024))
    c = imaplib.IMAP4_SSL("127.0.0.1", srv.port("imaps"), ssl_context=srv.ssl_context())
    c.login("alice@example.test", PASSWORD)
    body = b"x" * (1024 * 1024)
    for i in range(8):
        c.append("INBOX", None, None, b"Subject: report %d\r\n\r\n" % i + body + b"\r\n")
    for i in range(3):
        c.append("Sent", None, None, b"Subject: answer %d\r\n\r\n" % i + b"y" * 200_000)
    c.append("Archive", None, None, b"Subject: old\r\n\r\n" + b"z" * 50_000)
    c.logout()


def test_customer_page_in_chromium(make_server: Callable[..., RunningServer],
                                   browser: object, capsys: pytest.CaptureFixture[str]) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver: WebDriver = browser  # type: ignore[assignment]
    srv = make_server()
    srv.add_user("alice@example.test", PASSWORD)
    _fill_mailbox(srv)
    out = artifacts_dir()
    wait = WebDriverWait(driver, 30)
    url = base_url(srv)

    def shot(name: str) -> None:
        driver.save_screenshot(str(out / f"{name}.png"))

    def log_in(password: str) -> None:
        driver.find_element(By.ID, "address").clear()
        driver.find_element(By.ID, "address").send_keys("alice@example.test")
        driver.find_element(By.ID, "password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()

    driver.get(url + "/")
    wait.until(ec.presence_of_element_located((By.ID, "login")))
    shot("1-login")
    log_in(PASSWORD)
    bar = wait.until(ec.presence_of_element_located((By.ID, "quota-bar")))
    assert bar.tag_name == "meter" and 80 <= float(bar.get_attribute("value") or 0) < 95
    assert "more than 80 %" in driver.find_element(By.ID, "quota-warning").text
    folders = driver.find_element(By.ID, "folders").text
    # Eight messages and the 80 % quota warning the server put in INBOX.
    assert "INBOX 9" in folders and "Sent 3" in folders
    assert "0 of 180 messages an hour" in driver.find_element(By.ID, "sending").text
    assert driver.find_element(By.ID, "delete").get_attribute("value") == "default"
    shot("2-account")

    driver.find_element(By.LINK_TEXT, "Read the guide with your own settings").click()
    wait.until(ec.presence_of_element_located((By.ID, "gmail")))
    settings = driver.find_element(By.ID, "settings").text
    assert "mail.example.test" in settings and str(srv.port("imaps")) in settings
    assert "Leave a copy of retrieved message on the server" in \
        driver.find_element(By.ID, "gmail").text
    shot("3-guide")

    # The vacation reply (issue 20 §5): set in the form, written as Sieve, read back.
    driver.get(url + "/")
    wait.until(ec.presence_of_element_located((By.ID, "save-vacation")))
    last = (date.today() + timedelta(days=14)).isoformat()
    driver.find_element(By.ID, "vacation-enabled").click()
    driver.find_element(By.ID, "vacation-subject").send_keys("Out of office")
    driver.find_element(By.ID, "vacation-message").send_keys(
        "I am away until the end of the month.\nFor anything urgent, write to Carol.")
    days = driver.find_element(By.ID, "vacation-days")
    days.clear()
    days.send_keys("5")
    # A date input takes typed digits in the browser's own order; set the ISO value instead.
    driver.execute_script("arguments[0].value = arguments[1]",
                          driver.find_element(By.ID, "vacation-last"), last)
    driver.find_element(By.ID, "save-vacation").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.notice"),
                                                "Your vacation reply was saved and is on"))
    assert driver.find_element(By.ID, "vacation-state").text == (
        f"On until {last} (included): each sender gets your reply at most once every 5 days.")
    assert driver.find_element(By.ID, "vacation-enabled").is_selected()
    assert driver.find_element(By.ID, "vacation-last").get_attribute("value") == last
    acct = srv.run(srv.store.get_account("alice@example.test"))
    stored = srv.run(srv.store.sieve_get(acct.id, "casella"))
    assert stored is not None and stored.active
    assert 'vacation :days 5 :subject "Out of office" text:' in stored.content
    assert f'currentdate :value "le" "date" "{last}"' in stored.content
    driver.execute_script("document.getElementById('vacation').scrollIntoView()")
    shot("4-vacation-reply")

    driver.get(url + "/")
    wait.until(ec.presence_of_element_located((By.ID, "change-password")))
    driver.find_element(By.ID, "old").send_keys(PASSWORD)
    driver.find_element(By.ID, "new").send_keys("a new secret 42")
    driver.find_element(By.ID, "repeat").send_keys("a new secret 42")
    driver.find_element(By.ID, "change-password").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.notice"),
                                                "Your password was changed"))
    shot("5-password-changed")

    driver.find_element(By.ID, "logout").click()
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.notice"),
                                                "You are logged out"))
    shot("6-logged-out")
    log_in(PASSWORD)
    wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, "p.error"),
                                                "The address or the password is not right"))
    shot("7-old-password-refused")
    log_in("a new secret 42")
    wait.until(ec.presence_of_element_located((By.ID, "quota-bar")))
    shot("8-logged-in-with-new-password")
    if os.environ.get("CASELLA_DOCS_SCREENSHOT"):
        shutil.copy(out / "2-account.png", ROOT / "docs" / "customer-page.png")
    with capsys.disabled():
        print(f"\n  customer page screenshots: {out}")
