# shellcheck shell=bash
# Sourced by ops/test and ops/up: makes sure .venv exists and holds the locked
# dependencies plus this project (editable). Reinstalls when requirements.lock or
# pyproject.toml changed since the last install (stamp: .venv/.berth-installed).
# Callers cd to the repository root first.

berth_install_digest() {
    cat requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1
}

berth_ensure_venv() {
    local stamp=.venv/.berth-installed digest
    if [[ ! -x .venv/bin/python ]]; then
        echo "ops: creating .venv" >&2
        python3 -m venv .venv
    fi
    digest="$(berth_install_digest)"
    if [[ "$(cat "$stamp" 2>/dev/null || true)" == "$digest" ]] \
        && .venv/bin/python -c 'import importlib.metadata as m; m.distribution("berth")' 2>/dev/null; then
        return 0
    fi
    echo "ops: installing requirements.lock and berth (editable) into .venv" >&2
    rm -f "$stamp"
    # The lock holds every extra (server, embedded, test: see its header); --no-deps keeps pip from
    # resolving anything beyond it.
    .venv/bin/pip install -q -r requirements.lock
    .venv/bin/pip install -q --no-deps -e '.[server,embedded,test]'
    printf '%s\n' "$digest" > "$stamp"
}
