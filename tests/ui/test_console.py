"""Browser tests of the web console at /ui/: what a user sees, found by roles and labels."""

import json
import re
import time

from playwright.sync_api import expect

from conftest import (  # noqa: E402
    MODULE,
    MQTT_HOST,
    MQTT_PORT,
    PASSWORD,
    TEST_ID,
    URL,
    mqtt_connection,
    publish,
    screenshot,
    sign_in,
)

NAMESPACE = "org.ferrule.ui"


def conn_row(page, cid):
    return page.get_by_role("table", name="Connections").get_by_role("row").filter(
        has=page.get_by_role("link", name=cid, exact=True)
    )


def totals_cell(page, metric, column):
    """The number in the metric totals table: row `inbound consumed`, column 1 success, 2 failure."""
    row = page.get_by_role("table", name="Metric totals").get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=metric, exact=True)
    )
    return int(row.get_by_role("cell").nth(column - 1).inner_text())


def modify_command(thing_name, value):
    return json.dumps(
        {
            "topic": f"{NAMESPACE}/{thing_name}/things/twin/commands/modify",
            "headers": {"response-required": False},
            "path": "/features/env/properties/temperature",
            "value": value,
        }
    )


def test_sign_in_with_wrong_then_right_password(page, console_errors):
    console_errors.allow_http(401)  # the wrong password's answer
    sign_in(page, password="not-the-password")
    expect(page.get_by_role("alert")).to_contain_text("Wrong user name or password")
    expect(page.get_by_role("navigation", name="Main")).to_have_count(0)
    expect(page.get_by_role("heading", name="Connections")).to_have_count(0)
    screenshot(page, "signin.png")

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Connections", level=1)).to_be_visible()
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    expect(page.get_by_role("alert")).to_have_count(0)
    # The credentials live in this tab's sessionStorage only, never in a cookie or localStorage.
    assert page.context.cookies() == []
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("Object.keys(sessionStorage).length") == 1

    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("Password")).to_be_visible()
    assert page.evaluate("sessionStorage.length") == 0


def test_create_mqtt_connection_from_template(page, rest):
    cid = f"{TEST_ID}-created"
    sign_in(page)
    page.get_by_role("link", name="New connection").click()
    expect(page.get_by_role("heading", name="New connection")).to_be_visible()
    page.get_by_label("Template").select_option(label="MQTT 5")
    page.get_by_label("Template").select_option(label="MQTT 3.1.1")
    editor = page.get_by_label("Connection JSON")
    connection = json.loads(editor.input_value())
    assert connection["connectionType"] == "mqtt"
    connection["uri"] = f"tcp://{MQTT_HOST}:{MQTT_PORT}"
    connection["sources"][0]["addresses"] = [f"{TEST_ID}/devices/#"]
    connection["sources"][0]["authorizationContext"] = ["nginx:ditto"]
    connection["targets"][0]["address"] = f"{TEST_ID}/events/{{{{ thing:id }}}}"
    connection["targets"][0]["topics"] = ["_/_/things/twin/events"]
    connection["targets"][0]["authorizationContext"] = ["nginx:ditto"]
    # A parse error is shown with its position while typing.
    editor.fill('{"name": "x",\n  "uri": }')
    expect(page.get_by_role("alert")).to_contain_text("Line 2")
    editor.fill(json.dumps(connection, indent=2))
    expect(page.get_by_role("alert")).to_have_count(0)
    page.get_by_label("Connection id (optional)").fill(cid)
    page.get_by_role("button", name="Dry run").click()
    expect(page.get_by_role("status").filter(has_text="Dry run succeeded")).to_be_visible(timeout=60000)
    page.get_by_role("button", name="Save").click()

    # The connection's page, then the list, where the status turns open without a reload.
    expect(page.get_by_role("heading", name=cid, level=1)).to_be_visible()
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Connections").click()
    row = conn_row(page, cid)
    expect(row).to_be_visible()
    expect(row.get_by_role("cell").nth(1)).to_have_text("mqtt")
    expect(row.get_by_role("cell").nth(2)).to_have_text("open", timeout=30000)
    expect(row.get_by_role("cell").nth(3)).to_have_text("1")
    stored, _ = rest.ok("GET", f"/api/2/connections/{cid}")
    assert stored["sources"][0]["addresses"] == [f"{TEST_ID}/devices/#"]
    screenshot(page, "connections.png")


def test_device_messages_change_metrics_and_logs(page, rest):
    cid = f"{TEST_ID}-metrics"
    thing = f"{TEST_ID}-dev"
    rest.ok("PUT", f"/api/2/things/{NAMESPACE}:{thing}", {"features": {"env": {"properties": {"temperature": 0}}}})
    rest.put_connection(cid, mqtt_connection("metrics", {"mappingEngine": "Ditto", "options": {}}))
    rest.wait_live(cid)

    sign_in(page)
    page.goto(f"{URL}/ui/#/connections/{cid}")
    expect(page.get_by_role("heading", name=cid, level=1)).to_be_visible()
    expect(page.get_by_role("table", name="Clients")).to_be_visible()
    expect(page.get_by_role("table", name="Sources")).to_contain_text(f"{TEST_ID}/devices/#")
    expect(page.get_by_role("table", name="Targets")).to_contain_text(f"{TEST_ID}/events/")
    chart = page.get_by_role("img", name=re.compile("Message counts"))
    expect(chart).to_be_visible()
    consumed_before = totals_cell(page, "inbound consumed", 1)
    logs = page.get_by_role("table", name="Connection logs")
    rows_before = logs.get_by_role("row").count()
    time.sleep(2.5)  # a few samples of the chart before the messages
    chart_before = chart.screenshot()

    for i in range(3):
        publish(f"{TEST_ID}/devices/x", modify_command(thing, 20 + i))

    expect(
        page.get_by_role("table", name="Metric totals").get_by_role("row").filter(
            has=page.get_by_role("rowheader", name="inbound consumed", exact=True)
        ).get_by_role("cell").first
    ).to_have_text(str(consumed_before + 3), timeout=30000)
    expect(logs.get_by_role("row").filter(has_text="consumed").first).to_be_visible(timeout=15000)
    assert logs.get_by_role("row").count() > rows_before
    expect(page.get_by_role("definition").filter(has_text=re.compile(r"\d{1,2}:\d{2}"))).not_to_have_count(0)
    time.sleep(2.5)  # the next sample reaches the chart
    assert chart.screenshot() != chart_before, "the chart did not change"

    # Filters: only failures → none of the success entries.
    page.get_by_label("Level").select_option("failure")
    expect(logs.get_by_role("row").filter(has_text="consumed")).to_have_count(0)
    page.get_by_label("Level").select_option("success")
    page.get_by_label("Category").select_option("source")
    expect(logs.get_by_role("row").filter(has_text="consumed").first).to_be_visible()
    address = page.get_by_label("Address")
    values = address.locator("option").evaluate_all("os => os.map(o => o.value).filter(Boolean)")
    assert values, "no address to filter by"
    address.select_option(values[0])
    expect(logs.get_by_role("row").filter(has_text="consumed").first).to_be_visible()
    page.get_by_label("Window").select_option(label="Last hour")
    assert totals_cell(page, "inbound consumed", 1) >= 3
    screenshot(page, "connection.png")

    page.get_by_role("button", name="Reset logs").click()
    expect(logs.get_by_role("row").filter(has_text="consumed")).to_have_count(0, timeout=15000)
    page.get_by_role("button", name="Reset metrics").click()
    expect(
        page.get_by_role("table", name="Metric totals").get_by_role("row").filter(
            has=page.get_by_role("rowheader", name="inbound consumed", exact=True)
        ).get_by_role("cell").first
    ).to_have_text("0", timeout=15000)
    page.get_by_role("button", name="Enable logs").click()
    expect(page.get_by_text("Logging is enabled until")).to_be_visible()


def test_edit_shows_validation_error_and_reports_a_concurrent_change(page, rest, console_errors):
    console_errors.allow_http(400, 412)
    cid = f"{TEST_ID}-edit"
    rest.put_connection(cid, mqtt_connection("before"))
    sign_in(page)
    page.goto(f"{URL}/ui/#/connections/{cid}")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_role("heading", name=f"Edit {cid}")).to_be_visible()
    editor = page.get_by_label("Connection JSON")
    expect(editor).to_have_value(re.compile('"name": "before"'))

    # A validation error: Ditto's message and description next to the editor, nothing stored.
    edited = json.loads(editor.input_value())
    edited["sources"][0]["addresses"] = []
    # What the API answers to this very change (refused, so nothing changes).
    status, expected, _ = rest.call("PUT", f"/api/2/connections/{cid}", edited)
    assert status == 400, expected
    editor.fill(json.dumps(edited, indent=2))
    page.get_by_role("button", name="Save").click()
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text(expected["message"])
    if expected.get("description"):
        expect(alert).to_contain_text(expected["description"])
    assert editor.evaluate("e => e.getAttribute('aria-invalid')") == "true"
    screenshot(page, "connection-editor.png")

    # Someone else changes the connection; saving in the page is refused, not overwritten.
    rest.put_connection(cid, mqtt_connection("changed-elsewhere"))
    edited["sources"][0]["addresses"] = [f"{TEST_ID}/devices/#"]
    edited["name"] = "from-the-console"
    editor.fill(json.dumps(edited, indent=2))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("alert")).to_contain_text("changed by someone else")
    stored, _ = rest.ok("GET", f"/api/2/connections/{cid}")
    assert stored["name"] == "changed-elsewhere"

    # Reload shows the current version; saving it then works.
    page.get_by_role("button", name="Reload").click()
    expect(editor).to_have_value(re.compile('"name": "changed-elsewhere"'))
    current = json.loads(editor.input_value())
    current["name"] = "saved-by-the-console"
    editor.fill(json.dumps(current, indent=2))
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", name=cid, level=1)).to_be_visible()
    stored, _ = rest.ok("GET", f"/api/2/connections/{cid}")
    assert stored["name"] == "saved-by-the-console"


def test_close_open_and_delete_with_confirmation(page, rest):
    cid = f"{TEST_ID}-lifecycle"
    rest.put_connection(cid, mqtt_connection("lifecycle"))
    rest.wait_live(cid)
    sign_in(page)
    row = conn_row(page, cid)
    status = row.get_by_role("cell").nth(2)
    expect(status).to_have_text("open", timeout=30000)
    row.get_by_role("button", name="Close").click()
    expect(status).to_have_text("closed", timeout=30000)
    row.get_by_role("button", name="Open").click()
    expect(status).to_have_text("open", timeout=30000)

    row.get_by_role("button", name="Delete").click()
    dialog = page.get_by_role("dialog", name=f"Delete connection {cid}?")
    expect(dialog).to_be_visible()
    dialog.get_by_role("button", name="Cancel").click()
    expect(dialog).to_be_hidden()
    expect(row).to_be_visible()
    row.get_by_role("button", name="Delete").click()
    dialog.get_by_role("button", name="Delete").click()
    expect(row).to_have_count(0, timeout=15000)
    status_code, _, _ = rest.call("GET", f"/api/2/connections/{cid}")
    assert status_code == 404


def test_upload_module_and_try_it_in_the_playground(page, rest):
    mid = f"{TEST_ID}-reshaper"
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Mappers").click()
    expect(page.get_by_role("heading", name="Mappers", level=1)).to_be_visible()
    page.get_by_label("WebAssembly component (.wasm)").set_input_files(MODULE)
    id_field = page.get_by_label("Mapper id")
    assert id_field.input_value() != ""  # defaults to the file name
    id_field.fill(mid)
    page.get_by_role("button", name="Upload").click()
    expect(page.get_by_role("status")).to_contain_text("version 1")
    row = page.get_by_role("table", name="Mapper modules").get_by_role("row").filter(
        has=page.get_by_role("rowheader", name=mid, exact=True)
    )
    expect(row).to_be_visible()
    expect(row.get_by_role("cell").nth(0)).to_have_text("1")  # version
    row.get_by_role("button", name=f"Versions of {mid}").click()
    expect(page.get_by_role("table", name=f"Versions of {mid}")).to_contain_text("current")
    screenshot(page, "mappers.png")

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Playground").click()
    expect(page.get_by_role("heading", name="Playground", level=1)).to_be_visible()
    page.get_by_label("Mapping engine").select_option("WebAssembly")
    options = {
        "module": mid,
        "namespace": NAMESPACE,
        "thingIdPointer": "/device/id",
        "mappings": [{"from": "/readings/t", "to": "/features/environment/properties/temperature"}],
    }
    page.get_by_label("Options (JSON)").fill(json.dumps(options, indent=2))
    page.get_by_label("Payload (text)").fill(json.dumps({"device": {"id": "sensor-7"}, "readings": {"t": 21.5}}))
    output = page.get_by_label("Output 1")
    expect(output).to_contain_text(f"{NAMESPACE}/sensor-7/things/twin/commands/merge", timeout=20000)
    expect(output).to_contain_text("21.5")
    screenshot(page, "playground.png")


def test_playground_javascript_syntax_error_shows_its_line(page):
    sign_in(page)
    page.goto(f"{URL}/ui/#/playground")
    expect(page.get_by_label("Mapping engine")).to_have_value("JavaScript")
    # The pre-filled example maps.
    expect(page.get_by_label("Output 1")).to_contain_text("/features/environment/properties/temperature", timeout=20000)
    script = page.get_by_label("Incoming script (incomingScript)")
    script.fill(
        "function mapToDittoProtocolMsg(headers, textPayload, bytePayload, contentType) {\n"
        "  var reading = JSON.parse(textPayload);\n"
        "  return Ditto.buildDittoProtocolMsg('org.acme', reading.device, (;\n"
        "}\n"
    )
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("Mapping failed", timeout=20000)
    expect(alert).to_contain_text("line 3")
    expect(page.get_by_label("Output 1")).to_have_count(0)


def test_things_lookup_and_watch_live(page, rest):
    thing_id = f"{NAMESPACE}:{TEST_ID}-watched"
    rest.ok("PUT", f"/api/2/things/{thing_id}", {"attributes": {"location": "hall"}, "features": {"env": {"properties": {"temperature": 1}}}})
    thing, headers = rest.ok("GET", f"/api/2/things/{thing_id}?fields=_revision")
    revision = thing["_revision"]
    sign_in(page)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Things").click()
    # The things the twin holds are listed; choosing one shows it.
    known = page.get_by_role("list", name="Known things")
    expect(known.get_by_role("button", name=thing_id, exact=True)).to_be_visible()
    known.get_by_role("button", name=thing_id, exact=True).click()
    expect(page.get_by_label("Thing JSON")).to_contain_text('"location": "hall"')
    expect(page.get_by_label("Thing id")).to_have_value(thing_id)
    page.get_by_label("Thing id").fill(thing_id)
    page.get_by_role("button", name="Look up").click()
    shown = page.get_by_label("Thing JSON")
    expect(shown).to_contain_text('"location": "hall"')
    expect(page.get_by_test_id("thing-revision")).to_have_text(str(revision))

    page.get_by_role("button", name="Watch").click()
    expect(page.get_by_role("status").filter(has_text="Watching")).to_be_visible()
    time.sleep(1)  # the stream is established before the change
    rest.ok("PUT", f"/api/2/things/{thing_id}/features/env/properties/temperature", 42)
    expect(page.get_by_role("list", name="Thing events").get_by_role("listitem")).not_to_have_count(0, timeout=20000)
    expect(page.get_by_role("list", name="Thing events")).to_contain_text("42")
    expect(shown).to_contain_text('"temperature": 42')
    expect(page.get_by_test_id("thing-revision")).to_have_text(str(revision + 1))
    screenshot(page, "things.png")
    page.get_by_role("button", name="Stop watching").click()
    expect(page.get_by_role("button", name="Watch")).to_be_visible()


def test_keyboard_focus_and_phone_width(page, browser):
    sign_in(page)
    expect(page.get_by_role("heading", name="Connections", level=1)).to_be_visible()
    page.locator("body").focus()
    reached = []
    for _ in range(12):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("document.activeElement.textContent.trim()"))
        if reached[-1] == "Things":
            break
    for name in ["Connections", "Mappers", "Playground", "Things"]:
        assert name in reached, f"Tab did not reach {name}: {reached}"
    outline = page.evaluate(
        "() => { const e = document.activeElement; const s = getComputedStyle(e);"
        " return {fv: e.matches(':focus-visible'), style: s.outlineStyle, width: parseFloat(s.outlineWidth)}; }"
    )
    assert outline["fv"] and outline["style"] != "none" and outline["width"] >= 2, outline
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Things", level=1)).to_be_visible()

    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    try:
        p2 = phone.new_page()
        errors = []
        p2.on("console", lambda m: m.type == "error" and errors.append(m.text))
        p2.on("pageerror", lambda e: errors.append(str(e)))
        sign_in(p2)
        expect(p2.get_by_role("heading", name="Connections", level=1)).to_be_visible()
        p2.wait_for_timeout(2500)
        assert p2.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(p2, "connections-phone.png")
        p2.goto(f"{URL}/ui/#/playground")
        expect(p2.get_by_label("Output 1")).to_be_visible(timeout=20000)
        assert p2.evaluate("document.documentElement.scrollWidth") <= 390
        screenshot(p2, "playground-phone.png")
        assert not errors, errors
    finally:
        phone.close()
