# shellcheck shell=bash
# Kernel modules from the pinned linux-modules package (fetch.sh's XEN_MODULES), shared by
# build-dom0.sh and build-domu.sh (sourced). mods_stage MODDIR STAGE NAME...: each module found
# by file name under MODDIR/kernel, decompressed into STAGE/NAME.ko (busybox insmod takes plain
# .ko), its `depends=` (from the .modinfo strings) added before it; STAGE/order lists them in
# load order. MODS_ORDER (array) = the same list. Needs a `log` function.
mods_stage() {
    local moddir=$1 stage=$2 f n m; shift 2
    declare -gA MODS_PATH=() MODS_DONE=()
    MODS_ORDER=()
    mkdir -p "$stage"
    while IFS= read -r f; do
        n=$(basename "$f"); n=${n%.ko*}; MODS_PATH[$n]=$f; MODS_PATH[${n//-/_}]=$f
    done < <(find "$moddir/kernel" -name '*.ko*')
    for m in "$@"; do mods_add "$stage" "$m"; done
    printf '%s\n' "${MODS_ORDER[@]}" >"$stage/order"
}

mods_add() {
    local stage=$1 m=$2 f deps d
    [ -z "${MODS_DONE[$m]:-}" ] || return 0
    f=${MODS_PATH[$m]:-${MODS_PATH[${m//-/_}]:-}}
    [ -n "$f" ] || { log "module $m is not in the modules package (built in?)"; exit 1; }
    MODS_DONE[$m]=1
    case $f in
        *.xz) xz -dc "$f" >"$stage/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$stage/$m.ko" ;;
        *) cp "$f" "$stage/$m.ko" ;;
    esac
    deps=$(strings "$stage/$m.ko" | sed -n 's/^depends=//p' | head -1)
    for d in ${deps//,/ }; do mods_add "$stage" "$d"; done
    MODS_ORDER+=("$m")
}
