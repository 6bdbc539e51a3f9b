"""The upload page in real headless Chromium against `imgops local up`: sign in, upload, watch it finish.

Chromium runs the page as a user's browser would: Cognito sign-in and the presigned POST go to another origin
(moto), so CORS and the page's Content-Security-Policy are exercised too. Driven through chromedriver
(Debian's chromium-driver; scripts/test installs it with chromium).
"""

from __future__ import annotations

import io
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from PIL import Image

from dashboards.web import LOCAL_PATH
from monitoring.target import StackInfo
from tests.conftest import jpeg_bytes
from tests.e2e.conftest import kill, start_local_up

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
SCREENSHOT = Path("/tmp/web-page.png")  # a fixed place to look at the page after a run
WAIT_SECONDS = 30
THUMBNAILS = 3  # pipeline.settings.DEFAULT_SIZES


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StackInfo]:
    process, info, _ = start_local_up(tmp_path_factory.mktemp("state"), "--workers", "1")
    yield info
    process.send_signal(signal.SIGINT)
    try:
        process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        kill(process)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebDriver]:
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip("Debian's chromium and chromium-driver are not installed (scripts/test installs them)")
    webdriver = pytest.importorskip("selenium.webdriver")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1100,1000",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    # An explicit driver: Selenium Manager would otherwise try to download one.
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(WAIT_SECONDS)
    yield driver
    driver.quit()


def photo(path: Path) -> Path:
    """A real photograph (matplotlib's sample), large enough that the upload reports progress on the way."""
    try:
        import matplotlib

        source = Image.open(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
        image = source.convert("RGB").resize((source.width * 4, source.height * 4), Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=92)
        data = buffer.getvalue()
    except (ImportError, OSError):
        data = jpeg_bytes(2400, 1800)
    path.write_bytes(data)
    return path


def wait_until(driver: WebDriver, condition: Callable[[WebDriver], Any], what: str) -> Any:
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT_SECONDS, poll_frequency=0.2).until(condition)
    except TimeoutException:
        driver.save_screenshot(str(SCREENSHOT.with_name("web-page-failed.png")))
        logs = page_text(driver)
        pytest.fail(f"timed out waiting for {what}; the page says:\n{logs}")


def page_text(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.querySelector('main').innerText"))


def text_of(driver: WebDriver, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('{element_id}').textContent"))


def open_page(driver: WebDriver, info: StackInfo) -> None:
    driver.get(f"{info.api_url}{LOCAL_PATH}")
    wait_until(driver, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "config.json")


def sign_in(driver: WebDriver, username: str, password: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "username").clear()
    driver.find_element(By.ID, "username").send_keys(username)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin-button").click()


def upload_hidden(driver: WebDriver) -> bool:
    return bool(driver.execute_script("return document.getElementById('upload').hidden"))


def signed_in(driver: WebDriver, info: StackInfo) -> None:
    """The page open and the demo user signed in: the upload form is showing."""
    open_page(driver, info)
    sign_in(driver, info.demo_username, info.demo_password)
    wait_until(driver, lambda d: not upload_hidden(d), "sign-in")


def upload(driver: WebDriver, path: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.ID, "file").send_keys(str(path))
    driver.find_element(By.ID, "upload-button").click()


def status(driver: WebDriver) -> str:
    return str(driver.execute_script("return document.getElementById('status').dataset.status || ''"))


def test_a_wrong_password_shows_cognitos_message(browser: WebDriver, stack: StackInfo) -> None:
    open_page(browser, stack)
    sign_in(browser, stack.demo_username, "not-the-password")

    message = wait_until(browser, lambda d: text_of(d, "signin-error"), "the sign-in error")

    assert message == "Incorrect username or password."
    assert upload_hidden(browser)


def test_sign_in_upload_a_jpeg_and_see_three_thumbnails(browser: WebDriver, stack: StackInfo, tmp_path: Path) -> None:
    signed_in(browser, stack)
    assert text_of(browser, "who") == stack.demo_username

    upload(browser, photo(tmp_path / "grace.jpg"))

    wait_until(browser, lambda d: status(d) in ("DONE", "FAILED") or text_of(d, "upload-error"), "the result")
    assert (status(browser), text_of(browser, "upload-error")) == ("DONE", "")
    assert browser.execute_script("return document.getElementById('progress').value") == 100
    assert text_of(browser, "progress-text") == "100 %"
    loaded = """return [...document.querySelectorAll('#thumbnails img')]
        .map(img => ({complete: img.complete, width: img.naturalWidth, size: img.dataset.size}))"""
    wait_until(
        browser,
        lambda d: len(images := d.execute_script(loaded)) == THUMBNAILS and all(i["complete"] for i in images),
        "three thumbnails to load",
    )
    images = browser.execute_script(loaded)
    assert all(image["width"] > 0 for image in images), images
    widths = [image["width"] for image in images]
    assert widths == sorted(widths)  # smallest first
    assert len(set(widths)) == THUMBNAILS
    browser.save_screenshot(str(SCREENSHOT))


def test_a_file_that_is_no_image_type_is_refused_with_the_apis_message(
    browser: WebDriver, stack: StackInfo, tmp_path: Path
) -> None:
    signed_in(browser, stack)
    notes = tmp_path / "notes.txt"
    notes.write_text("not a picture\n")

    upload(browser, notes)

    message = wait_until(browser, lambda d: text_of(d, "upload-error"), "the refusal")
    assert message.startswith("content_type must be one of image/avif, image/heic"), message
    assert message.endswith("got 'text/plain'")


def test_garbage_named_jpg_ends_failed_with_the_workers_reason(
    browser: WebDriver, stack: StackInfo, tmp_path: Path
) -> None:
    signed_in(browser, stack)
    fake = tmp_path / "holiday.jpg"
    fake.write_bytes(b"this is not a JPEG at all\n" * 100)

    upload(browser, fake)

    wait_until(browser, lambda d: status(d) in ("DONE", "FAILED") or text_of(d, "upload-error"), "the result")
    assert status(browser) == "FAILED", page_text(browser)
    reason = text_of(browser, "status").removeprefix("FAILED: ")
    assert reason
    assert reason != "no reason given"
    assert browser.execute_script("return document.querySelectorAll('#thumbnails img').length") == 0
    browser.save_screenshot(str(SCREENSHOT.with_name("web-page-failed-upload.png")))


def test_an_unreachable_sign_in_service_is_named_not_failed_to_fetch(browser: WebDriver, stack: StackInfo) -> None:
    """What the browser reports as a bare "Failed to fetch" (a refused preflight, a server that is down) is said in
    words: which service, at which address."""
    open_page(browser, stack)
    browser.execute_cdp_cmd("Network.enable", {})
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": [f"{stack.endpoint_url}/*"]})
    try:
        sign_in(browser, stack.demo_username, stack.demo_password)
        message = wait_until(browser, lambda d: text_of(d, "signin-error"), "the sign-in error")
    finally:
        browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})

    assert message.startswith(f"Cannot reach the sign-in service at {stack.endpoint_url}. "), message
    assert "Failed to fetch" not in message
    assert upload_hidden(browser)
