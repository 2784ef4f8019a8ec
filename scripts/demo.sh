#!/usr/bin/env bash
# One delivery end to end on the local stand-in cluster: brings the cluster up (as root), builds the
# example GPU-check image with the local Docker engine and delivers it with the CLI.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d node_modules ] || npm ci
bash test-cluster/cluster-up.sh
[ -f dist/cli/index.js ] || npm run package
STATE=${ACC_STATE:-/var/lib/riviera-acceptance}
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
cp examples/gpu-check/Dockerfile examples/gpu-check/gpu-check.sh "$ctx/"
cp /bin/busybox "$ctx/busybox"   # the example image is FROM scratch with busybox copied in
cd "$ctx"
node "$OLDPWD/dist/cli/index.js" deliver \
  --host 127.0.0.1 --port 2222 --username rivuser \
  --private-key-file "$STATE/id_ed25519" --known-hosts-file "$STATE/known_hosts" \
  --image riviera-demo/gpu-check:latest --smoke-test gpu-check.sh \
  --partition short-gpu --gpus 1 --remote-dir riviera-demo "$@"
