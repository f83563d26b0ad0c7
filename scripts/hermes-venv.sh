#!/usr/bin/env bash
# Makes target/hermes-venv: a Python venv with the real rhasspy-hermes from
# PyPI, which the Hermes integration tests (tests/tests/hermes.rs) use to
# build Rhasspy's messages and to read the hub's answers. Idempotent: a venv
# that already has the pinned version is left as it is.
#
#   scripts/hermes-venv.sh
#
# Needs python3 with venv (Debian: apt-get install python3-venv).
set -euo pipefail
cd "$(dirname "$0")/.."

# The last rhasspy-hermes release (Rhasspy 2.5); it pins dataclasses-json and
# paho-mqtt itself.
version=0.6.2
venv=target/hermes-venv

if [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" -c "import importlib.metadata as m, sys; sys.exit(m.version('rhasspy-hermes') != '$version')" 2>/dev/null; then
    echo "$venv: rhasspy-hermes $version is there"
    exit 0
fi

rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "rhasspy-hermes==$version"
"$venv/bin/python" -c "import rhasspyhermes.nlu, rhasspyhermes.dialogue, rhasspyhermes.tts, rhasspyhermes.audioserver"
echo "$venv: rhasspy-hermes $version installed"
