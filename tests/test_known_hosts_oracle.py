"""OpenSSH's own tools as the oracle for the known_hosts core.

Debian's `ssh-keygen` reads the same generated files: `-F NAME` must find exactly the lines our
matcher finds (plain, wildcard, negated, bracketed-port and `-H`-hashed lines), `-lf` must print
the same fingerprints, and `-R NAME` must leave exactly the bytes `remove_lines` returns.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from exporter.sources.known_hosts import keys, match, parse, rewrite

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="needs ssh-keygen (openssh-client)"),
]

NAMES = (
    "jump.example.com", "10.0.0.1", "[10.0.0.5]:2222", "10.0.0.5", "a.example.com", "bad.example.com",
    "web1.example.com", "web10.example.com", "db.example.com", "[db.example.com]:2200",
    "[db.example.com]:2201", "upper.example.com", "x.internal", "secret.internal", "10.0.0.9",
    "nothing.test", "[jump.example.com]:22",
)


def keygen(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ssh-keygen", *args], capture_output=True, text=True, check=check, timeout=30)


@pytest.fixture(scope="module")
def pubs(tmp_path_factory) -> dict[str, str]:
    d = tmp_path_factory.mktemp("keys")
    out = {}
    for name, args in {"ed0": ["-t", "ed25519"], "ed1": ["-t", "ed25519"], "ed2": ["-t", "ed25519"],
                       "ca": ["-t", "ed25519"], "p256": ["-t", "ecdsa"], "p384": ["-t", "ecdsa", "-b", "384"],
                       "p521": ["-t", "ecdsa", "-b", "521"], "rsa": ["-t", "rsa", "-b", "2048"],
                       "dsa": ["-t", "dsa"]}.items():
        keygen("-q", "-N", "", "-C", f"key {name}", "-f", str(d / name), *args)
        out[name] = (d / f"{name}.pub").read_text().strip()
    keygen("-q", "-s", str(d / "ca"), "-I", "web1", "-h", "-n", "web1.example.com", str(d / "ed0.pub"))
    out["cert"] = (d / "ed0-cert.pub").read_text().strip()
    return out


def known_hosts(p: dict[str, str]) -> str:
    return f"""# automation host
jump.example.com,10.0.0.1 {p["ed0"]}
[10.0.0.5]:2222 {p["ed1"]}
*.example.com,!bad.example.com {p["p256"]}
web?.example.com {p["rsa"]}
@cert-authority *.example.com {p["ca"]}
@revoked * {p["ed2"]}

db.example.com {p["ed1"]}
[db.example.com]:2200 {p["ed0"]}
\tUpper.Example.COM {p["ed0"]}
*.internal,!secret.internal {p["p384"]}
!*.example.com,10.0.0.* {p["p521"]}
[db.example.com]:220? {p["dsa"]}
db.example.com {p["cert"]}
"""


def found(path: Path, name: str) -> list[int]:
    """The line numbers `ssh-keygen -F name -f path` reports."""
    out = keygen("-F", name, "-f", str(path), check=False).stdout
    return [int(n) for n in re.findall(r"^# Host .* found: line (\d+)", out, re.M)]


@pytest.fixture(scope="module")
def files(pubs, tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("kh")
    plain = d / "plain"
    plain.write_text(known_hosts(pubs))
    hashed = d / "hashed"
    shutil.copy(plain, hashed)
    keygen("-H", "-f", str(hashed))
    with_bad = d / "with_bad"
    with_bad.write_text(known_hosts(pubs) + f"@trusted x {pubs['ed0']}\n|1|AAAA|x= {pubs['ed0']}\n")
    return {"plain": plain, "hashed": hashed, "with_bad": with_bad}


def test_hashing_made_hashed_lines(files):
    known = parse.parse(files["hashed"].read_bytes())
    assert sum(line.hashed for line in known.key_lines) >= 6
    assert not known.bad_lines


@pytest.mark.parametrize("which", ["plain", "hashed", "with_bad"])
def test_ssh_keygen_F_finds_the_lines_our_matcher_finds(files, which):
    known = parse.parse(files[which].read_bytes())
    disagreements = []
    for name in NAMES:
        ours = [line.number for line in match.lines_for(known, name)]
        theirs = found(files[which], name)
        if ours != theirs:
            disagreements.append((name, ours, theirs))
    assert disagreements == []
    # the file really exercises the matcher: most names hit something, some hit several lines
    hits = [len(match.lines_for(known, name)) for name in NAMES]
    assert sum(h > 0 for h in hits) >= 12 and max(hits) >= 4
    if which == "with_bad":
        assert [b.number for b in known.bad_lines] == [16, 17]


@pytest.mark.parametrize("which", ["plain", "hashed"])
def test_ssh_keygen_lf_prints_our_fingerprints(files, which):
    out = keygen("-lf", str(files[which])).stdout
    theirs = re.findall(r"^\d+ (SHA256:\S+) ", out, re.M)
    known = parse.parse(files[which].read_bytes())
    ours = [keys.key_fingerprint(line.key) for line in known.key_lines if line.marker == ""]
    assert ours == theirs and len(ours) >= 10


def test_ssh_keygen_lf_fingerprints_of_each_key_and_certificate(pubs, tmp_path):
    for name, text in pubs.items():
        path = tmp_path / f"{name}.pub"
        path.write_text(text + "\n")
        theirs = keygen("-lf", str(path)).stdout.split()[1]
        ours = keys.key_fingerprint(parse.parse(f"h {text}").key_lines[0].key)
        assert ours == theirs, name


def _removed_by_us(data: bytes, name: str) -> bytes:
    known = parse.parse(data)
    # known_hosts_find_delete removes matching lines without a marker, keeps CA and revocation lines
    drop = [line.number for line in match.lines_for(known, name) if line.marker == ""]
    return rewrite.remove_lines(data, drop)


@pytest.mark.parametrize("which", ["plain", "hashed"])
def test_ssh_keygen_R_leaves_the_bytes_our_rewrite_returns(files, which, tmp_path):
    data = files[which].read_bytes()
    for name in NAMES[:12]:
        copy = tmp_path / "known_hosts"
        copy.write_bytes(data)
        keygen("-R", name, "-f", str(copy))
        assert copy.read_bytes() == _removed_by_us(data, name), name
        old = tmp_path / "known_hosts.old"
        if old.exists():
            assert old.read_bytes() == data
            old.unlink()


def test_ssh_keygen_R_on_crlf_and_on_a_last_line_without_newline(pubs, tmp_path):
    crlf = f"# c\r\nh1 {pubs['ed0']}\r\nh2 {pubs['ed1']}\r\nh1 {pubs['p256']}\r\n".encode()
    path = tmp_path / "crlf"
    path.write_bytes(crlf)
    keygen("-R", "h1", "-f", str(path))
    assert path.read_bytes() == _removed_by_us(crlf, "h1") == f"# c\r\nh2 {pubs['ed1']}\r\n".encode()
    # ssh-keygen writes every kept line with "\n": the one byte our rewrite keeps out on purpose
    bare = f"h1 {pubs['ed0']}\nh2 {pubs['ed1']}".encode()
    path.write_bytes(bare)
    keygen("-R", "h1", "-f", str(path))
    assert path.read_bytes() == _removed_by_us(bare, "h1") + b"\n"


def test_a_blank_crlf_line_is_invalid_to_ssh_keygen_and_to_us(pubs, tmp_path):
    data = f"h1 {pubs['ed0']}\r\n\r\nh2 {pubs['ed1']}\r\n".encode()
    path = tmp_path / "crlf"
    path.write_bytes(data)
    result = keygen("-R", "h1", "-f", str(path), check=False)
    assert result.returncode == 1 and "not a valid known_hosts file" in result.stderr
    assert path.read_bytes() == data
    assert [b.number for b in parse.parse(data).bad_lines] == [2]
