#!/usr/bin/env bash
# Hark on Raspberry-Pi-class boards, checked without Docker: installs the
# cross toolchain, cross-builds `hark` for aarch64 and armv7, runs the hub's
# tests for aarch64 under qemu-user, checks the aarch64 release binary end to
# end, and builds, inspects and unpacks the .deb packages (arm64, armhf, and
# amd64 beside them). Any failure fails the script.
#
#   scripts/arm.sh          everything (./test.sh runs it in CI)
#
# Needs: Debian/Ubuntu with apt-get (root or sudo), rustup, cargo. Uses the
# linkers, qemu runners and pkg-config settings of .cargo/config.toml.
# Leaves the binaries and packages in target/arm/ and prints their sizes.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== arm: %s\n' "$*"; }
fail() { printf '\narm: FAILED: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
started=$SECONDS
step() { printf '   (%ds so far)\n' $((SECONDS - started)); }

# Tests under emulation: everything of hark-hub and of the integration tests
# except those that need Python on the host (the Rhasspy Hermes and the
# Wyoming peers), the SDK tutorial, which builds a new skill with the host's
# cargo and so tests the host, not the board, and the attack tests (host_budget,
# hostile_clients, load_bounds, the login flood of satellites): they race a
# per-call cap, a flood or a reload against the clock, and under emulation
# (20-50x slower, the disk and the broker not) the race flips. What they check is the same on every
# target, and the native run checks it.
test_filter='not (binary(hermes) | binary(wyoming) | binary(host_budget) | binary(hostile_clients) | binary(load_bounds) | test(the_tutorial_takes_a_new_skill_from_scaffold_to_a_signed_reply) | test(a_flood_of_wrong_passwords_does_not_stall_the_broker))'

# A regression guard, not the goal (issue 15 asks for 3 MiB): the aarch64
# binary with every default feature is 9.09 MiB (README "Footprint"). The
# embedded broker with per-client topic permissions (mqtt5, issue 12) took it
# from 4.51 MiB; docs/broker.md says what that buys and costs. 0.5 MiB of it
# is there since panics unwind, so a panic on the request path costs one
# request, not the hub. Past 9.25 MiB, find out what grew.
size_budget=9699328
# Raspberry Pi OS bookworm's glibc.
max_glibc=2.36

say "system packages"
for arch in arm64 armhf; do
    dpkg --print-foreign-architectures | grep -qx "$arch" || as_root dpkg --add-architecture "$arch"
done
packages=(
    gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf   # linkers
    # The targets' C runtime (Scrt1.o, crti.o, libc.so) for the gnu builds and
    # for gcc as the musl builds' link driver: only *recommended* by the cross
    # gcc packages, so --no-install-recommends leaves them out unless named.
    libc6-dev-arm64-cross libc6-dev-armhf-cross
    libasound2-dev:arm64 libasound2-dev:armhf       # ALSA for cpal, per target
    pkg-config qemu-user                            # finds ALSA; runs ARM binaries
    mosquitto mosquitto-clients                     # a broker for tests; mosquitto_sub for the smoke test
    dpkg-dev systemd                                # dpkg-shlibdeps for cargo-deb; systemd-analyze
    binutils python3                                # readelf; a free port for the smoke test
)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    # A mirror in mid-sync can fail one index of many; the install below
    # still fails, naming the package, if something it needs is missing.
    as_root apt-get update -qq || echo "arm: apt-get update reported errors; trying the install anyway"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
as_root service mosquitto stop >/dev/null 2>&1 || true

say "rust targets and tools"
rustup target add aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf aarch64-unknown-linux-musl wasm32-unknown-unknown
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# cargo-deb: .deb packages from [package.metadata.deb] in hub/Cargo.toml.
command -v cargo-deb >/dev/null || cargo install --locked cargo-deb
step

out=target/arm
rm -rf "$out"
mkdir -p "$out"

# target triple | Debian arch | cargo feature flags | what
builds=(
    "aarch64-unknown-linux-gnu|arm64||gnu, every default feature (broker + speaker)"
    "armv7-unknown-linux-gnueabihf|armhf||gnu, every default feature (broker + speaker)"
    "aarch64-unknown-linux-musl|arm64|--no-default-features --features embedded-broker|musl static, no speaker"
    # Not ARM, but packaged the same way: many households run Home Assistant
    # on an x86 mini-PC.
    "x86_64-unknown-linux-gnu|amd64||gnu, every default feature (broker + speaker)"
)

glibc_needed() { # the newest GLIBC_x.y symbol version a binary asks for
    readelf --version-info -W "$1" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1
}

for build in "${builds[@]}"; do
    IFS='|' read -r target debarch features what <<<"$build"
    say "release build: $target ($what)"
    # shellcheck disable=SC2086 # $features is a list of flags
    cargo build --release --locked -p hark-hub --bin hark --target "$target" $features
    bin=target/$target/release/hark
    cp "$bin" "$out/hark-$target"
    size=$(stat -c %s "$bin")
    printf '%s\t%s\t%d bytes (%s MiB)\n' "$target" "$what" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.2f", s / 1048576 }')" | tee -a "$out/sizes.tsv"
    case $target in
        aarch64*) machine=AArch64 ;;
        armv7*) machine=ARM ;;
        x86_64*) machine=X86-64 ;;
    esac
    readelf -h "$bin" | grep -q "Machine:.*$machine" || fail "$bin is not an $machine binary"
    if [[ $target == *musl* ]]; then
        if readelf -l "$bin" | grep -q 'INTERP\|Requesting program interpreter'; then
            fail "$bin asks for a dynamic loader; the musl build must be static"
        fi
        if readelf -d "$bin" | grep -q NEEDED; then fail "$bin needs shared libraries"; fi
    else
        needed=$(glibc_needed "$bin")
        printf '%s\tneeds glibc %s (Raspberry Pi OS bookworm: %s)\n' "$target" "$needed" "$max_glibc" | tee -a "$out/sizes.tsv"
        [ "$(printf '%s\n%s\n' "$needed" "$max_glibc" | sort -V | tail -1)" = "$max_glibc" ] ||
            fail "$bin needs glibc $needed, newer than bookworm's $max_glibc"
        readelf -d "$bin" | grep -q 'libasound.so' || fail "$bin does not link ALSA: no speaker"
    fi
    step
done
a64_size=$(stat -c %s target/aarch64-unknown-linux-gnu/release/hark)
[ "$a64_size" -le "$size_budget" ] ||
    fail "the aarch64 binary is $a64_size bytes, over the $size_budget guard; see README 'Footprint'"

say "aarch64 release binary under qemu: hark send kitchen timer.set duration=2s"
# The aarch64 multiarch glibc (with libasound2:arm64), as in .cargo/config.toml.
qemu_a64=(qemu-aarch64)
hark_a64=target/aarch64-unknown-linux-gnu/release/hark
smoke=$(mktemp -d)
hub_pid=""
sub_pid=""
cleanup() {
    [ -n "$sub_pid" ] && kill "$sub_pid" 2>/dev/null
    [ -n "$hub_pid" ] && kill "$hub_pid" 2>/dev/null
    rm -rf "$smoke"
}
trap cleanup EXIT
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])' 2>/dev/null ||
    shuf -i 20000-60000 -n 1)
cat >"$smoke/hark.toml" <<EOF
state_dir = "$smoke/state"
[mqtt]
listen = "127.0.0.1:$port"
[audio]
backend = "null"
EOF
"${qemu_a64[@]}" "$hark_a64" --config "$smoke/hark.toml" run >"$smoke/hub.log" 2>&1 &
hub_pid=$!
for _ in $(seq 100); do
    grep -q "connected to the broker" "$smoke/hub.log" && break
    kill -0 "$hub_pid" 2>/dev/null || { cat "$smoke/hub.log"; fail "the aarch64 hub exited"; }
    sleep 0.2
done
grep -q "connected to the broker" "$smoke/hub.log" || { cat "$smoke/hub.log"; fail "the aarch64 hub did not come up"; }
# Two events: timer_started, then timer_finished two seconds later.
mosquitto_sub -h 127.0.0.1 -p "$port" -t 'hark/event/kitchen' -C 2 -W 20 >"$smoke/events" &
sub_pid=$!
sleep 0.5
"${qemu_a64[@]}" "$hark_a64" --config "$smoke/hark.toml" send kitchen timer.set duration=2s | tee "$smoke/reply" ||
    fail "hark send did not get an ok reply from the aarch64 hub"
grep -q '"status": "ok"' "$smoke/reply" || fail "no ok reply"
wait "$sub_pid" || { cat "$smoke/events"; fail "no timer events within 20 s"; }
sub_pid=""
cat "$smoke/events"
grep -q '"event":"timer_finished"' "$smoke/events" || fail "the timer did not fire its timer_finished event"
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$hub_pid/status")
echo "idle RSS of the aarch64 hub under qemu (emulator included): $((rss / 1024)) MiB" | tee -a "$out/sizes.tsv"
kill -TERM "$hub_pid"
wait "$hub_pid" || fail "the aarch64 hub did not exit cleanly on SIGTERM"
hub_pid=""
calibration=$("${qemu_a64[@]}" "$hark_a64" calibrate --seconds 0.5)
echo "aarch64 under qemu: ${calibration%%$'\n'*}" | tee -a "$out/sizes.tsv"
step

say "tests for aarch64 under qemu-user"
# The SDK's example skills are the sandbox's fixtures; WebAssembly is the
# same on every target (test.sh builds them first; cheap when up to date).
cargo build --release --locked --target wasm32-unknown-unknown --manifest-path skill-sdk/examples/Cargo.toml
# The integration tests start the `hark` binary; it runs through qemu too.
cargo build --locked --target aarch64-unknown-linux-gnu -p hark-hub --bins
HARK_TEST_RUNNER="${qemu_a64[*]}" cargo nextest run --locked --no-fail-fast \
    --target aarch64-unknown-linux-gnu -p hark-hub -p hark-tests -E "$test_filter"
step

say ".deb packages"
for build in "${builds[@]}"; do
    IFS='|' read -r target debarch features what <<<"$build"
    [[ $target == *gnu* ]] || continue
    # The release build above is the packaged one, already stripped.
    deb=$(cargo deb -p hark-hub --target "$target" --no-build --no-strip | tail -1)
    [ -f "$deb" ] || fail "cargo deb made no package for $target"
    cp "$deb" "$out/"
    deb=$out/$(basename "$deb")
    echo "$deb"
    dpkg-deb --info "$deb" | tee "$smoke/info"
    grep -q "Package: hark$" "$smoke/info" || fail "$deb is not the hark package"
    grep -q "Architecture: $debarch$" "$smoke/info" || fail "$deb is not for $debarch"
    grep -q "Depends:.*libasound2" "$smoke/info" || fail "$deb does not depend on libasound2"
    grep -q "Depends:.*adduser" "$smoke/info" || fail "$deb does not depend on adduser"
    dpkg-deb --contents "$deb" | tee "$smoke/contents"
    dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./conffiles | grep -qx /etc/hark/hark.toml ||
        fail "/etc/hark/hark.toml is not a conffile: an upgrade would overwrite the user's config"
    dpkg-deb --ctrl-tarfile "$deb" | tar -x -O ./postinst >"$smoke/postinst"
    grep -q "adduser --system" "$smoke/postinst" || fail "postinst does not create the hark user"
    grep -q "deb-systemd-helper" "$smoke/postinst" || fail "postinst does not enable the unit"

    root=$smoke/root-$debarch
    dpkg -x "$deb" "$root"
    for f in usr/bin/hark usr/lib/systemd/system/hark.service etc/hark/hark.toml \
        usr/share/doc/hark/hark.example.toml; do
        [ -e "$root/$f" ] || fail "$deb does not install /$f"
    done
    cmp -s "$root/usr/bin/hark" "target/$target/release/hark" || fail "$deb holds another binary"
    [ "$(stat -c %a "$root/etc/hark/hark.toml")" = 640 ] || fail "/etc/hark/hark.toml is not mode 640"
    # The unit as systemd reads it (against this machine's systemd, with
    # ExecStart pointed at the unpacked binary, which verify checks exists).
    mkdir -p "$smoke/unit-$debarch"
    sed "s|/usr/bin/hark|$root/usr/bin/hark|" "$root/usr/lib/systemd/system/hark.service" \
        >"$smoke/unit-$debarch/hark.service"
    systemd-analyze verify --man=no "$smoke/unit-$debarch/hark.service" ||
        fail "systemd-analyze does not accept hark.service"
    systemd-analyze security --offline=yes --root="$root" /usr/lib/systemd/system/hark.service |
        tail -1 | sed 's/^/hark.service: /' | tee -a "$out/sizes.tsv"
done
# The unpacked arm64 package runs, under emulation, with its own config.
"${qemu_a64[@]}" "$smoke/root-arm64/usr/bin/hark" --config "$smoke/root-arm64/etc/hark/hark.toml" skills list ||
    fail "the packaged binary does not accept the packaged config"
step

say "sizes (stripped) and facts"
cat "$out/sizes.tsv"
ls -l "$out"
echo "arm: all checks passed in $((SECONDS - started)) s"
