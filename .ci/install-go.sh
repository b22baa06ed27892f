#!/usr/bin/env bash
# Install the pinned Go toolchain into /usr/local/go: cibuildwheel's before-all step in
# a manylinux container (see [tool.cibuildwheel] in pyproject.toml). The checksums are
# the ones published for the official release archives.
set -euo pipefail
GO_VERSION=1.26.8
case "$(uname -m)" in
  x86_64)  arch=amd64; sha256=d0f743b33e8d8945e6b1f432edd15785c70507121d6e2a723b21285eddf8b57b ;;
  aarch64) arch=arm64; sha256=211ffced9dcb9633a55eac6364816ec0ddd951389a740e88fa8b3337971bdda0 ;;
  *) echo "install-go: no pinned Go archive for $(uname -m)" >&2; exit 1 ;;
esac
archive="go${GO_VERSION}.linux-${arch}.tar.gz"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
curl -fsSL --retry 3 -o "$tmp/$archive" "https://go.dev/dl/$archive"
echo "$sha256  $tmp/$archive" | sha256sum -c -
rm -rf /usr/local/go
tar -C /usr/local -xzf "$tmp/$archive"
/usr/local/go/bin/go version
