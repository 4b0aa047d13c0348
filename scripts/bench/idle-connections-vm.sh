#!/usr/bin/env bash
# Resident memory per idle MQTT connection at counts a container's open-file limit forbids
# (the performance issue asks for 100,000): Edgeplane and Mosquitto inside a small virtual
# machine of our own, where root may raise RLIMIT_NOFILE.
# Usage: scripts/bench/idle-connections-vm.sh [CONNECTIONS]   (default 100000)
#
# The VM boots Debian's kernel (downloaded with `apt-get download`) with an initramfs holding
# busybox, the release binaries and Mosquitto with their shared libraries; it has no disk and
# no network but loopback. Inside, both brokers are measured as in idle-connections.sh:
# RSS from /proc before and after `edgeplane-bench idle` opens the connections. KVM is used
# with VM_ACCEL=kvm, else software emulation (much slower to connect, same memory).
# SKIP_BUILD=1 uses the release binaries already built. VM_MEMORY (default 8G).
set -euo pipefail
cd "$(dirname "$0")/../.."
N="${1:-100000}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/edgeplane/target}"
scripts/install-deps.sh >/dev/null
need=()
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
[ -x /bin/busybox ] || need+=(busybox-static)
command -v cpio >/dev/null || need+=(cpio)
if [ ${#need[@]} -gt 0 ]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" >/dev/null
fi
[ -n "${SKIP_BUILD:-}" ] || cargo build --release --locked -q -p edgeplane -p edgeplane-bench
TARGET="$CARGO_TARGET_DIR/release"

cache="$HOME/.cache/edgeplane/vm"
mkdir -p "$cache"
kernel="$cache/vmlinuz"
if [ ! -s "$kernel" ]; then
  # The kernel the metapackage points at, unpacked without installing it.
  image=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-[0-9]/ {print $2; exit}')
  (cd "$cache" && apt-get download "$image" >/dev/null 2>&1 && dpkg-deb -x "$image"_*.deb unpacked)
  cp "$cache"/unpacked/boot/vmlinuz-* "$kernel"
  rm -rf "$cache/unpacked" "$cache"/*.deb
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root="$work/root"
mkdir -p "$root"/{bin,proc,sys,dev,tmp,etc}
cp /bin/busybox "$root/bin/busybox"
for exe in "$TARGET/edgeplane" "$TARGET/edgeplane-bench" "$(command -v mosquitto)"; do
  cp "$exe" "$root/bin/"
  # Each shared library at its own path, the loader included.
  ldd "$exe" | grep -o '/[^ ]*' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
echo 'root:x:0:0:root:/tmp:/bin/sh' >"$root/etc/passwd"
echo 'root:x:0:' >"$root/etc/group"

cat >"$root/init" <<'INIT'
#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
mount -t tmpfs tmp /tmp
export HOME=/tmp PATH=/bin
ip link set lo up
sysctl -qw fs.nr_open=1100000 fs.file-max=2200000 net.ipv4.ip_local_port_range="1024 65000"
sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535
ulimit -n 1050000
N=$(sed -n 's/.*connections=\([0-9]*\).*/\1/p' /proc/cmdline)
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }
listening() { # port: a socket listens on it (state 0A in /proc/net/tcp)
  grep -q ":$(printf %04X "$1") 00000000:0000 0A" /proc/net/tcp
}
measure() { # name pid port
  while ! listening "$3"; do sleep 1; done
  sleep 3
  before=$(rss_kb "$2")
  edgeplane-bench idle --broker "127.0.0.1:$3" --connections "$N" --hold-secs 5 \
    --keep-alive 600 --sources 8 >"/tmp/$1.out" 2>&1 &
  bench=$!
  while ! grep -q holding "/tmp/$1.out"; do
    sleep 1
    kill -0 $bench 2>/dev/null || { cat "/tmp/$1.out"; return 1; }
  done
  sleep 2
  after=$(rss_kb "$2")
  wait $bench
  echo "RESULT | $1 | $N | $((before / 1024)) MiB | $((after / 1024)) MiB | $(( (after - before) * 1024 / N )) B |"
}
echo "$(nproc) vCPU, $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) MiB, open-file limit $(ulimit -n)"
mkdir -p /tmp/ep
cat >/tmp/ep/listener.yaml <<YAML
apiVersion: edgeplane.io/v1
kind: BrokerListener
metadata: {name: bench}
spec:
  ports:
  - port: 1883
    bindAddress: 127.0.0.1
YAML
RUST_LOG=warn edgeplane run --config /tmp/ep &
ep=$!
measure edgeplane $ep 1883 || echo "RESULT | edgeplane | failed |"
kill -TERM $ep; wait $ep
printf 'listener 1884 127.0.0.1\nallow_anonymous true\nmax_connections -1\nuser root\n' >/tmp/mosquitto.conf
mosquitto -c /tmp/mosquitto.conf >/tmp/mosquitto.log 2>&1 &
mq=$!
measure "mosquitto $(mosquitto -h | head -1 | awk '{print $3}')" $mq 1884 || echo "RESULT | mosquitto | failed |"
kill $mq; wait $mq
poweroff -f
INIT
chmod +x "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$work/initrd.gz"

# Software emulation by default: on the build machine (itself a Firecracker VM) /dev/kvm
# exists but a nested guest's kernel hangs after its first lines. VM_ACCEL=kvm tries KVM.
accel=(-accel tcg)
if [ "${VM_ACCEL:-tcg}" = kvm ]; then accel=(-accel kvm -cpu host,-arch-capabilities); fi
echo "| broker | connections | RSS before | RSS after | RSS per connection |"
echo "|---|---|---|---|---|"
timeout "${VM_TIMEOUT:-5400}" qemu-system-x86_64 "${accel[@]}" -smp "$(nproc)" -m "${VM_MEMORY:-8G}" \
  -kernel "$kernel" -initrd "$work/initrd.gz" -append "console=ttyS0 quiet edd=off panic=-1 connections=$N" \
  -nographic -no-reboot -nic none >"$work/console.log" 2>&1 || true
if ! grep -q '^RESULT' "$work/console.log"; then
  tail -40 "$work/console.log" >&2
  exit 1
fi
grep -m1 'vCPU' "$work/console.log" | tr -d '\r' >&2
grep '^RESULT' "$work/console.log" | tr -d '\r' | sed 's/^RESULT //'
