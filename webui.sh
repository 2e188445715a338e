#!/usr/bin/env bash
# Creates ./venv if absent (python3 >= 3.10), installs requirements, and starts the web UI.
# Arguments are passed through to launch.py (A1111 flags). Honours python_cmd, venv_dir,
# COMMANDLINE_ARGS and webui-user.sh like A1111.
set -e
install_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$install_dir"
if [[ -f webui-user.sh ]]; then
    # shellcheck disable=SC1091
    source ./webui-user.sh
fi
python_cmd="${python_cmd:-python3}"
venv_dir="${venv_dir:-venv}"
can_run_as_root=0
for arg in "$@"; do [[ "$arg" == "-f" ]] && can_run_as_root=1; done
if [[ $(id -u) -eq 0 && $can_run_as_root -eq 0 && -z "${CI:-}" && -z "${WEBUI_ALLOW_ROOT:-}" ]]; then
    echo "Running as root is not recommended; pass -f to allow it." >&2
    exit 1
fi
if ! "$python_cmd" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' 2>/dev/null; then
    echo "Python 3.10 or newer is required (set python_cmd to choose another interpreter)." >&2
    exit 1
fi
if [[ "$venv_dir" != "-" ]]; then
    if [[ ! -x "$venv_dir/bin/python" ]]; then
        echo "Creating virtual environment in $venv_dir"
        "$python_cmd" -m venv "$venv_dir"
        "$venv_dir/bin/python" -m pip install --upgrade pip >/dev/null
    fi
    python_cmd="$venv_dir/bin/python"
fi
# "Apply and restart UI" stops the server with exit code 75 and the tmp/restart marker: start it again then.
export SD_WEBUI_RESTART="${SD_WEBUI_RESTART:-tmp/restart}"
set +e
while true; do
    rm -f "$SD_WEBUI_RESTART"
    "$python_cmd" launch.py "$@"
    code=$?
    if [[ $code -ne 75 && ! -f "$SD_WEBUI_RESTART" ]]; then
        exit $code
    fi
    echo "Restarting..."
done
