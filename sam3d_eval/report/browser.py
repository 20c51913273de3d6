"""Look at a report the way a person does: headless Chromium loads the file, and we read what it saw.

`probe_page` copies the report beside itself with a small load-time probe appended (the report itself holds
no script), asks Chromium for the DOM after the load event (``--dump-dom``) and returns how many images the
page has, which did not decode (``naturalWidth == 0``), the page's scroll size, and every console message
Chromium logged (``--enable-logging=stderr``). Host names resolve nowhere (``--host-resolver-rules``), so a
report that needed the network would show broken images. `screenshot` writes a PNG of the page.
Used by the browser test and by reports/example/make_example.py; needs a `chromium` (or Chrome) binary.
"""

from __future__ import annotations

import html as _html
import json
import os
import pathlib
import re
import shutil
import subprocess
import tempfile
from typing import Any

__all__ = ["BrowserError", "find_chromium", "probe_page", "screenshot"]

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
          "--disable-extensions", "--host-resolver-rules=MAP * ~NOTFOUND")
_PROBE = """<script>window.addEventListener("load",function(){var im=Array.prototype.slice.call(document.images);
document.body.setAttribute("data-sam3d-probe",JSON.stringify({images:im.length,
broken:im.filter(function(i){return !(i.complete&&i.naturalWidth>0)}).map(function(i){return i.alt.slice(0,80)}),
width:document.documentElement.scrollWidth,height:document.documentElement.scrollHeight}));});</script>"""


class BrowserError(RuntimeError):
    """Chromium is missing, failed, or the probe found nothing."""


def find_chromium() -> str | None:
    """Path of a Chromium/Chrome binary on PATH (``$CHROMIUM`` first), or None."""
    env = os.environ.get("CHROMIUM")
    if env and shutil.which(env):
        return shutil.which(env)
    for name in CANDIDATES:
        path = shutil.which(name)
        if path:
            return path
    return None


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    binary = find_chromium()
    if binary is None:
        raise BrowserError("no chromium binary on PATH (apt-get install chromium)")
    with tempfile.TemporaryDirectory(prefix="sam3d-chromium-") as profile:
        return subprocess.run([binary, *_FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                              text=True, timeout=timeout)


def probe_page(path: str | os.PathLike, *, width: int = 1280, height: int = 900, timeout: float = 120.0) -> dict[str, Any]:
    """Load `path` in headless Chromium; returns ``{"images", "broken", "width", "height", "console"}``."""
    path = pathlib.Path(path).resolve()
    text = path.read_text(encoding="utf-8")
    if "</body>" not in text:
        raise BrowserError(f"{path}: no </body>; not a complete HTML page")
    probe = path.with_name(f".{path.stem}.probe.html")
    probe.write_text(text.replace("</body>", _PROBE + "</body>", 1), encoding="utf-8")
    try:
        # Headless Chromium dumps the DOM when the virtual-time budget runs out; on a loaded machine a large
        # page of embedded images can still be decoding then, so a page that did not finish gets a second try.
        for _ in range(2):
            res = _run(["--virtual-time-budget=30000", "--enable-logging=stderr", "--v=0",
                        f"--window-size={width},{height}", "--dump-dom", probe.as_uri()], timeout)
            m = re.search(r'data-sam3d-probe="([^"]*)"', res.stdout)
            if m is not None:
                break
    finally:
        probe.unlink(missing_ok=True)
    if m is None:
        raise BrowserError(f"chromium did not finish loading {path} (exit {res.returncode}): {res.stderr[-2000:]}")
    found = json.loads(_html.unescape(m.group(1)))
    found["console"] = [line for line in res.stderr.splitlines() if ":CONSOLE" in line]
    return found


def screenshot(path: str | os.PathLike, png: str | os.PathLike, *, width: int = 1280, height: int = 1800,
               timeout: float = 120.0) -> pathlib.Path:
    """A PNG of the first `width` x `height` pixels of the page at `path`."""
    png = pathlib.Path(png).resolve()
    res = _run([f"--window-size={width},{height}", f"--screenshot={png}", pathlib.Path(path).resolve().as_uri()], timeout)
    if not png.is_file():
        raise BrowserError(f"chromium wrote no screenshot (exit {res.returncode}): {res.stderr[-2000:]}")
    return png
