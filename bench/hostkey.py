#!/usr/bin/env python3
"""Benchmark: CPU time per SSH host-key check, three ways, against the same real sshd endpoints.

    python3 bench/hostkey.py [--checks 100] [--concurrency 1 64] [--loop uvloop|asyncio]
                             [--verify-iterations 2000]

Endpoints: Debian's sshd (tests/kit/sshd.py), one process per key type, each holding one
host key, on loopback. Per key type, way and concurrency, N checks, that many at a time (64 is
the exporter's default probe_concurrency; one at a time, every step finds the CPU's caches
cold after sshd's fork, and costs about twice as much):

- reader: exporter.probes.ssh_hostkey.fetch_host_key (the sans-IO reader; signature verified)
- asyncssh: asyncssh.get_server_host_key (also verifies the exchange signature)
- ssh-keyscan: `ssh-keyscan -t TYPE -p PORT 127.0.0.1` as a subprocess

CPU is this process's time.process_time() plus, for ssh-keyscan, its children's user+system
time (resource.getrusage(RUSAGE_CHILDREN)); sshd's own CPU is not counted for anyone (it is
the same work for all three: fork, key exchange, signature). Every key read is checked against
`ssh-keygen -lf` of the host key file; a wrong or missing key counts as an error.

The floor: per key type, `cryptography`'s verify alone of a real signature by that server's
host key (its private key file, loaded here) over a 32-byte hash, as the reader verifies it
(rsa-sha2-512 for ssh-rsa, DER for ECDSA), timed over --verify-iterations in the same run.
It is the part of a check no client can skip; `verify share` says how much of the reader's
check it is.

ssh-keyscan negotiates sshd's first choice, sntrup761x25519-sha512 (post-quantum), whose key
generation is most of its CPU (about 52 ms a check here; 5 ms with `--kex curve25519-sha256`,
the method the reader and asyncssh use against Debian 12's sshd).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cryptography.hazmat.primitives import hashes  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa  # noqa: E402
from cryptography.hazmat.primitives.serialization import load_ssh_private_key  # noqa: E402

from exporter.core.sshwire import fingerprint  # noqa: E402
from exporter.probes import ssh_kex  # noqa: E402
from exporter.probes.ssh_hostkey import fetch_host_key  # noqa: E402
from tests.kit.sshd import KEY_TYPES, KeyStore, Sshd, SshdKit  # noqa: E402

Check = Callable[[Sshd, str], Awaitable[str | None]]  # -> fingerprint, None on failure


async def via_reader(server: Sshd, key_type: str) -> str | None:
    return (await fetch_host_key(server.host, server.port, key_type, 10)).fingerprint


async def via_asyncssh(server: Sshd, key_type: str) -> str | None:
    import asyncssh

    key = await asyncssh.get_server_host_key(
        server.host, server.port, server_host_key_algs=list(ssh_kex.host_key_algorithms(key_type)),
        config=None)
    return fingerprint(key.public_data) if key is not None else None


async def via_keyscan(server: Sshd, key_type: str) -> str | None:
    short = "ecdsa" if key_type.startswith("ecdsa") else key_type.removeprefix("ssh-")
    proc = await asyncio.create_subprocess_exec(
        "ssh-keyscan", "-T", "10", "-t", short, "-p", str(server.port), server.host,
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    out, _ = await proc.communicate()
    for line in out.decode().splitlines():
        words = line.split()
        if len(words) == 3 and words[1] == key_type:
            return fingerprint(base64.b64decode(words[2]))
    return None


def _cpu() -> tuple[float, float]:
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time(), children.ru_utime + children.ru_stime


async def measure(check: Check, server: Sshd, key_type: str, expect: str, checks: int,
                  concurrency: int) -> tuple[float, float, float, int]:
    """(own CPU ms, children's CPU ms, wall ms) per check, and the number of wrong reads."""
    for _ in range(3):  # warm up: imports, first connections
        await check(server, key_type)
    sem = asyncio.Semaphore(concurrency)
    errors = 0

    async def one() -> None:
        nonlocal errors
        async with sem:
            if await check(server, key_type) != expect:
                errors += 1

    own0, kids0 = _cpu()
    wall0 = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(checks)))
    wall = time.perf_counter() - wall0
    own1, kids1 = _cpu()
    per = 1000 / checks
    return (own1 - own0) * per, (kids1 - kids0) * per, wall * per, errors


def verify_floor(server: Sshd, key_type: str, iterations: int) -> float:
    """CPU ms of one signature verification by this server's host key (cryptography alone)."""
    private = load_ssh_private_key(server.key(key_type).path.read_bytes(), None)
    public, data = private.public_key(), os.urandom(32)
    if isinstance(private, ed25519.Ed25519PrivateKey):
        assert isinstance(public, ed25519.Ed25519PublicKey)
        sig = private.sign(data)
        verify: Callable[[], None] = functools.partial(public.verify, sig, data)
    elif isinstance(private, rsa.RSAPrivateKey):
        assert isinstance(public, rsa.RSAPublicKey)
        sig = private.sign(data, padding.PKCS1v15(), hashes.SHA512())
        verify = functools.partial(public.verify, sig, data, padding.PKCS1v15(), hashes.SHA512())
    else:
        assert isinstance(private, ec.EllipticCurvePrivateKey)
        assert isinstance(public, ec.EllipticCurvePublicKey)
        algorithm = ec.ECDSA(ssh_kex._ECDSA[key_type.removeprefix("ecdsa-sha2-")][1]())
        sig = private.sign(data, algorithm)
        verify = functools.partial(public.verify, sig, data, algorithm)
    for _ in range(20):
        verify()
    cpu0 = time.process_time()
    for _ in range(iterations):
        verify()
    return (time.process_time() - cpu0) * 1000 / iterations


WAYS: dict[str, Check] = {"reader": via_reader, "asyncssh": via_asyncssh, "ssh-keyscan": via_keyscan}


async def run(args: argparse.Namespace, servers: dict[str, Sshd]) -> None:
    print(f"{args.checks} checks per row, loop: {args.loop}, sshd KexAlgorithms: "
          f"{','.join(args.kex) or 'default'}")
    print(f"{'key type':<22}{'conc':>5}  {'way':<13}{'CPU ms/check':>13}{'(own':>8}{'+ child)':>10}"
          f"{'wall ms':>9}{'errors':>8}")
    floors: list[str] = []
    for key_type, server in servers.items():
        expect = server.key(key_type).fingerprint()
        floor = verify_floor(server, key_type, args.verify_iterations)
        print(f"{key_type:<22}{'':>5}  {'verify floor':<13}{floor:>13.3f}", flush=True)
        for concurrency in args.concurrency:
            for way, check in WAYS.items():
                own, kids, wall, errors = await measure(check, server, key_type, expect, args.checks,
                                                        concurrency)
                print(f"{key_type:<22}{concurrency:>5}  {way:<13}{own + kids:>13.3f}{own:>8.3f}"
                      f"{kids:>10.3f}{wall:>9.2f}{errors:>8}", flush=True)
                if way == "reader":
                    floors.append(f"{key_type:<22}{concurrency:>5}  {own:>8.3f}{floor:>8.3f}"
                                  f"{own - floor:>8.3f}{100 * floor / own:>7.0f}%")
    print(f"\n{'reader vs floor':<22}{'conc':>5}  {'reader':>8}{'verify':>8}{'rest':>8}{'share':>8}")
    print("\n".join(floors))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checks", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--loop", choices=["uvloop", "asyncio"], default="uvloop")
    parser.add_argument("--types", nargs="*", default=list(KEY_TYPES))
    parser.add_argument("--verify-iterations", type=int, default=2000,
                        help="signature verifications timed for each key type's floor")
    parser.add_argument("--kex", nargs="*", default=[],
                        help="restrict the sshd endpoints' KexAlgorithms (e.g. curve25519-sha256)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostkey-") as tmp:
        kit = SshdKit(KeyStore(Path(tmp) / "keys"), Path(tmp) / "sshd")
        try:
            servers = {t: kit.start((t,), name="bench", kex=tuple(args.kex)) for t in args.types}
            if args.loop == "uvloop":
                import uvloop

                uvloop.run(run(args, servers))
            else:
                asyncio.run(run(args, servers))
        finally:
            kit.stop_all()


if __name__ == "__main__":
    main()
