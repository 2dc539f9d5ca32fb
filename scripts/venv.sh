# Sourced by scripts/demo and scripts/test: make (or reuse) the project virtual environment
# .venv and install the project into it with the given extras. Works with Debian's externally
# managed /usr/bin/python3 (PEP 668) as with any other python3 first on PATH.
# Usage: . scripts/venv.sh EXTRAS   (e.g. "fast" or "test,fast")
set -euo pipefail
_extras="$1"
_py="${PYTHON:-python3}"
_sudo=""
[ "$(id -u)" -eq 0 ] || _sudo="sudo"
if [ ! -x .venv/bin/python ]; then
  if ! "$_py" -c 'import ensurepip, venv' >/dev/null 2>&1; then
    # Debian splits venv/ensurepip into python3-venv.
    export DEBIAN_FRONTEND=noninteractive
    $_sudo apt-get update -qq
    $_sudo apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
  fi
  rm -rf .venv
  "$_py" -m venv .venv
fi
# Reinstall only when the dependency declaration, the pinned versions (constraints.txt, written
# by scripts/lock) or the extras changed; the install is editable, so code changes need none.
_stamp="$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)-${_extras}"
_have="$(cat .venv/.installed 2>/dev/null || true)"
case ",$_have," in
  *",$_stamp,"*) ;;
  *)
    .venv/bin/python -m pip install -q --disable-pip-version-check -c constraints.txt -e ".[${_extras}]"
    # Remember every extras set installed against this pyproject.toml.
    if [ "${_have%%-*}" = "${_stamp%%-*}" ]; then echo "${_have},${_stamp}" >.venv/.installed
    else echo "$_stamp" >.venv/.installed; fi
    ;;
esac
export PATH="$PWD/.venv/bin:$PATH"
export VIRTUAL_ENV="$PWD/.venv"
