"""The web console in a real browser: Debian's headless Chromium, driven by selenium through Debian's
chromedriver (nothing downloads a browser).  Real SMTP sessions with smtplib, watched live; persona switches
and faults through the page; keyboard only; no console errors; readable at 1280x800 and in a narrow window.

The run writes the documentation's screenshots, docs/images/console.png and console-session.png."""

import json
import os
import shutil
import smtplib
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from emulator.capture.transcript import escape
from emulator.quirks.spec import FaultError, parse

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
INSTALL = "apt-get install -y chromium chromium-driver"
WAIT = 10  # seconds any one expected change may take to show


@pytest.fixture(scope="module")
def browser():
    """Headless Chromium with its browser log kept; skipped, with the command that installs it, only where
    Debian's chromium and chromium-driver are missing (.ci/run installs them, so CI always runs these, and
    fails them without a browser)."""
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and driver):
        if os.environ.get("CI"):  # .ci/run installs them: their absence there is a failure, not a skip
            pytest.fail(f"headless Chromium is not installed: {INSTALL}")
        pytest.skip(f"headless Chromium is not installed: {INSTALL}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,800", "--no-first-run", "--disable-extensions", "--lang=en-GB"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # The driver's path is given, so selenium never runs its manager (which would download one).
    chrome = webdriver.Chrome(options=options, service=Service(driver))
    yield chrome
    chrome.quit()


class Page:
    """The console of one server in the browser, with helpers for what the tests look at."""

    def __init__(self, driver, served):
        self.driver, self.served = driver, served

    def open(self, path="/"):
        self.viewport(1280, 800)
        self.driver.get(self.served.url + path)
        self.until(lambda d: self.text("status").startswith("live"), "the live feed to connect")
        self.driver.execute_script("window.loadedOnce = true")

    def viewport(self, width, height):
        self.driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def until(self, condition, what):
        return WebDriverWait(self.driver, WAIT, poll_frequency=0.05).until(condition, f"waited for {what}")

    def text(self, id):
        return self.driver.find_element(By.ID, id).text

    def keys(self, *keys):
        ActionChains(self.driver).send_keys(*keys).perform()

    def rows(self):
        """The session list's rows as shown: a dict per row, by column heading."""
        return self.driver.execute_script("""
            const heads = [...document.querySelectorAll('#sessions thead th')].map(th => th.textContent);
            return [...document.querySelectorAll('#sessions tbody tr')].map(tr => Object.fromEntries(
                [...tr.cells].map((td, i) => [heads[i], td.textContent]).concat([['id', tr.dataset.session]])));
        """)

    def transcript_lines(self):
        """The transcript's lines as shown: 'arrow text'."""
        return self.driver.execute_script("""
            return [...document.querySelectorAll('#transcript li')].map(li =>
                li.querySelector('.arrow').textContent + ' ' + li.querySelector('.text').textContent);
        """)

    def no_reload(self):
        return self.driver.execute_script("return window.loadedOnce === true")

    def errors(self):
        """The browser log's errors since the last call (JS errors, failed loads)."""
        return [e for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]

    def fits(self, selector="html"):
        """Whether the element (the whole page by default) needs no horizontal scrolling."""
        return self.driver.execute_script(
            "const e = document.querySelector(arguments[0]); return e.scrollWidth <= e.clientWidth + 1;", selector)

    def screenshot(self, name):
        IMAGES.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(IMAGES / name))


@pytest.fixture
def page(browser, console_server):
    """page(listeners, **options): the console of a new server (console_server's arguments), open at 1280x800;
    left for a blank page before the server stops, so that no error of a closed server reaches the next test."""
    pages = []

    def start(*args, path="/", **kwargs):
        pages.append(Page(browser, console_server(*args, **kwargs)))
        pages[-1].errors()
        pages[-1].open(path)
        return pages[-1]

    yield start
    browser.get("about:blank")
    browser.get_log("browser")


def send(port, *, quit=True, tls=False, login=None, sender="a@example.org"):
    """One smtplib session: a message, over STARTTLS and with AUTH LOGIN if asked."""
    client = smtplib.SMTP("127.0.0.1", port, local_hostname="client.example", timeout=10)
    try:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
            client._host = "mail.example.test"  # the SNI smtplib sends
            client.starttls(context=context)
        if login:
            client.login(*login)
        client.sendmail(sender, ["b@example.test"], b"Subject: console\r\n\r\nhello\r\n")
    finally:
        client.quit() if quit else client.close()


def test_a_session_appears_live_and_opens_with_its_lines(page):
    """A real smtplib session shows in the list without a reload, newest first, with its persona, last reply
    and end; opened with the keyboard (j, Enter) its transcript lines are the server's arrow form line for
    line, the exact bytes show CRLF escaped, the .jsonl link downloads its file, Esc goes back; no errors."""
    console = page()
    send(console.served.ports[0])
    console.until(lambda d: len(console.rows()) == 1 and "QUIT" in console.rows()[0]["Ended"], "the session")
    send(console.served.ports[0], quit=False, sender="second@example.org")
    console.until(lambda d: len(console.rows()) == 2 and "hung up" in console.rows()[0]["Ended"], "the second")
    assert console.no_reload()
    newest, first = console.rows()
    assert (first["Persona"], first["Msgs"], first["Last reply"], first["Ended"]) == (
        "ims55sp4", "1", "221 closing connection", "QUIT")
    assert newest["Ended"] == "client hung up" and newest["Last reply"] == "250 OK"
    console.keys("j", "j")
    assert console.driver.switch_to.active_element.get_attribute("data-session") == first["id"]
    console.keys(Keys.ENTER)
    console.until(lambda d: console.text("h-session") == f"Session {first['id']}", "the session view")
    with urllib.request.urlopen(f"{console.served.url}/sessions/{first['id']}/transcript", timeout=10) as r:
        expected = r.read().decode().splitlines()[1:]
    console.until(lambda d: console.transcript_lines() == expected, "the transcript lines")
    assert "-> ehlo client.example" in expected and "-> quit" in expected  # smtplib writes verbs in lower case
    console.driver.find_element(By.CSS_SELECTOR, "input[name=mode][value=bytes]").send_keys(Keys.SPACE)
    console.until(lambda d: "-> ehlo client.example\\r\\n" in console.transcript_lines(), "the exact bytes")
    href = console.driver.find_element(By.ID, "download").get_attribute("href")
    with urllib.request.urlopen(href, timeout=10) as response:
        assert response.read().decode() == console.served.control.session(first["id"]).to_jsonl()
    console.keys(Keys.ESCAPE)
    console.until(lambda d: console.driver.find_element(By.ID, "view-sessions").is_displayed(), "the list again")
    assert console.errors() == []


def test_switching_the_persona_and_adding_faults(page):
    """With the keyboard only: the persona switched on Control is the next session's; a fault with a typo shows
    the server's one-line error and is not added; a correct one is listed and fires on the next session; the
    faults are cleared, and a reset empties the list."""
    console = page()
    port = console.served.ports[0]
    console.driver.get(console.served.url + "/#/control")
    select = console.until(lambda d: d.find_element(By.ID, f"persona-{port}"), "the listener's persona choice")
    console.until(lambda d: select.get_attribute("value") == "ims55sp4", "the profiles")
    select.send_keys("ims55sp2")
    console.driver.find_element(By.CSS_SELECTOR, f"form[data-listener='{port}'] button").send_keys(Keys.ENTER)
    console.until(lambda d: d.find_element(By.CSS_SELECTOR, f"tr[data-listener='{port}'] .serves").text == "ims55sp2",
                  "the listener to serve ims55sp2")
    send(port)
    typo = "rcpt:disconect"
    with pytest.raises(FaultError) as raised:
        parse(typo)
    field = console.driver.find_element(By.ID, "fault-spec")
    field.send_keys(typo, Keys.ENTER)
    console.until(lambda d: console.text("fault-error") == f"{typo}: {raised.value}", "the one-line error")
    assert console.served.control.fault_specs == []
    field.clear()
    field.send_keys("rcpt:disconnect", Keys.ENTER)
    console.until(lambda d: console.text("faults") == "rcpt:disconnect" and not console.text("fault-error"),
                  "the fault listed")
    with pytest.raises(smtplib.SMTPException):
        send(port)
    console.driver.find_element(By.ID, "nav-sessions").send_keys(Keys.ENTER)
    console.until(lambda d: len(console.rows()) == 2, "both sessions")
    faulted, switched = console.rows()
    assert switched["Persona"] == "ims55sp2" and switched["Ended"] == "QUIT"
    assert faulted["Ended"] == "fault: disconnect" and faulted["Last reply"].startswith("421 ")
    console.driver.get(console.served.url + "/#/control")
    console.until(lambda d: console.text("faults") == "rcpt:disconnect", "the control view")
    console.driver.find_element(By.ID, "faults-clear").send_keys(Keys.ENTER)
    console.until(lambda d: console.text("faults") == "none", "the faults cleared")
    assert console.served.control.fault_specs == []
    console.driver.find_element(By.CSS_SELECTOR, "#reset-form button").send_keys(Keys.ENTER)
    console.until(lambda d: console.text("reset-result").startswith("reset at"), "the reset")
    console.driver.find_element(By.ID, "nav-sessions").send_keys(Keys.ENTER)
    console.until(lambda d: console.rows() == [] and d.find_element(By.ID, "sessions-empty").is_displayed(),
                  "the sessions forgotten")
    errors = console.errors()  # the refused fault's 400 is the only failed request
    assert [e["message"].split(" - ", 1)[1] for e in errors] == [
        "Failed to load resource: the server responded with a status of 400 (Bad Request)"]
    assert all(e["source"] == "network" and e["message"].startswith(console.served.url + "/faults") for e in errors)


def test_an_open_session_grows_live(page):
    """A session still open shows as open and, opened, gains its lines as the client sends them; when the client
    goes, it shows how it ended, all without a reload."""
    console = page()
    with socket.create_connection(("127.0.0.1", console.served.ports[0]), timeout=10) as client:
        client.recv(200)
        console.until(lambda d: [r["Ended"] for r in console.rows()] == ["open"], "the open session")
        console.keys("j", Keys.ENTER)
        console.until(lambda d: console.transcript_lines()[-1:] == [
            "<- 220 mail.example.test ESMTP Server (Microsoft Exchange Internet Mail Service 5.5.2653.13) ready"],
            "the greeting")
        client.sendall(b"HELO watcher.example\r\n")
        client.recv(200)
        console.until(lambda d: console.transcript_lines()[-2:] == ["-> HELO watcher.example", "<- 250 OK"],
                      "the HELO and its reply")
    console.until(lambda d: "client hung up" in console.text("session-facts"), "the end")
    assert console.no_reload() and console.errors() == []


def test_the_matrix_report_opens_from_the_console(page, tmp_path):
    """With a matrix report folder, the header links it and the link opens its matrix.html."""
    report = tmp_path / "report"
    report.mkdir()
    (report / "matrix.html").write_text("<!doctype html><title>matrix</title><h1>Conformance matrix</h1>")
    console = page(matrix=report)
    link = console.until(lambda d: d.find_element(By.ID, "nav-matrix") if d.find_element(
        By.ID, "nav-matrix").is_displayed() else None, "the matrix link")
    link.send_keys(Keys.ENTER)
    console.until(lambda d: d.find_element(By.TAG_NAME, "h1").text == "Conformance matrix", "the report")
    assert console.driver.current_url == console.served.url + "/matrix/"
    assert console.errors() == []


def test_filters_messages_and_the_escapes_agree_with_the_server(page):
    """Filters by persona, outcome and text narrow the list; a message shows its envelope, its Maildir file and
    its source; the page escapes every byte as the server's arrow form does."""
    console = page([("ims55sp4", False), ("ims55sp4-pix", False)])
    plain, pix = console.served.ports
    send(plain)
    with smtplib.SMTP("127.0.0.1", plain, timeout=10) as gone:  # no message, no QUIT: dropped
        gone.helo("client.example")
        gone.close()
    send(pix)
    console.until(lambda d: len(console.rows()) == 4, "four sessions (two through the middlebox)")
    Select = lambda id: console.driver.find_element(By.ID, id)  # noqa: E731
    Select("filter-persona").send_keys("pix")
    console.until(lambda d: [r["Persona"] for r in console.rows()] == ["pix-mailguard in front of ims55sp4-pix"],
                  "the middlebox session alone")
    Select("filter-persona").send_keys(Keys.HOME)
    Select("filter-outcome").send_keys("dropped")
    console.until(lambda d: [r["Ended"] for r in console.rows()] == ["client hung up"], "the dropped session")
    Select("filter-outcome").send_keys(Keys.HOME)
    console.keys(Keys.TAB, "/")  # out of the list being chosen from, where keys choose
    console.keys("ims55sp4-pix")
    console.until(lambda d: len(console.rows()) == 2, "the two sessions of the middlebox listener")
    assert console.text("shown") == "2 of 4 sessions"

    console.driver.get(console.served.url + "/#/messages")
    console.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#messages tbody tr")) == 2, "two messages")
    console.keys("j", Keys.ENTER)
    console.until(lambda d: "Subject: console" in console.text("message-source"), "the message source")
    (newest,) = [m for m in console.served.control.messages()][-1:]
    assert str(newest.path) in console.text("message-facts") and "b@example.test" in console.text("message-facts")

    every = "".join(map(chr, range(256)))
    assert console.driver.execute_script("return escapeBytes(arguments[0])", every) == escape(bytes(range(256)))
    for data in ["", "a", "a\r\n", "a\r\nb", "a\nb\r\n", "a\rb\n\n", "\r\n\r\n"]:
        expected = len(data.encode("latin-1").splitlines())
        assert console.driver.execute_script("return lineCount(arguments[0])", data) == expected, data
    assert console.errors() == []


def test_layout_at_1280x800_and_in_a_narrow_window(page):
    """A session of each kind (STARTTLS with AUTH, a middlebox in front, a fault, a client hanging up): at
    1280x800 every column shows and nothing scrolls sideways, and a middlebox session's two legs read in one
    column (the documentation's screenshots are taken here).  At 400 pixels wide nothing scrolls sideways
    either: the tables become cards whose first line is the time, the persona and the end."""
    console = page([("ims55sp4-cert", False), ("ims55sp4-pix", False), ("ims55sp4", False)])
    tls, pix, plain = console.served.ports
    send(tls, tls=True, login=("EXAMPLE\\tester", "secret"))
    send(pix)
    console.served.control.add_fault("rcpt:disconnect")
    with pytest.raises(smtplib.SMTPException):
        send(plain)
    console.served.control.clear_faults()
    send(plain, quit=False)
    console.until(lambda d: len(console.rows()) == 5 and not any(r["Ended"] == "open" for r in console.rows()),
                  "five ended sessions")
    console.until(lambda d: not d.find_elements(By.CSS_SELECTOR, "#sessions tr.fresh"), "the new marks to fade")
    rows = {r["Persona"]: r for r in console.rows()}
    assert "TLSv1" in rows["ims55sp4-cert"]["TLS"] and "SNI mail.example.test" in rows["ims55sp4-cert"]["TLS"]
    assert rows["ims55sp4-cert"]["Auth"] == "EXAMPLE\\tester (LOGIN)"
    assert console.fits() and console.fits(".scroll")
    headings = console.driver.find_elements(By.CSS_SELECTOR, "#sessions thead th")
    assert all(th.is_displayed() for th in headings)
    console.screenshot("console.png")

    box = next(r for r in console.rows() if r["Persona"].startswith("pix-mailguard"))
    console.driver.get(f"{console.served.url}/#/sessions/{box['id']}")
    console.until(lambda d: "=> XXXX client.example" in console.transcript_lines(), "both legs")
    lines = console.transcript_lines()
    assert lines.index("-> ehlo client.example") < lines.index("=> XXXX client.example")
    assert console.fits() and console.fits("#transcript")
    console.screenshot("console-session.png")

    console.viewport(400, 800)
    assert console.fits() and console.fits("#transcript")
    console.driver.get(console.served.url + "/#/sessions")
    console.until(lambda d: len(console.rows()) == 5, "the list in a narrow window")
    assert console.fits() and console.fits(".scroll")
    width = console.driver.execute_script("return window.innerWidth")
    right = "return arguments[0].getBoundingClientRect().right"
    for row in console.driver.find_elements(By.CSS_SELECTOR, "#sessions tbody tr"):
        for part in ("td.first a", "td.second", "td.end .badge"):  # a card's first line: time, persona, end
            element = row.find_element(By.CSS_SELECTOR, part)
            assert element.is_displayed() and console.driver.execute_script(right, element) <= width, part
    for id in ("nav-control", "filter-text", "status"):
        assert console.driver.execute_script(right, console.driver.find_element(By.ID, id)) <= width, id
    console.driver.get(console.served.url + "/#/control")
    console.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#listeners select"), "the listeners")
    assert console.fits() and console.fits(".scroll")
    assert console.errors() == []


def test_a_console_with_a_token_opens_from_the_printed_url(page):
    """Opened at /?token=..., the console works (its requests and live feed carry the cookie) and the token
    leaves the address bar; without it the page is refused."""
    console = page(token="browser-test-token", path="/?token=browser-test-token")
    assert console.driver.current_url == console.served.url + "/"
    send(console.served.ports[0])
    console.until(lambda d: len(console.rows()) == 1, "the session")
    console.driver.delete_all_cookies()
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(console.served.url + "/health", timeout=10)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["error"] == "unauthorized"
    assert console.errors() == []
