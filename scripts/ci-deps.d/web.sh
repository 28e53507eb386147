# Sourced by scripts/test: the web chat's browser tests drive Debian's Chromium through the PyPI
# `playwright` package's driver (never `playwright install`: no browser downloads), and scan the
# widget with axe-core, a test-only npm package installed into a cache folder (never into the repo).
# Idempotent: installs nothing that is already there.
_web_missing=()
[[ -x /usr/bin/chromium ]] || _web_missing+=(chromium)
command -v npm >/dev/null 2>&1 || _web_missing+=(npm)
if ((${#_web_missing[@]})); then
  echo "== installing Debian packages: ${_web_missing[*]} (web chat browser tests)"
  if [[ $(id -u) -eq 0 ]]; then _web_sudo=(); else _web_sudo=(sudo); fi
  "${_web_sudo[@]}" apt-get update -qq
  "${_web_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${_web_missing[@]}" >/dev/null
  unset _web_sudo
fi
unset _web_missing
# The version and folder are the ones tests/browser/axe.py reads.
_axe_version=$(sed -n 's/^AXE_VERSION = "\(.*\)"$/\1/p' tests/browser/axe.py)
_axe_dir=${SWITCHBOARD_AXE_DIR:-$HOME/.cache/switchboard-tests/axe}
if [[ ! -f $_axe_dir/node_modules/axe-core/axe.min.js ]]; then
  echo "== installing axe-core@$_axe_version from npm into $_axe_dir (accessibility tests)"
  mkdir -p "$_axe_dir"
  npm install --no-save --no-audit --no-fund --silent --prefix "$_axe_dir" "axe-core@$_axe_version" >/dev/null
fi
unset _axe_version _axe_dir
