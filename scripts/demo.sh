#!/usr/bin/env bash
# The whole podroutes story on the built-in lab, end to end:
# build the Kubernetes-the-Hard-Way topology in namespaces, show that pods on different
# nodes cannot talk, plan, apply from the jumpbox over SSH, check status, smoke again,
# apply again (nothing to do), and remove the lab. Pass --keep to leave the lab up.
source "$(dirname "$0")/setup.sh"
KEEP=0; [ "${1:-}" = "--keep" ] && KEEP=1
NAME="${PODROUTES_DEMO_LAB:-demo}"
NODES="${PODROUTES_DEMO_NODES:-2}"
DIR="${PODROUTES_LAB_ROOT:-/run/podroutes/lab}/$NAME"
SSH=(--ssh-config "$DIR/ssh_config" --ssh-target hostname)
export COLUMNS="${COLUMNS:-110}"

if [ -e "$DIR/lab.json" ]; then
  say "removing the previous demo lab '$NAME'"
  podroutes lab down --name "$NAME"
fi
cleanup() { if [ "$KEEP" = 0 ]; then echo; say "removing the lab"; podroutes lab down --name "$NAME"; fi; }
trap cleanup EXIT

say "1. build the lab: jumpbox, server, $NODES nodes with cni0 and pods, an sshd on each machine"
podroutes lab up --name "$NAME" --nodes "$NODES"
echo; cat "$DIR/machines.txt"

echo; say "2. smoke test BEFORE routes: pods on different nodes cannot reach each other (expected)"
if podroutes lab smoke --name "$NAME"; then
  echo "unexpected: pods already reach each other before apply" >&2; exit 1
fi

echo; say "3. the plan: every node learns the other nodes' pod CIDRs, the server learns all"
podroutes plan -i "$DIR/machines.txt"

echo; say "4. apply from the jumpbox over SSH (one connection and one ip -batch per host)"
podroutes lab exec --name "$NAME" jumpbox -- podroutes apply -i "$DIR/machines.txt" "${SSH[@]}"

echo; say "5. status: desired against actual on every host"
podroutes lab exec --name "$NAME" jumpbox -- podroutes status -i "$DIR/machines.txt" "${SSH[@]}"

echo; say "6. smoke test AFTER routes: every pod reaches every pod"
podroutes lab smoke --name "$NAME"

echo; say "7. apply again: idempotent, nothing to change"
podroutes lab exec --name "$NAME" jumpbox -- podroutes apply -i "$DIR/machines.txt" "${SSH[@]}"

echo; say "done: smoke failed before apply and passed after it"
if [ "$KEEP" = 1 ]; then
  echo "the lab is still up: podroutes lab status --name $NAME; podroutes lab down --name $NAME"
fi
