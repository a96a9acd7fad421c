"""Headless Chromium driven through the DevTools protocol over a pipe (`--remote-debugging-pipe`):
commands and events are NUL-terminated JSON on file descriptors 3 and 4, so no websocket client is
needed. Used by the report's browser test."""
from __future__ import annotations

import base64
import fcntl
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Optional

FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
         '--disable-sync', '--no-first-run', '--hide-scrollbars', '--window-size=1280,900']


def chromium() -> Optional[str]:
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        found = shutil.which(name)
        if found:
            return found
    return None


def _high(fd: int) -> int:
    """A copy of `fd` numbered 10 or above (close-on-exec), so fds 3 and 4 can be set in the child."""
    new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10)
    os.close(fd)
    return new


class Browser:
    def __init__(self, executable: str, user_data_dir: Path):
        to_child_r, to_child_w = map(_high, os.pipe())
        from_child_r, from_child_w = map(_high, os.pipe())

        def wire():   # in the child: its fd 3 reads our commands, its fd 4 writes replies and events
            os.dup2(to_child_r, 3)
            os.dup2(from_child_w, 4)
        self.proc = subprocess.Popen([executable, *FLAGS, f'--user-data-dir={user_data_dir}', '--remote-debugging-pipe',
                                      'about:blank'], preexec_fn=wire, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_child_r)
        os.close(from_child_w)
        self.w, self.r = to_child_w, from_child_r
        self.buffer = b''
        self.next_id = 0
        self.events: list[dict] = []
        self.session: Optional[str] = None

    def _read(self, timeout: float) -> Optional[dict]:
        deadline = time.time() + timeout
        while b'\0' not in self.buffer:
            left = deadline - time.time()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                return None
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise RuntimeError('chromium closed the DevTools pipe')
            self.buffer += chunk
        message, self.buffer = self.buffer.split(b'\0', 1)
        return json.loads(message)

    def send(self, method: str, params: Optional[dict] = None, timeout: float = 60) -> dict:
        self.next_id += 1
        message = {'id': self.next_id, 'method': method, 'params': params or {}}
        if self.session and not method.startswith('Target.'):
            message['sessionId'] = self.session
        os.write(self.w, json.dumps(message).encode() + b'\0')
        deadline = time.time() + timeout
        while time.time() < deadline:
            reply = self._read(deadline - time.time())
            if reply is None:
                break
            if reply.get('id') == self.next_id:
                if 'error' in reply:
                    raise RuntimeError(f'{method}: {reply["error"]}')
                return reply.get('result', {})
            self.events.append(reply)
        raise TimeoutError(f'{method}: no reply in {timeout} s')

    def wait_for(self, method: str, timeout: float = 60) -> dict:
        for i, e in enumerate(self.events):
            if e.get('method') == method:
                return self.events.pop(i)
        deadline = time.time() + timeout
        while time.time() < deadline:
            event = self._read(deadline - time.time())
            if event is None:
                break
            if event.get('method') == method:
                return event
            self.events.append(event)
        raise TimeoutError(f'no {method} in {timeout} s')

    def open(self, url: str) -> None:
        target = self.send('Target.createTarget', {'url': 'about:blank'})['targetId']
        self.session = self.send('Target.attachToTarget', {'targetId': target, 'flatten': True})['sessionId']
        for domain in ('Page', 'Runtime', 'Log'):
            self.send(f'{domain}.enable')
        self.send('Page.navigate', {'url': url})
        self.wait_for('Page.loadEventFired')

    def evaluate(self, expression: str):
        result = self.send('Runtime.evaluate', {'expression': expression, 'returnByValue': True, 'awaitPromise': True})
        if 'exceptionDetails' in result:
            raise RuntimeError(f'page script failed: {result["exceptionDetails"]}')
        return result['result'].get('value')

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and failed loads the page produced so far."""
        while True:   # drain what is already there
            event = self._read(0.5)
            if event is None:
                break
            self.events.append(event)
        out = []
        for e in self.events:
            p = e.get('params', {})
            if e.get('method') == 'Runtime.exceptionThrown':
                out.append(f'exception: {p["exceptionDetails"].get("text")}')
            elif e.get('method') == 'Runtime.consoleAPICalled' and p.get('type') in ('error', 'assert'):
                out.append('console.error: ' + ' '.join(str(a.get('value', a.get('description'))) for a in p['args']))
            elif e.get('method') == 'Log.entryAdded' and p['entry'].get('level') == 'error':
                out.append(f'log: {p["entry"].get("text")} {p["entry"].get("url", "")}')
        return out

    def screenshot(self, path: Path) -> Path:
        """The whole page, as one PNG."""
        metrics = self.send('Page.getLayoutMetrics')
        size = metrics.get('cssContentSize') or metrics['contentSize']
        clip = {'x': 0, 'y': 0, 'width': size['width'], 'height': min(size['height'], 16000), 'scale': 1}
        data = self.send('Page.captureScreenshot', {'format': 'png', 'clip': clip, 'captureBeyondViewport': True})['data']
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(data))
        return path

    def close(self) -> None:
        try:
            self.send('Browser.close', timeout=10)
        except Exception:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.w)
        os.close(self.r)
