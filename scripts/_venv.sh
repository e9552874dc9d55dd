# Sourced by the other scripts with one argument: the extras to install
# ("base" for the package alone). Creates .venv and installs the project
# unless pyproject.toml is unchanged since the last install of those extras.
set -eu
cd "$(dirname "$0")/.."
extras="$1"
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=".venv/.installed-$extras"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    .venv/bin/python -m pip install -q --upgrade pip
    if [ "$extras" = base ]; then
        .venv/bin/python -m pip install -q -e .
    else
        .venv/bin/python -m pip install -q -e ".[$extras]"
    fi
    touch "$stamp"
fi
