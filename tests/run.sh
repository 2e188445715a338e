#!/usr/bin/env bash
# The test command (README): sets up ./venv with the pinned test requirements if needed, installs
# Debian's chromium for the browser tests when missing, then runs ruff, the layer contracts and pytest.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
if [[ ! -x "$venv_dir/bin/python" ]]; then
    "$python_cmd" -m venv "$venv_dir"
    "$venv_dir/bin/python" -m pip install --quiet --upgrade pip
fi
py="$venv_dir/bin/python"
# Install only when the pinned set is not already satisfied (pip's check is quick).
if ! "$py" - <<'PY' >/dev/null 2>&1
import importlib.metadata as m, re, sys
bad = []
for f in ("requirements.txt", "requirements-nodeps.txt", "requirements-test.txt", "requirements-test-nodeps.txt"):
    for line in open(f):
        g = re.match(r"^\s*([A-Za-z0-9_.\-]+)==([^\s;#]+)", line)
        if g:
            try:
                if m.version(g[1]).split("+")[0] != g[2]:
                    bad.append(g[1])
            except m.PackageNotFoundError:
                bad.append(g[1])
sys.exit(1 if bad else 0)
PY
then
    "$py" -m pip install --quiet -r requirements-test.txt
    "$py" -m pip install --quiet --no-deps -r requirements-nodeps.txt -r requirements-test-nodeps.txt
fi
if ! command -v chromium >/dev/null 2>&1 && [[ -z "${SKIP_BROWSER_INSTALL:-}" ]]; then
    if command -v apt-get >/dev/null 2>&1 && [[ $(id -u) -eq 0 ]]; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
            || echo "warning: could not install chromium; browser tests will be skipped" >&2
    fi
fi
export HF_HUB_OFFLINE=1 GRADIO_ANALYTICS_ENABLED=False
"$venv_dir/bin/ruff" check .
"$venv_dir/bin/lint-imports"
exec "$py" -m pytest "$@"
