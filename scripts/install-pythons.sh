#!/usr/bin/env bash
# Install the extra CPython interpreters that pyprof's test suite profiles.
#
#   3.13  / 3.13t  built from the upstream source tarball shipped in Debian's
#                  `python3.13` source package, into /opt/pythons/3.13 and
#                  /opt/pythons/3.13t (free-threaded, --disable-gil).
#   3.14t / 3.15t  the same route from sid's `python3.14` and `python3.15`
#                  source packages: free-threaded, shared libpython, headers,
#                  into /opt/pythons/3.14t and /opt/pythons/3.15t.
#   3.14 / 3.15 / 3.14 debug build
#                  Debian sid packages inside a debootstrap chroot at /opt/sid
#                  (run as `chroot /opt/sid python3.14`).
#
# Idempotent: whatever already runs is left alone, so a second run is a quick
# no-op.  The test command calls it on every run.
#
# Environment:
#   PYPROF_SKIP_INSTALL=1        do nothing, exit 0
#   PYPROF_PYTHONS_REQUIRED="…"  interpreters whose absence makes the script
#                                fail (default: all but 3.14t and 3.15t, whose
#                                source tarballs a mirror may not serve)
#   PYPROF_DEBIAN_MIRROR=URL     Debian mirror to use instead of the one read
#                                from the machine's apt sources
#
# Output: lines prefixed "install-pythons:", a summary per interpreter and a
# PYPROF_PYTHONS=... line, also written to /opt/pythons/pythons.env.
# Nothing here edits the system's apt sources: source packages and the sid
# package lists go through a private apt configuration in /opt/pythons/.apt.

set -euo pipefail

ROOT=/opt/pythons
SID=/opt/sid
LOGDIR=$ROOT/logs
APTDIR=$ROOT/.apt
ENVFILE=$ROOT/pythons.env
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
JOBS=2

ALL_KEYS=(3.13 3.13t 3.14 3.15 3.14-dbg 3.14t 3.15t)
# Interpreters built from source here: KEY is X.Y (default build) or X.Yt
# (free-threaded); the source is Debian's pythonX.Y source package.
LOCAL_KEYS=(3.13 3.13t 3.14t 3.15t)
# 3.14t/3.15t are optional by default: the mirror this project reaches lists the
# python3.14/python3.15 source packages but may answer 404 for their tarballs. Their
# absence is reported in the summary (and the test suite skips them by name).
REQUIRED=${PYPROF_PYTHONS_REQUIRED:-3.13 3.13t 3.14 3.15 3.14-dbg}
# A source build that failed for want of a downloadable source is retried after a day
# (or at once after removing its stamp), so a second run stays quick.
RETRY_SECS=86400

SID_PKGS=(python3.14 python3.15 libpython3.14 libpython3.15 python3.14-dbg python3.15-dbg libpython3.14-dev libpython3.15-dev python3.15-venv)
BUILD_DEPS=(build-essential pkg-config xz-utils libssl-dev zlib1g-dev libbz2-dev libffi-dev
            liblzma-dev libreadline-dev libncurses-dev libsqlite3-dev uuid-dev libgdbm-dev
            libgdbm-compat-dev libexpat1-dev)

say() { printf 'install-pythons: %s\n' "$*"; }

if [ "${PYPROF_SKIP_INSTALL:-}" = 1 ]; then
    say "PYPROF_SKIP_INSTALL=1: skipped, nothing checked or installed"
    exit 0
fi

START=$(date +%s)
trap 'say "unexpected error (line $LINENO, exit $?)"' ERR

declare -A STATUS=() DETAIL=() CMD=()

# run_py CMD... : run an interpreter with a clean Python environment
run_py() { env -u PYTHONHOME -u PYTHONPATH -u PYTHONSTARTUP "$@"; }

# show_tail LOG : print the end of a failed step's log
show_tail() {
    say "---- last 30 lines of $1 ----"
    tail -n 30 "$1" | sed 's/^/install-pythons: | /' || true
    say "---- end of $1 ----"
}

is_root() { [ "$(id -u)" = 0 ]; }

# ---------------------------------------------------------------------------
# Presence checks (cheap: these make up the whole of a second run)

is_ft_key() { [ "${1%t}" != "$1" ]; }   # 3.14t -> free-threaded
src_pkg_of() { echo "python${1%t}"; }   # 3.14t -> python3.14

local_python_ok() {  # KEY: 3.13, 3.13t, 3.14t, ...
    local key=$1 bin=$ROOT/$1/bin/python$1 check='pass'
    is_ft_key "$key" && check='import sys, sysconfig; sys.exit(0 if sysconfig.get_config_var("Py_GIL_DISABLED") else 1)'
    [ -x "$bin" ] && run_py "$bin" -c "$check" >/dev/null 2>&1
}

sid_python_ok() {  # NAME: python3.14, python3.14d, ...
    [ -x "$SID/usr/bin/$1" ] && is_root && run_py chroot "$SID" "/usr/bin/$1" -c pass >/dev/null 2>&1
}

# The debug interpreter's name differs between Debian releases.
sid_dbg_name() {
    local n
    for n in python3.14d python3.14-dbg; do
        if sid_python_ok "$n"; then echo "$n"; return 0; fi
    done
    return 1
}

# ---------------------------------------------------------------------------
# Mirror: read from the machine's own apt sources (deb822 or classic format).

os_codename() {
    local cn=""
    # shellcheck source=/dev/null
    if [ -r /etc/os-release ]; then cn=$(. /etc/os-release && echo "${VERSION_CODENAME:-}"); fi
    echo "${cn:-bookworm}"
}

# mirror_from_deb822 CODENAME LOOSE FILE
mirror_from_deb822() {
    awk -v cn="$1" -v loose="$2" '
        BEGIN { RS = ""; FS = "\n" }
        {
            types = ""; uris = ""; suites = ""; enabled = "yes"
            for (i = 1; i <= NF; i++) {
                l = $i
                if (l ~ /^[ \t]*#/) continue
                key = tolower(l); sub(/:.*/, "", key)
                val = l; sub(/^[^:]*:[ \t]*/, "", val)
                if (key == "types") types = val
                else if (key == "uris") uris = val
                else if (key == "suites") suites = val
                else if (key == "enabled") enabled = tolower(val)
            }
            if (enabled == "no") next
            if ((" " types " ") !~ /[ \t]deb[ \t]/) next
            n = split(suites, s, /[ \t]+/); ok = 0
            for (j = 1; j <= n; j++) {
                if (s[j] == cn) ok = 1
                if (loose && s[j] != "" && s[j] !~ /security/) ok = 1
            }
            if (!ok) next
            n = split(uris, u, /[ \t]+/)
            for (j = 1; j <= n; j++) if (u[j] ~ /^(https?|file):\/\//) { print u[j]; exit }
        }' "$3"
}

# mirror_from_list CODENAME LOOSE FILE
mirror_from_list() {
    awk -v cn="$1" -v loose="$2" '
        /^[ \t]*deb[ \t]/ {
            line = $0
            sub(/^[ \t]*deb[ \t]+/, "", line)
            if (line ~ /^\[/) sub(/^\[[^\]]*\][ \t]*/, "", line)
            split(line, a, /[ \t]+/)
            if (a[1] !~ /^(https?|file):\/\//) next
            if (a[2] == cn || (loose && a[2] !~ /security/)) { print a[1]; exit }
        }' "$3"
}

detect_mirror() {
    if [ -n "${PYPROF_DEBIAN_MIRROR:-}" ]; then echo "${PYPROF_DEBIAN_MIRROR%/}"; return 0; fi
    local cn loose f m
    cn=$(os_codename)
    for loose in 0 1; do
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -r "$f" ] || continue
            m=$(mirror_from_deb822 "$cn" "$loose" "$f")
            if [ -n "$m" ]; then echo "${m%/}"; return 0; fi
        done
        for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
            [ -r "$f" ] || continue
            m=$(mirror_from_list "$cn" "$loose" "$f")
            if [ -n "$m" ]; then echo "${m%/}"; return 0; fi
        done
    done
    return 1
}

MIRROR=""
need_mirror() {
    [ -n "$MIRROR" ] && return 0
    if ! MIRROR=$(detect_mirror); then
        say "could not find a Debian mirror in /etc/apt/sources.list{,.d/*} (set PYPROF_DEBIAN_MIRROR)"
        return 1
    fi
    say "Debian mirror (from the machine's apt sources): $MIRROR"
}

# ---------------------------------------------------------------------------
# Private apt configuration (sid/testing source lists, sid binary lists)

APTO=()
PRIVATE_APT_READY=0
private_apt() {
    [ "$PRIVATE_APT_READY" = 1 ] && return 0
    need_mirror || return 1
    local signed="signed-by=$KEYRING"
    [ -r "$KEYRING" ] || signed="trusted=yes"
    mkdir -p "$APTDIR/state/lists/partial" "$APTDIR/cache/archives/partial" "$APTDIR/etc/preferences.d"
    touch "$APTDIR/state/status"
    cat > "$APTDIR/sources.list.new" <<EOF
deb-src [$signed] $MIRROR sid main
deb-src [$signed] $MIRROR testing main
deb [$signed] $MIRROR sid main
EOF
    mv -f "$APTDIR/sources.list.new" "$APTDIR/sources.list"
    APTO=(-o "Dir::Etc::SourceList=$APTDIR/sources.list"
          -o "Dir::Etc::SourceParts=-"
          -o "Dir::Etc::Preferences=$APTDIR/etc/preferences"
          -o "Dir::Etc::PreferencesParts=$APTDIR/etc/preferences.d"
          -o "Dir::State=$APTDIR/state"
          -o "Dir::State::Lists=$APTDIR/state/lists"
          -o "Dir::State::Status=$APTDIR/state/status"
          -o "Dir::Cache=$APTDIR/cache"
          -o "Dir::Cache::Archives=$APTDIR/cache/archives"
          -o "APT::Sandbox::User=root"
          -o "Acquire::Languages=none")
    say "updating private apt lists (sid, testing) in $APTDIR"
    if ! apt-get "${APTO[@]}" update > "$LOGDIR/apt-private-update.log" 2>&1; then
        show_tail "$LOGDIR/apt-private-update.log"
        say "private apt update failed"
        return 1
    fi
    PRIVATE_APT_READY=1
}

# ---------------------------------------------------------------------------
# Host build dependencies (normal apt sources)

APT_UPDATED=0
apt_install_host() {  # LOGNAME PKG...
    local log=$LOGDIR/$1.log; shift
    local missing=() p
    for p in "$@"; do
        if [ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" != installed ]; then
            missing+=("$p")
        fi
    done
    if [ ${#missing[@]} = 0 ]; then
        say "host packages already installed: $*"
        return 0
    fi
    say "installing host packages: ${missing[*]} (log: $log)"
    : > "$log"
    local try
    for try in 1 2; do
        if DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y --no-upgrade \
                --no-install-recommends "${missing[@]}" >> "$log" 2>&1; then
            return 0
        fi
        if [ "$try" = 1 ] && [ "$APT_UPDATED" = 0 ]; then
            say "apt-get install failed; running apt-get update once and retrying"
            APT_UPDATED=1
            apt-get -o DPkg::Lock::Timeout=600 update >> "$log" 2>&1 || true
        else
            break
        fi
    done
    show_tail "$log"
    return 1
}

# ---------------------------------------------------------------------------
# CPython 3.13 / 3.13t from the Debian source package's orig tarball

version_sort_desc() {  # reads versions on stdin, prints newest first (dpkg ordering)
    local v sorted=() i j inserted
    while read -r v; do
        [ -n "$v" ] || continue
        inserted=0
        for i in "${!sorted[@]}"; do
            if dpkg --compare-versions "$v" gt "${sorted[$i]}"; then
                sorted=("${sorted[@]:0:$i}" "$v" "${sorted[@]:$i}")
                inserted=1
                break
            fi
        done
        [ "$inserted" = 1 ] || sorted+=("$v")
    done
    for j in "${sorted[@]}"; do echo "$j"; done
}

declare -A SRC_DIRS=() SRC_ERRORS=()   # source package -> extracted upstream tree / error
fetch_python_source() {  # PKG: python3.13, python3.14, ...
    local pkg=$1
    [ -n "${SRC_DIRS[$pkg]:-}" ] && return 0
    [ -n "${SRC_ERRORS[$pkg]:-}" ] && return 1
    if ! private_apt; then SRC_ERRORS[$pkg]="private apt setup failed"; return 1; fi
    local versions v up tarball why log=$LOGDIR/apt-source-$pkg.log
    mapfile -t versions < <(apt-cache "${APTO[@]}" showsrc "$pkg" 2>/dev/null |
        awk -v want="$pkg" '/^Package:/ { p = $2 } /^Version:/ { if (p == want) print $2 }' | sort -u | version_sort_desc)
    if [ ${#versions[@]} = 0 ]; then
        SRC_ERRORS[$pkg]="no $pkg source package listed in sid/testing"
        say "${SRC_ERRORS[$pkg]}"
        return 1
    fi
    say "$pkg source versions listed (newest first): ${versions[*]}"
    mkdir -p "$ROOT/src"
    : > "$log"
    for v in "${versions[@]}"; do
        up=${v#*:}; up=${up%-*}
        tarball=$ROOT/src/${pkg}_$up.orig.tar.xz
        if [ -s "$tarball" ] && xz -t "$tarball" 2>/dev/null; then
            say "reusing $tarball"
            break
        fi
        say "downloading $pkg=$v orig tarball"
        if (cd "$ROOT/src" && apt-get "${APTO[@]}" source --download-only --tar-only "$pkg=$v") > "$log.try" 2>&1 \
                && [ -s "$tarball" ]; then
            cat "$log.try" >> "$log"; rm -f "$log.try"
            say "got $tarball"
            break
        fi
        why=$(grep -m1 -oE ' [1-5][0-9]{2} +[A-Z][A-Za-z ]*[a-z]' "$log.try" | sed 's/^ *//; s/  */ /g' || true)
        cat "$log.try" >> "$log"; rm -f "$log.try"
        say "$pkg=$v is listed but could not be downloaded (${why:-see $log}); trying the next version"
        rm -f "$tarball"
        tarball=""
    done
    if [ -z "${tarball:-}" ]; then
        show_tail "$log"
        SRC_ERRORS[$pkg]="no listed $pkg source version could be downloaded (${versions[*]})"
        return 1
    fi
    local top
    top=$(tar -tJf "$tarball" | head -n1 | cut -d/ -f1) || true
    if [ -z "$top" ]; then SRC_ERRORS[$pkg]="cannot read $tarball"; return 1; fi
    mkdir -p "$ROOT/build"
    rm -rf "${ROOT:?}/build/$top"
    say "extracting $tarball into $ROOT/build/$top"
    if ! tar -xJf "$tarball" -C "$ROOT/build"; then
        SRC_ERRORS[$pkg]="extracting $tarball failed"; return 1
    fi
    if [ ! -x "$ROOT/build/$top/configure" ]; then
        SRC_ERRORS[$pkg]="$tarball has no configure script"; return 1
    fi
    SRC_DIRS[$pkg]=$ROOT/build/$top
}

build_python() {  # KEY: 3.13, 3.13t, 3.14t, 3.15t
    local key=$1 prefix=$ROOT/$1 log=$LOGDIR/build-$1.log bdir=$ROOT/build/obj-$1
    local pkg; pkg=$(src_pkg_of "$key")
    local extra=()
    is_ft_key "$key" && extra=(--disable-gil)
    if ! is_root; then STATUS[$key]=FAILED; DETAIL[$key]="needs root to install"; return 1; fi
    if ! apt_install_host builddeps "${BUILD_DEPS[@]}"; then
        STATUS[$key]=FAILED; DETAIL[$key]="could not install build dependencies"; return 1
    fi
    local stamp=$ROOT/.unavailable-$pkg
    if [ -f "$stamp" ] && [ $(( $(date +%s) - $(stat -c %Y "$stamp") )) -lt "$RETRY_SECS" ]; then
        STATUS[$key]=FAILED
        DETAIL[$key]="$(cat "$stamp") (at $(date -r "$stamp" '+%F %T'); retried a day later, or now after rm $stamp)"
        return 1
    fi
    if ! fetch_python_source "$pkg"; then
        STATUS[$key]=FAILED; DETAIL[$key]=${SRC_ERRORS[$pkg]}
        case ${SRC_ERRORS[$pkg]} in
            *"could be downloaded"*|*"no $pkg source package listed"*)
                printf '%s\n' "${SRC_ERRORS[$pkg]}" > "$stamp" ;;
        esac
        return 1
    fi
    rm -f "$stamp"
    local srcdir=${SRC_DIRS[$pkg]}
    rm -rf "$bdir"; mkdir -p "$bdir"
    : > "$log"
    local t0; t0=$(date +%s)
    say "$key: configure (out of tree in $bdir, log: $log)"
    if ! (cd "$bdir" && nice -n 19 "$srcdir/configure" --prefix="$prefix" --enable-shared "${extra[@]}" \
            LDFLAGS="-Wl,-rpath,$prefix/lib") >> "$log" 2>&1; then
        show_tail "$log"; STATUS[$key]=FAILED; DETAIL[$key]="configure failed, see $log"; return 1
    fi
    say "$key: make -j$JOBS (several minutes)"
    if ! (cd "$bdir" && nice -n 19 make -j"$JOBS") >> "$log" 2>&1; then
        show_tail "$log"; STATUS[$key]=FAILED; DETAIL[$key]="make failed, see $log"; return 1
    fi
    say "$key: make install into $prefix"
    if ! (cd "$bdir" && nice -n 19 make install) >> "$log" 2>&1; then
        show_tail "$log"; STATUS[$key]=FAILED; DETAIL[$key]="make install failed, see $log"; return 1
    fi
    if ! local_python_ok "$key"; then
        show_tail "$log"; STATUS[$key]=FAILED; DETAIL[$key]="installed $prefix/bin/python$key does not run"; return 1
    fi
    say "$key: built and installed in $(( $(date +%s) - t0 ))s"
    rm -rf "$bdir"
    STATUS[$key]=installed
}

# ---------------------------------------------------------------------------
# Debian sid chroot with 3.14 / 3.15

mounts_under() { awk -v d="$1" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts; }

SID_ERROR=""
build_sid_chroot() {
    if ! is_root; then SID_ERROR="needs root"; return 1; fi
    if ! apt_install_host apt-debootstrap debootstrap; then SID_ERROR="could not install debootstrap"; return 1; fi
    need_mirror || { SID_ERROR="no Debian mirror found"; return 1; }

    local pkgs=() p
    if private_apt; then
        for p in "${SID_PKGS[@]}"; do
            if apt-cache "${APTO[@]}" show --no-all-versions "$p" >/dev/null 2>&1; then
                pkgs+=("$p")
            else
                say "package $p does not exist in sid: dropped from the chroot"
            fi
        done
    else
        say "cannot check package names against sid lists; trying all of them"
        pkgs=("${SID_PKGS[@]}")
    fi

    local new=$SID.new log=$LOGDIR/debootstrap.log
    if [ -n "$(mounts_under "$new")" ]; then SID_ERROR="$new has mounts; not touching it"; return 1; fi
    rm -rf "$new"
    local include; include=$(IFS=,; echo "${pkgs[*]}")
    say "debootstrap --variant=minbase --include=$include sid $new (about a minute, log: $log)"
    local gpgopt=(--keyring="$KEYRING")
    [ -r "$KEYRING" ] || gpgopt=(--no-check-gpg)
    : > "$log"
    if ! nice -n 19 debootstrap --variant=minbase "${gpgopt[@]}" --include="$include" sid "$new" "$MIRROR" >> "$log" 2>&1; then
        if grep -qiE 'signed by unknown key|invalid release signature|NO_PUBKEY|EXPKEYSIG' "$log" \
                && [ "${gpgopt[0]}" != --no-check-gpg ]; then
            say "sid Release signature could not be checked with $KEYRING; retrying without the check"
            rm -rf "$new"
            if ! nice -n 19 debootstrap --variant=minbase --no-check-gpg --include="$include" sid "$new" "$MIRROR" >> "$log" 2>&1; then
                show_tail "$log"; SID_ERROR="debootstrap failed, see $log"; return 1
            fi
        else
            show_tail "$log"; SID_ERROR="debootstrap failed, see $log"; return 1
        fi
    fi
    for p in python3.14 python3.15; do
        if ! run_py chroot "$new" "/usr/bin/$p" -c pass >> "$log" 2>&1; then
            SID_ERROR="$p does not run in the new chroot"; return 1
        fi
    done
    # Swap the new chroot into place.
    if [ -e "$SID" ]; then
        if [ -n "$(mounts_under "$SID")" ]; then
            SID_ERROR="old $SID has mounts ($(mounts_under "$SID" | tr '\n' ' ')); new chroot left in $new"
            return 1
        fi
        rm -rf "$SID.old"
        mv "$SID" "$SID.old"
    fi
    mv "$new" "$SID"
    rm -rf "$SID.old"
    say "sid chroot ready at $SID ($(du -sh "$SID" 2>/dev/null | cut -f1))"
}

# Add the debug interpreter to an existing chroot that lacks it.
add_sid_dbg() {
    is_root || return 1
    local log=$LOGDIR/sid-dbg.log
    say "debug interpreter missing in $SID; trying apt-get install python3.14-dbg inside it (log: $log)"
    : > "$log"
    if run_py chroot "$SID" apt-get update >> "$log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive run_py chroot "$SID" apt-get install -y --no-install-recommends python3.14-dbg >> "$log" 2>&1; then
        return 0
    fi
    show_tail "$log"
    return 1
}

# python3.15-dbg in an existing chroot that lacks it: besides the debug interpreter it
# carries the build-id debug file of the stripped python3.15 (as python3.14-dbg does for
# python3.14), which `pyprof record --native` symbolizes the interpreter's own frames
# with (its eval loop among them). Not fatal: said, and tests/native.rs fails by name.
add_sid_debug_symbols() {
    is_root || return 0
    run_py chroot "$SID" dpkg -s python3.15-dbg > /dev/null 2>&1 && return 0
    local log=$LOGDIR/sid-dbg-3.15.log
    say "sid chroot: adding python3.15-dbg (debug symbols of python3.15; log: $log)"
    : > "$log"
    # (The mirror's Release file may be older than its Valid-Until by now: a snapshot.)
    local apt=(apt-get -o Acquire::Check-Valid-Until=false)
    if run_py chroot "$SID" "${apt[@]}" update >> "$log" 2>&1 &&
            DEBIAN_FRONTEND=noninteractive run_py chroot "$SID" "${apt[@]}" install -y --no-install-recommends python3.15-dbg >> "$log" 2>&1; then
        return 0
    fi
    say "sid chroot: python3.15-dbg could not be installed (see $log)"
    show_tail "$log"
    return 0
}

# ---------------------------------------------------------------------------
# Main

if is_root; then
    mkdir -p "$ROOT" "$LOGDIR"
    exec 9>> "$ROOT/.lock"
    if ! flock -n 9; then
        say "another install-pythons run holds $ROOT/.lock; waiting for it"
        flock -w 7200 9 || { say "gave up waiting for $ROOT/.lock"; exit 1; }
    fi
else
    say "not running as root: only checking what is present"
    mkdir -p "$LOGDIR" 2>/dev/null || LOGDIR=$(mktemp -d)
fi

# 1. Source builds: 3.13, 3.13t, 3.14t, 3.15t
declare -A SRC_FAILED=()   # source package -> 1 if a build from it failed (keep its tree)
for key in "${LOCAL_KEYS[@]}"; do
    pkg=$(src_pkg_of "$key")
    if local_python_ok "$key"; then
        say "$key: already present at $ROOT/$key/bin/python$key"
        STATUS[$key]="already present"
    else
        say "$key: not present; building from the $pkg Debian source package"
        build_python "$key" || SRC_FAILED[$pkg]=1
    fi
    if local_python_ok "$key"; then CMD[$key]=$ROOT/$key/bin/python$key; fi
done
for pkg in "${!SRC_DIRS[@]}"; do
    [ -n "${SRC_FAILED[$pkg]:-}" ] || rm -rf "${SRC_DIRS[$pkg]}"
done

# 2. sid chroot: 3.14, 3.15, 3.14 debug
if sid_python_ok python3.14 && sid_python_ok python3.15; then
    say "sid chroot: python3.14 and python3.15 already run in $SID"
    for key in 3.14 3.15; do STATUS[$key]="already present"; done
    if sid_dbg_name >/dev/null; then
        STATUS[3.14-dbg]="already present"
    elif add_sid_dbg && sid_dbg_name >/dev/null; then
        STATUS[3.14-dbg]=installed
    else
        STATUS[3.14-dbg]=FAILED; DETAIL[3.14-dbg]="no python3.14d / python3.14-dbg in $SID"
    fi
else
    say "sid chroot: python3.14/python3.15 not runnable in $SID; creating it"
    if build_sid_chroot; then
        for key in 3.14 3.15; do STATUS[$key]=installed; done
        if sid_dbg_name >/dev/null; then
            STATUS[3.14-dbg]=installed
        else
            STATUS[3.14-dbg]=FAILED; DETAIL[3.14-dbg]="debug interpreter not in the chroot (see messages above)"
        fi
    else
        for key in 3.14 3.15 3.14-dbg; do STATUS[$key]=FAILED; DETAIL[$key]=$SID_ERROR; done
    fi
fi
if sid_python_ok python3.15; then
    add_sid_debug_symbols
fi
for key in 3.14 3.15; do
    if sid_python_ok "python$key"; then CMD[$key]="chroot $SID python$key"; else STATUS[$key]=FAILED; fi
done
if dbg=$(sid_dbg_name); then CMD[3.14-dbg]="chroot $SID $dbg"; fi

# 3. Summary
fail=0
pythons=""
for key in "${ALL_KEYS[@]}"; do
    st=${STATUS[$key]:-FAILED}
    if [ -n "${CMD[$key]:-}" ]; then
        # shellcheck disable=SC2086  # CMD holds "chroot /opt/sid pythonX" on purpose
        ver=$(run_py ${CMD[$key]} -c 'import sys; print(sys.version.split()[0] + ("t" if not getattr(sys, "_is_gil_enabled", lambda: True)() else ""))' 2>/dev/null || echo '?')
        pythons+="${pythons:+:}$key=${CMD[$key]}"
        say "summary: $key: $st ($ver: ${CMD[$key]})"
    else
        [ "$st" = FAILED ] || st=FAILED
        req=optional
        case " $REQUIRED " in *" $key "*) req=required; fail=1 ;; esac
        say "summary: $key: FAILED (${DETAIL[$key]:-not runnable}) [$req]"
    fi
done
if [ -d "$SID" ] && is_root; then
    say "summary: sid chroot $SID size $(du -sh "$SID" 2>/dev/null | cut -f1)"
fi

echo "PYPROF_PYTHONS=$pythons"
if is_root; then
    printf "export PYPROF_PYTHONS='%s'\n" "$pythons" > "$ENVFILE.new"
    mv -f "$ENVFILE.new" "$ENVFILE"
    say "wrote $ENVFILE"
fi
say "done in $(( $(date +%s) - START ))s"
exit "$fail"
