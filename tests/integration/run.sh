#!/usr/bin/env bash
# make test-integration: the tests marked `real` and `browser`, against real outside systems.
#
#  1. installs what is missing (as root on Debian): apt packages for a one-node Slurm with accounting
#     and for the report's browser test, and the Claude Code CLI from npm at a pinned version;
#  2. starts the Slurm cluster in a temporary folder (tests/integration/slurm_cluster.py; no systemd);
#  3. runs pytest -m "real or browser" (each test starts its own fake Anthropic API on 127.0.0.1);
#  4. stops every daemon it started, by PID, whatever the tests did (trap).
#
# Where it cannot install or start something, the tests that need it skip with one line saying why;
# with CI=true (or FLYVIS_REQUIRE_REAL=1) every such skip is a failure.
set -uo pipefail
cd "$(dirname "$0")/../.."

PY=${PY:-.venv/bin/python}
CLAUDE_CODE_VERSION=2.1.332
APT_PACKAGES=(slurm-wlm munge slurmdbd mariadb-server chromium chromium-driver)
REQUIRE=0
if [ "${CI:-}" = "true" ] || [ "${FLYVIS_REQUIRE_REAL:-}" = "1" ]; then REQUIRE=1; fi
export FLYVIS_REQUIRE_REAL=$REQUIRE

say() { echo "integration: $*" >&2; }
started=$(date +%s)

missing_apt() {
    local p
    for p in "${APT_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || echo "$p"
    done
}

install_apt() {
    local missing
    missing=$(missing_apt | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
        say "cannot install ${missing}(needs root and apt-get); the tests that need them will skip"
        return 1
    fi
    say "apt-get install ${missing}"
    # Packages must not start their services (no systemd here; the tests start their own daemons).
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && own_policy=1
    fi
    local rc=0
    { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        --no-install-recommends $missing >/dev/null; } || rc=$?
    [ "$own_policy" = 1 ] && rm -f "$policy"
    [ "$rc" = 0 ] || say "apt-get install failed (exit $rc); the tests that need it will skip"
    return $rc
}

install_claude() {
    if claude --version 2>/dev/null | grep -q "^${CLAUDE_CODE_VERSION} "; then return 0; fi
    if ! command -v npm >/dev/null; then
        say "npm not found: cannot install the claude CLI; its tests will skip"
        return 1
    fi
    if [ "$(id -u)" != 0 ]; then
        say "not root: cannot npm install -g the claude CLI; its tests will skip"
        return 1
    fi
    say "npm install -g @anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"
    npm install -g --no-fund --no-audit "@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}" >/dev/null 2>&1 \
        || { say "npm install failed; the claude CLI tests will skip"; return 1; }
}

install_apt
install_claude
say "installs done in $(($(date +%s) - started)) s"

WORK=$(mktemp -d /tmp/flyvis-integration.XXXXXX)
chmod 755 "$WORK"  # munged and mariadbd run as their own users and must reach their folders
cleanup() {
    local rc=$?
    "$PY" -m tests.integration.slurm_cluster down "$WORK/slurm" >&2 || true
    rm -rf "$WORK"
    say "done in $(($(date +%s) - started)) s"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if out=$("$PY" -m tests.integration.slurm_cluster up "$WORK/slurm" 2>&1); then
    export "${out##*$'\n'}"  # SLURM_CONF=...
    say "slurm up ($SLURM_CONF)"
else
    say "${out##*$'\n'}"
    unset SLURM_CONF
fi

"$PY" -m pytest -q -p no:cacheprovider -p tests.integration.require_real -m "real or browser" "$@"
