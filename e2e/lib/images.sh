# The operator, sidecar and pause images, built here as OCI archives from
# the release binaries (no Docker, no registry) and imported into the
# node's containerd. Sourced by e2e/stack.
# shellcheck shell=bash
#
# The runtime files match operator/Dockerfile and mcp-sidecar/Dockerfile,
# whose base is distroless/cc-debian12:nonroot: the same Debian 12 packages
# (glibc, libgcc, libssl, CA certificates, tzdata, netbase) unpacked as
# distroless unpacks them, user 65532, no shell, no package manager, the
# same entrypoints and ports; the sidecar adds zlib at /usr/lib as its
# Dockerfile does. The names are the ones the chart and the operator use by
# default, with a tag other than `latest`, so the kubelet never pulls.

IMAGE_VERSION=$(sed -nE 's/^version = "([^"]+)"/\1/p' "$REPO_DIR/Cargo.toml" | head -n1)
OPERATOR_IMAGE=ghcr.io/mcpkafka/mcp-kafka-operator:$IMAGE_VERSION
SIDECAR_IMAGE=ghcr.io/mcpkafka/mcp-kafka-sidecar:$IMAGE_VERSION
# Named as containerd's sandbox image setting says (node.sh); built here.
PAUSE_IMAGE=mcpkafka.dev/testground/pause:1
# An MCP client (the official Go SDK) for tests that call a server from a
# Pod (e2e/ground/probe).
PROBE_IMAGE=mcpkafka.dev/testground/mcp-probe:1
IMAGE_NAMES=(pause sidecar operator probe)
IMAGE_DIR=$STATE_DIR/images

# deb_versions PKG...: "pkg=version" lines of what apt would download.
deb_versions() {
  local p v
  for p in "$@"; do
    v=$(apt-cache show --no-all-versions "$p" 2>/dev/null | sed -n 's/^Version: //p' | head -n1)
    [ -n "$v" ] || die "apt knows no package $p (run apt-get update?)"
    printf '%s=%s\n' "$p" "$v"
  done
}

# fetch_debs DIR PKG=VERSION...: the packages' .deb files into DIR (cached).
fetch_debs() {
  local dir=$1; shift
  mkdir -p "$dir"
  (cd "$dir" && run_logged "$dir/download.log" apt-get download "$@")
}

# The base layer's files (distroless/cc's), unpacked once per package set
# into the cache. Prints its directory.
image_base_rootfs() {
  local pins key dir
  pins=$(deb_versions "${IMAGE_BASE_DEBS[@]}")
  key=$(printf '%s\n' "$pins" | sha256sum | cut -c1-12)
  dir=$CACHE_DIR/image-base-debian12-$key
  if [ ! -f "$dir/.complete" ]; then
    log "unpacking the image base from Debian packages (once): ${pins//$'\n'/ }"
    rm -rf "$dir"; mkdir -p "$dir/debs" "$dir/rootfs"
    # shellcheck disable=SC2086
    fetch_debs "$dir/debs" $pins
    local deb root=$dir/rootfs
    for deb in "$dir"/debs/*.deb; do dpkg-deb -x "$deb" "$root"; done
    # What a package's scripts would have made: the CA bundle (as
    # update-ca-certificates concatenates it) and nothing else; the
    # scripts themselves are not shipped (there is no shell to run them).
    mkdir -p "$root/etc/ssl/certs"
    cat "$root"/usr/share/ca-certificates/mozilla/*.crt >"$root/etc/ssl/certs/ca-certificates.crt"
    rm -f "$root/usr/sbin/update-ca-certificates"
    rm -rf "$root/usr/share/man" "$root/usr/share/lintian" "$root/usr/share/info"
    find "$root/usr/share/doc" -type f ! -name copyright -delete
    find "$root/usr/share/doc" -type d -empty -delete
    cat >"$root/etc/passwd" <<'PASSWD'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
PASSWD
    cat >"$root/etc/group" <<'GROUP'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
GROUP
    printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$root/etc/nsswitch.conf"
    cat >"$root/etc/os-release" <<'OSREL'
PRETTY_NAME="mcp-kafka-operator test image (Debian 12 packages, distroless layout)"
ID=debian
VERSION_ID="12"
OSREL
    mkdir -p "$root/tmp" "$root/root" "$root/home/nonroot" "$root/usr/local/bin"
    chmod 1777 "$root/tmp"; chmod 700 "$root/root" "$root/home/nonroot"
    chown 65532:65532 "$root/home/nonroot"
    printf '%s\n' "$pins" >"$dir/packages"
    touch "$dir/.complete"
  fi
  printf '%s\n' "$dir"
}

# image_check_no_shell ROOTFS: the images promise no shell.
image_check_no_shell() {
  local found
  found=$(find "$1" \( -name sh -o -name bash -o -name dash -o -name busybox \) -print | head -n1)
  [ -z "$found" ] || die "image rootfs $1 has a shell: $found"
}

# image_check_runs ROOTFS BIN ARGS...: the binary starts with the image's own
# loader and libraries (a missing library fails here, not in a Pod).
image_check_runs() {
  local root=$1; shift
  chroot --userspec=65532:65532 "$root" "$@" >/dev/null 2>&1 \
    || die "$* does not run inside its image's files ($(chroot "$root" "$@" 2>&1 | head -n1))"
}

# The release binaries, built as the Dockerfiles build them: one cargo
# invocation per binary, so that features are not unified across the two.
build_release_binaries() {
  use_build_cache
  local bin
  for bin in mcp-kafka-sidecar mcp-kafka-operator; do
    log "cargo build --release --bin $bin"
    (cd "$REPO_DIR" && run_logged "$LOG_DIR/build-$bin.log" cargo build --release --locked --bin "$bin")
  done
}

# build_images: the archives into $IMAGE_DIR (rebuilt when a binary
# or the base changed; the archive's name carries its inputs' digest).
build_images() {
  need_cmd gcc "gcc builds the static pause binary"
  need_cmd apt-get "the images' runtime files are Debian packages"
  build_release_binaries
  local base work=$IMAGE_DIR/work release=$CARGO_TARGET_DIR/release
  base=$(image_base_rootfs)
  mkdir -p "$IMAGE_DIR" "$work"

  # pause: static, alone in its image, as registry.k8s.io/pause runs it.
  rm -rf "$work/pause"; mkdir -p "$work/pause"
  gcc -Os -static -Wall -Wextra -o "$work/pause/pause" "$E2E_DIR/images/pause.c"
  strip "$work/pause/pause"
  write_image pause "$PAUSE_IMAGE" --layer "$work/pause" --user 65535:65535 --entrypoint '["/pause"]'


  # The probe: a static Go binary, alone in its image.
  need_cmd go "Go builds the MCP probe"
  rm -rf "$work/probe"; mkdir -p "$work/probe"
  (cd "$E2E_DIR/ground/probe" && CGO_ENABLED=0 run_logged "$LOG_DIR/build-probe.log" \
    go build -trimpath -ldflags "-s -w" -o "$work/probe/probe" .)
  write_image probe "$PROBE_IMAGE" --layer "$work/probe" --user 65532:65532 --entrypoint '["/probe"]'

  # The sidecar's zlib (librdkafka links it), as its Dockerfile copies it.
  local zlib_dir zpin
  zpin=$(deb_versions zlib1g)
  zlib_dir=$CACHE_DIR/image-zlib-$(printf '%s' "$zpin" | sha256sum | cut -c1-12)
  if [ ! -f "$zlib_dir/.complete" ]; then
    rm -rf "$zlib_dir"; fetch_debs "$zlib_dir/debs" "$zpin"
    dpkg-deb -x "$zlib_dir"/debs/*.deb "$zlib_dir/x"
    touch "$zlib_dir/.complete"
  fi

  local app=$work/sidecar
  rm -rf "$app"; mkdir -p "$app/usr/local/bin" "$app/usr/lib"
  cp -L "$zlib_dir/x/lib/x86_64-linux-gnu/libz.so.1" "$app/usr/lib/libz.so.1"
  install -m 0755 "$release/mcp-kafka-sidecar" "$app/usr/local/bin/"
  image_check_joined "$base/rootfs" "$app" /usr/local/bin/mcp-kafka-sidecar --help
  write_image sidecar "$SIDECAR_IMAGE" --layer "$base/rootfs" --layer "$app" \
    --port 8090/tcp --entrypoint '["/usr/local/bin/mcp-kafka-sidecar"]'

  app=$work/operator
  rm -rf "$app"; mkdir -p "$app/usr/local/bin"
  install -m 0755 "$release/mcp-kafka-operator" "$app/usr/local/bin/"
  image_check_joined "$base/rootfs" "$app" /usr/local/bin/mcp-kafka-operator --help
  write_image operator "$OPERATOR_IMAGE" --layer "$base/rootfs" --layer "$app" \
    --port 8080/tcp --entrypoint '["/usr/local/bin/mcp-kafka-operator"]' --cmd '["run"]'
}

# image_check_joined BASE APP CMD...: the checks on the two layers as the
# container sees them (copied together; the copy is removed).
image_check_joined() {
  local base=$1 app=$2; shift 2
  local joined=$IMAGE_DIR/work/joined
  rm -rf "$joined"; cp -a "$base" "$joined"; cp -a "$app"/. "$joined"/
  image_check_no_shell "$joined"
  image_check_runs "$joined" "$@"
  rm -rf "$joined"
}

# write_image NAME REF OCI_IMAGE_ARGS...: $IMAGE_DIR/NAME.tar, unless the
# archive there was made from the same files, modes, owners and arguments.
write_image() {
  local name=$1 ref=$2; shift 2
  local common=(--env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
  [ "$name" = pause ] || [ "$name" = probe ] || common+=(--env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
    --user 65532:65532 --workdir /home/nonroot)
  local args=("${common[@]}" "$@") layers=() i key
  for ((i = 0; i < ${#args[@]}; i++)); do [ "${args[$i]}" = --layer ] && layers+=("${args[$((i + 1))]}"); done
  key=$({
    printf '%s\n' "$ref" "${args[@]}"
    find "${layers[@]}" -printf '%P %y %m %U %G %l\n' | sort
    find "${layers[@]}" -type f -print0 | sort -z | xargs -0 sha256sum | cut -d' ' -f1
  } | sha256sum | cut -c1-16)
  if [ -f "$IMAGE_DIR/$name.tar" ] && [ "$(cat "$IMAGE_DIR/$name.key" 2>/dev/null)" = "$key" ]; then
    return 0
  fi
  python3 "$E2E_DIR/lib/oci_image.py" --out "$IMAGE_DIR/$name.tar" --name "$ref" "${args[@]}" \
    >"$IMAGE_DIR/$name.digest" || die "writing the $name image failed"
  printf '%s\n' "$key" >"$IMAGE_DIR/$name.key"
  log "image $ref ($(du -h "$IMAGE_DIR/$name.tar" | cut -f1), manifest $(cat "$IMAGE_DIR/$name.digest"))"
}
