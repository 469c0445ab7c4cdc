"""Render report.html in headless Chromium (marker ``browser``; needs /usr/bin/chromium)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageStat

from agent.views.report import build_report

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="chromium is not installed")
def test_report_renders_in_headless_chromium(finished_run, tmp_path: Path) -> None:
    page = build_report(finished_run.dir, tmp_path / "report.html")
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--window-size=1400,2400",
           f"--screenshot={shot}", page.resolve().as_uri()]  # fmt: skip
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    with Image.open(shot) as im:
        assert im.size == (1400, 2400)
        assert max(hi - lo for lo, hi in ImageStat.Stat(im.convert("L")).extrema) > 100  # not a blank page
