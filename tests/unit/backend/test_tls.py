"""TLS to the backend (R18): CA pinning by bundle, mutual TLS with a client certificate.

A real TLS server on loopback, certificates made in the test. A failed handshake means the
request was never sent (BackendNotSent); a completed one reaches the server.
"""

from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from misbridge.backend.client import BackendClient
from misbridge.config.secrets import TLS_CLIENT_KEY_CREDENTIAL
from misbridge.config.settings import BackendSettings, IdentitySettings
from misbridge.errors import BackendNotSent, BackendOutcomeUnknown, ConfigError

NOW = datetime.datetime.now(datetime.UTC)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _issue(
    subject: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    *,
    ca: bool = False,
    host: str | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    issuer_name, issuer_key = issuer if issuer else (_name(subject), key)
    builder = (
        x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(NOW - datetime.timedelta(minutes=5)).not_valid_after(NOW + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )  # fmt: skip
    if host:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256()), key


def _write(path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey | None = None) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if key is not None:
        path.with_suffix(".key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
        )
    return path


class Pki:
    """A CA with a server certificate for localhost and a client certificate."""

    def __init__(self, tmp: Path, name: str = "ca") -> None:
        ca_cert, ca_key = _issue(f"misbridge test {name}", None, ca=True)
        self.ca = _write(tmp / f"{name}.pem", ca_cert)
        server_cert, server_key = _issue("localhost", (ca_cert.subject, ca_key), host="localhost")
        self.server = _write(tmp / f"{name}-server.pem", server_cert, server_key)
        client_cert, client_key = _issue("misbridge-test-client", (ca_cert.subject, ca_key))
        self.client = _write(tmp / f"{name}-client.pem", client_cert, client_key)


@asynccontextmanager
async def tls_server(pki: Pki, *, require_client_cert: bool) -> AsyncIterator[tuple[int, list[str]]]:
    """A TLS server on localhost answering any request with a non-e-Buy 200; yields (port, client CNs)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server, pki.server.with_suffix(".key"))
    if require_client_cert:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(pki.ca)
    seen: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peercert") or {}
        seen.extend(value for rdn in peer.get("subject", ()) for key, value in rdn if key == "commonName")
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-type: text/plain\r\n\r\nok")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1], seen
    finally:
        server.close()
        await server.wait_closed()


def _client(port: int, **tls: Path | None) -> BackendClient:
    settings = BackendSettings(
        url=f"https://localhost:{port}/ebuyweb-posp/api",
        connect_timeout_s=2,
        read_timeout_s=2,
        request_deadline_s=4,
        signing={"enabled": False},
        **tls,
    )
    return BackendClient(settings, IdentitySettings(), None)


BODY = {"traceNo": "TLS0001"}


async def test_mutual_tls_presents_the_client_certificate(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    async with tls_server(pki, require_client_cert=True) as (port, seen):
        client = _client(port, ca_bundle=pki.ca, client_cert=pki.client, client_key_file=pki.client.with_suffix(".key"))
        try:
            # The handshake succeeds and the request reaches the server; its reply is no e-Buy reply.
            with pytest.raises(BackendOutcomeUnknown):
                await client.submit("cardRedemption", BODY)
        finally:
            await client.aclose()
    assert seen == ["misbridge-test-client"]


async def test_key_from_the_systemd_credential(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pki = Pki(tmp_path)
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / TLS_CLIENT_KEY_CREDENTIAL).write_bytes(pki.client.with_suffix(".key").read_bytes())
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(credentials))
    async with tls_server(pki, require_client_cert=True) as (port, seen):
        client = _client(port, ca_bundle=pki.ca, client_cert=pki.client)
        try:
            with pytest.raises(BackendOutcomeUnknown):
                await client.submit("cardRedemption", BODY)
        finally:
            await client.aclose()
    assert seen == ["misbridge-test-client"]


async def test_without_the_client_certificate_nothing_is_sent(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    async with tls_server(pki, require_client_cert=True) as (port, seen):
        client = _client(port, ca_bundle=pki.ca)
        try:
            with pytest.raises((BackendNotSent, BackendOutcomeUnknown)):
                await client.submit("cardRedemption", BODY)
        finally:
            await client.aclose()
    assert seen == []


async def test_a_server_from_another_ca_is_refused_before_sending(tmp_path: Path) -> None:
    trusted, other = Pki(tmp_path, "trusted"), Pki(tmp_path, "other")
    async with tls_server(other, require_client_cert=False) as (port, _):
        client = _client(port, ca_bundle=trusted.ca)
        try:
            with pytest.raises(BackendNotSent):
                await client.submit("cardRedemption", BODY)
        finally:
            await client.aclose()


async def test_a_probe_goes_through_the_same_tls_a_trusted_server_answers_another_ca_does_not(
    tmp_path: Path,
) -> None:
    trusted, other = Pki(tmp_path, "trusted"), Pki(tmp_path, "other")
    async with tls_server(trusted, require_client_cert=False) as (good_port, _):
        good = _client(good_port, ca_bundle=trusted.ca)
        try:
            answered = await good.probe()
        finally:
            await good.aclose()
    async with tls_server(other, require_client_cert=False) as (bad_port, _):
        bad = _client(bad_port, ca_bundle=trusted.ca)
        try:
            refused = await bad.probe()
            error = bad.last_error
        finally:
            await bad.aclose()
    assert answered
    assert not refused
    assert error == "probe: ConnectError"


def test_unreadable_client_certificate_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="client_cert"):
        _client(443, client_cert=tmp_path / "missing.pem")


def test_a_plain_http_backend_gets_a_context_that_trusts_nothing() -> None:
    # httpx builds a TLS context even for http://; ours skips loading a CA bundle there and,
    # should TLS ever be attempted on that client, fails closed.
    plain = BackendClient._tls_context(BackendSettings(url="http://127.0.0.1:8080/ebuyweb-posp/api"), None)
    assert isinstance(plain, ssl.SSLContext)
    assert plain.verify_mode == ssl.CERT_REQUIRED
    assert plain.check_hostname
    assert plain.get_ca_certs() == []
    assert plain.cert_store_stats()["x509_ca"] == 0


def test_https_and_http_with_tls_settings_get_the_full_context(tmp_path: Path) -> None:
    pki = Pki(tmp_path)
    for url in ("https://backend.example/ebuyweb-posp/api", "http://backend.example/ebuyweb-posp/api"):
        context = BackendClient._tls_context(BackendSettings(url=url, ca_bundle=pki.ca), None)
        assert isinstance(context, ssl.SSLContext)
        assert context.minimum_version == ssl.TLSVersion.TLSv1_2
        assert context.cert_store_stats()["x509_ca"] == 1
