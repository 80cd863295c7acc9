"""Screenshot a run's leaderboard.html in headless Chromium (offline), e.g. for the README:

    .venv/bin/python benchmarks/screenshot.py runs/demo docs/leaderboard.png
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--proxy-server=127.0.0.1:9", "--proxy-bypass-list=<-loopback>"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir")
    p.add_argument("out")
    p.add_argument("--width", type=int, default=1400)
    p.add_argument("--height", type=int, default=1500)
    args = p.parse_args()
    from playwright.sync_api import sync_playwright

    page_file = Path(args.run_dir).resolve() / "leaderboard.html"
    with tempfile.TemporaryDirectory() as profile, sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(profile, executable_path="/usr/bin/chromium", headless=True,
                                                    args=ARGS, viewport={"width": args.width, "height": 900})
        ctx.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("file:", "data:")) else r.abort())
        page = ctx.new_page()
        page.goto(page_file.as_uri())
        page.wait_for_selector(".js-plotly-plot")
        page.wait_for_timeout(800)
        page.screenshot(path=args.out, clip={"x": 0, "y": 0, "width": args.width, "height": args.height})
        ctx.close()


if __name__ == "__main__":
    main()
