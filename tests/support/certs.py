"""Throwaway TLS material for webhook tests: a CA and a server certificate it signed, made with the openssl CLI.

A real API server trusts a webhook only through the `caBundle` of its configuration and checks the server name, so
tests need both a CA and a leaf certificate with the right subjectAltNames, not one self-signed certificate.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class ServingCertificate:
    ca_file: Path
    cert_file: Path
    key_file: Path

    @property
    def ca_bundle(self) -> str:
        """The CA as a webhook configuration's `caBundle` carries it: base64 of the PEM."""
        return base64.b64encode(self.ca_file.read_bytes()).decode()


def serving_certificate(
    directory: Path, *, names: tuple[str, ...] = ("localhost",), ips: tuple[str, ...] = ("127.0.0.1",)
) -> ServingCertificate:
    """A new CA and a server certificate for `names` and `ips`, valid for a day, in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, request, cert = directory / "tls.key", directory / "tls.csr", directory / "tls.crt"
    _openssl(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", ca_key, "-out", ca_cert, "-days", "1", "-subj", "/CN=slo-guard test CA",
        "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    )  # fmt: skip
    _openssl(
        "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", key, "-out", request, "-subj", f"/CN={names[0]}",
    )  # fmt: skip
    alt_names = ",".join([*(f"DNS:{name}" for name in names), *(f"IP:{ip}" for ip in ips)])
    extensions = directory / "tls.ext"
    extensions.write_text(
        f"subjectAltName={alt_names}\nextendedKeyUsage=serverAuth\nbasicConstraints=critical,CA:FALSE\n",
        encoding="utf-8",
    )
    _openssl(
        "x509", "-req", "-in", request, "-CA", ca_cert, "-CAkey", ca_key, "-CAcreateserial",
        "-out", cert, "-days", "1", "-extfile", extensions,
    )  # fmt: skip
    return ServingCertificate(ca_cert, cert, key)


def _openssl(*args: str | Path) -> None:
    subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
