"""The benchmark's simulated PI servers, in their own process.

The lab's asyncssh servers cost real CPU when the exporter reads them; running them here
keeps that cost out of every process the benchmark measures.

    python3 bench/lab_proc.py SPEC.json OUT.json

SPEC: {"password": ..., "certs": {"ec": "ec.der", ...},
       "stores": [{"name": ..., "entries": [[key, cert], ...]}]}
OUT (written once every server listens): {name: {"host", "port", "known_hosts"}}.
Runs until stdin closes or SIGTERM.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

from pilab.pi import PiServer


async def main(spec_path: str, out_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    ders = {name: Path(p).read_bytes() for name, p in spec["certs"].items()}
    pis: dict[str, PiServer] = {}
    for st in spec["stores"]:
        pi = PiServer(st["name"], host="127.0.0.1", port=0, users={"admin": spec["password"]})
        for key, cert in st["entries"]:
            pi.add_entry(key, ders[cert])
        pis[st["name"]] = pi
    await asyncio.gather(*(pi.start() for pi in pis.values()))
    out = {n: {"host": p.host, "port": p.port, "known_hosts": p.known_hosts_line()}
           for n, p in pis.items()}
    tmp = Path(out_path + ".tmp")
    tmp.write_text(json.dumps(out))
    tmp.rename(out_path)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    await asyncio.gather(*(p.stop() for p in pis.values()), return_exceptions=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
