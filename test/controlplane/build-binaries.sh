#!/usr/bin/env bash
# Builds the real Kubernetes control-plane binaries (and helm, promtool) from Go modules into a cache
# outside the repository, so the test suites can run against a real API server without a container
# engine. See /work/shared/docs/local-control-plane.md for why each upstream needs its own tools module.
#
# Usage: test/controlplane/build-binaries.sh [--print-dir] [component...]
#   components: etcd k8s helm promtool kueue (default: all, in that order = value/cost order)
#   --print-dir  print "<name>=<bin dir>" for the components and exit 0 if all are built, 2 if not
#                (builds nothing; lets the harness find binaries quickly)
#
# Exit codes: 0 built or already cached; 2 not built (--print-dir only); 3 Go is not installed
# (the tests SKIP with this reason); 4 a build failed (the error is printed; the tests fail).
#
# Cache: ${TILESTREAM_TOOLS_CACHE:-$HOME/.cache/tilestream/tools}/<upstream>-<version>/
#   src/   the generated tools module (go.mod/go.sum written here, never in the repo)
#   bin/   the binaries, each with a stamp bin/.<name>.stamp holding the build key
#   build.log, the build's wall time and sizes
set -euo pipefail

readonly K8S_VERSION=v1.37.2
readonly ETCD_VERSION=v3.7.3
readonly HELM_VERSION=v3.22.0
readonly PROM_VERSION=v0.316.0 # = Prometheus 3.16.0 (Go module versions are v0.3XX.Y)
readonly KUEUE_VERSION=v0.17.0   # sigs.k8s.io/kueue: the manager (cmd/kueue) and its CRDs (config/components/crd/bases)

CACHE="${TILESTREAM_TOOLS_CACHE:-$HOME/.cache/tilestream/tools}"
LDFLAGS_BASE='-s -w'

print_dir=0
components=()
for arg in "$@"; do
  case "$arg" in
    --print-dir) print_dir=1 ;;
    etcd | k8s | helm | promtool | kueue) components+=("$arg") ;;
    -h | --help)
      sed -n '2,18p' "$0"
      exit 0
      ;;
    *)
      echo "build-binaries: unknown argument '$arg' (expected --print-dir, etcd, k8s, helm, promtool, kueue)" >&2
      exit 64
      ;;
  esac
done
[ ${#components[@]} -eq 0 ] && components=(etcd k8s helm promtool kueue)

dir_of() {
  case "$1" in
    etcd) echo "$CACHE/etcd-$ETCD_VERSION" ;;
    k8s) echo "$CACHE/kubernetes-$K8S_VERSION" ;;
    helm) echo "$CACHE/helm-$HELM_VERSION" ;;
    promtool) echo "$CACHE/prometheus-$PROM_VERSION" ;;
    kueue) echo "$CACHE/kueue-$KUEUE_VERSION" ;;
  esac
}
bins_of() {
  case "$1" in
    etcd) echo etcd ;;
    k8s) echo kube-apiserver kube-controller-manager kube-scheduler kubectl ;;
    helm) echo helm ;;
    promtool) echo promtool ;;
    kueue) echo kueue-manager ;;
  esac
}

# Go is needed even to decide whether a cached binary is current (the stamp records the Go version),
# but a cache built earlier is still usable without Go: stamps are checked for presence only then.
have_go=1
command -v go >/dev/null 2>&1 || have_go=0

go_key() {
  if [ "$have_go" = 1 ]; then echo "$(go env GOVERSION) $(go env GOOS)/$(go env GOARCH)"; else echo nogo; fi
}

# A stamp holds "<key>" written after a successful build; the binary is current when the stamp
# exists and (with Go present) names the same Go version, platform and flags.
stamp_key() { # component
  echo "$(go_key) ldflags=[$LDFLAGS_BASE] v=$(basename "$(dir_of "$1")") recipe=2"
}
is_built() { # component
  local d b
  d="$(dir_of "$1")/bin"
  for b in $(bins_of "$1"); do
    [ -x "$d/$b" ] && [ -f "$d/.$b.stamp" ] || return 1
    if [ "$have_go" = 1 ] && [ "$(cat "$d/.$b.stamp")" != "$(stamp_key "$1")" ]; then return 1; fi
  done
  # Kueue's manifests travel with its binary.
  [ "$1" != kueue ] || [ -f "$d/config/webhook/manifests.yaml" ] || return 1
  return 0
}

if [ "$print_dir" = 1 ]; then
  rc=0
  for c in "${components[@]}"; do
    echo "$c=$(dir_of "$c")/bin"
    is_built "$c" || rc=2
  done
  exit $rc
fi

all_built=1
for c in "${components[@]}"; do is_built "$c" || all_built=0; done
if [ "$all_built" = 1 ]; then exit 0; fi

if [ "$have_go" = 0 ]; then
  echo "build-binaries: Go is not installed (no 'go' on PATH), so kube-apiserver, etcd, helm and promtool cannot be built; install Go >= 1.26 to run the real-control-plane tests." >&2
  exit 3
fi

export CGO_ENABLED=0
export GOFLAGS="-modcacherw -buildvcs=false"
# The machine's Go may default to GOTOOLCHAIN=local; all pinned upstreams need go <= 1.26.7 (checked
# on their go.mod), and 1.26.8 is installed. Override with TILESTREAM_GOTOOLCHAIN=go1.27.3 if needed.
[ -n "${TILESTREAM_GOTOOLCHAIN:-}" ] && export GOTOOLCHAIN="$TILESTREAM_GOTOOLCHAIN"

mkdir -p "$CACHE"

# Prints the path of the upstream go.mod in the module cache.
upstream_gomod() { # module@version
  go mod download -json "$1" | jq -er '.GoMod'
}

# Starts a fresh tools module in $1/src with the upstream's go/godebug lines.
init_tools_module() { # dir modpath upstream_gomod
  rm -rf "$1/src"
  mkdir -p "$1/src"
  (
    cd "$1/src"
    go mod init "$2" >/dev/null 2>&1
    local gov godebug
    gov="$(sed -n 's/^go \([0-9.]*\)$/\1/p' "$3" | head -1)"
    [ -n "$gov" ] && go mod edit -go="$gov"
    # godebug lines keep the runtime defaults upstream built with.
    while read -r godebug; do
      [ -n "$godebug" ] && go mod edit -godebug="$godebug"
    done < <(sed -n 's/^godebug \(.*\)$/\1/p' "$3")
    # Non-local replace and all exclude directives of the upstream apply only in the main module:
    # copy them. Local ones (=> ./x, => ../x) point into upstream's repo and are replaced by pins.
    go mod edit -json "$3" | jq -r '(.Exclude // [])[] | "-exclude=\(.Path)@\(.Version)"' |
      while read -r e; do go mod edit "$e"; done
    go mod edit -json "$3" |
      jq -r '(.Replace // [])[] | select(.New.Version != null) | "-replace=\(.Old.Path)\(if .Old.Version then "@"+.Old.Version else "" end)=\(.New.Path)@\(.New.Version)"' |
      while read -r r; do go mod edit "$r"; done
  )
}

now() { date +%s; }

build_etcd() { # dir
  local d="$1" gomod
  gomod="$(upstream_gomod "go.etcd.io/etcd/server/v3@$ETCD_VERSION")"
  init_tools_module "$d" tilestream.local/etcdtools "$gomod"
  (
    cd "$d/src"
    go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" # the module root is the main package
    # The module root of server/v3 is package main (etcdmain.Main).
    nice -n 19 go build -trimpath -ldflags "$LDFLAGS_BASE" -o "$d/bin.new/etcd" go.etcd.io/etcd/server/v3
  )
}

build_k8s() {
  local d="$1" gomod minor staging
  gomod="$(upstream_gomod "k8s.io/kubernetes@$K8S_VERSION")"
  init_tools_module "$d" tilestream.local/k8stools "$gomod"
  minor="$(echo "$K8S_VERSION" | cut -d. -f2)"
  # Staging modules: required at v0.0.0 and mapped to ./staging by upstream; pin each to the published
  # v0.<minor>.<patch>, generated from the go.mod actually downloaded.
  staging="$(sed -n 's#^[[:space:]]*\(k8s\.io/[^ ]*\) => \./staging/.*#\1#p' "$gomod")"
  local pub="v0.${K8S_VERSION#v1.}"
  local date
  # The release's publication time (from the proxy's .info), so rebuilds stamp the same date.
  date="$(jq -r '.Time // empty' "$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | jq -r '.Info')" 2>/dev/null || true)"
  [ -n "$date" ] || date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local ld="$LDFLAGS_BASE" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  (
    cd "$d/src"
    local m
    for m in $staging; do go mod edit -replace="$m=$m@$pub"; done
    go get "k8s.io/kubernetes@$K8S_VERSION"
    go get "k8s.io/kubernetes/cmd/kube-apiserver@$K8S_VERSION" "k8s.io/kubernetes/cmd/kube-controller-manager@$K8S_VERSION" \
      "k8s.io/kubernetes/cmd/kube-scheduler@$K8S_VERSION" "k8s.io/kubernetes/cmd/kubectl@$K8S_VERSION"
    # One command so shared packages compile once; -o dir/ writes one binary per main package.
    nice -n 19 go build -trimpath -ldflags "$ld" -o "$d/bin.new/" k8s.io/kubernetes/cmd/kube-apiserver \
      k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl
  )
}

build_helm() {
  local d="$1" gomod
  gomod="$(upstream_gomod "helm.sh/helm/v3@$HELM_VERSION")"
  init_tools_module "$d" tilestream.local/helmtools "$gomod"
  # Unstamped helm v3 assumes Kubernetes 1.20 for template/lint capabilities; stamp the client-go
  # minor it links (as its Makefile does) and its own version.
  local kminor
  kminor="$(sed -n 's#^[[:space:]]*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' "$gomod" | head -1)"
  local ld="$LDFLAGS_BASE -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  local p
  for p in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    ld="$ld -X $p.k8sVersionMajor=1 -X $p.k8sVersionMinor=$kminor"
  done
  (
    cd "$d/src"
    # The package path (not the module) so go.sum gets every module cmd/helm imports.
    go get "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
    nice -n 19 go build -trimpath -ldflags "$ld" -o "$d/bin.new/helm" helm.sh/helm/v3/cmd/helm
  )
}

build_promtool() {
  local d="$1" gomod
  gomod="$(upstream_gomod "github.com/prometheus/prometheus@$PROM_VERSION")"
  init_tools_module "$d" tilestream.local/promtools "$gomod"
  local v="3.${PROM_VERSION#v0.3}"
  (
    cd "$d/src"
    go get "github.com/prometheus/prometheus/cmd/promtool@$PROM_VERSION"
    # remove_all_sd drops the cloud service-discovery plugins promtool does not need.
    nice -n 19 go build -trimpath -tags remove_all_sd \
      -ldflags "$LDFLAGS_BASE -X github.com/prometheus/common/version.Version=$v" \
      -o "$d/bin.new/promtool" github.com/prometheus/prometheus/cmd/promtool
  )
}

build_kueue() {
  local d="$1" gomod
  gomod="$(upstream_gomod "sigs.k8s.io/kueue@$KUEUE_VERSION")"
  init_tools_module "$d" tilestream.local/kueuetools "$gomod"
  local date
  date="$(jq -r '.Time // empty' "$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | jq -r '.Info')" 2>/dev/null || true)"
  [ -n "$date" ] || date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local vp=sigs.k8s.io/kueue/pkg/version
  (
    cd "$d/src"
    go get "sigs.k8s.io/kueue/cmd/kueue@$KUEUE_VERSION"
    nice -n 19 go build -trimpath -ldflags "$LDFLAGS_BASE -X $vp.GitVersion=$KUEUE_VERSION -X $vp.BuildDate=$date" \
      -o "$d/bin.new/kueue-manager" sigs.k8s.io/kueue/cmd/kueue
  )
  # The CRDs (v1beta1 + v1beta2, storage v1beta2) and webhook configurations as released; the
  # harness (kueue-manifests.ts) points their webhooks at the local manager by URL, where upstream's
  # kustomize overlays point them at a Service.
  local mod
  mod="$(go mod download -json "sigs.k8s.io/kueue@$KUEUE_VERSION" | jq -er '.Dir')"
  mkdir -p "$d/bin.new/config/crd" "$d/bin.new/config/webhook"
  cp "$mod"/config/components/crd/bases/*.yaml "$d/bin.new/config/crd/"
  cp "$mod/config/components/webhook/manifests.yaml" "$d/bin.new/config/webhook/"
  chmod -R u+w "$d/bin.new/config"
}

build_one() { # component
  local c="$1" d t0 t1 b
  d="$(dir_of "$c")"
  mkdir -p "$d"
  # One builder at a time per component: parallel test processes wait instead of building twice.
  exec 9>"$d.lock"
  flock 9
  if is_built "$c"; then
    exec 9>&-
    return 0
  fi
  echo "build-binaries: building $c into $d/bin (nice 19; a cold build can take many minutes on 2 cores; log: $d/build.log)" >&2
  rm -rf "$d/bin.new"
  mkdir -p "$d/bin.new"
  t0=$(now)
  # Run in a subshell with -e on, outside any condition (bash ignores -e inside `if`/`||` contexts).
  local st
  (
    set -e
    "build_$c" "$d"
  ) >"$d/build.log" 2>&1
  st=$?
  if [ "$st" != 0 ]; then
    echo "build-binaries: building $c FAILED; last lines of $d/build.log:" >&2
    tail -n 30 "$d/build.log" >&2
    exec 9>&-
    return 4
  fi
  t1=$(now)
  # Swap the finished binaries in as a whole, then stamp them.
  rm -rf "$d/bin"
  mv "$d/bin.new" "$d/bin"
  for b in $(bins_of "$c"); do
    stamp_key "$c" >"$d/bin/.$b.stamp"
  done
  {
    echo "built $c in $((t1 - t0)) s on $(date -u +%Y-%m-%dT%H:%M:%SZ) with $(go_key)"
    for b in $(bins_of "$c"); do echo "size $b $(du -h "$d/bin/$b" | cut -f1)"; done
  } | tee -a "$d/build-times.txt" >&2
  exec 9>&-
}

rc=0
set +e
for c in "${components[@]}"; do
  build_one "$c"
  st=$?
  [ "$st" != 0 ] && rc=$st
done
exit $rc
