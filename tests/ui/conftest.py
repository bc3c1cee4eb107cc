"""Fixtures of the web console's browser tests (Playwright, sync API, the system's Chromium).

Everything comes from the environment, set by tests/console.rs: FERRULE_URL, FERRULE_USER,
FERRULE_PASSWORD, MQTT_HOST, MQTT_PORT, FERRULE_UI_MODULE, FERRULE_UI_SCREENSHOTS,
FERRULE_TEST_ID."""

import base64
import json
import os
import re
import subprocess
import time
import urllib.error
import urllib.request

import pytest
from playwright.sync_api import sync_playwright

URL = os.environ.get("FERRULE_URL", "http://127.0.0.1:8080").rstrip("/")
USER = os.environ.get("FERRULE_USER", "devops")
PASSWORD = os.environ.get("FERRULE_PASSWORD", "")
MQTT_HOST = os.environ.get("MQTT_HOST", "127.0.0.1")
MQTT_PORT = os.environ.get("MQTT_PORT", "1883")
MODULE = os.environ.get("FERRULE_UI_MODULE", "")
SCREENSHOTS = os.environ.get("FERRULE_UI_SCREENSHOTS", "")
# Ids, topics and thing names of this run: brokers are shared with parallel tests.
TEST_ID = re.sub(r"[^a-z0-9-]", "-", os.environ.get("FERRULE_TEST_ID", f"ui-{os.getpid()}").lower())[:60]

# Chromium reports every HTTP error answer of a fetch as a console error ("Failed to load
# resource: the server responded with a status of 412 ..."). A test that provokes such answers on
# purpose names their statuses with `console_errors.allow_http(...)`; anything else fails it.
HTTP_ERROR = re.compile(r"Failed to load resource: the server responded with a status of (\d{3})")


class Rest:
    """The REST API with the devops credentials, outside the browser."""

    def __init__(self):
        token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        self.auth = f"Basic {token}"

    def call(self, method, path, body=None, headers=None, content_type="application/json"):
        data = None
        h = {"Authorization": self.auth, "Accept": "application/json"}
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else json.dumps(body)
            data = data.encode() if isinstance(data, str) else data
            h["Content-Type"] = content_type
        h.update(headers or {})
        req = urllib.request.Request(URL + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                text = r.read().decode()
                return r.status, (json.loads(text) if text else None), dict(r.headers)
        except urllib.error.HTTPError as e:
            text = e.read().decode()
            try:
                answer = json.loads(text)
            except ValueError:
                answer = text
            return e.code, answer, dict(e.headers)

    def ok(self, method, path, body=None, **kw):
        status, answer, headers = self.call(method, path, body, **kw)
        assert status < 300, f"{method} {path}: {status} {answer}"
        return answer, headers

    def put_connection(self, cid, connection):
        return self.ok("PUT", f"/api/2/connections/{cid}", {**connection, "id": cid})

    def wait_live(self, cid, wanted="open", timeout=30):
        deadline = time.time() + timeout
        status = None
        while time.time() < deadline:
            _, status, _ = self.call("GET", f"/api/2/connections/{cid}/status")
            if isinstance(status, dict) and status.get("liveStatus") == wanted:
                return status
            time.sleep(0.3)
        raise AssertionError(f"{cid} is not {wanted}: {status}")


def mqtt_connection(name, mapping=None):
    """An MQTT 3.1.1 connection of this run: devices/# in, events/<thing id> out."""
    connection = {
        "name": name,
        "connectionType": "mqtt",
        "connectionStatus": "open",
        "uri": f"tcp://{MQTT_HOST}:{MQTT_PORT}",
        "sources": [
            {
                "addresses": [f"{TEST_ID}/devices/#"],
                "qos": 1,
                "authorizationContext": ["nginx:ditto"],
            }
        ],
        "targets": [
            {
                "address": f"{TEST_ID}/events/{{{{ thing:id }}}}",
                "topics": ["_/_/things/twin/events"],
                "qos": 0,
                "authorizationContext": ["nginx:ditto"],
            }
        ],
    }
    if mapping:
        connection["mappingDefinitions"] = {"m": mapping}
        connection["sources"][0]["payloadMapping"] = ["m"]
    return connection


def publish(topic, payload):
    subprocess.run(
        ["mosquitto_pub", "-h", MQTT_HOST, "-p", str(MQTT_PORT), "-q", "1", "-t", topic, "-m", payload],
        check=True,
        timeout=30,
    )


@pytest.fixture(scope="session")
def rest():
    return Rest()


@pytest.fixture(scope="session")
def browser():
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
            args=["--no-sandbox"],
        )
        yield b
        b.close()


class ConsoleErrors:
    def __init__(self):
        self.errors = []
        self.allowed = set()

    def allow_http(self, *statuses):
        self.allowed.update(int(s) for s in statuses)

    def on_console(self, msg):
        if msg.type != "error":
            return
        m = HTTP_ERROR.search(msg.text)
        if m and int(m.group(1)) in self.allowed:
            return
        self.errors.append(f"console: {msg.text} ({msg.location})")

    def on_page_error(self, exc):
        self.errors.append(f"page error: {exc}")


@pytest.fixture
def console_errors():
    return ConsoleErrors()


@pytest.fixture
def page(browser, console_errors):
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    pg = context.new_page()
    pg.set_default_timeout(20000)
    pg.on("console", console_errors.on_console)
    pg.on("pageerror", console_errors.on_page_error)
    yield pg
    context.close()
    assert not console_errors.errors, "errors in the browser:\n" + "\n".join(console_errors.errors)


def screenshot(page, name):
    if SCREENSHOTS:
        os.makedirs(SCREENSHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SCREENSHOTS, name), full_page=True)


def sign_in(page, password=None):
    page.goto(URL + "/ui/")
    page.get_by_label("User name").fill(USER)
    page.get_by_label("Password").fill(PASSWORD if password is None else password)
    page.get_by_role("button", name="Sign in").click()
