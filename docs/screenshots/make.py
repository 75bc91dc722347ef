"""Regenerate the sales-page screenshots in this folder.

They are taken by the browser test that checks each page fits a laptop and a phone
(tests/ui/test_sales_page.py::test_pages_fit_the_screen_without_sideways_scrolling), against a real server
holding scored demo leads, when LEADSCORE_SCREENSHOTS names a folder. Run from the repository root:

    .venv/bin/python docs/screenshots/make.py      (or /tmp/venv0/bin/python in the dev container)
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]

if __name__ == "__main__":
    env = {**os.environ, "LEADSCORE_SCREENSHOTS": str(HERE)}
    test = "tests/ui/test_sales_page.py::test_pages_fit_the_screen_without_sideways_scrolling"
    code = subprocess.call(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=REPO, env=env
    )
    if code == 0:
        print("\n".join(str(p.relative_to(REPO)) for p in sorted(HERE.glob("*.png"))))
    sys.exit(code)
