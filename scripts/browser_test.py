#!/usr/bin/env python3
"""`loc-eval serve`'s page in a real browser: headless Chromium driven over WebDriver.

Starts the server on a checkpoint, uploads a file that is not an image (the page must say
so), then A, A' and B, waits for B', checks that it has B's size and differs from B, moves the
strength slider (the LoRA must be reused: H runs once), and saves a screenshot.

Needs Debian's `chromium` and `chromium-driver` packages; Python's standard library only.

    scripts/browser_test.py --loc-eval target/debug/loc-eval --checkpoint runs/tiny/loc \
        --screenshot /tmp/serve.png

Exits non-zero, saying which check failed.
"""

import argparse
import base64
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import zlib

ELEMENT = "element-6066-11e4-a52e-4f735466cecf"


def write_png(path, width, height, pixel):
    """An RGB PNG whose pixel (x, y) is `pixel(x, y)`."""
    rows = b"".join(b"\0" + bytes(c for x in range(width) for c in pixel(x, y)) for y in range(height))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def scene(width, height, background, shapes):
    """A scene like the tiny world's: a background and filled discs (cx, cy, r, colour)."""

    def pixel(x, y):
        colour = background
        for cx, cy, r, c in shapes:
            if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                colour = c
        return colour

    return pixel


def call(method, url, body=None, timeout=120):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        raise SystemExit(f"{method} {url}: {e.code} {e.read().decode(errors='replace')}")


class Browser:
    """The few WebDriver commands the test needs."""

    def __init__(self, driver_url, chromium):
        self.base = driver_url
        options = {"binary": chromium, "args": ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1100,620"]}
        capabilities = {"capabilities": {"alwaysMatch": {"browserName": "chrome", "goog:chromeOptions": options}}}
        self.session = f"{driver_url}/session/{call('POST', f'{driver_url}/session', capabilities)['value']['sessionId']}"

    def open(self, url):
        call("POST", f"{self.session}/url", {"url": url})

    def upload(self, selector, path):
        element = call("POST", f"{self.session}/element", {"using": "css selector", "value": selector})["value"][ELEMENT]
        call("POST", f"{self.session}/element/{element}/value", {"text": path})

    def script(self, source, *args):
        return call("POST", f"{self.session}/execute/sync", {"script": source, "args": list(args)})["value"]

    def async_script(self, source, *args):
        return call("POST", f"{self.session}/execute/async", {"script": source, "args": list(args)})["value"]

    def wait(self, what, source, seconds):
        """Polls `source` until it returns a truthy value; fails naming `what`."""
        deadline = time.time() + seconds
        while time.time() < deadline:
            value = self.script(source)
            if value:
                return value
            time.sleep(0.2)
        message = self.script("return document.getElementById('message').textContent")
        raise SystemExit(f"timed out after {seconds} s waiting for {what} (the page says: {message!r})")

    def screenshot(self, path):
        with open(path, "wb") as f:
            f.write(base64.b64decode(call("GET", f"{self.session}/screenshot")["value"]))

    def close(self):
        call("DELETE", self.session)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(args):
    command = [args.loc_eval, "serve", "--checkpoint", args.checkpoint, "--port", "0", "--steps", str(args.steps)]
    command += ["--guidance", str(args.guidance), "--image-guidance", str(args.image_guidance)]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    for line in server.stderr:
        sys.stderr.write(line)
        if "http://" in line:
            url = line[line.index("http://"):].split()[0].rstrip("/")
            # Keep draining the log so that the server never blocks on a full pipe.
            threading.Thread(target=lambda: [sys.stderr.write(l) for l in server.stderr], daemon=True).start()
            return server, url
    raise SystemExit(f"the server exited ({server.wait()}) before serving")


def start_driver(chromedriver):
    port = free_port()
    driver = subprocess.Popen([chromedriver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            if call("GET", f"{url}/status", timeout=2)["value"]["ready"]:
                return driver, url
        except (OSError, SystemExit):
            pass
        time.sleep(0.1)
    raise SystemExit(f"{chromedriver} did not start")


# The mean absolute difference, in 0-255 levels, between B (the query slot's image) and B'.
DIFFERENCE = """
const done = arguments[arguments.length - 1];
const pixels = (img) => {
  const canvas = document.createElement('canvas');
  canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
  const context = canvas.getContext('2d');
  context.drawImage(img, 0, 0);
  return context.getImageData(0, 0, canvas.width, canvas.height).data;
};
const query = document.querySelector('[data-slot=query] img'), result = document.getElementById('result');
const a = pixels(query), b = pixels(result);
let sum = 0;
for (let i = 0; i < a.length; i++) if (i % 4 !== 3) sum += Math.abs(a[i] - b[i]);
done(sum / (a.length * 3 / 4));
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--loc-eval", required=True, help="the loc-eval binary")
    parser.add_argument("--checkpoint", required=True, help="a LoC checkpoint folder")
    parser.add_argument("--screenshot", required=True, help="where the page's screenshot goes (PNG)")
    parser.add_argument("--steps", type=int, default=20, help="the page's DDIM steps")
    # configs/tiny.toml's evaluation settings: its small editor's errors grow with guidance.
    parser.add_argument("--guidance", type=float, default=1.0, help="the page's LoRA guidance")
    parser.add_argument("--image-guidance", type=float, default=1.0, help="the page's image guidance")
    parser.add_argument("--images", help="a folder with before.png, after.png and query.png to use instead of drawn scenes")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "/usr/bin/chromium")
    parser.add_argument("--chromedriver", default=shutil.which("chromedriver") or "/usr/bin/chromedriver")
    args = parser.parse_args()
    started = time.time()

    work = tempfile.mkdtemp(prefix="loc-browser-")
    if args.images:
        files = {slot: os.path.abspath(os.path.join(args.images, f"{slot}.png")) for slot in ("before", "after", "query")}
    else:
        # A pair that inverts colours, and a 3:2 query of another scene.
        before = scene(48, 48, (40, 90, 170), [(16, 18, 10, (230, 200, 40)), (34, 32, 9, (200, 50, 60))])
        files = {slot: os.path.join(work, f"{slot}.png") for slot in ("before", "after", "query")}
        write_png(files["before"], 48, 48, before)
        write_png(files["after"], 48, 48, lambda x, y: tuple(255 - c for c in before(x, y)))
        write_png(files["query"], 72, 48, scene(72, 48, (60, 160, 80), [(20, 24, 12, (240, 240, 240)), (52, 20, 9, (90, 40, 160))]))
    query_size = struct.unpack(">II", open(files["query"], "rb").read()[16:24])
    not_an_image = os.path.join(work, "notes.png")
    with open(not_an_image, "w") as f:
        f.write("these are notes, not pixels\n")

    server, server_url = start_server(args)
    driver, driver_url = start_driver(args.chromedriver)
    try:
        browser = Browser(driver_url, args.chromium)
        browser.open(server_url + "/")
        browser.wait("the checkpoint's info", "return document.getElementById('steps').value !== ''", 30)

        browser.upload("#query", not_an_image)
        refusal = browser.wait(
            "the page to refuse a file that is not an image",
            "const m = document.getElementById('message'); return m.className === 'error' && m.textContent",
            30,
        )
        if "corrupt image" not in refusal:
            raise SystemExit(f"the refusal does not say why: {refusal!r}")
        print(f"refused on the page: {refusal}")

        for slot, path in files.items():
            browser.upload(f"#{slot}", path)
        size = browser.wait(
            "B'",
            "const r = document.getElementById('result'); return !r.hidden && r.complete && r.naturalWidth > 0 "
            "&& r.dataset.strength === '1' && [r.naturalWidth, r.naturalHeight]",
            300,
        )
        if tuple(size) != query_size:
            raise SystemExit(f"B' is {size[0]}x{size[1]}, B is {query_size[0]}x{query_size[1]}")
        difference = browser.async_script(DIFFERENCE)
        if difference < 1.0:
            raise SystemExit(f"B' is B (mean difference {difference:.3f} levels)")
        print(f"B' is {size[0]}x{size[1]} like B, {difference:.1f} levels from it on average")

        # The slider: a new strength, the same LoRA.
        browser.script(
            "const s = document.getElementById('strength'); s.value = '0.5';"
            "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
        )
        message = browser.wait(
            "the edit at strength 0.5",
            "const r = document.getElementById('result'), m = document.getElementById('message').textContent;"
            "return r.dataset.strength === '0.5' && r.complete && m.includes('edited') && m",
            300,
        )
        info = call("GET", f"{server_url}/api/info")
        if "LoRA reused" not in message or info["hypernet_runs"] != 1 or info["edits"] != 2:
            raise SystemExit(f"the slider did not reuse the LoRA: {message!r}, {info}")
        print(f"slider: {message}")
        browser.script(
            "const s = document.getElementById('strength'); s.value = '1';"
            "s.dispatchEvent(new Event('input')); s.dispatchEvent(new Event('change'));"
        )
        browser.wait(
            "the edit back at strength 1",
            "const r = document.getElementById('result'); return r.dataset.strength === '1' && r.complete"
            " && document.getElementById('message').textContent.startsWith('edited')",
            300,
        )
        browser.screenshot(args.screenshot)
        browser.close()
    finally:
        driver.terminate()
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)
    print(f"browser test passed in {time.time() - started:.0f} s; screenshot: {args.screenshot}")


if __name__ == "__main__":
    main()
