#!/usr/bin/env bash
# Checks deploy/ without a cluster or a container engine: the manifests
# against the Kubernetes schemas (kubernetes-validate, offline), and that the
# Dockerfile and the manifests agree on the binary, the user and the ports.
set -euo pipefail
cd "$(dirname "$0")"

if ! command -v kubernetes-validate >/dev/null; then
    python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate==1.37.0'
fi
kubernetes-validate --strict --kubernetes-version 1.31.0 kubernetes/etcd.yaml kubernetes/nodes.yaml kubernetes/frontends.yaml

fail() { echo "deploy/check.sh: $*" >&2; exit 1; }
binary=$(sed -n 's/^ENTRYPOINT \["\([^"]*\)"\]$/\1/p' Dockerfile)
[ -n "$binary" ] || fail "the Dockerfile has no ENTRYPOINT"
for manifest in kubernetes/nodes.yaml kubernetes/frontends.yaml; do
    grep -q "command: \[\"$binary\"\]" "$manifest" || fail "$manifest does not run $binary"
    for port in $(sed -n 's/^ *containerPort: //p' "$manifest"); do
        case " $(sed -n 's/^EXPOSE //p' Dockerfile) " in *" $port "*) ;; *) fail "$manifest uses port $port, the Dockerfile does not expose it" ;; esac
        grep -q -- "0.0.0.0:$port" "$manifest" || fail "$manifest has no listener on port $port"
    done
    grep -q "runAsUser: $(sed -n 's/^USER //p' Dockerfile)" "$manifest" || fail "$manifest does not run as the image's user"
done
grep -q "COPY --from=build /out/stratus $binary" Dockerfile || fail "the Dockerfile does not put stratus at $binary"
exposed=$(sed -n 's/^EXPOSE //p' Dockerfile)
for port in $exposed; do
    grep -q "containerPort: $port" kubernetes/nodes.yaml || fail "port $port is exposed but no container port"
done
user=$(sed -n 's/^USER //p' Dockerfile)
for resource in $(sed -n 's/^  - \(.*\.yaml\)$/\1/p' kubernetes/kustomization.yaml); do
    [ -f "kubernetes/$resource" ] || fail "kustomization.yaml lists a missing $resource"
done
echo "deploy/: manifests valid; Dockerfile and manifests agree on $binary, user $user, ports $exposed"
