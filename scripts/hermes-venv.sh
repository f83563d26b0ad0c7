#!/usr/bin/env bash
# Makes target/hermes-venv: a Python venv with the real rhasspy-hermes and
# wyoming libraries from PyPI, which the Hermes and Wyoming integration tests
# (tests/tests/hermes.rs, tests/tests/wyoming.rs) use to build Rhasspy's and
# Home Assistant's messages and to read the hub's answers. Idempotent: a venv
# that already has the pinned versions is left as it is.
#
#   scripts/hermes-venv.sh
#
# Needs python3 with venv (Debian: apt-get install python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# The last rhasspy-hermes release (Rhasspy 2.5); it pins dataclasses-json and
# paho-mqtt itself.
version=0.6.2
# Home Assistant's Wyoming protocol library (pure Python, no dependencies);
# the hub's events say they are written in this version.
wyoming_version=1.10.2
venv=target/hermes-venv

has() { "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('$1') != '$2')" 2>/dev/null; }

if [ -x "$venv/bin/python" ] && has rhasspy-hermes "$version" && has wyoming "$wyoming_version"; then
    echo "$venv: rhasspy-hermes $version and wyoming $wyoming_version are there"
    exit 0
fi

if ! { [ -x "$venv/bin/python" ] && has rhasspy-hermes "$version"; }; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "rhasspy-hermes==$version"
fi
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "wyoming==$wyoming_version"
"$venv/bin/python" -c "import rhasspyhermes.nlu, rhasspyhermes.dialogue, rhasspyhermes.tts, rhasspyhermes.audioserver"
"$venv/bin/python" -c "import wyoming.event, wyoming.info, wyoming.intent, wyoming.handle, wyoming.error"
echo "$venv: rhasspy-hermes $version and wyoming $wyoming_version installed"
