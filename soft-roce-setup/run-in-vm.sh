#!/usr/bin/env bash
# Run COMMAND inside a small qemu VM whose kernel has soft-RoCE (rdma_rxe), for machines whose own
# kernel lacks it (the dev/CI machines):
#
#   run-in-vm.sh [-q] [--] COMMAND [ARG...]
#
# The VM boots Debian's linux-image-amd64 kernel (KVM when /dev/kvm works, else TCG) with this
# machine's root file system shared read-only (a tmpfs overlay on top: writes vanish with the VM)
# and the current directory shared read-write at the same path. Inside, as root: rdma_rxe on a
# veth pair (setup-rxe.sh), memlock unlimited, then COMMAND in the current directory with this
# environment, stdin from /dev/null. COMMAND's output (stdout and stderr together) is written
# to a file on the host and printed here as it comes; the exit status is COMMAND's.
# Only the current directory is shared writable: the VM has its own empty /tmp and no network
# beyond its own veth pair and loopback.
# Shell syntax needs a shell: run-in-vm.sh -- bash -c 'server & sleep 1; client'.
# Exit 124: the VM ran past REMORA_VM_TIMEOUT and was killed. Exit 125: the VM or the rxe setup
# failed before COMMAND ran (its logs are printed). Both can also be COMMAND's own status.
set -euo pipefail

prog="run-in-vm"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
repo=$(cd "$here/.." && pwd -P)
timeout_s=${REMORA_VM_TIMEOUT:-1200}
cache=${REMORA_VM_CACHE:-$repo/target/soft-roce}
accel=${REMORA_VM_ACCEL:-auto}
smp=${REMORA_VM_SMP:-2}
mem=${REMORA_VM_MEM:-2G}
kver=${REMORA_VM_KERNEL:-}
keep=${REMORA_VM_KEEP:-0}
debug=${REMORA_VM_DEBUG:-0}
quiet=0
busybox=/bin/busybox # from busybox-static: runs in the initramfs with no libraries

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<'EOF'

Options: -q, --quiet   no progress/timing lines on stderr (COMMAND's output and errors only)
Environment:
  REMORA_VM_TIMEOUT  seconds before the VM is killed (default 1200)
  REMORA_VM_CACHE    folder for the initramfs and run folders (default <repo>/target/soft-roce)
  REMORA_VM_ACCEL    auto | kvm | tcg (auto: kvm when /dev/kvm is usable and the CPU has vmx/svm)
  REMORA_VM_SMP, REMORA_VM_MEM   guest CPUs and memory (default 2 and 2G)
  REMORA_VM_KERNEL   kernel version under /boot and /lib/modules (default: newest with rdma_rxe)
  REMORA_VM_KEEP=1   keep the run folder (logs, output) even when all went well
  REMORA_VM_DEBUG=1  kernel messages and the guest's log on stderr as they come
  REMORA_VM_INSTALL_KERNEL=1   install linux-image-amd64 even where a bootloader would pick it up
EOF
}

log() { [ "$quiet" = 1 ] || printf '%s: %s\n' "$prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 125
}

while [ $# -gt 0 ]; do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    -q | --quiet) quiet=1; shift ;;
    --) shift; break ;;
    -*) usage >&2; die "unknown option: $1 (put -- before COMMAND)" ;;
    *) break ;;
  esac
done
[ $# -gt 0 ] || { usage >&2; die "no COMMAND"; }
case "$timeout_s" in '' | *[!0-9]* | 0) die "REMORA_VM_TIMEOUT wants whole seconds > 0, got '$timeout_s'" ;; esac

cwd=$(pwd -P)
[ "$cwd" != / ] || die "run it from a project folder, not / (the current folder is shared read-write)"
case "$cwd" in /proc | /proc/* | /sys | /sys/* | /dev | /dev/*) die "cannot share $cwd into the VM" ;; esac
case "$cwd$cache" in *$'\n'*) die "paths with newlines are not supported" ;; esac

# --- what the VM needs on this machine -------------------------------------------------------

pkg_installed() { [ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]; }

# apt-get install that never removes a package (--no-remove): where the install would need to
# take something away, it fails and says so rather than changing the machine behind your back.
apt_install() {
  [ "$(id -u)" = 0 ] || die "missing packages ($*) and not root: install them first (apt-get install $*)"
  command -v apt-get >/dev/null || die "missing packages ($*) and no apt-get: install their equivalents"
  log "installing $* (apt-get)"
  apt-get "${apt_opts[@]}" update -qq >&2 || log "apt-get update failed; trying the install with the lists there are"
  DEBIAN_FRONTEND=noninteractive apt-get "${apt_opts[@]}" install -y -qq --no-install-recommends --no-remove "$@" >&2 ||
    die "apt-get install $* failed (it removes nothing: see above for what it would have had to)"
}
apt_opts=()

# qemu-system-x86 must match an installed qemu-utils: qemu-utils >= 8 Breaks an older
# qemu-system-common, so Debian 12's qemu-system-x86 (7.2) next to a backported qemu-utils
# (this project's machine images carry qemu-utils 10.0 from bookworm-backports) would make apt
# remove qemu-utils. There, install qemu-system-x86 from the same backports suite, through a
# private copy of the apt sources (under the cache) plus that suite: /etc/apt stays as it is.
# Sets qemu_pkgs (apt-get install arguments) and, for backports, apt_opts.
qemu_packages() {
  local v candidate codename d f
  qemu_pkgs=(qemu-system-x86)
  pkg_installed qemu-utils || return 0
  v=$(dpkg-query -W -f='${Version}' qemu-utils)
  candidate=$(apt-cache policy qemu-system-x86 2>/dev/null | awk '$1 == "Candidate:" { print $2 }')
  [ "$candidate" != "$v" ] || return 0
  case "$v" in
    *~bpo*) ;;
    *) die "qemu-utils $v is installed and apt would install qemu-system-x86 ${candidate:-?}, which would remove it:
  install qemu-system-x86=$v yourself" ;;
  esac
  # shellcheck source=/dev/null
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
  [ -n "$codename" ] || die "cannot tell the distribution's codename (/etc/os-release) for ${v}'s backports suite"
  d=$cache/apt-backports
  rm -rf "$d/parts"
  mkdir -p "$d/parts" "$d/lists/partial"
  [ ! -f /etc/apt/sources.list ] || cp /etc/apt/sources.list "$d/parts/system.list"
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ ! -f "$f" ] || cp "$f" "$d/parts/"
  done
  printf 'Types: deb\nURIs: http://deb.debian.org/debian\nSuites: %s-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$codename" >"$d/parts/zz-remora-backports.sources"
  apt_opts=(-o Dir::Etc::sourcelist=/dev/null -o "Dir::Etc::sourceparts=$d/parts" -o "Dir::State::lists=$d/lists")
  log "qemu-utils $v is from $codename-backports: taking qemu-system-x86 from there too"
  qemu_pkgs=(-t "$codename-backports" "qemu-system-x86=$v" "qemu-system-common=$v" "qemu-system-data=$v")
}

ensure_packages() {
  local missing=() p
  command -v dpkg-query >/dev/null || die "no dpkg-query: this script installs with apt (Debian/Ubuntu)"
  # userspace for inside the VM (it sees this machine's root): rxe provider, verbs/rdma_cm tools
  for p in busybox-static kmod iproute2 rdma-core ibverbs-utils rdmacm-utils perftest; do
    pkg_installed "$p" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
  if ! pkg_installed qemu-system-x86; then
    qemu_packages
    apt_install "${qemu_pkgs[@]}"
    apt_opts=()
  fi
}

# Newest kernel under /boot whose modules (here, under /lib/modules) include rdma_rxe.
find_kernel() {
  local v
  for v in $(find /boot -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' 2>/dev/null | sed 's/^vmlinuz-//' | sort -rV); do
    [ -f "/lib/modules/$v/modules.dep" ] || continue
    [ -n "$(find "/lib/modules/$v/kernel/drivers/infiniband" -name 'rdma_rxe.ko*' -print -quit 2>/dev/null)" ] || continue
    echo "$v"
    return 0
  done
  return 1
}

ensure_kernel() {
  if [ -n "$kver" ]; then
    [ -r "/boot/vmlinuz-$kver" ] || die "REMORA_VM_KERNEL=$kver: no readable /boot/vmlinuz-$kver"
    [ -f "/lib/modules/$kver/modules.dep" ] || die "REMORA_VM_KERNEL=$kver: no /lib/modules/$kver/modules.dep"
    return 0
  fi
  kver=$(find_kernel) && return 0
  # linux-image-amd64 only adds files: the kernel under /boot and its modules under /lib/modules.
  # It does not touch the running kernel. INITRD=No skips building initrds nobody uses. What could
  # matter is a bootloader: its hook (update-grub, systemd-boot) would list the new kernel and
  # may boot it by default after the next reboot. So where one is configured, ask first.
  if [ "${REMORA_VM_INSTALL_KERNEL:-0}" != 1 ] &&
    { [ -e /boot/grub/grub.cfg ] || [ -d /boot/loader/entries ] || [ -d /boot/efi/loader/entries ]; }; then
    die "no kernel with rdma_rxe under /boot, and this machine boots through a bootloader config in /boot
  that installing linux-image-amd64 would update (the new kernel could become the default at the next
  reboot). Install it yourself (INITRD=No apt-get install linux-image-amd64) or set REMORA_VM_INSTALL_KERNEL=1."
  fi
  [ "$(id -u)" = 0 ] || die "no kernel with rdma_rxe under /boot: as root, INITRD=No apt-get install linux-image-amd64"
  log "no kernel with rdma_rxe under /boot: installing linux-image-amd64 (files only; the running kernel is unchanged)"
  INITRD=No apt_install linux-image-amd64
  kver=$(find_kernel) || die "linux-image-amd64 installed, but still no kernel with rdma_rxe under /boot"
}

# Under TCG the bzImage's own xz decompressor costs ~3 s of every boot. qemu can boot the
# uncompressed ELF vmlinux directly through its PVH entry point (CONFIG_PVH=y, as in Debian's
# kernel), so extract it once (bzImage header: setup_sects at 0x1f1, payload_offset/length at
# 0x248) and cache it. Anything unexpected: boot the bzImage as it is.
prepare_kernel() {
  local bz=/boot/vmlinuz-$kver out setup_sects poff plen start
  kernel=$bz
  grep -qx 'CONFIG_PVH=y' "/boot/config-$kver" 2>/dev/null || return 0
  out=$cache/vmlinux-$kver
  if [ ! -s "$out" ] || [ "$out" -ot "$bz" ]; then
    setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
    [ "$setup_sects" != 0 ] || setup_sects=4
    read -r poff plen < <(od -An -tu4 -j $((0x248)) -N8 "$bz")
    start=$(((setup_sects + 1) * 512 + poff))
    [ "$(od -An -tx1 -j "$start" -N6 "$bz" | tr -d ' ')" = fd377a585a00 ] || return 0 # xz payload only
    command -v xz >/dev/null || return 0
    rm -f "$cache"/vmlinux-*
    if ! dd if="$bz" bs=1M iflag=skip_bytes,count_bytes skip="$start" count="$plen" status=none |
      xz -dc --single-stream >"$out.$$" 2>/dev/null ||
      [ "$(od -An -tx1 -N4 "$out.$$" | tr -d ' ')" != 7f454c46 ]; then
      rm -f "$out.$$"
      return 0
    fi
    mv "$out.$$" "$out"
    log "extracted the uncompressed kernel for PVH boot: $out"
  fi
  kernel=$out
}

# --- the initramfs (cached) --------------------------------------------------------------------

# Stage 1, /init in the initramfs (busybox sh): load the few modules the mounts need, mount the
# host root read-only under a tmpfs overlay, the run folder and the working directory read-write,
# switch_root, and hand over to the run folder's guest.sh (stage 2).
IFS= read -r -d '' init_script <<'EOF' || true
#!/bin/sh
export PATH=/bin
mount -t devtmpfs dev /dev
exec </dev/console >/dev/console 2>&1
mount -t proc proc /proc
mount -t sysfs sys /sys
fail() {
  echo "remora-vm stage 1: $*"
  poweroff -f
  sleep 10
}
while read -r m; do insmod "/modules/$m" || fail "insmod $m"; done </modules/order
o=trans=virtio,version=9p2000.L,msize=262144
mkdir -p /lower /rw /io /newroot
mount -t 9p -o "$o,cache=mmap" io /io || fail "mount the run folder (tag io)"
read -r cwd </io/cwd || fail "no /io/cwd"
mount -t 9p -o "$o,ro,cache=loose" hostroot /lower || fail "mount the host root (tag hostroot)"
mount -t tmpfs -o mode=0755 rw /rw
mkdir -p /rw/upper /rw/work
mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot || fail "mount the overlay"
for d in dev proc sys; do mount -o move "/$d" "/newroot/$d" || fail "move /$d"; done
mount -t tmpfs -o mode=0755 run /newroot/run
mount -t tmpfs -o mode=1777 tmp /newroot/tmp
mkdir -p /newroot/run/remora-vm "/newroot$cwd"
mount -o move /io /newroot/run/remora-vm || fail "move the run folder"
mount -t 9p -o "$o,cache=mmap" work "/newroot$cwd" || fail "mount $cwd (tag work)"
exec switch_root /newroot /bin/bash /run/remora-vm/guest.sh
EOF
stage1_modules=(virtio_pci 9pnet_virtio 9p overlay)

build_initramfs() {
  local mods=() m f deps seen=" " key tmp
  for m in "${stage1_modules[@]}"; do
    deps=$(modprobe -S "$kver" --show-depends "$m") || die "modprobe -S $kver --show-depends $m failed"
    while read -r f; do
      case "$seen" in *" $f "*) continue ;; esac
      seen+="$f "
      mods+=("$f")
    done < <(awk '$1 == "insmod" { print $2 }' <<<"$deps")
  done
  [ ${#mods[@]} -gt 0 ] || die "no modules found for ${stage1_modules[*]} in /lib/modules/$kver"
  key=$({ printf '%s\n' "$init_script" "$kver"; sha256sum "$busybox" "${mods[@]}"; } | sha256sum | cut -c1-16)
  initramfs=$cache/initramfs-$kver-$key.cpio
  [ ! -s "$initramfs" ] || return 0
  t_build=$SECONDS

  log "building the initramfs ($kver, busybox, ${#mods[@]} modules) into $cache"
  tmp=$(mktemp -d "$cache/build.XXXXXX")
  mkdir -p "$tmp"/{bin,dev,proc,sys,modules}
  cp "$busybox" "$tmp/bin/busybox"
  for m in sh mount mkdir insmod switch_root poweroff sleep cat echo; do ln -s busybox "$tmp/bin/$m"; done
  for f in "${mods[@]}"; do
    m=$(basename "$f")
    case "$f" in
      *.ko.xz) xz -dc "$f" >"$tmp/modules/${m%.xz}"; m=${m%.xz} ;;
      *.ko.zst) zstd -qdc "$f" >"$tmp/modules/${m%.zst}"; m=${m%.zst} ;;
      *.ko.gz) gzip -dc "$f" >"$tmp/modules/${m%.gz}"; m=${m%.gz} ;;
      *) cp "$f" "$tmp/modules/$m" ;;
    esac
    echo "$m" >>"$tmp/modules/order"
  done
  printf '%s\n' "$init_script" >"$tmp/init"
  chmod 755 "$tmp/init"
  # Uncompressed: a few MB, and nothing to decompress under TCG.
  (cd "$tmp" && find . -mindepth 1 | LC_ALL=C sort | "$busybox" cpio -o -H newc 2>/dev/null) >"$tmp.cpio" ||
    die "cpio failed"
  rm -f "$cache"/initramfs-*.cpio
  mv "$tmp.cpio" "$initramfs"
  rm -rf "$tmp"
  t_build=$((SECONDS - t_build))
  log "initramfs built in ${t_build}s ($(du -k "$initramfs" | cut -f1) KiB)"
}

# --- one run ------------------------------------------------------------------------------------

ensure_packages
ensure_kernel
mkdir -p "$cache/runs"
prepare_kernel
build_initramfs

accel_auto=0
case "$accel" in
  auto)
    accel_auto=1
    if [ -r /dev/kvm ] && [ -w /dev/kvm ] && grep -qwE 'vmx|svm' /proc/cpuinfo; then accel=kvm; else accel=tcg; fi
    ;;
  kvm | tcg) ;;
  *) die "REMORA_VM_ACCEL must be auto, kvm or tcg, not '$accel'" ;;
esac

run=$(mktemp -d "$cache/runs/XXXXXX")
printf '%s\n' "$cwd" >"$run/cwd"
: >"$run/output"

# COMMAND as a bash array, and this environment minus what only means something on this machine
# (sessions, sockets, a TMPDIR outside the shared folder: the VM has a fresh /tmp).
{
  printf 'cmd=('
  printf '%q ' "$@"
  printf ')\n'
} >"$run/cmd.sh"
while read -r name; do
  case "$name" in
    PWD | OLDPWD | SHLVL | _ | SSH_* | DISPLAY | WAYLAND_DISPLAY | XAUTHORITY | XDG_RUNTIME_DIR | \
      DBUS_SESSION_BUS_ADDRESS | XDG_SESSION_* | REMORA_VM_* | \
      SHELLOPTS | BASHOPTS | BASH_* | UID | EUID | PPID) continue ;; # bash's own, some read-only
    TMPDIR) case "${TMPDIR:-}" in "$cwd" | "$cwd"/*) ;; *) continue ;; esac ;;
  esac
  printf 'export %s=%q\n' "$name" "${!name}"
done < <(compgen -e) >"$run/env.sh"

# Stage 2, run by bash from the host root after switch_root; pid 1 until power-off.
cat >"$run/guest.sh" <<EOF
#!/bin/bash
# generated by $prog.sh for one run
io=/run/remora-vm
setup=$(printf '%q' "$here/setup-rxe.sh")
EOF
cat >>"$run/guest.sh" <<'EOF'
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root
stamp() {
  local u _
  read -r u _ </proc/uptime
  echo "$1 $u" >>"$io/times"
}
off() {
  sync
  /bin/busybox poweroff -f
  echo o >/proc/sysrq-trigger
  sleep 30
  exit 1 # pid 1 exits: panic=-1 reboots, and -no-reboot ends qemu
}
stamp init
exec >>"$io/guest.log" 2>&1
mkdir -p /dev/shm /dev/pts
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t devpts -o mode=620,ptmxmode=666 devpts /dev/pts
# devtmpfs has no /dev/fd: bash process substitution and many scripts need it.
ln -sfn /proc/self/fd /dev/fd
ln -sfn /proc/self/fd/0 /dev/stdin
ln -sfn /proc/self/fd/1 /dev/stdout
ln -sfn /proc/self/fd/2 /dev/stderr
hostname remora-vm
ip link set lo up
ulimit -l unlimited
echo "== setup-rxe.sh"
if ! "$setup" >"$io/setup.summary"; then
  echo setup >"$io/failed"
  off
fi
stamp ready
read -r cwd <"$io/cwd"
. "$io/env.sh"
. "$io/cmd.sh"
cd "$cwd" || { echo cwd >"$io/failed"; off; }
echo "== command: ${cmd[*]}"
stamp command
"${cmd[@]}" </dev/null >>"$io/output" 2>&1
rc=$?
stamp end
echo "$rc" >"$io/status.tmp"
mv "$io/status.tmp" "$io/status"
off
EOF

esc() { printf '%s' "${1//,/,,}"; } # qemu option values: a comma is written twice
append="console=ttyS0 panic=-1 mitigations=off"
[ "$debug" = 1 ] || append+=" quiet"
# shellcheck disable=SC2054 # the commas are qemu's
qargs=(
  -nodefaults -no-user-config -display none -no-reboot
  -cpu max -smp "$smp" -m "$mem"
  -kernel "$kernel" -initrd "$initramfs" -append "$append"
  -chardev "file,id=con,path=$(esc "$run/console.log")" -serial chardev:con
  -fsdev local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap
  -device virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot
  -fsdev "local,id=work,path=$(esc "$cwd"),security_model=none,multidevs=remap"
  -device virtio-9p-pci,fsdev=work,mount_tag=work
  -fsdev "local,id=io,path=$(esc "$run"),security_model=none"
  -device virtio-9p-pci,fsdev=io,mount_tag=io
)

# shellcheck disable=SC2317 # called by the trap
on_signal() {
  kill "$qpid" 2>/dev/null || true
  wait "$qpid" 2>/dev/null || true
  kill "$tpid" ${dpid:+"$dpid"} 2>/dev/null || true
  wait 2>/dev/null || true
  printf '%s: interrupted; VM killed; run folder %s\n' "$prog" "$run" >&2
  exit 130
}

# Boots the VM under $1 (kvm or tcg) and waits for it; sets qrc (timeout's exit status).
boot_vm() {
  log "booting $kver under $1 (-smp $smp -m $mem), timeout ${timeout_s}s; run folder $run"
  timeout -k 10 "$timeout_s" qemu-system-x86_64 "${qargs[@]}" -accel "$1" >"$run/qemu.log" 2>&1 &
  qpid=$!
  # COMMAND's output is written straight to the host file through 9p: print it as it grows.
  # (tail notices the end of qemu only after it is reaped, and then reads what is left.)
  tail -n +1 -s 0.3 -f --pid="$qpid" "$run/output" &
  tpid=$!
  dpid=
  if [ "$debug" = 1 ]; then
    : >"$run/console.log"
    : >"$run/guest.log"
    tail -n +1 -s 0.5 -f --pid="$qpid" "$run/console.log" "$run/guest.log" >&2 &
    dpid=$!
  fi
  trap on_signal INT TERM HUP
  qrc=0
  wait "$qpid" || qrc=$?
  wait "$tpid" || true
  [ -z "$dpid" ] || wait "$dpid" || true
  trap - INT TERM HUP
}

t_start=$(date +%s.%N)
boot_vm "$accel"
# KVM that opens but cannot run this guest (e.g. /dev/kvm of a nested-virtualisation module
# without vmx/svm: qemu aborts setting MSRs) fails before the guest's stage 2: boot under TCG.
if [ "$accel" = kvm ] && [ "$accel_auto" = 1 ] && [ ! -s "$run/times" ] &&
  [ "$qrc" != 124 ] && [ "$qrc" != 137 ]; then
  log "KVM failed (qemu: $(tail -n 1 "$run/qemu.log")); booting under TCG instead"
  mv "$run/qemu.log" "$run/qemu-kvm.log"
  accel=tcg
  boot_vm tcg
fi
t_total=$(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')

show_logs() {
  local f
  for f in qemu.log console.log guest.log; do
    [ -s "$run/$f" ] || continue
    printf -- '--- %s (last 40 lines)\n' "$f" >&2
    tail -n 40 "$run/$f" >&2
  done
  printf '%s: logs kept in %s\n' "$prog" "$run" >&2
}
stamp() { awk -v k="$1" '$1 == k { print $2 }' "$run/times" 2>/dev/null; }

if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
  printf '%s: error: timed out after %ss (REMORA_VM_TIMEOUT): VM killed\n' "$prog" "$timeout_s" >&2
  show_logs
  exit 124
fi
if [ -f "$run/status" ]; then
  rc=$(cat "$run/status")
  if [ "$quiet" != 1 ]; then
    log "$(cat "$run/setup.summary" 2>/dev/null)"
    log "$accel, kernel $kver: guest init at $(stamp init)s, rxe ready at $(stamp ready)s (guest uptime); command $(awk -v a="$(stamp command)" -v b="$(stamp end)" 'BEGIN { printf "%.1f", b - a }')s; total ${t_total}s wall; exit status $rc"
  fi
  if [ "$keep" = 1 ]; then log "run folder kept: $run"; else rm -rf "$run"; fi
  exit "$rc"
fi
if [ -f "$run/failed" ]; then
  printf '%s: error: the VM came up but %s failed before COMMAND ran\n' "$prog" \
    "$([ "$(cat "$run/failed")" = setup ] && echo "setup-rxe.sh" || echo "cd $cwd")" >&2
else
  printf '%s: error: the VM stopped without a result (qemu exit status %s)\n' "$prog" "$qrc" >&2
fi
show_logs
exit 125
