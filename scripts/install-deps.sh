#!/usr/bin/env bash
# Installs what building and testing secureops needs on Debian/Ubuntu, and
# nothing that is already there. Safe to run repeatedly.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_pkg liburing-dev || need+=(liburing-dev)          # io_uring (the engine)
have_pkg libnats-dev || need+=(libnats-dev)            # NATS C client (the JetStream forwarder)
command -v nats-server >/dev/null || need+=(nats-server) # the forwarder's tests run real servers
command -v setpriv >/dev/null || need+=(util-linux)     # tests switch to a second uid
command -v cc >/dev/null || need+=(gcc)                 # tests build small C fixtures
have_pkg libc6-dev || need+=(libc6-dev)

for extra in "$@"; do
    have_pkg "$extra" || command -v "$extra" >/dev/null || need+=("$extra")
done

if [ ${#need[@]} -gt 0 ]; then
    echo "installing: ${need[*]}"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if ! command -v swift >/dev/null; then
    if [ -x /opt/swift/usr/bin/swift ]; then
        echo "swift is at /opt/swift/usr/bin; add it to PATH (export PATH=/opt/swift/usr/bin:\$PATH)" >&2
    else
        echo "Swift 6.1 or later is needed: https://www.swift.org/install/linux/" >&2
    fi
    exit 1
fi
