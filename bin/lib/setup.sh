# Sourced by bin/* scripts: makes sure the host commands a script needs are installed.

# kiln_ensure_commands WHO COMMAND=DEBIAN_PACKAGE ...
# Installs the packages of the commands that are missing when it can (root, apt-get), saying
# what it installs; otherwise names the exact command to run and fails.
kiln_ensure_commands() {
  local who="$1" pair cmd
  shift
  local missing=()
  for pair in "$@"; do
    cmd="${pair%%=*}"
    command -v "$cmd" >/dev/null 2>&1 || missing+=("${pair#*=}")
  done
  ((${#missing[@]})) || return 0
  mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "$who: installing ${missing[*]} (Debian packages it needs) ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    local ok=1
    apt-get update -qq >/dev/null || ok=0
    if ((ok)); then
      apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || ok=0
    fi
    if ((!ok)); then
      echo "$who: installing ${missing[*]} failed (see apt-get's message above);" \
        "run: apt-get install -y ${missing[*]}" >&2
      return 1
    fi
  else
    echo "$who: missing ${missing[*]}; install them (as root: apt-get install -y ${missing[*]})" >&2
    return 1
  fi
}
