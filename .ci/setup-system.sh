#!/usr/bin/env bash
# System packages for the viewer tests (tests/test_viewers.py): Xvfb, xdotool, Chromium.
# (Tk itself comes with the Python build: python -c "import tkinter" must work.)
# Idempotent and quiet: installs only what is missing; without root, apt or network it prints a
# warning and exits 0 (those tests then skip with the reason).
set -u
need=()
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
command -v xdotool >/dev/null 2>&1 || need+=(xdotool)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "warning: setup-system: no apt-get; missing ${need[*]} (viewer tests will skip)" >&2
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
        echo "warning: setup-system: not root; missing ${need[*]} (viewer tests will skip)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
if ! $sudo apt-get update -qq >/dev/null 2>&1 ||
   ! $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null 2>&1; then
    echo "warning: setup-system: could not install ${need[*]} (no network?); viewer tests will skip" >&2
fi
exit 0
