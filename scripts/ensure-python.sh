#!/usr/bin/env bash
# Make sure Python 3.11+ with venv and pip is there (a fresh Debian lacks python3-venv).
set -euo pipefail
PYTHON="${1:-python3}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "installing python3 (apt)"; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3 python3-venv python3-pip
fi
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' || {
  echo "evpark needs Python 3.11 or newer; $PYTHON is $("$PYTHON" --version 2>&1)"; exit 1; }
if ! "$PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
  echo "installing python3-venv (apt)"; $SUDO apt-get update -qq && $SUDO apt-get install -y -qq python3-venv
fi
