# Sourced by scripts/test: the email channel's tests run a private Dovecot IMAP server (Debian's
# dovecot-imapd; the packaged service itself is not used) and make a throw-away TLS certificate
# with the openssl command. Idempotent: installs nothing when both are already there.
_email_packages=()
command -v dovecot >/dev/null 2>&1 || [[ -x /usr/sbin/dovecot ]] || _email_packages+=(dovecot-imapd)
command -v openssl >/dev/null 2>&1 || _email_packages+=(openssl)
if ((${#_email_packages[@]})); then
  echo "== installing Debian packages: ${_email_packages[*]} (email channel tests)"
  if [[ $(id -u) -eq 0 ]]; then _email_sudo=(); else _email_sudo=(sudo); fi
  "${_email_sudo[@]}" apt-get update -qq
  "${_email_sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get install -y -qq --no-install-recommends "${_email_packages[@]}" >/dev/null
  unset _email_sudo
fi
unset _email_packages
