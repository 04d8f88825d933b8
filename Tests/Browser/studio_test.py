"""The Studio in a real browser: headless Chromium from Debian, driven by Playwright from PyPI, against a live
`flowline serve` on SQLite. Usage: studio_test.py FLOWLINE_BINARY [--screenshots DIR]

Each test prints `PASS name` or `FAIL name: why`; the process exits 1 when any failed. Waits are on conditions
with deadlines (Playwright's auto-waiting), never sleeps. With --screenshots, the main screens are saved as PNGs
(docs/studio/ is made this way)."""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request

from playwright.sync_api import expect, sync_playwright

BINARY = os.path.abspath(sys.argv[1])
SHOTS = sys.argv[sys.argv.index("--screenshots") + 1] if "--screenshots" in sys.argv else None
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ADMIN_KEY = "fl_studioadmin_0123456789abcdefghijklmnopqrstuv"
PASSWORD = "correct horse battery staple"
expect.set_options(timeout=10_000)


class Server:
    """A `flowline serve` on a free port, its admin key fixed, no person set up yet (it prints the setup link)."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="flowline-studio-")
        shutil.copytree(os.path.join(ROOT, "flows"), os.path.join(self.dir, "flows"))
        env = dict(os.environ, FLOWLINE_ADMIN_KEY=ADMIN_KEY, FLOWLINE_BCRYPT_COST="4")
        for k in ("FLOWLINE_ADMIN_EMAIL", "FLOWLINE_ADMIN_PASSWORD", "FLOWLINE_PUBLIC_URL"):
            env.pop(k, None)
        self.log = open(os.path.join(self.dir, "serve.log"), "w+")
        self.process = subprocess.Popen([BINARY, "serve", "--port", "0"], cwd=self.dir, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 30
        self.port = None
        while time.time() < deadline and self.port is None:
            m = re.search(r"Flowline listening on http://[^:]+:(\d+)", self.output())
            if m:
                self.port = int(m.group(1))
            elif self.process.poll() is not None:
                raise RuntimeError("flowline serve exited: " + self.output()[-2000:])
            else:
                time.sleep(0.05)
        if self.port is None:
            raise RuntimeError("flowline serve did not start: " + self.output()[-2000:])
        self.base = f"http://127.0.0.1:{self.port}"

    def output(self):
        self.log.flush()
        with open(self.log.name) as f:
            return f.read()

    def call(self, method, path, body=None, content_type="application/json"):
        data = None if body is None else (body if isinstance(body, bytes) else (body.encode() if isinstance(body, str) else json.dumps(body).encode()))
        req = urllib.request.Request(self.base + path, method=method, data=data)
        req.add_header("Authorization", f"Bearer {ADMIN_KEY}")
        if data is not None:
            req.add_header("Content-Type", content_type)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                text = r.read()
                return r.status, json.loads(text) if text else None
        except urllib.error.HTTPError as e:
            text = e.read()
            return e.code, json.loads(text) if text else None

    def graph(self, flow):
        req = urllib.request.Request(f"{self.base}/v1/flows/{flow}", headers={"Authorization": f"Bearer {ADMIN_KEY}",
                                                                             "Accept": "application/vnd.flowline.graph+json"})
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        self.process.terminate()
        self.process.wait(timeout=15)
        shutil.rmtree(self.dir, ignore_errors=True)


def eventually(what, check, seconds=10):
    deadline = time.time() + seconds
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds} s: {what}")


def sign_in(page, server, email, password=PASSWORD):
    page.goto(server.base + "/signin")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()


def shot(page, name):
    if SHOTS:
        os.makedirs(SHOTS, exist_ok=True)
        page.screenshot(path=os.path.join(SHOTS, f"{name}.png"))


def test_first_sign_in(browser, server):
    """The setup link serve printed makes the first admin, who lands signed in on the flows."""
    token = eventually("the setup link", lambda: (re.search(r"/setup#([A-Za-z0-9]+)", server.output()) or [None, None])[1])
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    page.goto(server.base + f"/setup#{token}")
    page.get_by_label("Email").fill("ana@clinic.example")
    page.get_by_label("Name").fill("Ana")
    page.get_by_label("Password (10 characters or more)").fill(PASSWORD)
    page.get_by_role("button", name="Create the admin").click()
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
    expect(page.get_by_role("link", name="welcome-menu")).to_be_visible()
    expect(page.locator(".who .person")).to_have_text("Ana")
    shot(page, "flows")
    # Signed out, the Studio asks to sign in again; a wrong password is refused in words.
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="Sign in to Flowline")).to_be_visible()
    page.get_by_label("Email").fill("ana@clinic.example")
    page.get_by_label("Password").fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("not right")
    shot(page, "sign-in")
    page.close()


def connect(page, source, port, target):
    """Drags from `source`'s `port` to the node `target`, as a person connects two blocks."""
    page.locator(f'.node[data-id="{source}"] .node-head').click()
    handle = page.locator(f'.node.selected[data-id="{source}"] .port[data-port="{port}"] i')
    expect(handle).to_be_visible()
    box = eventually("the port is on screen", handle.bounding_box)
    goal = eventually("the target is on screen", page.locator(f'.node[data-id="{target}"] .node-head').bounding_box)
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(goal["x"] + 20, goal["y"] + 10, steps=8)
    page.mouse.up()


def test_build_a_four_block_flow_and_publish(browser, server):
    """A new flow from the list, two blocks dragged from the palette and connected, a diagnostic shown on the node
    with a missing target and gone once fixed, then published."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    page.get_by_role("textbox", name="New flow").fill("built")
    page.get_by_role("button", name="Create").click()
    expect(page.locator('.node[data-id="hello"]')).to_be_visible()
    expect(page.locator(".save-state")).to_have_text("saved")
    canvas = page.locator(".canvas")
    page.locator(".palette-item", has_text=re.compile("^ask$")).drag_to(canvas, target_position={"x": 420, "y": 330})
    expect(page.locator('.node[data-id="ask"]')).to_be_visible()
    page.locator(".palette-item", has_text=re.compile("^text$")).drag_to(canvas, target_position={"x": 420, "y": 520})
    expect(page.locator('.node[data-id="text"]')).to_be_visible()
    connect(page, "hello", "next", "ask")
    connect(page, "ask", "next", "text")
    connect(page, "text", "next", "bye")
    expect(page.locator(".save-state")).to_have_text("saved · valid")

    def saved():
        graph = server.graph("built")
        edges = {(e["from"], e["port"], e["to"]) for e in graph["edges"]}
        return graph if {("hello", "next", "ask"), ("ask", "next", "text"), ("text", "next", "bye")} <= edges else None
    graph = eventually("the edges are saved", saved)
    assert len(graph["nodes"]) == 4, graph
    shot(page, "builder")

    # The source view: a next that names no block is a diagnostic on its node and in the problems panel.
    page.get_by_role("button", name="Source").click()
    source = page.get_by_label("Source")
    expect(source).not_to_have_value("")
    text = source.input_value()
    assert re.search(r'"?next"?:\s*"?bye', text), text
    source.fill(re.sub(r'("?next"?:\s*)("?)bye', r"\1\2nowhere", text, count=1))
    expect(page.locator('.node[data-id="text"].has-errors')).to_have_count(1)
    expect(page.locator(".problems li.error")).to_contain_text("nowhere")
    page.locator(".problems li.error button").first.click()
    source.fill(text)
    expect(page.locator(".node.has-errors")).to_have_count(0)
    expect(page.locator(".problems")).to_contain_text("No problems")
    page.get_by_role("button", name="Canvas").click()

    page.get_by_role("button", name="Publish").click()
    expect(page.get_by_role("status").filter(has_text="Published version 1")).to_be_visible()
    status, flows = server.call("GET", "/v1/flows")
    assert any(f["name"] == "built" and f["latest_version"] == 1 for f in flows["flows"]), flows
    # Undo takes back the last edit, redo brings it again.
    page.locator(".canvas").focus()
    page.keyboard.press("Control+z")
    expect(page.locator('.edge[data-edge]')).to_have_count(2)
    page.keyboard.press("Control+Shift+z")
    expect(page.locator('.edge[data-edge]')).to_have_count(3)
    # From the inspector: the connections, a target per port and branches with their conditions.
    page.get_by_role("button", name="Fit").click()
    page.locator('.node[data-id="ask"] .node-head').click()
    expect(page.locator(".inspector h2")).to_have_text("ask block")
    page.get_by_label("save").fill("answer")
    page.get_by_label("save").press("Tab")
    page.get_by_label("on invalid goes to").select_option("bye")
    page.get_by_role("button", name="Add a branch").click()
    page.get_by_label("branch 1 when").fill("answer == 'yes'")
    page.get_by_label("branch 1 when").press("Tab")
    page.get_by_label("branch 1 goes to").select_option("text")

    def connected():
        graph = server.graph("built")
        edges = {(e["from"], e["port"], e["to"], e.get("when")) for e in graph["edges"]}
        return ("ask", "on_invalid", "bye", None) in edges and ("ask", "branch", "text", "answer == 'yes'") in edges
    eventually("the connections made in the inspector are saved", connected)
    page.close()


def test_an_invited_person_joins_and_sees_what_their_role_allows(browser, server):
    """An admin invites from the members page; the invitee follows the link, sets a password, and works as an agent."""
    admin = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(admin, server, "ana@clinic.example")
    admin.get_by_role("link", name="Members").click()
    admin.get_by_label("Invite", exact=True).fill("dora@clinic.example")
    admin.get_by_label("Role", exact=True).select_option("agent")
    admin.get_by_role("button", name="Invite", exact=True).click()
    link = admin.get_by_label("An invitation link")
    expect(link).to_have_value(re.compile(r"/invitation#"))
    url = link.input_value()
    shot(admin, "members")
    guest = browser.new_context(viewport={"width": 1280, "height": 800})
    page = guest.new_page()
    page.goto(url)
    page.get_by_label("Your name").fill("Dora")
    page.get_by_label("Choose a password (10 characters or more)").fill(PASSWORD)
    page.get_by_role("button", name="Join").click()
    expect(page.get_by_role("heading", name="Flows")).to_be_visible()
    expect(page.locator(".who .person")).to_have_text("Dora")
    # An agent: no channels or members, no new flows, and a flow opens read-only, without Publish.
    expect(page.get_by_role("link", name="Channels")).to_have_count(0)
    expect(page.get_by_role("link", name="Members")).to_have_count(0)
    expect(page.get_by_role("button", name="Create")).to_have_count(0)
    page.get_by_role("link", name="welcome-menu").click()
    expect(page.locator('.node[data-id="language"]')).to_be_visible()
    expect(page.get_by_role("button", name="Publish")).to_have_count(0)
    # The admin sees Dora, and makes her a supervisor.
    admin.reload()
    admin.get_by_label("Role of dora@clinic.example").select_option("supervisor")
    expect(admin.get_by_role("status").filter(has_text="supervisor now")).to_be_visible()
    guest.close()
    admin.close()


def test_a_draft_is_deleted_from_the_list(browser, server):
    status, _ = server.call("PUT", "/v1/flows/scratch", "flow: scratch\ntrigger: { channel: api, keywords: [scratch] }\nstart: a\nblocks:\n  a: { end: Bye }\n",
                            "application/yaml")
    assert status == 201
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Delete scratch").click()
    expect(page.get_by_role("link", name="scratch")).to_have_count(0)
    assert server.call("GET", "/v1/flows/scratch")[0] == 404
    expect(page.get_by_role("button", name="Delete welcome-menu")).to_have_count(0)
    page.close()


def test_preview_taps_a_button(browser, server):
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    page.get_by_role("link", name="welcome-menu").click()
    page.get_by_role("button", name="Preview").click()
    chat = page.get_by_role("log", name="Preview chat")
    expect(chat).to_contain_text("Choose your language")
    expect(page.locator('.node.running[data-id="language"]')).to_have_count(1)
    chat.get_by_role("button", name="Português").click()
    expect(chat).to_contain_text("Como posso ajudar?")
    # The canvas follows the run: the block it waits in now, and the one it came from.
    expect(page.locator('.node.running[data-id="menu_pt"]')).to_have_count(1)
    expect(page.locator('.node.visited[data-id="language"]')).to_have_count(1)
    expect(chat.locator(".bubble.you")).to_have_text("Português")
    shot(page, "preview")
    page.close()


def invite_agent(server, email, name):
    status, invitation = server.call("POST", "/v1/members/invitations", {"email": email, "role": "agent"})
    assert status == 201 and invitation["token"], invitation
    status, person = server.call("POST", "/v1/invitations/accept", {"token": invitation["token"], "password": PASSWORD, "name": name})
    assert status == 201, person
    return person


def test_two_agents_and_a_handed_off_conversation(browser, server):
    """The first agent sees the handoff arrive live, claims it and answers; the second is refused."""
    bia = invite_agent(server, "bia@clinic.example", "Bia")
    invite_agent(server, "caio@clinic.example", "Caio")
    first = browser.new_context(viewport={"width": 390, "height": 844})
    second = browser.new_context(viewport={"width": 1280, "height": 800})
    a, b = first.new_page(), second.new_page()
    sign_in(a, server, "bia@clinic.example")
    sign_in(b, server, "caio@clinic.example")
    a.get_by_role("link", name="Inbox").click()
    expect(a.get_by_text("Nobody is waiting.")).to_be_visible()
    status, channel = server.call("POST", "/v1/channels", {"kind": "api", "name": "web"})
    assert status == 201, channel
    for i, text in enumerate(["Oi", "Português", "Falar conosco"]):
        status, r = server.call("POST", f"/v1/channels/{channel['id']}/inbound", {"from": "5511999", "text": text, "id": f"m{i}"})
        assert status == 202, r
        if i < 2:
            eventually("the flow answered", lambda: len(server.call("GET", f"/v1/conversations/{r['conversation']}/messages")[1]["messages"]) >= 2 * (i + 1))
    # Live: no reload.
    item = a.locator(".inbox-item", has_text="5511999")
    expect(item).to_be_visible()
    item.click()
    a.get_by_role("button", name="Claim").click()
    expect(a.locator(".inbox-item .holder")).to_have_text("you")
    expect(a.get_by_role("button", name="Claim")).to_have_count(0)
    a.get_by_label("Reply").fill("Olá! Sou a Bia.")
    a.get_by_role("button", name="Send").click()
    expect(a.get_by_role("log", name="Messages")).to_contain_text("Olá! Sou a Bia.")
    shot(a, "inbox-phone")
    # The contact writes again: it arrives without a reload.
    server.call("POST", f"/v1/channels/{channel['id']}/inbound", {"from": "5511999", "text": "Obrigado", "id": "m9"})
    expect(a.get_by_role("log", name="Messages")).to_contain_text("Obrigado")
    b.get_by_role("link", name="Inbox").click()
    b.locator(".inbox-item", has_text="5511999").click()
    expect(b.locator(".inbox-item .holder")).to_have_text(bia["id"])
    b.get_by_label("Reply").fill("Eu também")
    b.get_by_role("button", name="Send").click()
    expect(b.get_by_role("alert")).to_contain_text("another agent holds this conversation")
    shot(b, "inbox")
    first.close()
    second.close()


def test_limits_count_as_you_type_and_problems_sit_on_their_field(browser, server):
    """WhatsApp's limits, from the block's schema, are counted while typing; once saved, each diagnostic is on the field
    it names (and says so to a screen reader), and the problems panel puts the focus there."""
    flow = ("flow: asking\ntrigger: { channel: api, keywords: [asking] }\nstart: pick\nblocks:\n"
            "  pick:\n    ask: Which one?\n    save: choice\n    buttons: [Sim, Não]\n    next: bye\n  bye:\n    end: Bye\n")
    status, saved = server.call("PUT", "/v1/flows/asking", flow, "application/yaml")
    assert status in (200, 201) and saved["valid"], saved
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    page.goto(server.base + "/flows/asking")
    page.locator('.node[data-id="pick"] .node-head').click()
    buttons = page.get_by_label("buttons")
    counter = page.locator("#param-buttons-count")
    expect(counter).to_have_text("2 of at most 3")
    buttons.fill("Sim\nNão\nTalvez\nFalar com um atendente")
    expect(counter).to_have_text("4 of at most 3 · item 4 has 22 characters, at most 20")
    expect(counter).to_have_class(re.compile(r"\berror\b"))
    buttons.press("Tab")
    expect(page.locator(".save-state")).to_have_text("saved · 2 error(s)")
    buttons = page.get_by_label("buttons")
    expect(buttons).to_have_attribute("aria-invalid", "true")
    problems = page.locator(".field.invalid .field-problems li")
    expect(problems).to_have_count(2)
    expect(problems.first).to_contain_text("characters")
    described = buttons.get_attribute("aria-describedby").split()
    assert "param-buttons-problems" in described, described
    # The problems panel goes to the block and into the field.
    page.get_by_label("Go to block").focus()
    page.locator(".problems li.error button").first.click()
    expect(page.get_by_label("buttons")).to_be_focused()
    page.get_by_label("buttons").fill("Sim\nNão\nTalvez")
    page.get_by_label("buttons").press("Tab")
    expect(page.locator(".save-state")).to_have_text("saved · valid")
    expect(page.get_by_label("buttons")).not_to_have_attribute("aria-invalid", "true")
    expect(page.locator("#param-buttons-count")).to_have_text("3 of at most 3")
    page.close()


def test_channels_are_edited_and_rotated(browser, server):
    """An api channel made from the form shows its signing secret once, on the page; rotating gives a new one while
    the old one signs for a day; a WhatsApp channel is edited without its other secrets being touched."""
    status, wa = server.call("POST", "/v1/channels", {"kind": "whatsapp", "name": "numero", "phone_number_id": "106540352242922",
                                                      "verify_token": "verify-me-please", "app_secret": "app-secret-0123"})
    assert status == 201, wa
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    page.get_by_role("link", name="Channels").click()
    page.get_by_label("Kind").select_option("api")
    page.get_by_label("Name *", exact=True).fill("platform")
    page.locator("#channel-callback_url").fill("https://platform.example/hook")
    page.get_by_role("button", name="Create").click()
    shown = page.locator("#secret-once")
    expect(shown).to_have_value(re.compile(r"^whsec_"))
    expect(shown).to_be_focused()
    first = shown.input_value()
    page.once("dialog", lambda d: d.accept())
    page.get_by_role("button", name="Rotate the signing secret of platform").click()
    expect(shown).not_to_have_value(first)
    expect(shown).to_have_value(re.compile(r"^whsec_"))
    expect(page.get_by_role("row", name=re.compile("platform"))).to_contain_text("the old secret signs until")
    status, listed = server.call("GET", "/v1/channels")
    platform = next(c for c in listed["channels"] if c["name"] == "platform")
    assert platform.get("previous_secret_signs_until") and "signing_secret" not in platform, platform
    shot(page, "channels")

    page.get_by_role("button", name="Edit numero").click()
    expect(page.get_by_label("Name *", exact=True).first).to_be_focused()
    expect(page.locator("#edit-phone_number_id")).to_have_value("106540352242922")
    expect(page.locator("#edit-app_secret")).to_have_value("")
    page.locator("#edit-name").fill("vendas")
    page.locator("#edit-access_token").fill("EAAG-new-token-abc")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("cell", name="vendas", exact=True)).to_be_visible()
    status, listed = server.call("GET", "/v1/channels")
    assert any(c["id"] == wa["id"] and c["name"] == "vendas" for c in listed["channels"]), listed
    assert "EAAG" not in json.dumps(listed)
    # The verify token the edit left alone still answers Meta's handshake.
    with urllib.request.urlopen(f"{server.base}{wa['webhook_path']}?hub.mode=subscribe&hub.verify_token=verify-me-please&hub.challenge=7", timeout=10) as r:
        assert r.status == 200 and r.read() == b"7"
    page.close()


# Visible controls with no accessible name (a label, aria-label or aria-labelledby, a title, or a button's text),
# and images without alt text: what a screen reader would read as "edit text" or "button".
UNNAMED = """() => [...document.querySelectorAll('input, select, textarea, button, a[href], [role=button], img')]
  .filter((el) => el.type !== 'hidden' && el.offsetParent !== null)
  .filter((el) => {
    if (el.tagName === 'IMG') return !el.hasAttribute('alt');
    const label = el.getAttribute('aria-label') || el.getAttribute('title') ||
      (el.getAttribute('aria-labelledby') || '').split(' ').map((id) => document.getElementById(id)?.textContent || '').join('').trim() ||
      [...(el.labels || [])].map((l) => l.textContent).join('').trim() ||
      (['BUTTON', 'A'].includes(el.tagName) || el.getAttribute('role') === 'button' ? el.textContent.trim() : '');
    return !label;
  })
  .map((el) => el.outerHTML.slice(0, 120))"""


def test_every_screen_is_labelled_and_works_from_the_keyboard(browser, server):
    """Each screen's controls have names; the builder is worked from the keyboard alone: to a flow, to a block, into
    its form and back; and the inbox holds on a phone."""
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    screens = {"flows": "/", "builder": "/flows/welcome-menu", "conversations": "/conversations", "inbox": "/inbox",
               "channels": "/channels", "members": "/members"}
    for name, path in screens.items():
        page.goto(server.base + path)
        expect(page.locator("main h1, main h2").first).to_be_visible()
        if name == "builder":
            expect(page.locator(".node").first).to_be_visible()
            page.locator(".node").first.locator(".node-head").click()
            expect(page.locator(".inspector h2")).to_contain_text("block")
        unnamed = page.evaluate(UNNAMED)
        assert not unnamed, f"{name}: controls without a name: {unnamed}"
    for side in ("History", "Preview"):
        page.goto(server.base + "/flows/welcome-menu")
        page.get_by_role("button", name=side).click()
        expect(page.locator(".side-panel")).to_be_visible()
        expect(page.locator(".side-panel h2").first).to_be_visible()
        unnamed = page.evaluate(UNNAMED)
        assert not unnamed, f"{side}: controls without a name: {unnamed}"

    # From the keyboard alone: tab to the flow's link, open it, go to a block, edit it, let go.
    page.goto(server.base + "/")
    link = page.get_by_role("link", name="welcome-menu")
    for _ in range(40):
        page.keyboard.press("Tab")
        if link.evaluate("el => el === document.activeElement"):
            break
    expect(link).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator('.node[data-id="language"]')).to_be_visible()
    page.locator(".canvas").focus()
    page.keyboard.press("g")
    expect(page.get_by_label("Go to block")).to_be_focused()
    page.keyboard.type("menu_pt")
    page.keyboard.press("Enter")
    expect(page.locator('.node.selected[data-id="menu_pt"]')).to_be_focused()
    expect(page.locator("#inspect-id")).to_have_value("menu_pt")
    before = page.locator('.node[data-id="menu_pt"]').bounding_box()
    page.keyboard.press("ArrowRight")
    eventually("the block moved right", lambda: (page.locator('.node[data-id="menu_pt"]').bounding_box() or {"x": before["x"]})["x"] > before["x"])
    page.locator('.node[data-id="menu_pt"]').focus()
    page.keyboard.press("Enter")
    expect(page.locator("#inspect-id")).to_be_focused()
    page.locator(".canvas").focus()
    page.keyboard.press("Escape")
    expect(page.locator(".node.selected")).to_have_count(0)
    page.close()

    # The inbox on a 390-pixel-wide phone: nothing wider than the screen.
    phone = browser.new_context(viewport={"width": 390, "height": 844})
    p = phone.new_page()
    sign_in(p, server, "ana@clinic.example")
    p.goto(server.base + "/inbox")
    expect(p.get_by_role("heading", name="Inbox")).to_be_visible()
    width = p.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the inbox is {width} px wide on a 390 px screen"
    assert not p.evaluate(UNNAMED), p.evaluate(UNNAMED)
    phone.close()


def test_a_thousand_block_flow_opens(browser, server):
    lines = ["flow: big", "trigger: { channel: api, keywords: [big] }", "start: b0", "blocks:"]
    for i in range(1000):
        lines.append(f"  b{i}:")
        lines.append(f'    text: "Step {i}"' if i < 999 else '    end: "Done"')
        if i < 999:
            lines.append(f"    next: b{i + 1}")
    status, saved = server.call("PUT", "/v1/flows/big", "\n".join(lines) + "\n", "application/yaml")
    assert status in (200, 201) and saved["valid"], saved
    page = browser.new_page(viewport={"width": 1280, "height": 800})
    sign_in(page, server, "ana@clinic.example")
    started = time.time()
    page.goto(server.base + "/flows/big")
    expect(page.locator(".node")).to_have_count(1000, timeout=20_000)
    expect(page.locator(".edge[data-edge]")).to_have_count(999)
    print(f"  a 1,000-block flow showed in {time.time() - started:.2f} s (BENCHMARKS.md measures it)")
    page.close()


def test_the_pages_are_locked_down(browser, server):
    """Every page carries a strict Content-Security-Policy, and the Studio runs under it: no inline script."""
    page = browser.new_page()
    violations = []
    page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
    response = page.goto(server.base + "/signin")
    csp = response.headers.get("content-security-policy", "")
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe" not in csp, csp
    expect(page.get_by_role("heading", name="Sign in to Flowline")).to_be_visible()
    assert not violations, violations
    page.close()


def main():
    server = Server()
    failed = 0
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            tests = [test_first_sign_in, test_the_pages_are_locked_down, test_build_a_four_block_flow_and_publish, test_a_draft_is_deleted_from_the_list,
                     test_an_invited_person_joins_and_sees_what_their_role_allows,
                     test_preview_taps_a_button, test_limits_count_as_you_type_and_problems_sit_on_their_field,
                     test_channels_are_edited_and_rotated, test_every_screen_is_labelled_and_works_from_the_keyboard,
                     test_two_agents_and_a_handed_off_conversation, test_a_thousand_block_flow_opens]
            for test in tests:
                try:
                    test(browser, server)
                    print(f"PASS {test.__name__}", flush=True)
                except Exception as e:
                    failed += 1
                    print(f"FAIL {test.__name__}: {e}", flush=True)
                    traceback.print_exc()
                    for i, context in enumerate(browser.contexts):
                        for j, page in enumerate(context.pages):
                            path = os.path.join(tempfile.gettempdir(), f"studio-{test.__name__}-{i}-{j}.png")
                            page.screenshot(path=path)
                            print(f"  screenshot: {path}", flush=True)
                            page.close()
            browser.close()
    finally:
        server.stop()
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
