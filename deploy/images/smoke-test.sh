#!/usr/bin/env bash
# Run a built image the way compose would, with buildah (no Docker engine), and check it.
#
#   deploy/images/smoke-test.sh export  IMAGE OUT_DIR          # writes OUT_DIR/xception/1
#   deploy/images/smoke-test.sh runtime IMAGE MODELS_DIR [REFERENCE_FEATURES_CLI]
#
# export:  the image's own ENTRYPOINT with `--weights none --out /out/xception/1` (random
#          weights: no hub here), into a mounted folder owned by the image's user. /out, not
#          /models: `buildah run` gives the image's VOLUME /models a volume of its own, which
#          would hide a mount at the same path.
# runtime: the image's ENTRYPOINT serving MODELS_DIR (mounted read-only at /models, as the
#          compose file does); waits for /readyz, then POST /classify and /features with a
#          real JPEG, GET / (the page), the image's HEALTHCHECK command, the server's uid (not
#          root), torch not importable, and SIGTERM → exit 0 within XCEPTION_DRAIN_TIMEOUT_S.
#          With REFERENCE_FEATURES_CLI (an `xception-features` outside the image), the
#          image's /features must equal what that computes for the same file.
# Needs root, buildah, python3, curl and ss (iproute2). Used by deploy/build-images.sh.
set -euo pipefail

mode="${1:?usage: smoke-test.sh export|runtime IMAGE DIR [REFERENCE_FEATURES_CLI]}"
image="${2:?image name}"
dir="${3:?folder}"
reference="${4:-}"
here="$(cd "$(dirname "$0")" && pwd)"
photo="$here/../../tests/data/chelsea.jpg"
drain_s=20
buildah=(buildah --storage-driver "${BUILDAH_STORAGE_DRIVER:-vfs}" ${BUILDAH_ROOT:+--root "$BUILDAH_ROOT"})
run=("${buildah[@]}" run --isolation "${BUILDAH_ISOLATION:-chroot}" --network host)

fail() { echo "FAIL: $*" >&2; exit 1; }

# One field of the image's config (Docker format: it is the one that keeps HEALTHCHECK), as
# NUL-separated words so that arguments with spaces survive. The config is read once.
config_words() {
  python3 -c '
import json, sys
value = json.load(open(sys.argv[1]))["Docker"]["config"].get(sys.argv[2]) or []
value = value.get("Test", []) if isinstance(value, dict) else value
value = [value] if isinstance(value, str) else value
sys.stdout.write("".join(word + "\0" for word in value))' "$scratch/image.json" "$1"
}

ctr="$("${buildah[@]}" from --quiet "$image")"
scratch="$(mktemp -d)"
"${buildah[@]}" inspect --type image "$image" >"$scratch/image.json"
server=""
cleanup() {
  [[ -n "$server" ]] && kill -KILL "$server" 2>/dev/null
  "${buildah[@]}" rm "$ctr" >/dev/null 2>&1 || true
  rm -rf "$scratch"
}
trap cleanup EXIT
mapfile -d '' -t entrypoint < <(config_words Entrypoint)
user="$(config_words User | tr -d '\0')"
uid="${user%%:*}"
[[ -n "$uid" && "$uid" != 0 && "$uid" != root ]] || fail "$image runs as root (USER '$user')"

smoke_export() {
  mkdir -p "$dir"
  chown "$uid" "$dir"
  echo "-- $image: ${entrypoint[*]} --weights none --out /out/xception/1"
  if ! "${run[@]}" -v "$dir:/out" "$ctr" -- "${entrypoint[@]}" --weights none \
    --out /out/xception/1 >"$scratch/export.log" 2>&1; then
    tail -20 "$scratch/export.log" >&2
    fail "the export image's entrypoint failed"
  fi
  tail -2 "$scratch/export.log"
  for file in model.onnx model.json; do
    [[ -s "$dir/xception/1/$file" ]] || fail "no $file in $dir/xception/1"
  done
  [[ "$(stat -c %u "$dir/xception/1/model.onnx")" == "$uid" ]] \
    || fail "model.onnx is not owned by the image's user $uid"
  echo "-- export image: wrote $(du -sh "$dir/xception/1" | cut -f1) as uid $uid"
}

smoke_runtime() {
  local port log started ready=0 pid response
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  log="$scratch/serve.log"
  echo "-- $image: ${entrypoint[*]} on port $port, $dir mounted read-only at /models"
  "${run[@]}" -v "$dir:/models:ro" -e "XCEPTION_PORT=$port" -e "XCEPTION_DRAIN_TIMEOUT_S=$drain_s" \
    "$ctr" -- "${entrypoint[@]}" >"$log" 2>&1 &
  local runner=$!
  local base="http://127.0.0.1:$port"
  for _ in $(seq 180); do
    if curl -fsS -o /dev/null "$base/readyz" 2>/dev/null; then ready=1; break; fi
    kill -0 "$runner" 2>/dev/null || { cat "$log" >&2; fail "the server exited before it was ready"; }
    sleep 1
  done
  [[ "$ready" == 1 ]] || { cat "$log" >&2; fail "not ready within 180 s"; }
  pid="$(ss -Hltnp "sport = :$port" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)"
  [[ -n "$pid" ]] || fail "no process listens on port $port"
  server="$pid"
  grep -i "provider" "$log" | head -2 || true

  response="$(curl -fsS -F "file=@$photo" "$base/classify?top_k=3")" || fail "POST /classify"
  python3 -c '
import json, math, sys
body = json.loads(sys.argv[1])
predictions = body["results"][0]["predictions"]
assert len(predictions) == 3, predictions
scores = [p["score"] for p in predictions]
assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores), scores
assert all(p["label"] for p in predictions), predictions
print("-- /classify:", body["model"], predictions[0])' "$response" || fail "/classify answered $response"

  curl -fsS -F "file=@$photo" "$base/features" -o "$scratch/features.json" || fail "POST /features"
  python3 -c '
import json, math, sys
body = json.load(open(sys.argv[1]))
vector = body["results"][0]["features"]
assert body["dim"] == len(vector) > 0, (body["dim"], len(vector))
assert all(math.isfinite(x) for x in vector) and any(vector)
print(f"-- /features: {len(vector)} finite values")' "$scratch/features.json" || fail "/features"
  if [[ -n "$reference" ]]; then
    mkdir "$scratch/photo" && cp "$photo" "$scratch/photo/"
    # The version that answered (the repository's default model, its newest version).
    local answered
    answered="$(python3 -c 'import json, sys; m = json.load(open(sys.argv[1]))["model"]; print(m["name"] + "/" + m["version"])' "$scratch/features.json")"
    "$reference" "$scratch/photo" --model "$dir/$answered" --out "$scratch/reference.npy" \
      >/dev/null 2>&1 || fail "$reference failed on $dir/$answered"
    "$(dirname "$reference")/python" -c '
import json, sys
import numpy as np
served = np.array(json.load(open(sys.argv[1]))["results"][0]["features"], dtype=np.float32)
expected = np.load(sys.argv[2])[0]
error = float(np.abs(served - expected).max() / np.abs(expected).max())
assert error < 1e-4, f"relative difference {error}"
print(f"-- /features of {sys.argv[4]} equals {sys.argv[3]} outside the image (max relative difference {error:.1e})")
' "$scratch/features.json" "$scratch/reference.npy" "$reference" "$answered" || fail "features differ"
  fi

  curl -fsS "$base/" | grep -q "<html" || fail "GET / is not the page"
  echo "-- GET /: the page"

  mapfile -d '' -t healthcheck < <(config_words Healthcheck)
  [[ "${healthcheck[0]:-}" == CMD ]] || fail "HEALTHCHECK is '${healthcheck[*]:-}', expected the CMD form"
  "${run[@]}" -e "XCEPTION_PORT=$port" "$ctr" -- "${healthcheck[@]:1}" \
    || fail "HEALTHCHECK ${healthcheck[*]:1} exited $?"
  echo "-- HEALTHCHECK ${healthcheck[*]:1}: exit 0"

  [[ "$(awk '/^Uid:/ {print $2}' "/proc/$pid/status")" == "$uid" ]] \
    || fail "the server (pid $pid) does not run as uid $uid"
  echo "-- the server runs as uid $uid"

  if "${run[@]}" "$ctr" -- python -c "import torch" >"$scratch/torch.log" 2>&1; then
    fail "torch is importable in the runtime image"
  fi
  grep -q "No module named 'torch'" "$scratch/torch.log" || { cat "$scratch/torch.log" >&2; fail "import torch failed for another reason"; }
  echo "-- torch is not in the image"

  started="$(date +%s.%N)"
  kill -TERM "$pid"
  local status=0
  timeout "$((drain_s + 5))" tail --pid="$pid" -f /dev/null || fail "still running $((drain_s + 5)) s after SIGTERM"
  wait "$runner" || status=$?
  server=""
  # uvicorn re-raises the SIGTERM it handled once the drain is done, so the process ends by
  # that signal (Docker reports 143); buildah reports it as status 1 and says so in the log.
  if [[ "$status" != 0 ]] && ! { [[ "$status" == 1 ]] && grep -q "exited on terminated" "$log"; }; then
    tail -20 "$log" >&2; fail "exit status $status after SIGTERM"
  fi
  grep -q "Application shutdown complete" "$log" || { tail -20 "$log" >&2; fail "no clean shutdown after SIGTERM"; }
  # The HEALTHCHECK must also be able to say no: nothing listens on the port any more.
  if "${run[@]}" -e "XCEPTION_PORT=$port" "$ctr" -- "${healthcheck[@]:1}" 2>/dev/null; then
    fail "HEALTHCHECK ${healthcheck[*]:1} exits 0 with the server stopped"
  fi
  echo "-- SIGTERM: drained and stopped after $(python3 -c "import time; print(f'{time.time() - $started:.1f}')") s (drain limit ${drain_s} s); the HEALTHCHECK now fails"
}

case "$mode" in
  export) smoke_export ;;
  runtime) smoke_runtime ;;
  *) fail "mode '$mode': expected export or runtime" ;;
esac
