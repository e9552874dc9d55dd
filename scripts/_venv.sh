# Sourced by the other scripts with one argument: the extras to install into
# .venv on python3 (comma-separated, e.g. "test,docs"; "base" for the package
# alone), or "none" to only define make_venv. A venv is reinstalled only when
# pyproject.toml changed since the last install of those extras, so repeated
# runs cost nothing.
set -eu
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# make_venv DIR PYTHON EXTRAS: create DIR with PYTHON (unless DIR has a
# working interpreter) and install the project into it with EXTRAS. Returns
# non-zero on the first failing step (each is checked, so it also works where
# a caller tests its status and errexit is off).
make_venv() {
    local dir="$1" python="$2" extras="$3"
    if ! "$dir/bin/python" -c '' 2>/dev/null; then
        rm -rf "$dir"  # absent, or its interpreter was removed or upgraded away
        "$python" -m venv "$dir" || return
    fi
    local stamp="$dir/.installed-$extras" target=.
    [ "$extras" = base ] || target=".[$extras]"
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        "$dir/bin/python" -m pip install -q --upgrade pip || return
        "$dir/bin/python" -m pip install -q -e "$target" || return
        touch "$stamp"
    fi
}

if [ "$1" != none ]; then
    make_venv .venv python3 "$1"
fi
