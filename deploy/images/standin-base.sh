#!/usr/bin/env bash
# Make a stand-in for the Dockerfile's python:3.11-slim-bookworm base from Debian's own
# packages, for machines that reach Debian's mirror and PyPI but no container registry.
#
#   deploy/images/standin-base.sh IMAGE_NAME      # DOCKER_HOST names the engine, as usual
#
# debootstrap (minbase) + Debian's python3, venv and pip; `python`/`pip` point at them, pip
# may install system-wide (no EXTERNALLY-MANAGED marker, as in the official image) and
# trusts the same CA bundle as this host (a host behind a TLS-inspecting proxy needs that).
# The root filesystem is imported as a local image (`docker import`); the real base stays the
# Dockerfile's default. Needs root (debootstrap). Used by deploy/compose-check.sh.
set -euo pipefail

image="${1:?usage: standin-base.sh IMAGE_NAME}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

echo "-- debootstrap bookworm (minbase + python3, python3-venv, python3-pip) from $mirror"
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
  || { tail -20 "$work/debootstrap.log" >&2; echo "debootstrap failed (log above)" >&2; exit 1; }

rootfs="$work/rootfs"
ln -sf python3 "$rootfs/usr/bin/python"
ln -sf pip3 "$rootfs/usr/bin/pip"
rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
cp /etc/ssl/certs/ca-certificates.crt "$rootfs/etc/ssl/certs/ca-certificates.crt"
# What the slim image leaves out too: package lists, caches, documentation.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/* "$rootfs"/var/log/* \
  "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*

echo "-- importing $image"
# --numeric-owner: owners as debootstrap made them, not as this host's names map them.
tar --numeric-owner -C "$rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  --change 'LABEL org.opencontainers.image.description="stand-in for python:3.11-slim-bookworm (Debian bookworm python3, built by deploy/images/standin-base.sh)"' \
  - "$image" >/dev/null
echo "-- $image: $(docker image inspect -f '{{.Size}}' "$image" | numfmt --to=si)B"
