"""The Studio's speed in headless Chromium (Debian's), against a live `flowline serve` on SQLite.
Usage: studio_bench.py FLOWLINE_BINARY [--runs 5]. Prints a Markdown table for BENCHMARKS.md:

- opening a 1,000-block flow: from navigation to every node and edge drawn (target ≤ 1 s);
- an edit to its diagnostic on the node, on a 200-block flow: from the inspector's change to the node marked
  (target ≤ 300 ms);
- the Studio's total transferred size on first load, and its largest file (targets ≤ 300 KB, none over 50 KB).

Medians of --runs runs; the browser and the server share the machine's cores, as in every figure there."""
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Tests", "Browser"))
import studio_test as t  # the browser tests' server and helpers
from playwright.sync_api import expect, sync_playwright

RUNS = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 5


def chain(name, n):
    lines = [f"flow: {name}", f"trigger: {{ channel: api, keywords: [{name}] }}", "start: b0", "blocks:"]
    for i in range(n):
        lines += [f"  b{i}:", f'    text: "Step {i}"' if i < n - 1 else '    end: "Done"']
        if i < n - 1:
            lines.append(f"    next: b{i + 1}")
    return "\n".join(lines) + "\n"


def main():
    server = t.Server()
    try:
        token = t.eventually("the setup link", lambda: (t.re.search(r"/setup#([A-Za-z0-9]+)", server.output()) or [None, None])[1])
        assert server.call("POST", "/v1/setup", {"token": token, "email": "bench@clinic.example", "password": t.PASSWORD})[0] == 201
        for name, n in (("big", 1000), ("mid", 200)):
            assert server.call("PUT", f"/v1/flows/{name}", chain(name, n), "application/yaml")[0] in (200, 201)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            sizes = {}
            def count(r):
                if r.request.resource_type in ("document", "script", "stylesheet", "image") and 200 <= r.status < 300:
                    sizes[r.url] = len(r.body())
            page.on("response", count)
            t.sign_in(page, server, "bench@clinic.example")
            first_load = sum(sizes.values())
            largest = max(sizes.items(), key=lambda kv: kv[1])
            opens, edits = [], []
            for _ in range(RUNS):
                started = time.perf_counter()
                page.goto(server.base + "/flows/big")
                expect(page.locator(".node")).to_have_count(1000, timeout=30_000)
                expect(page.locator(".edge[data-edge]")).to_have_count(999)
                opens.append(time.perf_counter() - started)
            page.goto(server.base + "/flows/mid")
            expect(page.locator(".node")).to_have_count(200, timeout=30_000)
            page.get_by_role("button", name="Fit").click()
            for i in range(RUNS):
                node = page.locator('.node[data-id="b100"] .node-head')
                node.click()
                field = page.get_by_label("text *")
                field.fill("Step {{ 1 + }}" if i % 2 == 0 else "Step 100")
                started = time.perf_counter()
                field.press("Tab")  # the change event
                if i % 2 == 0:
                    expect(page.locator('.node[data-id="b100"].has-errors')).to_have_count(1, timeout=10_000)
                    edits.append(time.perf_counter() - started)
                else:
                    expect(page.locator(".node.has-errors")).to_have_count(0, timeout=10_000)
            browser.close()
    finally:
        server.stop()
    ms = lambda xs: f"{statistics.median(xs) * 1000:.0f} ms (of {', '.join(f'{x * 1000:.0f}' for x in xs)})"
    print("| benchmark | result | target |")
    print("|---|---|---|")
    print(f"| Studio: open a 1,000-block flow, every node and edge drawn | {ms(opens)} | ≤ 1 s |")
    print(f"| Studio: an edit to its diagnostic on the node, 200-block flow | {ms(edits)} | ≤ 300 ms |")
    print(f"| Studio: transferred on first load (sign-in and the flows list) | {first_load / 1024:.0f} KB; largest {os.path.basename(largest[0])} {largest[1] / 1024:.0f} KB | ≤ 300 KB, none over 50 KB |")


if __name__ == "__main__":
    main()
