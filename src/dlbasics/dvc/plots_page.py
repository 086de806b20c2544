"""The page `dvc plots show` writes, drawn offline: an HTML template (DVC's `plots.html_template`,
set in .dvc/config to .dvc/plots.html) with vega, vega-lite and vega-embed inlined.

DVC's own page loads those three scripts from a CDN, so on a machine without network (a lab, CI)
it is blank. The template here carries the same versions dvc-render asks the CDN for, taken from
npm's registry by `npm pack` and checked against the integrity digests pinned below, and leaves
out DVC's `{scripts}` placeholder, so the CDN tags are never added.

    python -m dlbasics.dvc.plots_page .dvc/plots.html     # make plots-page (make pipeline runs it)

Without npm, or when a digest does not match, it writes nothing and says so in one line; `dvc plots
show` then needs the template (`--html-template`) or the network.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from dlbasics.io import write_text_atomic

# package@version -> (the file the CDN serves for it, npm's integrity digest of the tarball).
# The versions are those of dvc-render's VegaRenderer.SCRIPTS (dvc-render 1.0.2, dvc 3.67.1).
PACKAGES = {
    "vega@5.20.2": (
        "build/vega.min.js",
        "sha512-qmH7aD9GGPpssVdxL1xgcdxTbQzyRUeRR16Os385ymvQhiwCYQNA6+eXUPAZDTVLfk0RXu6Jzj6kUE5jQ80EVw=="),
    "vega-lite@5.2.0": (
        "build/vega-lite.min.js",
        "sha512-Yxcg8MvYfxHcG6BbkaKT0oVCIMIcE19UvqIsEwBmyd/7h2nzW7oRnID81T8UrY7hpDrIr6wa2JADOT2dhGNErw=="),
    "vega-embed@6.18.2": (
        "build/vega-embed.min.js",
        "sha512-wcDyQPE4J5aiCDc3/suH5RQDvrKkjuLkhzUcbOLwEkNF8/+pp17tS0JghzEvAPNRg+5aG1/N2ydixq8Lk3dOlg=="),
}

PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC Plot</title>
{inlined}
    <style>
        table {
            border-spacing: 15px;
        }
    </style>
</head>
<body>
    {plot_divs}
</body>
</html>
"""


class PageError(RuntimeError):
    """One line: what could not be fetched or checked, and what to do."""


def integrity(blob: bytes) -> str:
    """npm's integrity string of a tarball: sha512, base64."""
    return "sha512-" + base64.b64encode(hashlib.sha512(blob).digest()).decode()


def fetch(tmp: Path) -> dict[str, bytes]:
    """{package@version: its tarball's bytes}, by `npm pack`, each checked against PACKAGES."""
    npm = shutil.which("npm")
    if npm is None:
        raise PageError("npm: not found; install Node.js and npm (apt-get install npm), then "
                        "run `make plots-page`")
    proc = subprocess.run([npm, "pack", "--json", "--pack-destination", str(tmp), *PACKAGES],
                          capture_output=True, text=True, cwd=tmp)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PageError(f"npm pack {' '.join(PACKAGES)}: failed ({last}); check the registry "
                        "(npm config get registry) and run `make plots-page` again")
    out = {}
    for entry, spec in zip(json.loads(proc.stdout), PACKAGES):
        blob = (tmp / entry["filename"]).read_bytes()
        if integrity(blob) != PACKAGES[spec][1]:
            raise PageError(f"npm pack {spec}: the tarball's sha512 is not the pinned one "
                            "(dlbasics.dvc.plots_page.PACKAGES); nothing was written")
        out[spec] = blob
    return out


def script(tarball: bytes, member: str) -> str:
    """The file `member` of an npm tarball (under package/), as an inline <script> element."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "p.tgz"
        path.write_bytes(tarball)
        with tarfile.open(path) as tar:
            text = tar.extractfile(f"package/{member}").read().decode("utf-8")
    # A literal "</script" inside the code would end the element early.
    safe = text.replace("</script", "<\\/script")
    return f"    <script>{safe}</script>"


# What DVC replaces in a template (dvc_render.html.HTML): the inlined code must hold none of them.
PLACEHOLDERS = ("{plot_divs}", "{refresh_tag}", "{scripts}")


def page(tarballs: dict[str, bytes]) -> str:
    inlined = "\n".join(script(tarballs[spec], member) for spec, (member, _) in PACKAGES.items())
    clash = [p for p in PLACEHOLDERS if p in inlined]
    if clash:
        raise PageError(f"the inlined scripts contain DVC's placeholder {clash[0]}; "
                        "nothing was written")
    return PAGE.replace("{inlined}", inlined)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="write the offline template of `dvc plots show`")
    ap.add_argument("out", type=Path, nargs="?", default=Path(".dvc/plots.html"))
    args = ap.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            text = page(fetch(Path(tmp)))
    except PageError as exc:
        print(f"plots page: {exc}", file=sys.stderr)
        return 1
    write_text_atomic(args.out, text)
    print(f"{args.out}: vega, vega-lite and vega-embed inlined ({len(text) // 1024} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
