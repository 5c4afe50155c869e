#!/usr/bin/env python3
"""Drives a real headless Chromium against the SSE bridge's viewer.

Used by scripts/check-sse-bridge.sh. Talks the Chrome DevTools Protocol over
--remote-debugging-pipe (fds 3 and 4, NUL-separated JSON), so it needs no
Python packages beyond the standard library.

Checks, in the browser's DOM:
  1. the alerts published before the page opened (replayed) are shown,
     each with its severity badge;
  2. alerts published while the page is open appear live, newest first;
  3. after secureopsd restarts, the page shows the restart notice and the
     new daemon's alerts.
Saves a screenshot. Exits non-zero with a message on the first failure.
"""
import argparse
import base64
import json
import os
import subprocess
import sys
import tempfile
import time


class Browser:
    def __init__(self, chromium):
        self.profile = tempfile.mkdtemp(prefix="sse-check-chrome-")
        commands_read, self.commands = os.pipe()
        self.replies, replies_write = os.pipe()
        # Move the child's ends above 10 so the dup2 onto 3 and 4 cannot
        # clobber one with the other.
        child_read = os.dup2(commands_read, 20, inheritable=False)
        child_write = os.dup2(replies_write, 21, inheritable=False)
        os.close(commands_read)
        os.close(replies_write)

        def wire_pipe():
            os.dup2(child_read, 3)
            os.dup2(child_write, 4)

        self.process = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--remote-debugging-pipe", "--user-data-dir=" + self.profile,
             "--window-size=1280,720", "about:blank"],
            preexec_fn=wire_pipe, close_fds=False,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(child_read)
        os.close(child_write)
        self.next_id = 0
        self.pending = b""
        self.session = None

    def call(self, method, params=None, session=True, timeout=20):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session and self.session:
            message["sessionId"] = self.session
        os.write(self.commands, json.dumps(message).encode() + b"\0")
        deadline = time.time() + timeout
        while time.time() < deadline:
            while b"\0" in self.pending:
                raw, self.pending = self.pending.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise RuntimeError(f"{method}: {reply['error']}")
                    return reply.get("result", {})
            chunk = os.read(self.replies, 1 << 16)
            if not chunk:
                raise RuntimeError("chromium closed the DevTools pipe")
            self.pending += chunk
        raise RuntimeError(f"{method}: no answer within {timeout} s")

    def open(self, url):
        target = self.call("Target.createTarget", {"url": url}, session=False)["targetId"]
        self.session = self.call("Target.attachToTarget", {"targetId": target, "flatten": True}, session=False)["sessionId"]
        self.call("Runtime.enable")

    def evaluate(self, expression):
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        return result.get("result", {}).get("value")

    def screenshot(self, path):
        data = self.call("Page.captureScreenshot", {"format": "png"})["data"]
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))

    def close(self):
        try:
            self.call("Browser.close", session=False, timeout=5)
        except Exception:
            pass
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
        subprocess.run(["rm", "-rf", self.profile])


PAGE_STATE = """JSON.stringify({
  state: document.getElementById('state').textContent,
  alerts: [...document.querySelectorAll('#alerts tr.alert')].map(row => ({
    sequence: Number(row.dataset.sequence),
    severity: row.querySelector('.severity').textContent,
    badge: row.querySelector('.severity').className,
    color: getComputedStyle(row.querySelector('.severity')).backgroundColor,
    message: row.querySelector('.message').textContent })),
  notices: [...document.querySelectorAll('#alerts tr.notice')].map(row => row.textContent)
})"""


def wait_for(browser, what, condition, timeout=20):
    deadline = time.time() + timeout
    page = None
    while time.time() < deadline:
        page = json.loads(browser.evaluate(PAGE_STATE) or "null")
        if page and condition(page):
            return page
        time.sleep(0.1)
    raise SystemExit(f"FAIL: {what} within {timeout} s; the page shows: {json.dumps(page, indent=1)}")


def publish(cli, socket, severity, message):
    subprocess.run([cli, "publish", "--socket", socket, "--severity", severity,
                    "--source", "sse-check", "--message", message], check=True, stdout=subprocess.DEVNULL)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--chromium", default="chromium")
    parser.add_argument("--url", required=True)
    parser.add_argument("--cli", required=True)
    parser.add_argument("--socket", required=True)
    parser.add_argument("--restart", required=True, help="shell command that restarts secureopsd")
    parser.add_argument("--screenshot", required=True)
    arguments = parser.parse_args()

    browser = Browser(arguments.chromium)
    try:
        browser.open(arguments.url)
        # 1. Replay: three alerts were published before the page opened.
        page = wait_for(browser, "the three replayed alerts and a live connection",
                        lambda p: len(p["alerts"]) == 3 and p["state"] == "live")
        assert [a["message"] for a in page["alerts"]] == ["before critical", "before high", "before info"], page
        for alert in page["alerts"]:
            assert alert["badge"] == "severity sev-" + alert["severity"], alert
        colors = {a["severity"]: a["color"] for a in page["alerts"]}
        assert len(set(colors.values())) == 3, f"severities share a colour: {colors}"
        print(f"ok: replayed alerts shown with their severities {colors}")

        # 2. Live: published while the page is open.
        publish(arguments.cli, arguments.socket, "medium", "live medium")
        publish(arguments.cli, arguments.socket, "low", "live low")
        page = wait_for(browser, "the two live alerts", lambda p: len(p["alerts"]) == 5)
        assert [a["message"] for a in page["alerts"][:2]] == ["live low", "live medium"], page
        assert [a["sequence"] for a in page["alerts"]] == [5, 4, 3, 2, 1], page
        print("ok: live alerts appear at the top as they are published")

        # 3. A daemon restart: the bridge's subscription reconnects by itself.
        subprocess.run(arguments.restart, shell=True, check=True)
        publish(arguments.cli, arguments.socket, "critical", "after restart")
        page = wait_for(browser, "the restart notice and the new daemon's alert",
                        lambda p: any("restarted" in n for n in p["notices"]) and p["alerts"][0]["message"] == "after restart")
        assert page["alerts"][0]["sequence"] == 1 and page["alerts"][0]["severity"] == "critical", page
        print("ok: after a daemon restart the page says so and shows the new daemon's alerts")

        browser.screenshot(arguments.screenshot)
        print(f"ok: screenshot in {arguments.screenshot}")
    finally:
        browser.close()


if __name__ == "__main__":
    try:
        main()
    except AssertionError as error:
        sys.exit(f"FAIL: {error}")
