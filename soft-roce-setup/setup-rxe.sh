#!/usr/bin/env bash
# Configure soft-RoCE (rdma_rxe) on a Linux host whose kernel has it, or undo that (--teardown).
#
#   setup-rxe.sh [--netdev DEV] [--name rxe0] [--timeout S] [--memlock-pid PID] [--selftest] [-q]
#   setup-rxe.sh --teardown [--name rxe0]
#
# Without --netdev it creates a veth pair (rxe-veth0 <-> rxe-veth1, 10.211.77.1/24 and .2/24)
# and puts rxe0 on rxe-veth0: one rxe device on one veth is enough for a client and a server on
# the same host (two rxe devices in one network namespace do not talk to each other).
# Prints one summary line on stdout; everything else goes to stderr.
# Where the kernel has no rdma_rxe (e.g. the dev/CI machine) use run-in-vm.sh instead.
set -euo pipefail

prog=setup-rxe
name=rxe0
netdev=
veth0=rxe-veth0
veth1=rxe-veth1
addr0=${RXE_VETH_ADDR:-10.211.77.1/24}
addr1=${RXE_VETH_PEER_ADDR:-10.211.77.2/24}
timeout_s=10
memlock_pid=
selftest=0
teardown=0
quiet=0
state_dir=/run/soft-roce-setup

usage() {
  awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
  cat <<'EOF'

Options:
  --netdev DEV       put rxe on this existing netdev (it must have an IPv4 address for RoCEv2/rdma_cm)
  --name NAME        rxe device name (default rxe0)
  --timeout S        seconds to wait for the port to become ACTIVE (default 10)
  --memlock-pid PID  also raise that running process's memlock limit (prlimit), e.g. --memlock-pid $$
  --selftest         also run an ibv_rc_pingpong loopback over the device
  --teardown         delete the rxe device and the veth pair this script created
  -q, --quiet        only the summary line (and errors)
Environment: RXE_VETH_ADDR, RXE_VETH_PEER_ADDR (addresses of the veth pair it creates).
EOF
}

log() { [ "$quiet" = 1 ] || printf '%s: %s\n' "$prog" "$*" >&2; }
warn() { printf '%s: warning: %s\n' "$prog" "$*" >&2; }
die() {
  printf '%s: error: %s\n' "$prog" "$*" >&2
  exit 1
}

while [ $# -gt 0 ]; do
  case "$1" in
    --netdev) netdev=${2:?--netdev needs a device}; shift 2 ;;
    --name) name=${2:?--name needs a name}; shift 2 ;;
    --timeout) timeout_s=${2:?--timeout needs seconds}; shift 2 ;;
    --memlock-pid) memlock_pid=${2:?--memlock-pid needs a pid}; shift 2 ;;
    --selftest) selftest=1; shift ;;
    --teardown) teardown=1; shift ;;
    -q | --quiet) quiet=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) usage >&2; die "unknown argument: $1" ;;
  esac
done
case "$timeout_s" in '' | *[!0-9]*) die "--timeout wants whole seconds, got '$timeout_s'" ;; esac

[ "$(id -u)" = 0 ] || die "needs root (modprobe, ip link, rdma link)"

state_file=$state_dir/$name.state
sysdev=/sys/class/infiniband/$name

# The tools this needs; installed with apt-get where they are missing and apt-get is there.
need_tools() {
  local missing=() pkgs=() t
  for t in modprobe:kmod ip:iproute2 rdma:iproute2 ibv_devices:ibverbs-utils ibv_devinfo:ibverbs-utils; do
    command -v "${t%%:*}" >/dev/null || { missing+=("${t%%:*}"); pkgs+=("${t#*:}"); }
  done
  [ "$selftest" = 0 ] || command -v ibv_rc_pingpong >/dev/null || { missing+=(ibv_rc_pingpong); pkgs+=(ibverbs-utils); }
  [ ${#missing[@]} -gt 0 ] || return 0
  # rdma-core brings the rxe provider (ibverbs-providers) and udev rules.
  pkgs+=(rdma-core)
  if command -v apt-get >/dev/null; then
    log "installing ${pkgs[*]} (missing: ${missing[*]})"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2 ||
      { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >&2; } ||
      die "could not install ${pkgs[*]}"
  else
    die "missing ${missing[*]}: install ${pkgs[*]} (Debian/Ubuntu package names)"
  fi
}

rxe_exists() { [ -e "$sysdev" ]; }

# The netdev an existing rxe device is bound to ("link rxe0/1 state ACTIVE ... netdev rxe-veth0").
rxe_netdev() { rdma link show "$name/1" 2>/dev/null | sed -n 's/.* netdev \([^ ]*\).*/\1/p'; }

# Builtins only where it polls: under TCG (run-in-vm.sh) every process costs ~0.1 s.
port_state() {
  local st=
  read -r st <"$sysdev/ports/1/state" 2>/dev/null || true
  printf '%s' "$st"
}

# Index of the RoCEv2 GID that carries an IPv4 address (::ffff:a.b.c.d); prints "INDEX IPV4".
ipv4_gid() {
  local f i gid type
  for f in "$sysdev"/ports/1/gids/*; do
    i=${f##*/}
    read -r gid <"$f" 2>/dev/null || continue
    read -r type <"$sysdev/ports/1/gid_attrs/types/$i" 2>/dev/null || continue
    case "$gid" in
      0000:0000:0000:0000:0000:ffff:*)
        if [ "$type" = "RoCE v2" ]; then
          local h=${gid#0000:0000:0000:0000:0000:ffff:}
          printf '%s %d.%d.%d.%d\n' "$i" "0x${h:0:2}" "0x${h:2:2}" "0x${h:5:2}" "0x${h:7:2}"
          return 0
        fi
        ;;
    esac
  done
  return 1
}

teardown() {
  local created_veth=0 loaded_module=0 bound=
  # shellcheck disable=SC1090
  [ -f "$state_file" ] && . "$state_file"
  if rxe_exists; then
    bound=$(rxe_netdev)
    rdma link delete "$name" || die "rdma link delete $name failed"
    log "deleted $name${bound:+ (was on $bound)}"
  else
    log "no $name to delete"
  fi
  # Only the veth pair this script made: the state file says so, or it has the default name and is a veth.
  if [ "$created_veth" = 1 ] || { [ ! -f "$state_file" ] && ip -d link show "$veth0" 2>/dev/null | grep -q 'veth'; }; then
    if ip link show "$veth0" >/dev/null 2>&1; then
      ip link delete "$veth0" && log "deleted veth pair $veth0/$veth1"
    fi
  fi
  if [ "$loaded_module" = 1 ] && [ -z "$(ls /sys/class/infiniband 2>/dev/null)" ]; then
    if modprobe -r rdma_rxe 2>/dev/null; then log "unloaded rdma_rxe"; fi
  fi
  rm -f "$state_file"
  echo "$name: removed"
}

# Sets loaded_module=1 when this call loaded it (then --teardown may unload it).
load_module() {
  loaded_module=0
  [ ! -d /sys/module/rdma_rxe ] || return 0
  local err
  if ! err=$(modprobe rdma_rxe 2>&1); then
    if ! modinfo rdma_rxe >/dev/null 2>&1; then
      die "this kernel ($(uname -r)) has no rdma_rxe module (CONFIG_RDMA_RXE), or cannot load modules: ${err:-modprobe failed}
  Use soft-roce-setup/run-in-vm.sh -- COMMAND to run COMMAND in a small VM whose kernel has rdma_rxe."
    fi
    die "modprobe rdma_rxe failed: $err"
  fi
  loaded_module=1
}

# Sets netdev, and created_veth=1 when it made the veth pair.
setup_netdev() {
  created_veth=0
  if [ -n "$netdev" ]; then
    ip link show "$netdev" >/dev/null 2>&1 || die "no netdev '$netdev' (ip link show)"
    if ! ip link show "$netdev" | grep -q ',UP'; then
      log "bringing $netdev up"
      ip link set "$netdev" up
    fi
    return 0
  fi
  netdev=$veth0
  if ip link show "$veth0" >/dev/null 2>&1; then
    log "reusing existing $veth0"
  else
    ip link add "$veth0" type veth peer name "$veth1" || die "ip link add $veth0 type veth failed (veth module?)"
    created_veth=1
    log "created veth pair $veth0 <-> $veth1"
  fi
  ip addr show dev "$veth0" | grep -q "inet ${addr0%/*}/" || ip addr add "$addr0" dev "$veth0"
  if ip link show "$veth1" >/dev/null 2>&1; then
    ip addr show dev "$veth1" | grep -q "inet ${addr1%/*}/" || ip addr add "$addr1" dev "$veth1"
    ip link set "$veth1" up
  fi
  ip link set "$veth0" up
}

if [ "$teardown" = 1 ]; then
  command -v rdma >/dev/null || die "rdma (iproute2) missing"
  teardown
  exit 0
fi

need_tools

load_module
if [ "$loaded_module" = 1 ]; then log "loaded rdma_rxe ($(uname -r))"; else log "rdma_rxe already loaded ($(uname -r))"; fi
# rdma_cm applications (rping, ib_send_lat -R, librdmacm) need /dev/infiniband/rdma_cm: without
# udev nothing loads rdma_ucm on demand.
modprobe rdma_ucm 2>/dev/null || warn "could not load rdma_ucm: rdma_cm applications will not work"

setup_netdev

if rxe_exists; then
  bound=$(rxe_netdev)
  [ "$bound" = "$netdev" ] || die "$name already exists on netdev '${bound:-?}', not $netdev (setup-rxe.sh --teardown --name $name first)"
  log "$name already on $netdev"
else
  rdma link add "$name" type rxe netdev "$netdev" || die "rdma link add $name type rxe netdev $netdev failed"
  log "rdma link add $name type rxe netdev $netdev"
fi
mkdir -p "$state_dir"
printf 'created_veth=%s\nloaded_module=%s\nnetdev=%s\n' "$created_veth" "$loaded_module" "$netdev" >"$state_file"

# The port turns ACTIVE about a second after the link is added (when the netdev has carrier).
t0=$SECONDS
deadline=$((SECONDS + timeout_s))
until [[ "$(port_state)" == *ACTIVE* ]]; do
  [ "$SECONDS" -lt "$deadline" ] || die "$name port 1 not ACTIVE after ${timeout_s}s (state: $(port_state); is $netdev up with carrier?)"
  sleep 0.2
done
log "port ACTIVE after $((SECONDS - t0))s"
# The IPv4 GID appears when the netdev has an IPv4 address; give it the same bound.
gid_index=none ipv4=none
until read -r gid_index ipv4 < <(ipv4_gid); do
  if [ "$SECONDS" -ge "$deadline" ]; then
    gid_index=none ipv4=none
    warn "$name has no RoCEv2 IPv4 GID: $netdev has no IPv4 address (rdma_cm and -x/-g GID users need one)"
    break
  fi
  sleep 0.2
done
[ "$gid_index" = none ] || log "RoCEv2 IPv4 GID index $gid_index ($ipv4)"

# memlock: ibv_reg_mr pins pages and, without CAP_IPC_LOCK (non-root, or a container that drops
# it), fails beyond RLIMIT_MEMLOCK (often 8 MiB). A limit belongs to
# a process and is inherited by its children, so raising it here only helps this script and what
# it starts (the self-test); it cannot change the caller's shell. Raise the caller's with
# `ulimit -l unlimited` in that shell, `prlimit --memlock=unlimited:unlimited -- PROGRAM`, or
# --memlock-pid PID (prlimit on a running process, e.g. the calling shell's $$).
memlock=unlimited
ulimit -l unlimited 2>/dev/null || memlock=$(ulimit -l)
if [ -n "$memlock_pid" ]; then
  command -v prlimit >/dev/null || die "prlimit (util-linux) missing"
  prlimit --pid "$memlock_pid" --memlock=unlimited:unlimited || die "prlimit --pid $memlock_pid failed"
  log "memlock unlimited for pid $memlock_pid (and the children it starts from now on)"
  memlock_note="this process and pid $memlock_pid"
else
  memlock_note="this process only; see --memlock-pid"
  log "memlock raised for this script only; in your shell run: ulimit -l unlimited (or pass --memlock-pid \$\$)"
fi

# Verify the way applications will see it.
devs=$(ibv_devices 2>&1) || die "ibv_devices failed: $devs"
printf '%s\n' "$devs" | grep -qw "$name" || die "ibv_devices does not list $name (rxe provider from ibverbs-providers missing?):
$devs"
info=$(ibv_devinfo -d "$name" 2>&1) || die "ibv_devinfo -d $name failed: $info"
printf '%s\n' "$info" | grep -q PORT_ACTIVE || die "ibv_devinfo -d $name does not show PORT_ACTIVE:
$info"
[ "$quiet" = 1 ] || printf '%s\n' "$info" | sed -n 's/^[[:space:]]*\(hca_id\|transport\|state\|active_mtu\|link_layer\):/  &/p' >&2

if [ "$selftest" = 1 ]; then
  [ "$gid_index" != none ] || die "--selftest needs an IPv4 GID"
  port=$((18515 + $$ % 1000))
  log "self-test: ibv_rc_pingpong -d $name -g $gid_index over 127.0.0.1:$port"
  timeout 30 ibv_rc_pingpong -d "$name" -g "$gid_index" -p "$port" -n 100 >/dev/null 2>&1 &
  server=$!
  ok=0
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    sleep 0.5
    if out=$(timeout 20 ibv_rc_pingpong -d "$name" -g "$gid_index" -p "$port" -n 100 127.0.0.1 2>&1); then
      ok=1
      break
    fi
    kill -0 "$server" 2>/dev/null || break
  done
  wait "$server" || ok=0
  [ "$ok" = 1 ] || die "self-test failed: ${out:-no output}"
  log "self-test: $(printf '%s\n' "$out" | grep -m1 'usec/iter' || echo ok)"
fi

echo "$name: PORT_ACTIVE netdev=$netdev ipv4=$ipv4 gid_index=$gid_index memlock=$memlock ($memlock_note)"
