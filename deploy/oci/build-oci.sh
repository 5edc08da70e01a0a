#!/usr/bin/env bash
# Package the filter's .wasm as an OCI image that Istio's WasmPlugin (and Envoy Gateway,
# whose fetcher is derived from Istio's) can pull from a registry.
#
#   deploy/oci/build-oci.sh [WASM] [OUT]
#     WASM  default target/wasm32-wasip1/release/mcp_trace.wasm (built if missing)
#     OUT   default target/oci; writes OUT/image (OCI image layout, tagged with the crate
#           version) and OUT/wasmplugin.env (the digests a WasmPlugin needs)
#
# Format: the "compat" Wasm image, one tar+gzip layer holding plugin.wasm, which Istio's
# pkg/wasm/imagefetcher.go reads in extractOCIStandardImage and which any registry stores.
# Not its other format, the artifact with an application/vnd.module.wasm.content.layer.v1+wasm
# layer (plus exactly one more): Debian's umoci, skopeo and buildah cannot write custom layer
# media types, and PyPI's oras can only push them to a registry, not build them locally.
#
# Reproducible: same .wasm, same image digest. Every timestamp is SOURCE_DATE_EPOCH
# (default 0), the tar entry's owner and mode are fixed, and the platform is wasip1/wasm
# rather than the build host's.
set -euo pipefail

repo=$(cd "$(dirname "$0")/../.." && pwd)
default_wasm=$repo/target/wasm32-wasip1/release/mcp_trace.wasm
wasm=${1:-$default_wasm}
out=${2:-$repo/target/oci}
epoch=${SOURCE_DATE_EPOCH:-0}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
tag=$(sed -n 's/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml" | head -n1)

if [[ $wasm == "$default_wasm" && ! -f $wasm ]]; then
  (cd "$repo" && cargo build --release --target wasm32-wasip1)
fi
[[ -f $wasm ]] || { echo "build-oci: $wasm not found" >&2; exit 1; }

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp "$wasm" "$stage/plugin.wasm"
# umoci's own `insert` is not used: Debian's umoci 0.4.7 leaves its tar unterminated
# (fixed upstream in 0.5.0), so GNU tar writes the layer and umoci adds it verbatim.
tar --create --file "$stage/layer.tar" --directory "$stage" --format=ustar \
  --mtime="@$epoch" --owner=0 --group=0 --numeric-owner --mode=0644 plugin.wasm

image=$out/image
rm -rf "$image"
mkdir -p "$out"
umoci init --layout "$image"
umoci new --image "$image:$tag"
umoci config --image "$image:$tag" --no-history --created "$created" --os wasip1 --architecture wasm
umoci raw add-layer --image "$image:$tag" --history.created "$created" \
  --history.created_by "deploy/oci/build-oci.sh" "$stage/layer.tar"
umoci gc --layout "$image"  # drop the blobs of the intermediate manifests

digest=$(skopeo inspect --format '{{.Digest}}' "oci:$image:$tag")
module_sha256=$(sha256sum "$stage/plugin.wasm" | cut -d' ' -f1)  # the bytes in the image
cat >"$out/wasmplugin.env" <<EOF
# Written by deploy/oci/build-oci.sh for the image in $image
IMAGE_TAG=$tag
IMAGE_DIGEST=$digest
# WasmPlugin sha256 for an oci:// url: Istio checks it against the image manifest digest.
WASMPLUGIN_SHA256=${digest#sha256:}
# sha256 of the module itself: the WasmPlugin sha256 for an http(s):// url.
MODULE_SHA256=$module_sha256
EOF

cat <<EOF
image     $image (tag $tag, blobs $(cat "$image"/blobs/sha256/* | wc -c) bytes)
digest    $digest
module    sha256 $module_sha256 ($(stat -c %s "$stage/plugin.wasm") bytes, from $wasm)
written   $out/wasmplugin.env

Push, then point a WasmPlugin at it:
  skopeo copy oci:$image:$tag docker://REGISTRY/mcp-trace:$tag
  url: oci://REGISTRY/mcp-trace:$tag
  sha256: ${digest#sha256:}
EOF
