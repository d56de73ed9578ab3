# Sourced by scripts/test and scripts/demo: create .venv and install the project into it when needed.
# Reinstalls only when pyproject.toml changed, so repeated runs start fast.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="$root/.venv"
extra="${1:-}"
stamp="$venv/.installed-$(sha256sum "$root/pyproject.toml" | cut -c1-16)${extra:+-$extra}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ]; then
  "$venv/bin/python" -m pip install --quiet --upgrade pip
  "$venv/bin/python" -m pip install --quiet -e "$root${extra:+[$extra]}"
  touch "$stamp"
fi
export PATH="$venv/bin:$PATH"
