"""Capture the demo lab's /metrics in a comparable form (before/after a refactor).

    python3 bench/demo_scrape.py OUT.txt

Runs `python -m exporter demo` on a random port, waits until prime-sec's certificate has been
regenerated and both PI servers' verdicts settled (two scrapes one refresh apart render the
same), then writes the exporter's own families (process_/python_ families dropped) with what
differs run to run masked: certificate fingerprints, SPKI hashes and serials (each distinct
value becomes its ordinal of first appearance, so "same value" relations survive), and the
values of *_timestamp_seconds / *_duration_seconds samples. Everything else (names, HELP,
TYPE, label order and escaping, constant values, line order) must compare byte for byte.
"""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEX64 = re.compile(r'(fingerprint_sha256|spki_sha256|serial)="([^"]*)"')
TIMED = re.compile(r"^(tofu_\w*_(?:timestamp|duration)_seconds(?:\{.*\})?) \S+$")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def normalise(body: str) -> str:
    seen: dict[tuple[str, str], int] = {}

    def sub(m: re.Match[str]) -> str:
        key = (m.group(1), m.group(2))
        n = seen.setdefault(key, len([k for k in seen if k[0] == key[0]]))
        return f'{m.group(1)}="<{m.group(1)}-{n}>"'

    out = []
    for line in body.splitlines():
        if re.match(r"^(# (HELP|TYPE) )?(process_|python_)", line):
            continue
        line = HEX64.sub(sub, line)
        line = TIMED.sub(r"\1 <t>", line)
        out.append(line)
    return "\n".join(out) + "\n"


def scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as r:
        return r.read().decode()


def main() -> int:
    out = Path(sys.argv[1])
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="tofu-demo-scrape-") as tmp:
        proc = subprocess.Popen(
            [sys.executable, "-m", "exporter", "demo", "--demo.dir", tmp, "--demo.regenerate-after",
             "1", "--web.listen-address", f"127.0.0.1:{port}", "--log.level", "warn"],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            url = f"http://127.0.0.1:{port}/metrics"
            deadline = time.monotonic() + 120
            prev = None
            while time.monotonic() < deadline:
                time.sleep(0.5)
                try:
                    body = normalise(scrape(url))
                except OSError:
                    continue
                settled = ('tofu_certificate_mismatch{entry="127.0.0.12_8082",store="prime-pri"} 1.0'
                           in body)
                if settled and body == prev:
                    out.write_text(body)
                    print(f"wrote {out} ({len(body.splitlines())} lines)")
                    return 0
                if settled:
                    prev = body
                    time.sleep(6)  # one refresh interval of the demo (5 s), then compare
            print("demo did not settle", file=sys.stderr)
            return 1
        finally:
            proc.terminate()
            proc.wait(15)


if __name__ == "__main__":
    raise SystemExit(main())
