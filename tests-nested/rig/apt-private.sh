# Sourced by fetch-l1.sh and fetch-qemu-l1.sh: apt-get / apt-cache pointed at a private state dir
# ($RIG_CACHE/apt) for Debian trixie + trixie-backports arm64, signed by $KEYRING. Defines APT, CACHE,
# apt_update (once per run), download PKG=VER DEST and sha_of FILE. Needs RIG_CACHE, KEYRING, MIRROR
# and a log function. Optional: APTD (the state dir, default $RIG_CACHE/apt) and APT_EXTRA_SOURCES
# (more sources.list lines, e.g. trixie-updates and trixie-security for tests-nested/xen/fetch.sh).
APTD=${APTD:-$RIG_CACHE/apt}
mkdir -p "$APTD/state/lists/partial" "$APTD/cache/archives/partial" "$APTD/etc/sources.list.d" \
         "$APTD/etc/preferences.d" "$APTD/etc/apt.conf.d"
: >"$APTD/status"

# The keyring must carry the trixie keys (bookworm's debian-archive-keyring 2023.3+deb12u2 does);
# apt-get update fails on a bad signature anyway, this only gives a clearer message.
if command -v gpg >/dev/null &&
   ! gpg --no-default-keyring --keyring "$KEYRING" --list-keys 2>/dev/null | grep -qi '13/trixie'; then
    log "keyring $KEYRING has no trixie key; install debian-archive-keyring from bookworm-backports"
    exit 1
fi

cat >"$APTD/etc/sources.list" <<SRC
deb [arch=arm64 signed-by=$KEYRING] $MIRROR trixie main
deb [arch=arm64 signed-by=$KEYRING] $MIRROR trixie-backports main
${APT_EXTRA_SOURCES:-}
SRC

APT_DIRS=(-o "Dir=$APTD" -o "Dir::State=$APTD/state" -o "Dir::State::status=$APTD/status"
     -o "Dir::Cache=$APTD/cache" -o "Dir::Etc=$APTD/etc"
     -o "Dir::Etc::sourcelist=$APTD/etc/sources.list"
     -o "Dir::Etc::sourceparts=$APTD/etc/sources.list.d"
     -o "Dir::Etc::preferencesparts=$APTD/etc/preferences.d"
     -o "Dir::Etc::parts=$APTD/etc/apt.conf.d"
     -o "APT::Architecture=arm64" -o "APT::Architectures=arm64")
APT=(apt-get -q "${APT_DIRS[@]}" -o "Debug::NoLocking=1" -o "APT::Sandbox::User=root")
CACHE=(apt-cache "${APT_DIRS[@]}")

updated=0
apt_update() {
    if [ $updated = 0 ]; then
        log "apt-get update (private state in $APTD)"
        "${APT[@]}" update >&2
        updated=1
    fi
}

# download PKG=VER DEST: apt-get download into a scratch dir, then move to DEST.
download() {
    local tmp; tmp=$(mktemp -d "$APTD/dl.XXXXXX")
    ( cd "$tmp" && "${APT[@]}" download "$1" >&2 )
    mv "$tmp"/*.deb "$2"; rmdir "$tmp"
}

sha_of() { sha256sum "$1" | cut -d' ' -f1; }
