"""A screenshot of rerun's web viewer in headless Chromium, driven over its DevTools protocol.

Chromium runs with ``--remote-debugging-pipe`` (DevTools JSON messages, NUL-separated, on file
descriptors 3 and 4: no websocket client needed) and software WebGL (SwiftShader). A plain
``chromium --screenshot`` fires before the viewer's WebAssembly app is up; here the page is
polled until the viewer's canvas exists, then left ``settle`` seconds to fetch and draw the
recording before the capture.
"""
import base64
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Optional

CHROMIUM_FLAGS = ('--headless=new', '--no-sandbox', '--disable-gpu-sandbox',
                  '--enable-unsafe-swiftshader', '--use-angle=swiftshader',
                  '--remote-debugging-pipe', '--no-first-run', '--no-default-browser-check',
                  '--disable-extensions', '--disable-background-networking',
                  '--disable-component-update', '--disable-sync', '--metrics-recording-only',
                  '--hide-scrollbars')


def find_chromium() -> str:
    for name in ('chromium', 'chromium-browser', 'google-chrome'):
        path = shutil.which(name)
        if path:
            return path
    raise FileNotFoundError("no chromium on PATH (Debian: apt-get install chromium)")


class DevToolsPipe:
    """Chromium with a DevTools connection over two pipes."""

    def __init__(self, url: str, width: int = 1600, height: int = 900,
                 chromium: Optional[str] = None):
        self.profile = tempfile.mkdtemp(prefix='hybrid_vla_chromium_')
        cmd_r, cmd_w = os.pipe()   # we write commands, chromium reads fd 3
        res_r, res_w = os.pipe()   # chromium writes fd 4, we read

        def child_fds():
            os.dup2(cmd_r, 3)
            os.dup2(res_w, 4)

        self.proc = subprocess.Popen(
            [chromium or find_chromium(), *CHROMIUM_FLAGS, f'--window-size={width},{height}',
             f'--user-data-dir={self.profile}', url],
            # 3 and 4 are kept open too: the child closes the other descriptors after
            # ``preexec_fn`` has put the pipes there
            pass_fds=tuple(sorted({3, 4, cmd_r, res_w})), preexec_fn=child_fds,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self.w, self.r = cmd_w, res_r
        self.buf = b''
        self.next_id = 0

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None,
             timeout: float = 30.0) -> dict:
        self.next_id += 1
        msg = {'id': self.next_id, 'method': method, 'params': params or {}}
        if session:
            msg['sessionId'] = session
        os.write(self.w, json.dumps(msg).encode() + b'\0')
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            while b'\0' in self.buf:
                raw, self.buf = self.buf.split(b'\0', 1)
                reply = json.loads(raw)
                if reply.get('id') == self.next_id:
                    if 'error' in reply:
                        raise RuntimeError(f"DevTools {method}: {reply['error']}")
                    return reply.get('result', {})
            ready, _, _ = select.select([self.r], [], [], 0.5)
            if ready:
                chunk = os.read(self.r, 1 << 20)
                if not chunk:
                    raise RuntimeError('chromium closed the DevTools pipe')
                self.buf += chunk
        raise TimeoutError(f'DevTools {method}: no answer in {timeout} s')

    def page_session(self) -> str:
        targets = self.call('Target.getTargets')['targetInfos']
        page = next(t for t in targets if t['type'] == 'page')
        return self.call('Target.attachToTarget', {'targetId': page['targetId'],
                                                   'flatten': True})['sessionId']

    def close(self) -> None:
        try:
            self.call('Browser.close', timeout=5)
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for fd in (self.w, self.r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.profile, ignore_errors=True)


def screenshot(url: str, out_png: str, *, settle: float = 30.0, timeout: float = 120.0,
               width: int = 1600, height: int = 900) -> dict:
    """Open ``url``, wait for a canvas and ``settle`` s, save a PNG; returns timings."""
    t0 = time.monotonic()
    browser = DevToolsPipe(url, width, height)
    try:
        session = browser.page_session()
        loaded = None
        while time.monotonic() - t0 < timeout:
            r = browser.call('Runtime.evaluate', {
                'expression': "document.querySelector('canvas') !== null",
                'returnByValue': True}, session)
            if r.get('result', {}).get('value'):
                loaded = time.monotonic() - t0
                break
            time.sleep(1.0)
        if loaded is None:
            raise TimeoutError(f'the viewer at {url} showed no canvas in {timeout} s')
        time.sleep(settle)
        shot = browser.call('Page.captureScreenshot', {'format': 'png'}, session, timeout=60)
        with open(out_png, 'wb') as f:
            f.write(base64.b64decode(shot['data']))
        return {'canvas_s': round(loaded, 1), 'total_s': round(time.monotonic() - t0, 1)}
    finally:
        browser.close()
