#!/usr/bin/env bash
# Debian packages slotlock needs to build, test and run.
#
# Source it and call slk_deps_install, or run it directly. Installs only what
# is missing; when everything is there it costs one dpkg-query and prints
# nothing.

SLK_DEPS_PACKAGES=(
    gcc libc6-dev pkg-config meson ninja-build
    libuv1-dev libhiredis-dev libpq-dev node-llhttp libjansson-dev
    libssl-dev libicu-dev libjemalloc-dev libcmocka-dev
    redis-server redis-tools postgresql postgresql-contrib
    python3 curl openssl procps util-linux
)

# Prints the packages of SLK_DEPS_PACKAGES that are not fully installed
# (one dpkg-query for all of them: this runs before every build).
slk_deps_missing() {
    local installed pkg
    # "${db:Status-Abbrev}" is "ii " for a fully installed package.
    installed=" $(dpkg-query -W -f='${db:Status-Abbrev}:${Package}\n' \
        "${SLK_DEPS_PACKAGES[@]}" 2>/dev/null | sed -n 's/^ii *://p' | tr '\n' ' ' || true) "
    for pkg in "${SLK_DEPS_PACKAGES[@]}"; do
        case "$installed" in
        *" $pkg "*) ;;
        *) printf '%s\n' "$pkg" ;;
        esac
    done
}

# Installing redis-server or postgresql asks invoke-rc.d to start their system
# services. Inside a container without systemd that start can fail and make
# dpkg report the whole install as failed, so we forbid service starts there
# for the duration of the install. slotlock never uses the system instances
# (it runs its own on other ports), so a system service that did start on a
# real host is simply left alone.
slk_deps_block_service_start() {
    if [ -d /run/systemd/system ] || [ -e /usr/sbin/policy-rc.d ]; then
        return 1
    fi
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    return 0
}

slk_deps_install() {
    local missing sudo="" log blocked=0 rc=0
    missing=$(slk_deps_missing)
    [ -z "$missing" ] && return 0

    # shellcheck disable=SC2086 # word splitting of the package list is intended
    set -- $missing
    if [ "$(id -u)" -ne 0 ]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            echo "slotlock: missing Debian packages: $*" >&2
            echo "slotlock: run as root, or: apt-get install $*" >&2
            return 1
        fi
    fi
    echo "slotlock: installing missing packages: $*" >&2
    log=$(mktemp)
    if [ -z "$sudo" ] && slk_deps_block_service_start; then
        blocked=1
    fi
    # No pipes here: the caller may run with errexit and pipefail.
    if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q update >"$log" 2>&1; then
        rc=1
    elif ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
        --no-install-recommends -o Dpkg::Use-Pty=0 install "$@" >>"$log" 2>&1; then
        rc=1
    fi
    if [ "$blocked" -eq 1 ]; then
        rm -f /usr/sbin/policy-rc.d
    fi
    if [ "$rc" -ne 0 ]; then
        echo "slotlock: package installation failed; apt-get said:" >&2
        tail -n 40 "$log" >&2
        rm -f "$log"
        return 1
    fi
    rm -f "$log"
    missing=$(slk_deps_missing)
    if [ -n "$missing" ]; then
        # shellcheck disable=SC2086 # one line, words separated
        echo "slotlock: still missing after install:" $missing >&2
        return 1
    fi
    return 0
}

if [ "${BASH_SOURCE[0]}" = "$0" ]; then
    set -euo pipefail
    slk_deps_install
fi
