#!/usr/bin/env bash
# Installs what Hark's tests need and runs every test.
#
#   ./test.sh            everything (what CI runs)
#
# Needs: Debian/Ubuntu with apt-get (root or sudo), rustup, cargo.
set -euo pipefail
cd "$(dirname "$0")"

# Each stage says how long the one before it took; the summary at the end
# lists them all (CI must stay well inside 90 minutes).
stage="" stage_start=$SECONDS timings=()
end_stage() { [ -z "$stage" ] || timings+=("$(printf '%5ds  %s' $((SECONDS - stage_start)) "$stage")"); }
say() {
    end_stage
    stage=$* stage_start=$SECONDS
    printf '\n== %s\n' "$*"
}
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

say "system packages"
# mosquitto: a real broker for the integration tests; libasound2-dev and
# pkg-config: cpal's ALSA backend; python3-venv: the real rhasspy-hermes and
# wyoming libraries the Hermes and Wyoming tests talk to; openssl: the CA and
# certificates the TLS tests make.
packages=(mosquitto libasound2-dev pkg-config python3-venv openssl)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The package may start a system mosquitto on 1883; the tests start their
# own brokers and one test needs 1883 free to check the defaults.
if command -v systemctl >/dev/null && systemctl is-active --quiet mosquitto 2>/dev/null; then
    as_root systemctl stop mosquitto || true
fi
as_root service mosquitto stop >/dev/null 2>&1 || true

say "rust tools"
command -v cargo-nextest >/dev/null || cargo install --locked cargo-nextest
# The SDK's example skills are built to WebAssembly: they are the sandbox's fixtures.
rustup target add wasm32-unknown-unknown

say "format and lints"
cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings

say "example skills (wasm fixtures)"
cargo build --release --locked --target wasm32-unknown-unknown --manifest-path skill-sdk/examples/Cargo.toml
cargo test --locked --manifest-path skill-sdk/examples/Cargo.toml
cargo fmt --all --check --manifest-path skill-sdk/examples/Cargo.toml

say "build"
# --all-targets builds the benches too (in the dev profile), so they are
# known to compile without a second, optimised build of everything.
cargo build --workspace --all-targets --locked

say "rhasspy-hermes and wyoming (Hermes and Wyoming tests)"
scripts/hermes-venv.sh

say "tests"
cargo nextest run --workspace --locked --no-fail-fast
cargo test --workspace --doc --locked

say "ARM: cross-builds, aarch64 tests under qemu, .deb packages"
./scripts/arm.sh

end_stage
printf '\n== stage durations\n'
printf '%s\n' "${timings[@]}"
printf '%5ds  in all\n' "$SECONDS"
say "all tests passed"
