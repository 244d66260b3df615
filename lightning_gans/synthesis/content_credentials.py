"""Signed C2PA Content Credentials on every generated image (c2pa-python), and reading them back.

A manifest holds the `c2pa.actions` assertion (c2pa.created, digitalSourceType =
IPTC trainedAlgorithmicMedia) and our own `lightning_gans.provenance` assertion (model kind,
checkpoint sha256, seed / latent, truncation, tool version, watermark state). It is signed with
the user's key + certificate chain (--sign-key/--sign-cert, or LG_SIGN_KEY/LG_SIGN_CERT), else
with a per-installation *test* certificate made once under $LG_CACHE_DIR/c2pa: a small local CA
and an ES256 leaf (C2PA wants an end-entity certificate with an allowed EKU, not a self-signed
root). A test-certificate manifest is cryptographically bound to the pixels but says nothing
about who made it: no trust list knows that CA. No timestamp authority is contacted (offline).
"""

from __future__ import annotations

import datetime
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import ConfigError

SOURCE_TYPE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"
ASSERTION = "lightning_gans.provenance"
TEST_CERT_CN = "lightning-gans TEST certificate (self-issued, not trusted)"
MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif", ".mp4": "video/mp4"}


@dataclass
class SigningConfig:
    """What signs outputs: PEM key/cert paths (None: the installation's test certificate)."""

    key: Path | None = None
    cert: Path | None = None
    watermark: bool = True

    @property
    def is_test(self) -> bool:
        return self.key is None


_CONFIG = SigningConfig()


def configure(key: str | os.PathLike | None = None, cert: str | os.PathLike | None = None,
              watermark: bool = True) -> SigningConfig:
    """Set how this process signs and watermarks outputs (the synthesis commands call this)."""
    global _CONFIG
    key = key or os.environ.get("LG_SIGN_KEY") or None
    cert = cert or os.environ.get("LG_SIGN_CERT") or None
    if (key is None) != (cert is None):
        raise ConfigError("--sign-key and --sign-cert (or LG_SIGN_KEY/LG_SIGN_CERT) go together; give both")
    for what, p in (("--sign-key", key), ("--sign-cert", cert)):
        if p is not None and not Path(p).is_file():
            raise ConfigError(f"{what} {p} is not a file; give a PEM file")
    _CONFIG = SigningConfig(Path(key) if key else None, Path(cert) if cert else None, watermark)
    return _CONFIG


def current() -> SigningConfig:
    return _CONFIG


def cache_dir() -> Path:
    return Path(os.environ.get("LG_CACHE_DIR") or Path.home() / ".cache" / "lightning_gans") / "c2pa"


def test_credentials() -> tuple[bytes, bytes]:
    """(private key PEM, leaf + CA chain PEM) of this installation's test certificate, made once."""
    # key and chain in one file, replaced atomically: two processes creating it at once cannot
    # leave a key of one with the certificate of the other
    path = cache_dir() / "test_signer.pem"
    if path.is_file():
        text = path.read_bytes()
        cut = text.index(b"-----BEGIN CERTIFICATE-----")
        return text[:cut], text[cut:]
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key, leaf_key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                          x509.NameAttribute(NameOID.ORGANIZATION_NAME, "lightning-gans local test CA")])

    ca_name = name("lightning-gans local TEST CA")
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(days=1))
          .not_valid_after(now + datetime.timedelta(days=3650))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    leaf = (x509.CertificateBuilder().subject_name(name(TEST_CERT_CN)).issuer_name(ca_name)
            .public_key(leaf_key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1)).not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.EMAIL_PROTECTION]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    key_pem = leaf_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                     serialization.NoEncryption())
    chain = leaf.public_bytes(serialization.Encoding.PEM) + ca.public_bytes(serialization.Encoding.PEM)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.touch(mode=0o600)
    tmp.write_bytes(key_pem + chain)
    os.replace(tmp, path)
    return key_pem, chain


def _signer(cfg: SigningConfig):
    import c2pa
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    if cfg.is_test:
        key_pem, chain = test_credentials()
    else:
        key_pem, chain = cfg.key.read_bytes(), cfg.cert.read_bytes()
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as e:
        raise ConfigError(f"--sign-key {cfg.key}: not an unencrypted PEM private key ({e})") from None
    if isinstance(key, ec.EllipticCurvePrivateKey):
        alg = {256: c2pa.C2paSigningAlg.ES256, 384: c2pa.C2paSigningAlg.ES384,
               521: c2pa.C2paSigningAlg.ES512}[key.curve.key_size]
    elif isinstance(key, rsa.RSAPrivateKey):
        alg = c2pa.C2paSigningAlg.PS256
    else:
        raise ConfigError(f"--sign-key {cfg.key}: use an EC (P-256/384/521) or RSA key")
    return c2pa.Signer.from_info(c2pa.C2paSignerInfo(alg, chain, key_pem, None))


def manifest_definition(meta: dict[str, str], cfg: SigningConfig) -> dict:
    """The manifest: c2pa.actions (created, trainedAlgorithmicMedia) + our provenance fields."""
    fields = dict(meta)
    fields["signing_certificate"] = "test (per-installation, untrusted)" if cfg.is_test else "user-supplied"
    return {
        "claim_generator_info": [{"name": "lightning-gans", "version": __version__}],
        "title": meta.get("file", "lightning-gans output"),
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{
                "action": "c2pa.created", "digitalSourceType": SOURCE_TYPE,
                "softwareAgent": {"name": "lightning-gans", "version": __version__},
                "parameters": {k: fields[k] for k in ("model_kind", "checkpoint_sha256", "seed", "latent_file",
                                                      "truncation_psi") if k in fields},
            }]}},
            {"label": ASSERTION, "data": fields},
        ],
    }


def sign_file(path: str | os.PathLike, meta: dict[str, str], cfg: SigningConfig | None = None) -> None:
    """Embed a signed manifest into the PNG/JPEG/mp4 at `path` (rewritten atomically)."""
    import c2pa

    cfg = cfg or _CONFIG
    path = Path(path)
    mime = MIME[path.suffix.lower()]
    signer = _signer(cfg)
    try:
        builder = c2pa.Builder(manifest_definition(meta, cfg))
        src, out = io.BytesIO(path.read_bytes()), io.BytesIO()
        builder.sign(signer, mime, src, out)
    except c2pa.C2paError as e:
        raise ConfigError(f"C2PA signing of {path} failed ({e}); check --sign-key/--sign-cert "
                          "(an end-entity certificate chain with an EKU C2PA accepts)") from None
    finally:
        signer.close()
    tmp = path.with_name(f".{path.name}.c2pa{os.getpid()}")
    tmp.write_bytes(out.getvalue())
    os.replace(tmp, path)


def read(path: str | os.PathLike) -> dict:
    """{"present", "valid", "signer", "state", "errors", "assertion"} of a file's C2PA manifest."""
    import c2pa

    path = Path(path)
    out = {"present": False, "valid": False, "signer": None, "state": None, "errors": [], "assertion": None}
    mime = MIME.get(path.suffix.lower())
    if mime is None:
        return out
    try:
        with open(path, "rb") as f, c2pa.Reader(mime, f) as reader:
            store = json.loads(reader.json())
            state = reader.get_validation_state()
    except c2pa.C2paError:
        return out  # no manifest (or none we can parse)
    active = store.get("manifests", {}).get(store.get("active_manifest") or "", {})
    out["present"] = bool(active)
    out["state"] = state
    statuses = store.get("validation_results", {}).get("activeManifest", {}).get("failure", [])
    out["errors"] = [s.get("code", "") for s in statuses]
    # Untrusted (test / unknown CA) certificates are expected; any other failure means tampering.
    out["valid"] = out["present"] and all(c.startswith("signingCredential.untrusted") for c in out["errors"])
    sig = active.get("signature_info") or {}
    out["signer"] = sig.get("common_name") or sig.get("issuer")
    for a in active.get("assertions", []):
        if a.get("label") == ASSERTION:
            out["assertion"] = a.get("data")
    return out
