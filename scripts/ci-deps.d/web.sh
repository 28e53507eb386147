# Sourced by scripts/test: the web chat's browser tests drive Debian's Chromium through the PyPI
# `playwright` package's driver (never `playwright install`: no browser downloads).
# Idempotent: installs nothing when /usr/bin/chromium is already there.
if [[ ! -x /usr/bin/chromium ]]; then
  echo "== installing Debian package: chromium (web chat browser tests)"
  if [[ $(id -u) -eq 0 ]]; then _web_sudo=(); else _web_sudo=(sudo); fi
  "${_web_sudo[@]}" apt-get update -qq
  "${_web_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends chromium >/dev/null
  unset _web_sudo
fi
