#!/usr/bin/env bash
# build-images.sh - build the "realistic dedup corpus" for the Strata benchmark.
#
# Design note
# -----------
# Strata's dedup is meant to shine on fleets of VM disks that share most of
# their content (same distribution, different package sets) but whose file
# systems place that content at different offsets.  Synthetic data cannot
# reproduce that, so this script builds real ext4 disk images from Debian 12
# (bookworm) root file systems:
#
#   * every image is *installed separately*: its own `debootstrap` run with its
#     own `--include=` list over the same default-variant base.  Shared
#     packages therefore end up as identical file contents at different block
#     positions, exactly like independently installed VMs;
#   * each root fs is packed with `mkfs.ext4 -d ROOTFS -F IMG SIZE` into a sparse
#     image of a fixed size (2 GiB by default), like a thin-provisioned disk.
#
# Everything lives in a cache directory outside the repository
# (${STRATA_BENCH_CACHE:-$HOME/.cache/strata-bench}):
#
#   debs/              downloaded .debs (debootstrap --cache-dir), shared by all
#   rootfs/NAME/       the debootstrap folder of image NAME
#   rootfs/NAME.done   marker: that folder is complete
#   images/NAME.img    the ext4 image
#   images/NAME.img.done      marker: that image is complete
#   images/NAME.packages      dpkg package list of the image (name, version)
#
# The script is idempotent: a step whose `.done` marker exists is skipped; a
# step without its marker (e.g. interrupted half-way) is wiped and redone.
# Progress goes to stderr; the paths of the finished images are printed on
# stdout, one per line, so that
#
#   npx tsx bench/corpus/peers.ts $(bash bench/corpus/build-images.sh)
#
# works.  Must run as root (debootstrap and chroot need it).
#
# Usage: build-images.sh [--force] [--help] [NAME...]
#   NAME     build only these images (default: all of them)
#   --force  rebuild the root file systems and images (keeps the .deb cache)
#
# Environment:
#   STRATA_BENCH_CACHE       cache directory (default $HOME/.cache/strata-bench)
#   STRATA_BENCH_MIRROR      Debian mirror URL (default: the bookworm mirror
#                            configured in this machine's apt sources)
#   STRATA_BENCH_IMAGE_SIZE  size of every image (default 2G, mke2fs syntax)
#
# Needs the Debian packages: debootstrap, e2fsprogs (mkfs.ext4 with -d),
# util-linux (flock, findmnt), coreutils.

set -euo pipefail

SUITE=bookworm
IMAGE_SIZE="${STRATA_BENCH_IMAGE_SIZE:-2G}"
CACHE="${STRATA_BENCH_CACHE:-$HOME/.cache/strata-bench}"

# The image set.  All share the debootstrap default variant (required +
# important priority packages, i.e. a small but complete system with systemd
# and apt) and openssh-server, as a VM disk would.  The extra sets overlap on
# purpose (python3 in web and db, perl/libssl everywhere) so that cross-image
# dedup has something to find beyond the base.
IMAGE_NAMES=(base web build db)
declare -A IMAGE_INCLUDE=(
  [base]="openssh-server,ca-certificates"
  [web]="openssh-server,ca-certificates,nginx,python3,python3-venv,python3-pip,python3-flask,curl"
  [build]="openssh-server,ca-certificates,build-essential,git,pkg-config"
  [db]="openssh-server,ca-certificates,postgresql,python3,python3-psycopg2,curl"
)

log() { printf '[build-images %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { printf '[build-images] ERROR: %s\n' "$*" >&2; exit 1; }

usage() { sed -n 's/^# \{0,1\}//; /^Usage:/,/^$/p' "$0" >&2; }

# --- arguments ---------------------------------------------------------------
FORCE=0
SELECTED=()
for arg in "$@"; do
  case "$arg" in
    --force) FORCE=1 ;;
    -h|--help) usage; exit 0 ;;
    -*) usage; die "unknown option: $arg" ;;
    *)
      [[ -n "${IMAGE_INCLUDE[$arg]+set}" ]] || die "unknown image '$arg' (known: ${IMAGE_NAMES[*]})"
      SELECTED+=("$arg")
      ;;
  esac
done
((${#SELECTED[@]})) || SELECTED=("${IMAGE_NAMES[@]}")

# --- preflight ---------------------------------------------------------------
[[ $(id -u) -eq 0 ]] || die "must run as root (debootstrap needs chroot)"
command -v debootstrap >/dev/null 2>&1 \
  || die "debootstrap not found: install the Debian package 'debootstrap' (apt-get install -y debootstrap)"
command -v mkfs.ext4 >/dev/null 2>&1 \
  || die "mkfs.ext4 not found: install the Debian package 'e2fsprogs'"
# (mkfs.ext4 prints its usage and fails on -h; capture it first, since grep -q
# closing the pipe early would trip pipefail.)
mkfs_usage="$(mkfs.ext4 -h 2>&1 || true)"
grep -q -- '-d root-directory' <<<"$mkfs_usage" \
  || die "this mkfs.ext4 lacks -d (populate from a directory): need e2fsprogs >= 1.43"
for tool in flock findmnt; do
  command -v "$tool" >/dev/null 2>&1 || die "$tool not found: install the Debian package 'util-linux'"
done

# Find the Debian mirror apt uses here: the first enabled "deb" source that
# serves the plain $SUITE suite, from one-line (.list) or deb822 (.sources)
# files.  STRATA_BENCH_MIRROR overrides it.
detect_mirror() {
  local files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  local f
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 0
  awk -v suite="$SUITE" '
    function flush() {   # end of a deb822 stanza
      if (!found && uris != "" && enabled != "no" && (" " types " ") ~ / deb / && (" " suites " ") ~ (" " suite " ")) {
        split(uris, u, " "); print u[1]; found = 1; exit
      }
      types = ""; uris = ""; suites = ""; enabled = ""
    }
    FNR == 1 { flush(); deb822 = (FILENAME ~ /\.sources$/) }
    /^[ \t]*#/ { next }
    deb822 && /^[ \t]*$/ { flush(); next }
    deb822 {
      key = tolower($1); sub(/:$/, "", key); $1 = ""; sub(/^[ \t]+/, "")
      if (key == "types") types = $0
      else if (key == "uris") uris = $0
      else if (key == "suites") suites = $0
      else if (key == "enabled") enabled = tolower($0)
      next
    }
    $1 == "deb" {
      i = 2
      if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }   # skip [options]
      if ($(i + 1) == suite) { print $i; found = 1; exit }
    }
    END { flush() }
  ' "${files[@]}"
}
MIRROR="${STRATA_BENCH_MIRROR:-$(detect_mirror)}"
[[ -n "$MIRROR" ]] || die "no '$SUITE' mirror found in the apt sources; set STRATA_BENCH_MIRROR"

mkdir -p "$CACHE/debs" "$CACHE/rootfs" "$CACHE/images"
CACHE="$(cd "$CACHE" && pwd -P)"   # debootstrap --cache-dir wants an absolute path

# One build at a time per cache directory.
exec 9>"$CACHE/.lock"
flock -n 9 || { log "another build holds $CACHE/.lock; waiting"; flock 9; }

# --- helpers -------------------------------------------------------------------

# Unmount whatever is still mounted below $1 (debootstrap mounts /proc, /sys,
# /dev/pts ... inside the target and a killed run can leave them behind).
unmount_below() {
  local dir="$1" mp
  # Deepest mount points first.
  while read -r mp; do
    [[ -n "$mp" ]] || continue
    log "unmounting leftover $mp"
    umount "$mp" 2>/dev/null || umount -l "$mp"
  done < <(findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | sort -r)
}

# Remove a directory tree that may be a (half-built) chroot: unmount first and
# never cross into another file system, so a forgotten bind mount of /dev or
# /proc cannot be deleted through.
remove_tree() {
  local dir="$1"
  [[ -e "$dir" ]] || return 0
  unmount_below "$dir"
  if findmnt -rn -o TARGET | awk -v d="$dir/" 'index($0, d) == 1' | grep -q .; then
    die "still mounted below $dir; refusing to delete it"
  fi
  rm -rf --one-file-system -- "$dir"
}

# Print "bytes" of actual disk usage (sparse-aware) of a file or tree.
du_bytes() { du -s --block-size=1 -- "$1" | cut -f1; }

human() { numfmt --to=iec-i --suffix=B "$1"; }

# Build rootfs/NAME with its own debootstrap run.
build_rootfs() {
  local name="$1" dir="$CACHE/rootfs/$1" done="$CACHE/rootfs/$1.done"
  if [[ -f "$done" && $FORCE -eq 0 ]]; then
    log "rootfs $name: cached ($dir)"
    return 0
  fi
  rm -f "$done"
  remove_tree "$dir"
  mkdir -p "$dir"
  log "rootfs $name: debootstrap $SUITE (+ ${IMAGE_INCLUDE[$name]}) from $MIRROR"
  local start=$SECONDS logfile="$CACHE/rootfs/$name.debootstrap.log"
  if ! debootstrap --arch="$(dpkg --print-architecture)" \
        --cache-dir="$CACHE/debs" \
        --include="${IMAGE_INCLUDE[$name]}" \
        "$SUITE" "$dir" "$MIRROR" >"$logfile" 2>&1; then
    unmount_below "$dir"
    tail -n 30 "$logfile" >&2 || true
    die "debootstrap failed for $name (full log: $logfile)"
  fi
  unmount_below "$dir"   # normally a no-op: debootstrap unmounts on exit
  # What a freshly installed VM would not carry: the apt download cache.
  rm -rf --one-file-system -- "$dir"/var/cache/apt/archives/*.deb
  touch "$done"
  log "rootfs $name: done in $((SECONDS - start)) s, $(human "$(du_bytes "$dir")")"
}

# Pack rootfs/NAME into images/NAME.img (sparse, fixed size).
build_image() {
  local name="$1" dir="$CACHE/rootfs/$1" img="$CACHE/images/$1.img" done="$CACHE/images/$1.img.done"
  if [[ -f "$done" && $FORCE -eq 0 && -f "$img" ]]; then
    log "image $name: cached ($img)"
    return 0
  fi
  rm -f "$done" "$img"
  log "image $name: mkfs.ext4 -d (size $IMAGE_SIZE)"
  local start=$SECONDS
  truncate -s "$IMAGE_SIZE" "$img"
  mkfs.ext4 -q -F -L "strata-$name" -d "$dir" "$img" "$IMAGE_SIZE" >&2 \
    || { rm -f "$img"; die "mkfs.ext4 failed for $name"; }
  dpkg-query --admindir="$dir/var/lib/dpkg" -W -f '${Package}\t${Version}\n' \
    >"$CACHE/images/$name.packages"
  touch "$done"
  log "image $name: done in $((SECONDS - start)) s, $(human "$(du_bytes "$img")") used of $(human "$(stat -c %s "$img")")"
}

# --- main ----------------------------------------------------------------------
log "cache: $CACHE; images: ${SELECTED[*]}"
total_start=$SECONDS
for name in "${SELECTED[@]}"; do
  # A forced run must rebuild the image from a fresh rootfs.
  [[ $FORCE -eq 1 ]] && rm -f "$CACHE/images/$name.img.done"
  [[ -f "$CACHE/rootfs/$name.done" ]] || rm -f "$CACHE/images/$name.img.done"
  build_rootfs "$name"
  build_image "$name"
done
log "all done in $((SECONDS - total_start)) s"

# Summary (stderr) and the image paths (stdout).
{
  printf '%-8s %12s %14s %14s\n' image size used rootfs
  for name in "${SELECTED[@]}"; do
    img="$CACHE/images/$name.img"
    printf '%-8s %12s %14s %14s\n' "$name" \
      "$(human "$(stat -c %s "$img")")" \
      "$(human "$(du_bytes "$img")")" \
      "$(human "$(du_bytes "$CACHE/rootfs/$name")")"
  done
} >&2
for name in "${SELECTED[@]}"; do
  printf '%s\n' "$CACHE/images/$name.img"
done
