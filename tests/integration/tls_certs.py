"""Certificates for the TLS tests, made at test time with the openssl CLI.

Pki.create(directory) writes one small PKI (every file PEM, every path absolute):

- `ca`: the server CA (ECDSA P-256). Leaves signed by it, each with its own P-256 key:
  - `localhost`: DNS:localhost, IP:127.0.0.1 (the listeners' default certificate);
  - `a_test`: DNS:a.test; `wildcard_b`: DNS:*.b.test (SNI picks them);
  - `rsa`: an RSA 2048 leaf for DNS:rsa.test;
  - `backend`: DNS:backend.test (a TLS backend, verified by wsgate with `sni`).
- `client_ca` (ECDSA P-256) and `client`, a client certificate (CN wsgate-test-client,
  extendedKeyUsage clientAuth) signed by it.
- `wrong_ca`: a CA that signed none of the above.

A Leaf has `.cert` (the certificate; its chain is the leaf alone, the CA being the trust
anchor) and `.key`. One PKI per test session (session_pki): EC keys take milliseconds, the
RSA one longer.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

DAYS = "30"


@dataclass(frozen=True)
class Leaf:
    cert: str
    key: str

    def listener_entry(self) -> dict:
        """A listener `tls.certificates` entry."""
        return {"cert": self.cert, "key": self.key}


@dataclass(frozen=True)
class Pki:
    directory: Path
    ca: str
    ca_key: str
    localhost: Leaf
    a_test: Leaf
    wildcard_b: Leaf
    rsa: Leaf
    backend: Leaf
    client_ca: str
    client: Leaf
    wrong_ca: str

    @classmethod
    def create(cls, directory: Path) -> "Pki":
        d = Path(directory).resolve()
        d.mkdir(parents=True, exist_ok=True)
        ca, ca_key = _make_ca(d, "ca", "wsgate test CA")
        client_ca, client_ca_key = _make_ca(d, "client-ca", "wsgate test client CA")
        wrong_ca, _ = _make_ca(d, "wrong-ca", "wsgate test wrong CA")

        def server(name: str, cn: str, sans: List[str], rsa: bool = False) -> Leaf:
            return _make_leaf(d, name, cn, ca, ca_key, sans=sans, rsa=rsa,
                              usage="serverAuth")

        return cls(
            directory=d, ca=ca, ca_key=ca_key,
            localhost=server("localhost", "localhost", ["DNS:localhost", "IP:127.0.0.1"]),
            a_test=server("a-test", "a.test", ["DNS:a.test"]),
            wildcard_b=server("wildcard-b", "*.b.test", ["DNS:*.b.test"]),
            rsa=server("rsa", "rsa.test", ["DNS:rsa.test"], rsa=True),
            backend=server("backend", "backend.test", ["DNS:backend.test"]),
            client_ca=client_ca,
            client=_make_leaf(d, "client", "wsgate-test-client", client_ca, client_ca_key,
                              sans=None, usage="clientAuth"),
            wrong_ca=wrong_ca,
        )


_SESSION_PKI: Optional[Pki] = None


def session_pki(tmp_path_factory) -> Pki:
    """The test session's PKI, made on first use under pytest's tmp_path_factory."""
    global _SESSION_PKI
    if _SESSION_PKI is None:
        _SESSION_PKI = Pki.create(tmp_path_factory.mktemp("pki"))
    return _SESSION_PKI


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True,
                            timeout=60)
    if result.returncode != 0:
        raise AssertionError(f"openssl {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stderr}")


def _ec_key(d: Path, path: Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-out", str(path), cwd=d)


def _make_ca(d: Path, name: str, cn: str):
    key, cert = d / f"{name}.key", d / f"{name}.pem"
    _ec_key(d, key)
    _openssl("req", "-x509", "-new", "-key", str(key), "-out", str(cert), "-days", DAYS,
             "-subj", f"/CN={cn}", "-sha256",
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign",
             "-addext", "subjectKeyIdentifier=hash", cwd=d)
    return str(cert), str(key)


def _make_leaf(d: Path, name: str, cn: str, ca: str, ca_key: str, *,
               sans: Optional[List[str]], usage: str, rsa: bool = False) -> Leaf:
    key, csr, cert, ext = (d / f"{name}.key", d / f"{name}.csr", d / f"{name}.pem",
                           d / f"{name}.ext")
    if rsa:
        _openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048",
                 "-out", str(key), cwd=d)
    else:
        _ec_key(d, key)
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", f"/CN={cn}", cwd=d)
    lines = ["basicConstraints=critical,CA:FALSE",
             "keyUsage=critical,digitalSignature" + (",keyEncipherment" if rsa else ""),
             f"extendedKeyUsage={usage}",
             "authorityKeyIdentifier=keyid",
             "subjectKeyIdentifier=hash"]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
             "-out", str(cert), "-days", DAYS, "-sha256", "-extfile", str(ext), cwd=d)
    return Leaf(str(cert), str(key))
