"""`make oci` (deploy/oci/build-oci.sh): the image is reproducible, is in a format Istio's
Wasm image fetcher accepts, and comes back from a real registry (Debian's docker-registry,
the reference distribution registry) with the same digest and module bytes."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUILD = REPO / "deploy" / "oci" / "build-oci.sh"
WASM = REPO / "target" / "wasm32-wasip1" / "release" / "mcp_trace.wasm"

# What istio/istio pkg/wasm/imagefetcher.go takes as a "compat" Wasm image, the format
# build-oci.sh writes: PrepareFetch passes a non-Docker manifest to extractOCIStandardImage,
# which wants the last layer to be OCI_LAYER, and extractWasmPluginBinary returns the tar
# entry whose base name is plugin.wasm.
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
# istio pkg/config/validation/validation.go, validateWasmPluginSHA.
WASMPLUGIN_SHA256 = re.compile(r"[a-f0-9]{64}")

MISSING = [tool for tool in ("umoci", "skopeo", "docker-registry") if shutil.which(tool) is None]
if MISSING:  # not a skip: a skipped test would hide a broken setup
    pytest.fail(f"{', '.join(MISSING)} not installed: `make setup` installs them", pytrace=False)

SKOPEO = ["skopeo", "--insecure-policy"]  # the host's signature policy is not under test


@dataclass
class Built:
    module: bytes  # the .wasm the image was built from
    layout: Path
    env: dict[str, str]  # wasmplugin.env


def build(wasm: Path, out: Path) -> dict[str, str]:
    subprocess.run([BUILD, wasm, out], check=True)
    lines = (out / "wasmplugin.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def read_image(layout: Path) -> tuple[str, dict, bytes]:
    """(manifest digest, manifest, plugin.wasm) of the one image in an OCI layout."""
    blobs = layout / "blobs" / "sha256"
    [entry] = json.loads((layout / "index.json").read_text())["manifests"]
    raw = (blobs / entry["digest"].removeprefix("sha256:")).read_bytes()
    assert entry["digest"] == "sha256:" + hashlib.sha256(raw).hexdigest()
    manifest = json.loads(raw)
    # GNU tar, not Python's lenient tarfile, so that an unterminated archive (what Debian's
    # umoci 0.4.7 `insert` writes) fails here.
    layer = blobs / manifest["layers"][-1]["digest"].removeprefix("sha256:")
    names = subprocess.run(["tar", "-tzf", layer], check=True, capture_output=True, text=True).stdout
    assert names.split() == ["plugin.wasm"]
    module = subprocess.run(["tar", "-xzOf", layer, "plugin.wasm"], check=True, capture_output=True).stdout
    return entry["digest"], manifest, module


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Built:
    if not WASM.exists():
        pytest.fail(f"{WASM} is missing: run `make build` (make test does it)", pytrace=False)
    tmp = tmp_path_factory.mktemp("oci")
    # A copy, so that a rebuild of target/ during the run cannot change the bytes under test.
    src = tmp / "mcp_trace.wasm"
    shutil.copyfile(WASM, src)
    return Built(module=src.read_bytes(), layout=tmp / "out" / "image", env=build(src, tmp / "out"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """host:port of Debian's docker-registry, on a free loopback port with temp storage."""
    tmp = tmp_path_factory.mktemp("registry")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Our own config: the package's /etc/docker/registry/config.yml listens on every
    # interface (:5000) and requires htpasswd auth. JSON is YAML.
    config = tmp / "config.yml"
    config.write_text(json.dumps({
        "version": "0.1",
        "log": {"level": "warn", "accesslog": {"disabled": True}},
        "storage": {"filesystem": {"rootdirectory": str(tmp / "storage")}},
        "http": {"addr": f"127.0.0.1:{port}"},
    }))
    log_path = tmp / "registry.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(["docker-registry", "serve", config], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/v2/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"docker-registry did not come up:\n{log_path.read_text()}", pytrace=False)
                time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_rebuild_gives_the_same_digest(image, tmp_path):
    # Same bytes, but the file's mtime and mode of another checkout: neither may leak in.
    src = tmp_path / "mcp_trace.wasm"
    src.write_bytes(image.module)
    src.chmod(0o600)
    os.utime(src, (1e9, 1e9))
    assert build(src, tmp_path / "again") == image.env


def test_image_is_in_a_format_istio_accepts(image):
    digest, manifest, module = read_image(image.layout)
    # mediaType is optional in the manifest body (image-spec 1.0) and umoci leaves it out;
    # Istio only needs it not to be Docker's.
    assert manifest.get("mediaType", OCI_MANIFEST) == OCI_MANIFEST
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER]
    assert module == image.module
    assert image.env["IMAGE_DIGEST"] == digest
    assert image.env["MODULE_SHA256"] == hashlib.sha256(module).hexdigest()
    # For an oci:// url, Istio compares WasmPlugin.sha256 with the manifest digest
    # (pkg/wasm/cache.go getOrFetch, from ImageFetcher.PrepareFetch), not the module's.
    assert WASMPLUGIN_SHA256.fullmatch(image.env["WASMPLUGIN_SHA256"])
    assert image.env["IMAGE_DIGEST"] == "sha256:" + image.env["WASMPLUGIN_SHA256"]


def test_registry_round_trip(image, registry, tmp_path):
    tag = image.env["IMAGE_TAG"]
    ref = f"{registry}/mcp-trace:{tag}"
    subprocess.run([*SKOPEO, "copy", "--dest-tls-verify=false", f"oci:{image.layout}:{tag}", f"docker://{ref}"],
                   check=True)

    # The manifest as Istio's fetcher gets it: its digest is what WasmPlugin.sha256 must equal.
    req = urllib.request.Request(f"http://{registry}/v2/mcp-trace/manifests/{tag}", headers={"Accept": OCI_MANIFEST})
    with urllib.request.urlopen(req, timeout=10) as resp:
        served = resp.read()
        assert resp.headers["Content-Type"] == OCI_MANIFEST
        assert resp.headers["Docker-Content-Digest"] == image.env["IMAGE_DIGEST"]
    assert hashlib.sha256(served).hexdigest() == image.env["WASMPLUGIN_SHA256"]

    pulled = tmp_path / "pulled"
    subprocess.run([*SKOPEO, "copy", "--src-tls-verify=false", f"docker://{ref}", f"oci:{pulled}:{tag}"], check=True)
    digest, manifest, module = read_image(pulled)
    assert digest == image.env["IMAGE_DIGEST"]
    assert [layer["mediaType"] for layer in manifest["layers"]] == [OCI_LAYER]
    assert module == image.module
