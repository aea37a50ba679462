#!/usr/bin/env bash
# The compose deployment, run for real and checked the way a user would: CI runs this.
#
#   sudo deploy/compose-check.sh [--reference .venv/bin/xception-features]
#
# Starts a private Docker Engine (its own data and exec roots under $XCEPTION_CI_DOCKER_ROOT,
# overlay2, no iptables), makes a stand-in for the Dockerfile's python base from Debian's
# packages (no registry here), then runs docker-compose.yml's CPU profile with random weights
# and checks: the export completes before the API starts; Docker's HEALTHCHECK turns healthy;
# /classify and /features answer through the published port (/features equal to
# xception-features run outside the image, with --reference); the API runs as a non-root user,
# without torch, in an image within its size budget; a rollout (`run export … --out
# /models/xception/2`) takes traffic with no failed request; `stop` answers a request in
# flight and drains within the grace period, and the HEALTHCHECK then says no; the GPU
# profile's configuration is valid. The engine, its containers, images, volumes and disk are
# removed at the end, whatever happens.
# Needs root, dockerd (Debian: docker.io), docker-compose or `docker compose`, debootstrap,
# python3 and curl.
set -euo pipefail
cd "$(dirname "$0")/.."

reference=""
runtime_budget_gb=3.2
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reference) reference="$(realpath "$2")"; shift 2 ;;
    --runtime-budget-gb) runtime_budget_gb="$2"; shift 2 ;;
    *) echo "usage: deploy/compose-check.sh [--reference XCEPTION_FEATURES] [--runtime-budget-gb N]" >&2; exit 2 ;;
  esac
done

root="${XCEPTION_CI_DOCKER_ROOT:-/var/lib/xception-ci-docker}"
die() { echo "compose-check: $*" >&2; exit 1; }
step() { echo "== $* ($((SECONDS - started)) s)"; }
started=$SECONDS
[[ "$(id -u)" == 0 ]] || die "needs root (dockerd, debootstrap)"
for tool in dockerd docker debootstrap python3 curl; do
  command -v "$tool" >/dev/null || die "'$tool' not found (Debian: apt-get install docker.io debootstrap curl)"
done
if command -v docker-compose >/dev/null; then compose=(docker-compose)
elif docker compose version >/dev/null 2>&1; then compose=(docker compose)
else die "neither docker-compose nor the compose plugin found (Debian: apt-get install docker-compose)"
fi
[[ ! -e "$root" ]] || die "$root exists: another check running, or one killed mid-way (remove it)"

# The engine: private, so nothing here touches a Docker the machine may already run.
mkdir -p "$root/data" "$root/exec"
export DOCKER_HOST="unix://$root/docker.sock"
export COMPOSE_PROJECT_NAME=xception-ci COMPOSE_FILE="$PWD/docker-compose.yml"
dockerd --data-root "$root/data" --exec-root "$root/exec" --pidfile "$root/dockerd.pid" \
  --host "$DOCKER_HOST" --storage-driver overlay2 --iptables=false --ip6tables=false \
  >"$root/dockerd.log" 2>&1 &
engine=$!
cleanup() {
  local status=$?
  set +e
  if [[ "$status" != 0 && -n "${api:-}" ]]; then
    echo "-- the API's last log lines:" >&2; docker logs --tail 20 "$api" >&2 2>&1
  fi
  timeout 120 "${compose[@]}" --profile cpu down -v --remove-orphans >/dev/null 2>&1
  kill "$engine" 2>/dev/null
  timeout 60 tail --pid="$engine" -f /dev/null || kill -KILL "$engine" 2>/dev/null
  pkill -KILL -f "$root/exec" 2>/dev/null  # a containerd or shim the engine left behind
  # The engine's own mounts it may leave (its network namespace, an overlay): deepest first.
  findmnt -n -o TARGET --list | grep "^$root/" | sort -r | xargs -r umount -l
  rm -rf "$root"
  echo "== engine stopped; $root removed"
  exit "$status"
}
trap cleanup EXIT
for _ in $(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
docker info >/dev/null 2>&1 || { tail -20 "$root/dockerd.log" >&2; die "dockerd did not start"; }
step "engine: Docker $(docker version -f '{{.Server.Version}}'), $("${compose[@]}" version --short 2>/dev/null || "${compose[@]}" version | head -1), storage $(docker info -f '{{.Driver}}')"

"${compose[@]}" --profile gpu config -q || die "the gpu profile's configuration is invalid"
step "gpu profile: configuration valid (no GPU here to run it)"

base=xception-python-standin:3.11-bookworm
deploy/images/standin-base.sh "$base"
step "stand-in base made"

# What a user runs (docs/deployment.md, "CPU host"), offline: random weights, a free port,
# a short rescan period so that the rollout below shows within seconds.
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
scratch="$(mktemp -d)"
mkdir -p "$scratch/weights" "$scratch/data"
export XCEPTION_PYTHON_IMAGE="$base" XCEPTION_EXPORT_ARGS="--weights none" \
  XCEPTION_PUBLISH_PORT="$port" XCEPTION_POLL_S=2 \
  XCEPTION_WEIGHTS_DIR="$scratch/weights" XCEPTION_DATA_DIR="$scratch/data"
url="http://127.0.0.1:$port"
photo="tests/data/chelsea.jpg"

"${compose[@]}" --profile cpu up -d --build >"$scratch/up.log" 2>&1 \
  || { tail -30 "$scratch/up.log" >&2; die "compose up failed"; }
grep -E '^Step [0-9]+/[0-9]+ : (FROM|RUN)|^Successfully tagged|Creating|Starting' "$scratch/up.log" | cut -c1-110
step "compose up"
container() {  # container SERVICE: its container's id (stopped ones too)
  docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME" \
    --filter "label=com.docker.compose.service=$1" | head -1
}
export_ctr="$(container export)"; api="$(container api-cpu)"
[[ -n "$export_ctr" && -n "$api" ]] || die "no export or api-cpu container"

status=""
for _ in $(seq 180); do
  status="$(docker inspect -f '{{.State.Health.Status}}' "$api")"
  [[ "$status" == healthy ]] && break
  [[ "$(docker inspect -f '{{.State.Status}}' "$api")" == running ]] || die "the API is not running"
  sleep 1
done
[[ "$status" == healthy ]] || die "the API's healthcheck is '$status' after 180 s"
step "the API is healthy (Docker's HEALTHCHECK)"
python3 - "$(docker inspect "$export_ctr")" "$(docker inspect "$api")" <<'EOF' || die "export did not complete before the API started"
import json, sys
from datetime import datetime
def when(value: str) -> datetime:  # Docker's RFC 3339 with nanoseconds
    day, _, rest = value.partition("T")
    clock = rest.rstrip("Z").split(".")[0]
    fraction = (rest.rstrip("Z").split(".") + ["0"])[1][:6]
    return datetime.fromisoformat(f"{day}T{clock}.{fraction:0<6}")
export, api = json.loads(sys.argv[1])[0]["State"], json.loads(sys.argv[2])[0]["State"]
assert export["Status"] == "exited" and export["ExitCode"] == 0, export
finished, began = when(export["FinishedAt"]), when(api["StartedAt"])
assert finished <= began, (finished, began)
print(f"-- export exited 0, {(began - finished).total_seconds():.1f} s before the API started")
EOF

classify="$(curl -fsS -F "file=@$photo" "$url/classify?top_k=3")" || die "POST /classify"
python3 -c '
import json, sys
body = json.loads(sys.argv[1])
predictions = body["results"][0]["predictions"]
scores = [p["score"] for p in predictions]
assert len(predictions) == 3 and scores == sorted(scores, reverse=True), predictions
assert body["model"] == {"name": "xception", "version": "1"}, body["model"]
print("-- /classify through the published port:", body["model"], predictions[0]["label"])' \
  "$classify" || die "/classify answered $classify"
curl -fsS -F "file=@$photo" "$url/features" -o "$scratch/features.json" || die "POST /features"
python3 -c '
import json, math, sys
vector = json.load(open(sys.argv[1]))["results"][0]["features"]
assert len(vector) == 2048 and all(map(math.isfinite, vector)) and any(vector)
print("-- /features: 2048 finite values")' "$scratch/features.json" || die "/features"
if [[ -n "$reference" ]]; then
  models="$(docker volume inspect -f '{{.Mountpoint}}' "${COMPOSE_PROJECT_NAME}_models")"
  mkdir "$scratch/photo" && cp "$photo" "$scratch/photo/"
  "$reference" "$scratch/photo" --model "$models/xception/1" --out "$scratch/reference.npy" \
    >/dev/null 2>&1 || die "$reference failed on the exported model"
  "$(dirname "$reference")/python" -c '
import json, sys
import numpy as np
served = np.array(json.load(open(sys.argv[1]))["results"][0]["features"], dtype=np.float32)
expected = np.load(sys.argv[2])[0]
error = float(np.abs(served - expected).max() / np.abs(expected).max())
assert error < 1e-4, f"relative difference {error}"
print(f"-- /features equals xception-features outside the image (max relative difference {error:.1e})")
' "$scratch/features.json" "$scratch/reference.npy" || die "features differ"
fi

uid="$(docker exec "$api" id -u)"
[[ "$uid" != 0 ]] || die "the API runs as root"
image="$(docker inspect -f '{{.Config.Image}}' "$api")"
if docker run --rm --network none --entrypoint python "$image" -c "import torch" >"$scratch/torch.log" 2>&1; then
  die "torch is importable in $image"
fi
grep -q "No module named 'torch'" "$scratch/torch.log" || { cat "$scratch/torch.log" >&2; die "import torch failed for another reason"; }
# The image's HEALTHCHECK command, run beside the server on the published port: 0 now, and
# non-zero once the server is stopped (below).
healthcheck=(docker run --rm --network host -e "XCEPTION_PORT=$port" --entrypoint python "$image" -m service.healthcheck)
"${healthcheck[@]}" || die "the HEALTHCHECK command exits non-zero with the server up"
size="$(docker image inspect -f '{{.Size}}' "$image")"
python3 -c 'import sys; size, budget = int(sys.argv[1]) / 1e9, float(sys.argv[2]); sys.exit(
    f"{sys.argv[3]} is {size:.2f} GB, over its {budget} GB budget" if size > budget else
    print(f"-- {sys.argv[3]}: {size:.2f} GB (budget {budget} GB), no torch, runs as uid {sys.argv[4]}"))' \
  "$size" "$runtime_budget_gb" "$image" "$uid" || die "runtime image over budget"
docker image ls --format '   {{.Repository}}:{{.Tag}} {{.Size}}' | grep xception-

step "rollout: publishing version 2 under traffic"
python3 deploy/images/traffic.py "$url" "$photo" --until-version 2 --timeout-s 300 &
traffic=$!
sleep 2  # traffic flowing to version 1 first
"${compose[@]}" --profile cpu run --rm export --weights none --out /models/xception/2 \
  >"$scratch/rollout.log" 2>&1 || { tail -20 "$scratch/rollout.log" >&2; die "the rollout's export failed"; }
tail -1 "$scratch/rollout.log"
wait "$traffic" || die "the rollout failed requests, or version 2 never answered"

# A request in flight when `stop` comes (eight images: a second or more of inference here) is
# answered, not cut off.
uploads=()
for _ in $(seq 8); do uploads+=(-F "file=@$photo"); done
curl -sS -o "$scratch/in-flight.json" -w '%{http_code}' "${uploads[@]}" "$url/classify" \
  >"$scratch/in-flight.status" 2>&1 &
in_flight=$!
sleep 0.5  # its body is on loopback by now: it is being decoded or run
stop_started=$SECONDS
"${compose[@]}" --profile cpu stop >/dev/null 2>&1
stopped_in=$((SECONDS - stop_started))
wait "$in_flight" || true
[[ "$(cat "$scratch/in-flight.status")" == 200 ]] \
  || die "the request in flight during stop got '$(cat "$scratch/in-flight.status")': $(head -c 300 "$scratch/in-flight.json")"
python3 -c 'import json, sys; assert len(json.load(open(sys.argv[1]))["results"]) == 8' \
  "$scratch/in-flight.json" || die "the request in flight during stop lost images"
exit_code="$(docker inspect -f '{{.State.ExitCode}}' "$api")"
# The log is read whole first: `docker logs | grep -q` under pipefail fails when grep stops
# reading at its first match and docker logs dies of SIGPIPE (it did, once, in a green run).
docker logs "$api" >"$scratch/api.log" 2>&1
grep -q "Application shutdown complete" "$scratch/api.log" || die "no clean shutdown after stop"
# 137: Docker killed it at the end of the grace period; the drain did not finish in time.
[[ "$exit_code" != 137 ]] || die "the API was killed after the grace period (${stopped_in} s)"
if "${healthcheck[@]}" 2>/dev/null; then
  die "the HEALTHCHECK exits 0 with the server stopped"
fi
step "stop: the request in flight answered (8 images), drained and exited (status $exit_code) in ${stopped_in} s; the HEALTHCHECK now says no"
