#!/usr/bin/env bash
# Build the Dockerfile's two images with buildah (no Docker engine, no daemon) and smoke-test
# them the way the compose file runs them. CI runs this; so can anyone on a Linux box as root.
#
#   sudo deploy/build-images.sh                      # both targets, on a stand-in base
#   sudo deploy/build-images.sh --targets runtime --model models   # serve an existing repository
#   sudo deploy/build-images.sh --base docker.io/library/python:3.11.11-slim-bookworm
#
# Base image: where no container registry is reachable, a stand-in for python:3.11-slim-bookworm
# is made from Debian's packages (deploy/images/standin-base.sh) once and reused while it is in
# buildah's storage; --base uses a real one instead. Storage: vfs by default (works anywhere,
# including inside a container, but copies every layer: 24 GiB at the peak for both targets);
# BUILDAH_STORAGE_DRIVER=overlay shares layers (CI uses it: ~10 GB for both images) where the
# kernel allows it. BUILDAH_ROOT keeps the images in a storage folder of their own (a folder
# made with one driver cannot be opened with the other).
# Images: localhost/xception-export:TAG and localhost/xception-service:TAG (compose's names).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: deploy/build-images.sh [options]
  --targets LIST        runtime,export (default: both; export first, its model feeds the runtime check)
  --model DIR           a model repository (DIR/<name>/<version>) for the runtime check
                        (default: the model the export image writes; required with --targets runtime)
  --base IMAGE          build FROM this image instead of the stand-in base
  --rebuild-base        make the stand-in base again even when it is in storage
  --reference CLI       an xception-features outside the image: /features must equal its vectors
  --runtime-budget-gb N fail when the runtime image is bigger (default 3.2)
  --tag TAG             image tag (default: the version in pyproject.toml)
  --remove              remove the built images at the end (the stand-in base stays)
Environment: BUILDAH_STORAGE_DRIVER (vfs), BUILDAH_ROOT (buildah's default storage folder),
             BUILDAH_ISOLATION (chroot), DEBIAN_MIRROR.
EOF
}

targets="export,runtime"; model=""; base=""; rebuild_base=0; reference=""; budget_gb="3.2"
remove=0
tag="$(python3 -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --targets) targets="$2"; shift 2 ;;
    --model) model="$(realpath "$2")"; shift 2 ;;
    --base) base="$2"; shift 2 ;;
    --rebuild-base) rebuild_base=1; shift ;;
    --reference) reference="$(realpath "$2")"; shift 2 ;;
    --runtime-budget-gb) budget_gb="$2"; shift 2 ;;
    --tag) tag="$2"; shift 2 ;;
    --remove) remove=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown option '$1'" >&2; usage >&2; exit 2 ;;
  esac
done

export BUILDAH_STORAGE_DRIVER="${BUILDAH_STORAGE_DRIVER:-vfs}"
export BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"
buildah=(buildah --storage-driver "$BUILDAH_STORAGE_DRIVER" ${BUILDAH_ROOT:+--root "$BUILDAH_ROOT"})
standin="localhost/xception-python-standin:3.11-bookworm"
declare -A image=([export]="localhost/xception-export:$tag" [runtime]="localhost/xception-service:$tag")
declare -A seconds=()
want() { [[ ",$targets," == *",$1,"* ]]; }
die() { echo "build-images: $*" >&2; exit 1; }

# Fail before minutes of work, with what is missing.
[[ "$(id -u)" == 0 ]] || die "needs root (buildah's chroot isolation and debootstrap); run it with sudo"
for tool in buildah python3 curl ss; do
  command -v "$tool" >/dev/null || die "'$tool' not found (Debian: apt-get install buildah curl iproute2)"
done
[[ -n "$base" ]] || command -v debootstrap >/dev/null \
  || die "'debootstrap' not found: apt-get install debootstrap, or pass --base IMAGE"
want export || want runtime || die "--targets '$targets': expected runtime, export or both"
want export || [[ -n "$model" ]] || die "--targets runtime needs --model DIR (a model repository)"
storage_root="$("${buildah[@]}" info --format '{{.store.GraphRoot}}')"
mkdir -p "$storage_root"
# vfs keeps a full copy of the filesystem per layer and per container: measured peaks were
# 24 GiB for both targets and 10.3 GiB for the runtime alone (a margin is added below).
# overlay shares them: the two images (6.7 + 2.9 GB) and the build's working copy.
if [[ "$BUILDAH_STORAGE_DRIVER" == vfs ]]; then
  need_gb=$(want export && echo 26 || echo 12)
else
  need_gb=$(want export && echo 14 || echo 6)
fi
free_gb=$(( $(df --output=avail -k "$storage_root" | tail -1) / 1024 / 1024 ))
(( free_gb >= need_gb )) || die "$free_gb GiB free under $storage_root; these targets need \
~$need_gb GiB with $BUILDAH_STORAGE_DRIVER storage (BUILDAH_STORAGE_DRIVER=overlay needs less)"

timed() {  # timed NAME COMMAND...: run it, remember how long it took
  local started=$SECONDS
  "${@:2}"
  seconds[$1]=$(( SECONDS - started ))
}

build() {  # build TARGET: the Dockerfile's stage, progress as buildah's STEP lines
  local log="${TMPDIR:-/tmp}/build-images-$1.log"
  echo "== building ${image[$1]} (target $1, FROM $base); full log: $log"
  if ! "${buildah[@]}" bud --isolation "$BUILDAH_ISOLATION" --network host --format docker \
    --layers=false --target "$1" --build-arg "PYTHON_IMAGE=$base" -t "${image[$1]}" \
    -f Dockerfile . >"$log" 2>&1 < /dev/null; then
    tail -30 "$log" >&2
    die "building target $1 failed (log above)"
  fi
  grep -E '^\[[0-9]+/[0-9]+\] STEP|^STEP' "$log" | cut -c1-110
}

if [[ -z "$base" ]]; then
  base="$standin"
  if [[ "$rebuild_base" == 1 ]] || ! "${buildah[@]}" inspect --type image "$standin" >/dev/null 2>&1; then
    echo "== making the stand-in base $standin"
    timed base deploy/images/standin-base.sh "$standin"
  else
    echo "== reusing the stand-in base $standin (--rebuild-base to make it again)"
  fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if want export; then
  timed "export build" build export
  # The exported model feeds the runtime check unless --model names another repository.
  timed "export check" deploy/images/smoke-test.sh export "${image[export]}" "$work/models"
  [[ -n "$model" ]] || model="$work/models"
fi
if want runtime; then
  timed "runtime build" build runtime
  timed "runtime check" deploy/images/smoke-test.sh runtime "${image[runtime]}" "$model" ${reference:+"$reference"}
fi

echo "== images"
for target in export runtime; do
  want "$target" || continue
  size="$("${buildah[@]}" images --format '{{.Size}}' "${image[$target]}")"
  printf '%-36s %9s   built in %s s, checked in %s s\n' "${image[$target]}" "$size" \
    "${seconds["$target build"]}" "${seconds["$target check"]}"
  if [[ "$target" == runtime ]]; then
    python3 -c '
import sys
number, unit = sys.argv[1].split()
size_gb = float(number) * {"kB": 1e-6, "MB": 1e-3, "GB": 1.0}[unit]
budget_gb = float(sys.argv[2])
if size_gb > budget_gb:
    sys.exit(f"the runtime image is {size_gb:.2f} GB, over its {budget_gb} GB budget (--runtime-budget-gb)")
print(f"   runtime image within its {budget_gb} GB budget")' "$size" "$budget_gb"
  fi
done
[[ -z "${seconds[base]:-}" ]] || echo "   stand-in base made in ${seconds[base]} s"

if [[ "$remove" == 1 ]]; then
  for target in export runtime; do
    want "$target" && "${buildah[@]}" rmi "${image[$target]}" >/dev/null
  done
  echo "== removed the built images (the stand-in base stays)"
fi
