"""Test-time certificates for wss:// (ECDSA P-256): a CA, leaves it signs,
PEM files in a directory, and client `ssl.SSLContext`s that trust the CA.

Uses `cryptography` (pinned in tests/requirements.txt). The leaves the TLS
tests serve (`standard_set`):

| name      | SANs                                  | role                        |
| --------- | ------------------------------------- | --------------------------- |
| `default` | DNS `localhost`, IP `127.0.0.1`       | first pair: no/unknown SNI  |
| `a`       | DNS `a.test`                          | SNI `a.test` (exact name)   |
| `wild`    | DNS `*.b.test`                        | SNI `x.b.test` (wildcard)   |

Every certificate carries its own random serial, so two leaves issued for
the same names (a reload) still have different fingerprints.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate, hex."""
    return hashlib.sha256(der).hexdigest()


@dataclass
class Leaf:
    """One issued certificate and its key, as PEM files."""

    name: str
    cert_path: Path
    key_path: Path
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def fingerprint(self) -> str:
        return fingerprint(self.der)

    @property
    def spki_sha256_b64(self) -> str:
        """base64(SHA-256(SubjectPublicKeyInfo)): Chromium's
        `--ignore-certificate-errors-spki-list` format."""
        spki = self.cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(hashlib.sha256(spki).digest()).decode()

    def args(self) -> list[str]:
        """`--tls-cert CHAIN --tls-key KEY` for ringfan."""
        return ["--tls-cert", str(self.cert_path), "--tls-key", str(self.key_path)]


class TestCA:
    """A self-signed ECDSA P-256 CA that issues server leaves into `directory`."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, directory: Path, common_name: str = "ringfan test CA"):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
        now = _now()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()),
                           critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.cert_pem = self.cert.public_bytes(serialization.Encoding.PEM)
        self.cert_path = self.dir / "ca.pem"
        self.cert_path.write_bytes(self.cert_pem)

    def issue(self, names: list[str], ips: list[str] = (), common_name: str | None = None
              ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        key = ec.generate_private_key(ec.SECP256R1())
        sans: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
        sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
        cn = common_name or (names[0] if names else ips[0])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(digital_signature=True, key_cert_sign=False, crl_sign=False,
                              content_commitment=False, key_encipherment=False,
                              data_encipherment=False, key_agreement=False,
                              encipher_only=False, decipher_only=False),
                critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        return cert, key

    def write_leaf(self, name: str, names: list[str], ips: list[str] = ()) -> Leaf:
        """Issue a leaf and write `NAME.pem` (the chain: leaf only, the CA
        being the client's trust anchor) and `NAME.key` (PKCS#8). Writing
        the same name again replaces the files in place (a reload)."""
        cert, key = self.issue(names, ips)
        leaf = Leaf(name, self.dir / f"{name}.pem", self.dir / f"{name}.key", cert, key)
        rewrite(leaf, cert, key)
        return leaf

    def client_context(self, *, alpn: list[str] | None = ("http/1.1",),
                       max_version: ssl.TLSVersion | None = None,
                       check_hostname: bool = True) -> ssl.SSLContext:
        """A client context that trusts this CA (and nothing else)."""
        return client_context(self.cert_path, alpn=alpn, max_version=max_version,
                              check_hostname=check_hostname)


def rewrite(leaf: Leaf, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    """Replace a leaf's files (and its in-memory certificate) with `cert`/`key`.
    Each file is written to a temporary name and renamed into place, so a
    reader never sees half a file."""
    for path, data in ((leaf.cert_path, cert.public_bytes(serialization.Encoding.PEM)),
                       (leaf.key_path, _key_pem(key))):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(path)
    leaf.cert, leaf.key = cert, key


def client_context(cafile: Path, *, alpn: list[str] | None = ("http/1.1",),
                   max_version: ssl.TLSVersion | None = None,
                   check_hostname: bool = True) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=str(cafile))
    ctx.check_hostname = check_hostname
    if alpn:
        ctx.set_alpn_protocols(list(alpn))
    if max_version is not None:
        ctx.maximum_version = max_version
    return ctx


@dataclass
class CertSet:
    """The CA and the three leaves the TLS tests serve (see the module doc)."""

    ca: TestCA
    default: Leaf
    a: Leaf
    wild: Leaf

    def args(self) -> list[str]:
        """ringfan's certificate flags: `default` first (the default)."""
        return [*self.default.args(), *self.a.args(), *self.wild.args()]

    def context(self, **kw) -> ssl.SSLContext:
        return self.ca.client_context(**kw)

    def by_fingerprint(self, der: bytes) -> str | None:
        """Which of the leaves (by name) `der` is, if any."""
        fp = fingerprint(der)
        for leaf in (self.default, self.a, self.wild):
            if leaf.fingerprint == fp:
                return leaf.name
        return None


def standard_set(directory: Path) -> CertSet:
    ca = TestCA(directory)
    return CertSet(
        ca=ca,
        default=ca.write_leaf("default", ["localhost"], ["127.0.0.1"]),
        a=ca.write_leaf("a", ["a.test"]),
        wild=ca.write_leaf("wild", ["*.b.test"]),
    )
