#!/usr/bin/env bash
# Build the serving image and run it for real, with a throw-away Docker engine (`make docker-smoke`).
#
# The machine has no Docker engine running and no image registry, so (docs/deployment.md, CI):
#   1. install Debian's docker.io + debootstrap if missing;
#   2. start dockerd with its own data-root/exec-root/pidfile/socket under a temp dir, with no
#      iptables rules and no ip_forward change (published ports go through docker-proxy on the
#      docker0 bridge, which the clean-up removes);
#   3. build a stand-in for python:3.11-slim from Debian packages (debootstrap; the rootfs tarball
#      is cached in $BNFOLD_CACHE_DIR) and `docker import` it under the official tag;
#   4. build the image from the unchanged Dockerfile, run it on a free port (--network host),
#      wait for ready, POST real samples to /predict and /v2/models/<name>/infer and compare with
#      ONNX Runtime run here on the same file; check the user is not root, torch is absent, the
#      image size above the base, the HEALTHCHECK, a clean `docker stop`; run it again hardened
#      as on Kubernetes with the model from a volume and WORKERS=2; build it again with another
#      model inside (--build-arg MODEL=..., a re-export of models/digits/checkpoint.pt under
#      another name) and run it with its port published (-p 127.0.0.1:P:8000, bridge network);
#      check that bad MODEL_PATHs (missing, corrupt, wrong card, no card) exit non-zero with a
#      one-line reason in `docker logs`;
#   5. clean up in a trap: containers, dockerd (by PID), mounts, docker0, iptables chains,
#      net.ipv4.ip_forward, /etc/docker/key.json, /run/{docker,containerd,runc,mount}, temp
#      roots. The host is left as it was found, apart from the apt packages and the cached tarball.
#
# Environment: SMOKE_MODEL (default models/digits/model.onnx), PYTHON (default .venv/bin/python),
# BNFOLD_CACHE_DIR (default /var/cache/bnfold), MAX_ABOVE_BASE_MB (default 200),
# KEEP_TMP=1 keeps the temp dir (logs) for debugging. Needs root. Prints the figures at the end.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-$REPO/.venv/bin/python}
MODEL=${SMOKE_MODEL:-models/digits/model.onnx}
CACHE_DIR=${BNFOLD_CACHE_DIR:-/var/cache/bnfold}
MAX_ABOVE_BASE_MB=${MAX_ABOVE_BASE_MB:-200}
BASE_IMAGE=python:3.11-slim
IMAGE=bnfold-service:smoke
SUITE=bookworm
INCLUDE=python3,python3-pip,python3-venv,python-is-python3,ca-certificates,passwd
READY_TIMEOUT=60
DOCKER=/usr/bin/docker # Debian's client: BuildKit capable (the other one on PATH is not)

T0=$SECONDS
TMP=""
DOCKERD_PID=""
CREATED_POLICY_RC=0
CONTAINERS=()
IP_FORWARD_BEFORE=""
HAD_DOCKER0=0
HAD_KEY_JSON=0
# Written whatever the exec-root: /run/docker/plugins (dockerd), /run/containerd/s (shim
# sockets), /run/runc (BuildKit's runc executor), /run/mount (libmount, debootstrap's mounts).
RUN_DIRS=(/run/docker /run/containerd /run/runc /run/mount)
declare -A RUN_DIR_BEFORE=() # dir -> its entries before the run; absent key = did not exist
IPTABLES_BEFORE=""

log() { printf '==> %s\n' "$*"; }
info() { printf '    %s\n' "$*"; }
die() {
  printf 'docker-smoke: FAIL: %s\n' "$*" >&2
  exit 1
}
elapsed() { echo $((SECONDS - $1)); }

iptables_rules() {
  if command -v iptables-save >/dev/null 2>&1; then
    iptables-save 2>/dev/null | grep -v '^#' | sed -E 's/\[[0-9]+:[0-9]+\]//' || true
  fi
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  echo "==> cleaning up"
  if [[ -n $DOCKERD_PID ]] && kill -0 "$DOCKERD_PID" 2>/dev/null; then
    for c in "${CONTAINERS[@]}"; do
      "$DOCKER" rm -f "$c" >/dev/null 2>&1
    done
    kill -TERM "$DOCKERD_PID"
    for _ in $(seq 100); do
      kill -0 "$DOCKERD_PID" 2>/dev/null || break
      sleep 0.2
    done
    if kill -0 "$DOCKERD_PID" 2>/dev/null; then
      echo "    dockerd did not stop in 20 s: SIGKILL"
      kill -KILL "$DOCKERD_PID"
    fi
    wait "$DOCKERD_PID" 2>/dev/null
    info "dockerd (pid $DOCKERD_PID) stopped"
  fi
  if [[ -n $TMP ]]; then
    # Leftovers of this engine only: processes whose command line names our temp dir.
    local pid
    for pid in $(pgrep -f -- "$TMP" || true); do
      [[ $pid == "$$" ]] || kill -KILL "$pid" 2>/dev/null
    done
    # Unmount everything below the temp dir (overlays, netns, debootstrap's /dev /proc /sys binds)
    # before deleting anything: never rm -rf through a bind mount of the host's /dev.
    local mnt
    findmnt -rn -o TARGET | grep -F -- "$TMP" | sort -r | while read -r mnt; do
      umount "$mnt" 2>/dev/null || umount -l "$mnt"
    done
  fi
  if ((!HAD_DOCKER0)) && ip link show docker0 >/dev/null 2>&1; then
    ip link delete docker0 && info "removed docker0"
  fi
  if [[ -n $IPTABLES_BEFORE || -n $(iptables_rules) ]] && [[ $(iptables_rules) != "$IPTABLES_BEFORE" ]]; then
    local table chain
    for table in filter nat; do
      # Detach and delete the chains dockerd adds (DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-n).
      iptables -t "$table" -S 2>/dev/null | grep -E '^-A .* -j DOCKER' | sed 's/^-A /-D /' |
        while read -r rule; do
          # shellcheck disable=SC2086 # the rule is a list of arguments
          iptables -t "$table" $rule
        done
      for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
        iptables -t "$table" -F "$chain"
      done
      for chain in $(iptables -t "$table" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^DOCKER/ {print $2}'); do
        iptables -t "$table" -X "$chain"
      done
    done
    if [[ $(iptables_rules) == "$IPTABLES_BEFORE" ]]; then
      info "iptables restored"
    else
      echo "    WARNING: iptables rules differ from before the run" >&2
    fi
  fi
  if [[ -n $IP_FORWARD_BEFORE && $(sysctl -n net.ipv4.ip_forward) != "$IP_FORWARD_BEFORE" ]]; then
    sysctl -q -w net.ipv4.ip_forward="$IP_FORWARD_BEFORE" && info "net.ipv4.ip_forward restored"
  fi
  local dir entry
  for dir in "${RUN_DIRS[@]}"; do
    [[ -d $dir ]] || continue
    if [[ -z ${RUN_DIR_BEFORE[$dir]+set} ]]; then
      if [[ $dir == /run/mount ]]; then
        rmdir "$dir" 2>/dev/null # libmount's; only if nothing else uses it now
      else
        rm -rf --one-file-system "$dir"
      fi
    else
      while IFS= read -r entry; do # only what appeared during the run
        grep -qxF -- "$entry" <<<"${RUN_DIR_BEFORE[$dir]}" || rm -rf --one-file-system "${dir:?}/$entry"
      done < <(ls -A "$dir")
    fi
  done
  if ((!HAD_KEY_JSON)) && [[ -f /etc/docker/key.json ]]; then
    rm -f /etc/docker/key.json # dockerd 20.10 writes a libtrust key on start
  fi
  if ((CREATED_POLICY_RC)); then
    rm -f /usr/sbin/policy-rc.d
  fi
  if [[ -n $TMP && -d $TMP ]]; then
    if [[ ${KEEP_TMP:-0} == 1 ]]; then
      info "kept $TMP"
    else
      rm -rf --one-file-system "$TMP"
    fi
  fi
  if ((rc == 0)); then
    echo "==> docker-smoke: OK in $(elapsed "$T0") s"
  else
    echo "==> docker-smoke: FAILED (exit $rc) after $(elapsed "$T0") s" >&2
  fi
  exit "$rc"
}

# --- 0. preconditions ---------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "needs root (it starts dockerd and builds a rootfs)"
cd "$REPO"
[[ -f $MODEL ]] || die "$MODEL is missing: run 'make default-model' (see models/README.md)"
[[ -x $PYTHON ]] || die "$PYTHON not found: run 'make setup'"

trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
for dir in "${RUN_DIRS[@]}"; do
  if [[ -d $dir ]]; then RUN_DIR_BEFORE[$dir]=$(ls -A "$dir"); fi
done
TMP=$(mktemp -d /tmp/bnfold-docker.XXXXXX)
chmod 755 "$TMP"

# --- 1. packages --------------------------------------------------------------------------------
log "packages: docker.io, debootstrap"
if ! command -v dockerd >/dev/null || ! command -v debootstrap >/dev/null || [[ ! -x $DOCKER ]]; then
  t=$SECONDS
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    # Keep the package's init scripts from starting a system dockerd.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    CREATED_POLICY_RC=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt_install() { apt-get install -y -q --no-install-recommends docker.io debootstrap >"$TMP/apt.log" 2>&1; }
  apt_install || { apt-get update -q >>"$TMP/apt.log" 2>&1 && apt_install; } ||
    { tail -20 "$TMP/apt.log"; die "apt-get install docker.io debootstrap failed"; }
  info "installed in $(elapsed "$t") s"
else
  info "already installed ($(dockerd --version))"
fi

# --- 2. dockerd ---------------------------------------------------------------------------------
log "starting dockerd under $TMP"
IP_FORWARD_BEFORE=$(sysctl -n net.ipv4.ip_forward)
ip link show docker0 >/dev/null 2>&1 && HAD_DOCKER0=1
[[ -f /etc/docker/key.json ]] && HAD_KEY_JSON=1
IPTABLES_BEFORE=$(iptables_rules)
export DOCKER_HOST="unix://$TMP/docker.sock"
export DOCKER_CONFIG="$TMP/client-config"
export DOCKER_BUILDKIT=1
t=$SECONDS
dockerd --data-root "$TMP/data" --exec-root "$TMP/exec" --pidfile "$TMP/dockerd.pid" \
  -H "$DOCKER_HOST" --iptables=false --ip-forward=false --ip-masq=false \
  >"$TMP/dockerd.log" 2>&1 &
DOCKERD_PID=$!
for _ in $(seq 150); do
  "$DOCKER" info >/dev/null 2>&1 && break
  kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$TMP/dockerd.log"; die "dockerd exited"; }
  sleep 0.2
done
"$DOCKER" info >/dev/null 2>&1 || { tail -20 "$TMP/dockerd.log"; die "dockerd not up after 30 s"; }
info "dockerd pid $DOCKERD_PID up in $(elapsed "$t") s ($("$DOCKER" info -f '{{.ServerVersion}}, {{.Driver}}'))"

# --- 3. stand-in base image ---------------------------------------------------------------------
log "stand-in for $BASE_IMAGE (debootstrap $SUITE, cached in $CACHE_DIR)"
MIRROR=$(awk '$1 == "URIs:" {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
MIRROR=${MIRROR:-http://deb.debian.org/debian}
HOST_CA=/etc/ssl/certs/ca-certificates.crt
KEY=$(printf '%s|%s|%s|%s|v1' "$SUITE" "$INCLUDE" "$MIRROR" "$(sha256sum "$HOST_CA" | cut -c1-64)" |
  sha256sum | cut -c1-12)
ROOTFS_TAR=$CACHE_DIR/python-3.11-slim-standin-$KEY.tar
t=$SECONDS
if [[ -s $ROOTFS_TAR ]]; then
  info "cached rootfs: $ROOTFS_TAR"
else
  ROOTFS=$TMP/rootfs
  debootstrap --variant=minbase --include="$INCLUDE" "$SUITE" "$ROOTFS" "$MIRROR" \
    >"$TMP/debootstrap.log" 2>&1 || { tail -20 "$TMP/debootstrap.log"; die "debootstrap failed"; }
  # What the official image does not have or does differently.
  rm -f "$ROOTFS"/usr/lib/python3*/EXTERNALLY-MANAGED
  printf '%s\n' 'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };' \
    'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb || true"; };' \
    'Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";' >"$ROOTFS/etc/apt/apt.conf.d/docker-clean"
  rm -rf "$ROOTFS"/var/cache/apt/archives/*.deb "$ROOTFS"/var/lib/apt/lists/*
  # CI-only: pip inside the build must trust the same authorities as this host.
  cp "$HOST_CA" "$ROOTFS/etc/ssl/certs/bnfold-host-ca.crt"
  { findmnt -rn -o TARGET | grep -F -- "$ROOTFS" || true; } | sort -r | xargs -r umount -l
  mkdir -p "$CACHE_DIR"
  tar -C "$ROOTFS" --numeric-owner --one-file-system -cf "$ROOTFS_TAR.tmp.$$" .
  find "$CACHE_DIR" -maxdepth 1 -name 'python-3.11-slim-standin-*.tar' -delete
  mv "$ROOTFS_TAR.tmp.$$" "$ROOTFS_TAR"
  rm -rf --one-file-system "$ROOTFS"
  info "debootstrap + tarball in $(elapsed "$t") s -> $ROOTFS_TAR ($(du -m "$ROOTFS_TAR" | cut -f1) MB)"
fi
"$DOCKER" import \
  --change 'ENV PIP_CERT=/etc/ssl/certs/bnfold-host-ca.crt' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  "$ROOTFS_TAR" "$BASE_IMAGE" >/dev/null
BASE_BYTES=$("$DOCKER" image inspect -f '{{.Size}}' "$BASE_IMAGE")
BASE_PY=$("$DOCKER" run --rm --network none "$BASE_IMAGE" python3 -c 'import platform; print(platform.python_version())')
info "imported as $BASE_IMAGE ($((BASE_BYTES / 1000000)) MB, Python $BASE_PY)"

# --- 4. build -----------------------------------------------------------------------------------
log "docker build -t $IMAGE ."
t=$SECONDS
if ! "$DOCKER" build --network host --progress plain -t "$IMAGE" . >"$TMP/build.log" 2>&1; then
  tail -40 "$TMP/build.log"
  die "docker build failed"
fi
BUILD_S=$(elapsed "$t")
IMAGE_BYTES=$("$DOCKER" image inspect -f '{{.Size}}' "$IMAGE")
ABOVE=$((IMAGE_BYTES - BASE_BYTES))
ABOVE_MB=$((ABOVE / 1000000))
info "built in $BUILD_S s"
"$DOCKER" history --format '{{.Size}}\t{{.CreatedBy}}' "$IMAGE" | head -n 12 |
  awk -F'\t' '$1 != "0B" {printf "      %8s  %.90s\n", $1, $2}'
info "image size above the base: $ABOVE_MB MB ($((ABOVE / 1048576)) MiB; limit $MAX_ABOVE_BASE_MB MB)"
((ABOVE_MB <= MAX_ABOVE_BASE_MB)) || die "image is $ABOVE_MB MB above the base (> $MAX_ABOVE_BASE_MB MB)"

# --- 5. expected answers, computed here with ONNX Runtime on the same file ---------------------
log "in-process predictions ($MODEL)"
"$PYTHON" scripts/smoke_client.py prepare "$MODEL" "$TMP/smoke" | sed 's/^/    /'

# --- 6. run and wait for ready ------------------------------------------------------------------
PORT=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NAME=bnfold-smoke-$$
log "docker run --network host -e PORT=$PORT $IMAGE"
t_run=$(date +%s.%N)
CONTAINERS+=("$NAME")
"$DOCKER" run -d --name "$NAME" --network host -e PORT="$PORT" "$IMAGE" >/dev/null
if ! READY_S=$("$PYTHON" scripts/smoke_client.py wait "http://127.0.0.1:$PORT/v2/health/ready" "$READY_TIMEOUT"); then
  "$DOCKER" logs "$NAME" 2>&1 | tail -20
  die "container not ready"
fi
RUN_TO_READY_S=$(awk -v a="$t_run" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
info "ready in $RUN_TO_READY_S s after docker run (readiness poll: $READY_S s)"
"$PYTHON" scripts/smoke_client.py wait "http://127.0.0.1:$PORT/health/ready" 5 >/dev/null ||
  die "/health/ready is not ready while /v2/health/ready is"

# --- 7. answers ---------------------------------------------------------------------------------
log "POST real samples to /predict and the OIP infer route"
"$PYTHON" scripts/smoke_client.py check "http://127.0.0.1:$PORT" "$TMP/smoke" | sed 's/^/  /'

# --- 8. the image's promises ------------------------------------------------------------------
log "container checks"
USER_ID=$("$DOCKER" exec "$NAME" id -u)
[[ $USER_ID != 0 ]] || die "the container runs as root"
info "runs as uid $USER_ID ($("$DOCKER" exec "$NAME" id -un 2>/dev/null || echo '?')), not root"
"$DOCKER" exec "$NAME" pip show onnxruntime >/dev/null 2>&1 || die "'pip show' does not see the venv"
if "$DOCKER" exec "$NAME" pip show torch >/dev/null 2>&1; then
  die "torch is installed in the image"
fi
"$DOCKER" exec "$NAME" python -c 'import torch' >/dev/null 2>&1 && die "torch imports in the image"
info "no torch: 'pip show torch' fails (while 'pip show onnxruntime' works), 'import torch' fails"
"$DOCKER" exec "$NAME" sh -c 'touch /app/x 2>/dev/null' && die "the app directory is writable by the service user"
info "/app is read-only for the service user"
MEM=$("$DOCKER" stats --no-stream --format '{{.MemUsage}}' "$NAME" | cut -d/ -f1 | tr -d ' ')
info "memory after the requests: $MEM (1 worker)"
WORKERS=$("$DOCKER" exec "$NAME" printenv WORKERS)
info "WORKERS=$WORKERS, MODEL_PATH=$("$DOCKER" exec "$NAME" printenv MODEL_PATH)"
HEALTH=starting
for _ in $(seq 60); do
  HEALTH=$("$DOCKER" inspect -f '{{.State.Health.Status}}' "$NAME")
  [[ $HEALTH == starting ]] || break
  sleep 0.5
done
[[ $HEALTH == healthy ]] || die "HEALTHCHECK status is '$HEALTH'"
info "HEALTHCHECK: $HEALTH"
t=$SECONDS
"$DOCKER" stop -t 20 "$NAME" >/dev/null
EXIT_CODE=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME")
info "docker stop: exited $EXIT_CODE in $(elapsed "$t") s; docker logs:"
"$DOCKER" logs "$NAME" 2>&1 | tail -n 8 | sed 's/^/      | /'
[[ $EXIT_CODE == 0 ]] || { "$DOCKER" logs "$NAME" 2>&1 | tail -5; die "did not stop cleanly on SIGTERM"; }

# --- 9. another model file from a volume, hardened as on Kubernetes, several workers -----------
PORT2=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NAME2=bnfold-smoke-$$-hardened
log "model from a volume, run as on Kubernetes: -v DIR:/models:ro -e MODEL_PATH=/models/model.onnx"
info "--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges, WORKERS=2"
mkdir -p "$TMP/smoke/good"
install -m 0644 "$MODEL" "$TMP/smoke/good/model.onnx" # readable by uid 10001
CONTAINERS+=("$NAME2")
"$DOCKER" run -d --name "$NAME2" --network host --read-only --tmpfs /tmp --cap-drop ALL \
  --security-opt no-new-privileges -v "$TMP/smoke/good:/models:ro" -e MODEL_PATH=/models/model.onnx \
  -e PORT="$PORT2" -e WORKERS=2 "$IMAGE" >/dev/null
if ! READY2_S=$("$PYTHON" scripts/smoke_client.py wait "http://127.0.0.1:$PORT2/health/ready" "$READY_TIMEOUT"); then
  "$DOCKER" logs "$NAME2" 2>&1 | tail -20
  die "hardened container not ready"
fi
"$PYTHON" scripts/smoke_client.py check "http://127.0.0.1:$PORT2" "$TMP/smoke" | tail -n 1 | sed 's/^/  /'
PROCS=$("$DOCKER" top "$NAME2" -o pid,args | grep -c 'python' || true)
info "ready in $READY2_S s; $PROCS python processes in the container (uvicorn supervisor + workers)"
"$DOCKER" stop -t 20 "$NAME2" >/dev/null
[[ $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME2") == 0 ]] || die "hardened container did not stop cleanly"

# --- 10. your own model inside the image, its port published -----------------------------------
OWN_DIR=artifacts/ci/docker-own # inside the build context: .dockerignore lets artifacts/**/*.onnx in
log "your own model: docker build --build-arg MODEL=$OWN_DIR/model.onnx, docker run -p"
t=$SECONDS
"$PYTHON" -m training export models/digits/checkpoint.pt --out "$OWN_DIR" --name my-digits --quiet ||
  die "could not export the second model"
if ! "$DOCKER" build --network host --progress plain -t "$IMAGE-own" \
  --build-arg MODEL="$OWN_DIR/model.onnx" . >"$TMP/build-own.log" 2>&1; then
  tail -40 "$TMP/build-own.log"
  die "docker build --build-arg MODEL failed"
fi
info "exported and built in $(elapsed "$t") s"
"$PYTHON" scripts/smoke_client.py prepare "$OWN_DIR/model.onnx" "$TMP/own" | tail -n 1 | sed 's/^/    /'
PORT3=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
NAME3=bnfold-smoke-$$-own
CONTAINERS+=("$NAME3")
# Published on the host's loopback only: docker-proxy forwards 127.0.0.1:PORT3 to the
# container's port 8000 on the bridge, as `docker run -p 8000:8000` does on every interface.
# The container needs no way out (dockerd runs without ip_forward): docker's warning about
# that is dropped, any other message shows.
"$DOCKER" run -d --name "$NAME3" -p "127.0.0.1:$PORT3:8000" "$IMAGE-own" \
  2> >(grep -v 'IPv4 forwarding is disabled' >&2) >/dev/null
if ! READY3_S=$("$PYTHON" scripts/smoke_client.py wait "http://127.0.0.1:$PORT3/health/ready" "$READY_TIMEOUT"); then
  "$DOCKER" logs "$NAME3" 2>&1 | tail -20
  die "container with its own model not ready on the published port"
fi
"$PYTHON" scripts/smoke_client.py check "http://127.0.0.1:$PORT3" "$TMP/own" | tail -n 1 | sed 's/^/  /'
SERVED=$("$DOCKER" exec "$NAME3" printenv MODEL_PATH)
info "-p 127.0.0.1:$PORT3:8000 ready in $READY3_S s, serving 'my-digits' from $SERVED"
[[ $("$DOCKER" port "$NAME3" 8000/tcp) == "127.0.0.1:$PORT3" ]] || die "port not published as asked"
"$DOCKER" stop -t 20 "$NAME3" >/dev/null
[[ $("$DOCKER" inspect -f '{{.State.ExitCode}}' "$NAME3") == 0 ]] || die "own-model container did not stop cleanly"

# --- 11. bad MODEL_PATH --------------------------------------------------------------------------
log "bad MODEL_PATH: the container must exit non-zero with a one-line reason"
bad_case() { # name, extra docker args...
  local name=$1 container=bnfold-smoke-$$-$1 code lines reason
  shift
  CONTAINERS+=("$container")
  "$DOCKER" run -d --name "$container" --network none "$@" "$IMAGE" >/dev/null
  code=$(timeout 60 "$DOCKER" wait "$container") || die "$name: still running after 60 s"
  "$DOCKER" logs "$container" >"$TMP/$name.log" 2>&1
  [[ $code != 0 ]] || die "$name: exit code 0"
  ! grep -q '^Traceback' "$TMP/$name.log" || { cat "$TMP/$name.log"; die "$name: traceback in the logs"; }
  lines=$(grep -c . "$TMP/$name.log" || true)
  [[ $lines == 1 ]] || { cat "$TMP/$name.log"; die "$name: $lines lines in docker logs, expected 1"; }
  reason=$(grep . "$TMP/$name.log")
  printf '    %-10s exit %s, docker logs: %s\n' "$name" "$code" "$reason"
}
bad_case missing -e MODEL_PATH=/models/does-not-exist.onnx
bad_case corrupt -v "$TMP/smoke/bad:/models:ro" -e MODEL_PATH=/models/corrupt.onnx
bad_case wrong-card -v "$TMP/smoke/bad:/models:ro" -e MODEL_PATH=/models/wrong-card.onnx
bad_case no-card -v "$TMP/smoke/bad:/models:ro" -e MODEL_PATH=/models/no-card.onnx

# --- summary ------------------------------------------------------------------------------------
log "figures"
info "build time:               $BUILD_S s (from scratch, empty engine; pip downloads included)"
info "docker run -> ready:      $RUN_TO_READY_S s"
info "image size above base:    $ABOVE_MB MB ($((ABOVE / 1048576)) MiB)"
info "memory, 1 worker:         $MEM"
info "total so far:             $(elapsed "$T0") s"
