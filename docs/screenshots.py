"""Write the README's console screenshots: docs/console-{list,ticket}-{zh,en}.png.

    .venv/bin/python docs/screenshots.py

Runs the browser tests (tests/browser/test_console_browser.py: a real worker on a local broker,
Chromium, the same story every time) with ELDERWATCH_DOCS_SCREENSHOTS=1, which makes them save
the four pictures here besides their test artifacts. Chinese on a phone, English on a desktop.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PICTURES = [f"console-{page}-{language}.png" for language in ("zh", "en") for page in ("list", "ticket")]


def main() -> int:
    env = {**os.environ, "ELDERWATCH_DOCS_SCREENSHOTS": "1"}
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "tests/browser/test_console_browser.py"], cwd=REPO, env=env)
    if done.returncode != 0:
        print("docs/screenshots.py: the browser tests failed; the screenshots may be stale", file=sys.stderr)
        return done.returncode
    for name in PICTURES:
        path = REPO / "docs" / name
        print(f"{path.relative_to(REPO)}: {path.stat().st_size // 1024} KiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
