# shellcheck shell=bash
# Shared functions of the VM suite: sourced by build-image, run-grub-tests and
# the scenario scripts. Needs bash, root, and the packages of
# `scripts/install-deps --vm`.
#
# The disk image layout (see README.md):
#   partition 1  ESP, FAT16, 64 MiB: /EFI/BOOT/BOOTX64.EFI, /EFI/BOOT/grub.cfg,
#                /EFI/health-checker/grubenv and grubenv.bak
#   partition 2  btrfs root: @, @/.snapshots/N/snapshot (the default
#                subvolume holds the root), @/var (mounted at /var)
#
# This host has no GPT partition support and no vfat driver: the btrfs
# partition is reached through `losetup -o OFFSET --sizelimit SIZE`, the ESP
# through mtools' `IMAGE@@OFFSET` syntax.

VM_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck disable=SC2034 # used by the scripts that source this file
VM_REPO=$(cd "$VM_DIR/../.." && pwd)
VM_CACHE=${VM_CACHE:-$VM_DIR/cache}
VM_WORK=${VM_WORK:-$VM_DIR/work}
VM_OVMF_CODE=${VM_OVMF_CODE:-/usr/share/OVMF/OVMF_CODE_4M.fd}
VM_OVMF_VARS=${VM_OVMF_VARS:-/usr/share/OVMF/OVMF_VARS_4M.fd}
# Seconds one boot may take, from QEMU start to power-off, before it is killed.
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-300}
# Path of the environment on the ESP (docs/design.md default location).
VM_ENV_DIR_ON_ESP=/EFI/health-checker

# ---------------------------------------------------------------- messages

vm_log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
vm_die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# ---------------------------------------------------------------- cleanup
# Commands run in reverse order when the script exits, however it exits.

# In a subshell (a function called as $(...)), the list starts empty and runs
# when that subshell exits: bash does not pass the EXIT trap on.
VM_CLEANUP=()
VM_CLEANUP_LEVEL=$BASH_SUBSHELL
vm_on_exit() {
    if [ "$VM_CLEANUP_LEVEL" != "$BASH_SUBSHELL" ]; then
        VM_CLEANUP=()
        VM_CLEANUP_LEVEL=$BASH_SUBSHELL
        trap vm_run_cleanup EXIT
        # A subshell forgets the traps below: TERM (vm_run_tests stopping
        # a test) must still run the cleanup.
        trap 'exit 143' TERM
    fi
    VM_CLEANUP+=("$*")
}
vm_run_cleanup() {
    local i
    for ((i = ${#VM_CLEANUP[@]} - 1; i >= 0; i--)); do
        eval "${VM_CLEANUP[i]}" || printf 'warning: cleanup failed: %s\n' "${VM_CLEANUP[i]}" >&2
    done
    VM_CLEANUP=()
}
trap vm_run_cleanup EXIT
trap 'exit 130' INT TERM

vm_need() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null || vm_die "$c not found (run scripts/install-deps --vm)"
    done
}

# ---------------------------------------------------------------- partitions

# vm_part_start_size IMAGE N: prints "OFFSET SIZE" in bytes of partition N.
vm_part_geometry() {
    local img=$1 n=$2 start sectors
    read -r start sectors < <(partx -g -o START,SECTORS -n "$n" "$img") ||
        vm_die "reading partition $n of $img"
    echo "$((start * 512)) $((sectors * 512))"
}

# vm_esp IMAGE: the mtools image spec of the ESP ("IMAGE@@OFFSET").
vm_esp() {
    local off size
    read -r off size < <(vm_part_geometry "$1" 1)
    echo "$1@@$off"
}

# vm_esp_fsck IMAGE OPTION...: runs fsck.fat with OPTIONs (-n: only look;
# -a: repair, as systemd-fsck does at boot) on the ESP of IMAGE, through a
# loop device over the partition; prints its output and returns its code.
vm_esp_fsck() {
    local img=$1 off size loop rc=0
    shift
    read -r off size < <(vm_part_geometry "$img" 1)
    loop=$(losetup --find --show --offset "$off" --sizelimit "$size" "$img") ||
        vm_die "attaching the ESP of $img"
    fsck.fat "$@" "$loop" 2>&1 || rc=$?
    losetup -d "$loop"
    return "$rc"
}

# ---------------------------------------------------------------- the btrfs partition

# vm_loop_detach LOOP IMAGE: detaches LOOP only while it is still attached to
# IMAGE. Cleanup at exit runs long after a device was detached, and by then
# its number may belong to another process's image (loop numbers are reused
# at once): detaching that one would pull a disk from under it (a busy loop
# device is only marked to go away, and goes when it is unmounted).
vm_loop_detach() {
    local back
    back=$(losetup -n -O BACK-FILE "$1" 2>/dev/null) || return 0
    [ "${back% (deleted)}" = "$(readlink -f "$2")" ] || return 0
    losetup -d "$1"
}

# vm_btrfs_mount IMAGE MOUNTPOINT: attaches the root partition of IMAGE to a
# loop device and mounts its top-level subvolume (ID 5) at MOUNTPOINT.
# Undone by vm_btrfs_umount or, failing that, at exit.
vm_btrfs_mount() {
    local img=$1 mnt=$2 off size loop
    read -r off size < <(vm_part_geometry "$img" 2)
    loop=$(losetup --find --show -o "$off" --sizelimit "$size" "$img") ||
        vm_die "attaching the btrfs partition of $img to a loop device"
    vm_on_exit "vm_loop_detach $loop '$img' 2>/dev/null || true"
    mkdir -p "$mnt"
    mount -t btrfs -o subvolid=5 "$loop" "$mnt" || { losetup -d "$loop"; vm_die "mounting $loop on $mnt"; }
    vm_on_exit "mountpoint -q $mnt && umount $mnt || true"
    # shellcheck disable=SC2034 # for callers
    VM_BTRFS_LOOP=$loop
}

vm_btrfs_umount() {
    local mnt=$1 loop
    loop=$(findmnt -no SOURCE "$mnt") || vm_die "$mnt is not mounted"
    sync
    umount "$mnt" || vm_die "unmounting $mnt"
    losetup -d "$loop" || vm_die "detaching $loop"
}

# With the image mounted at MNT (top level): the default subvolume's path.
vm_default_path() {
    local mnt=$1 id
    id=$(btrfs subvolume get-default "$mnt" | awk '{print $2}')
    btrfs subvolume list "$mnt" | awk -v id="$id" '$2 == id {print $NF}'
}

# vm_subvol_id MNT PATH: subvolume ID of PATH (relative to the top level).
vm_subvol_id() {
    btrfs inspect-internal rootid "$1/$2"
}

# vm_snapshot_new IMAGE [FROM]: snapshots FROM (default: the default
# subvolume) as @/.snapshots/N/snapshot with the next free N, writable.
# Prints the new path. Does not change the default.
vm_snapshot_new() {
    local img=$1 from=${2:-} mnt n
    mnt=$(mktemp -d)
    vm_btrfs_mount "$img" "$mnt"
    [ -n "$from" ] || from=$(vm_default_path "$mnt")
    n=$(find "$mnt/@/.snapshots" -mindepth 1 -maxdepth 1 -name '[0-9]*' -printf '%f\n' | sort -n | tail -1)
    n=$((n + 1))
    mkdir "$mnt/@/.snapshots/$n"
    btrfs -q subvolume snapshot "$mnt/$from" "$mnt/@/.snapshots/$n/snapshot" >/dev/null ||
        vm_die "snapshotting $from"
    vm_btrfs_umount "$mnt"
    rmdir "$mnt"
    echo "@/.snapshots/$n/snapshot"
}

# vm_set_default IMAGE PATH: makes PATH the btrfs default subvolume.
vm_set_default() {
    local img=$1 path=$2 mnt
    mnt=$(mktemp -d)
    vm_btrfs_mount "$img" "$mnt"
    btrfs subvolume set-default "$mnt/$path" || vm_die "setting the default to $path"
    vm_btrfs_umount "$mnt"
    rmdir "$mnt"
}

# vm_get_default IMAGE: prints the default subvolume's path.
vm_get_default() {
    local img=$1 mnt
    mnt=$(mktemp -d)
    vm_btrfs_mount "$img" "$mnt"
    vm_default_path "$mnt"
    vm_btrfs_umount "$mnt"
    rmdir "$mnt"
}

# vm_id_of IMAGE PATH: prints the subvolume ID of PATH.
vm_id_of() {
    local img=$1 path=$2 mnt
    mnt=$(mktemp -d)
    vm_btrfs_mount "$img" "$mnt"
    vm_subvol_id "$mnt" "$path"
    vm_btrfs_umount "$mnt"
    rmdir "$mnt"
}

# vm_in_snapshot IMAGE PATH COMMAND...: runs COMMAND (a shell snippet) with
# $S set to the snapshot's directory and $TOP to the top level, both on the
# host. Use it to write plugins, break kernels, read files.
vm_in_snapshot() {
    local img=$1 path=$2 mnt rc=0
    shift 2
    mnt=$(mktemp -d)
    vm_btrfs_mount "$img" "$mnt"
    S="$mnt/$path" TOP="$mnt" bash -euo pipefail -c "$*" || rc=$?
    vm_btrfs_umount "$mnt"
    rmdir "$mnt"
    return "$rc"
}

# vm_write_file IMAGE PATH DEST MODE < CONTENT: writes standard input to DEST
# (absolute, inside snapshot PATH) with MODE.
vm_write_file() {
    local img=$1 path=$2 dest=$3 mode=$4 tmp
    tmp=$(mktemp)
    cat >"$tmp"
    vm_in_snapshot "$img" "$path" "install -D -m '$mode' '$tmp' \"\$S/$dest\""
    rm -f "$tmp"
}

# vm_break_kernel IMAGE PATH [initrd|kernel]: replaces the initrd (default) or
# the kernel that PATH boots with garbage, so that boot dies before userspace.
vm_break_kernel() {
    local img=$1 path=$2 what=${3:-initrd} f
    case $what in
        initrd) f=initrd.img ;;
        kernel) f=vmlinuz ;;
        *) vm_die "vm_break_kernel: initrd or kernel, not $what" ;;
    esac
    # /vmlinuz and /initrd.img are relative symlinks into boot/: replace the
    # target, so that GRUB and the guest see the same broken file.
    vm_in_snapshot "$img" "$path" "t=\$(readlink -f \"\$S/$f\" | sed \"s|^\$S||\"); \
        [ -n \"\$t\" ] || t=/$f; rm -f \"\$S\$t\"; head -c 4194304 /dev/urandom >\"\$S\$t\""
}

# ---------------------------------------------------------------- the ESP and the environment

# vm_env_get IMAGE [FILE]: prints the environment FILE (grubenv or
# grubenv.bak, default grubenv) as grub-editenv lists it; nothing if absent.
vm_env_get() {
    local img=$1 file=${2:-grubenv} tmp
    tmp=$(mktemp)
    if mcopy -o -i "$(vm_esp "$img")" "::$VM_ENV_DIR_ON_ESP/$file" "$tmp" 2>/dev/null; then
        grub-editenv "$tmp" list
    fi
    rm -f "$tmp"
}

# vm_env_value IMAGE KEY [FILE]: prints one value (empty if unset).
vm_env_value() {
    vm_env_get "$1" "${3:-grubenv}" | sed -n "s/^$2=//p"
}

# vm_env_set IMAGE FILE KEY=VALUE...: sets keys in one environment file
# (created if absent). Use vm_env_set_both for what userspace does.
vm_env_set() {
    local img=$1 file=$2 tmp esp
    shift 2
    esp=$(vm_esp "$img")
    tmp=$(mktemp)
    mcopy -o -i "$esp" "::$VM_ENV_DIR_ON_ESP/$file" "$tmp" 2>/dev/null || grub-editenv "$tmp" create
    grub-editenv "$tmp" set "$@"
    mmd -i "$esp" "::$VM_ENV_DIR_ON_ESP" 2>/dev/null || true
    mcopy -o -i "$esp" "$tmp" "::$VM_ENV_DIR_ON_ESP/$file" || vm_die "writing $file to the ESP of $img"
    rm -f "$tmp"
}

# vm_env_unset IMAGE FILE KEY...
vm_env_unset() {
    local img=$1 file=$2 tmp esp
    shift 2
    esp=$(vm_esp "$img")
    tmp=$(mktemp)
    mcopy -o -i "$esp" "::$VM_ENV_DIR_ON_ESP/$file" "$tmp" || vm_die "reading $file from the ESP of $img"
    grub-editenv "$tmp" unset "$@"
    mcopy -o -i "$esp" "$tmp" "::$VM_ENV_DIR_ON_ESP/$file" || vm_die "writing $file to the ESP of $img"
    rm -f "$tmp"
}

# vm_env_set_both IMAGE KEY=VALUE...: sets keys in the primary and the backup.
# Note: grub-editenv does not maintain hc_seq/hc_sum; the checker's reader may
# reject such copies. Tests of GRUB alone do not care; scenario tests should
# arm trials with the checker itself (`health-checker --root`).
vm_env_set_both() {
    local img=$1
    shift
    vm_env_set "$img" grubenv "$@"
    vm_env_set "$img" grubenv.bak "$@"
}

# vm_esp_put IMAGE SRC DEST / vm_esp_rm IMAGE DEST: a file on the ESP.
vm_esp_put() { mcopy -o -i "$(vm_esp "$1")" "$2" "::$3" || vm_die "copying $2 to $3 on the ESP"; }
vm_esp_rm() { mdel -i "$(vm_esp "$1")" "::$2" 2>/dev/null || true; }

# vm_stay_up IMAGE on|off: whether the test reporter leaves the guest running
# after it printed (for debugging by hand on the serial console).
vm_stay_up() {
    local tmp
    if [ "$2" = on ]; then
        tmp=$(mktemp)
        echo "stay up" >"$tmp"
        mmd -i "$(vm_esp "$1")" ::/hctest 2>/dev/null || true
        vm_esp_put "$1" "$tmp" /hctest/stay-up
        rm -f "$tmp"
    else
        vm_esp_rm "$1" /hctest/stay-up
    fi
}

# ---------------------------------------------------------------- booting

# vm_qemu_args IMAGE VARS SERIAL: sets VM_QEMU to the QEMU command line that
# boots IMAGE (TCG, OVMF with the variables file VARS, serial console to the
# file SERIAL, no network, no reboot: a reboot ends QEMU).
vm_qemu_args() {
    VM_QEMU=(qemu-system-x86_64 -machine q35 -accel tcg -cpu max -smp 1 -m 1024
        -nographic -monitor none -serial "file:$3"
        -drive "if=pflash,format=raw,unit=0,readonly=on,file=$VM_OVMF_CODE"
        -drive "if=pflash,format=raw,unit=1,file=$2"
        -drive "if=virtio,format=raw,file=$1,cache=unsafe"
        -nic none -no-reboot)
    # A test's own devices (e.g. a watchdog): VM_QEMU_EXTRA, an array.
    VM_QEMU+=(${VM_QEMU_EXTRA[@]+"${VM_QEMU_EXTRA[@]}"})
}

# vm_boot_begin LOG / vm_boot_end LOG RC START: the bookkeeping around one
# boot: markers in LOG, the console of this boot alone in VM_LAST_SERIAL,
# its length in VM_LAST_BOOT_SECONDS.
vm_boot_begin() {
    printf '\n===== HCHOST boot start %s =====\n' "$(date -u +%FT%TZ)" >>"$1"
}
vm_boot_end() {
    local log=$1 rc=$2 start=$3
    VM_LAST_SERIAL=$log.last
    cp "$log.serial" "$VM_LAST_SERIAL" 2>/dev/null || : >"$VM_LAST_SERIAL"
    cat "$log.serial" >>"$log" 2>/dev/null || true
    rm -f "$log.serial"
    printf '\n===== HCHOST boot end rc=%s after %ss =====\n' "$rc" "$(($(date +%s) - start))" >>"$log"
    # shellcheck disable=SC2034 # for callers
    VM_LAST_BOOT_SECONDS=$(($(date +%s) - start))
}

# vm_vars_of IMAGE: the firmware's variables file for a boot of IMAGE: its
# own IMAGE.vars when it has one (variables the guest writes survive its
# reboots, as on a real machine), else a fresh copy of OVMF's (removed after
# the boot).
vm_vars_of() {
    local v
    if [ -e "$1.vars" ]; then
        echo "$1.vars"
        return
    fi
    v=$(mktemp --suffix=.fd)
    cp "$VM_OVMF_VARS" "$v"
    echo "$v"
}

# vm_boot IMAGE LOG [TIMEOUT]: boots IMAGE under QEMU (TCG, OVMF, serial
# console appended to LOG) until the guest powers off. Returns 0 when it
# powered off, 124 when it was killed at the timeout, QEMU's code otherwise.
# Every boot starts from pristine OVMF variables (unless IMAGE.vars exists,
# see vm_vars_of), so the firmware takes the removable-media path
# \EFI\BOOT\BOOTX64.EFI.
vm_boot() {
    local img=$1 log=$2 timeout=${3:-$VM_BOOT_TIMEOUT} vars rc=0 start
    vars=$(vm_vars_of "$img")
    start=$(date +%s)
    vm_boot_begin "$log"
    vm_qemu_args "$img" "$vars" "$log.serial"
    timeout --foreground -k 10 "$timeout" "${VM_QEMU[@]}" </dev/null >>"$log.qemu" 2>&1 || rc=$?
    [ "$vars" = "$img.vars" ] || rm -f "$vars"
    vm_boot_end "$log" "$rc" "$start"
    return "$rc"
}

# vm_boot_cut IMAGE LOG PATTERN DELAY: boots IMAGE like vm_boot, and once the
# console shows a line matching PATTERN (a grep -E pattern), waits DELAY
# seconds and kills QEMU with SIGKILL: a power cut (the console is polled
# every 0.05 s, so the cut falls DELAY to DELAY + 0.05 s and a grep after
# the line). What the guest had not
# yet written to its virtual disk is lost (its page cache), what it had is
# kept (the host file). Returns 0 when the cut happened, 1 when the guest
# ended first, 124 when PATTERN did not show within VM_BOOT_TIMEOUT.
vm_boot_cut() {
    local img=$1 log=$2 pattern=$3 delay=$4 vars rc=0 start pid
    vars=$(vm_vars_of "$img")
    start=$(date +%s)
    vm_boot_begin "$log"
    vm_qemu_args "$img" "$vars" "$log.serial"
    : >"$log.serial"
    "${VM_QEMU[@]}" </dev/null >>"$log.qemu" 2>&1 &
    pid=$!
    while ! tr -d '\r' <"$log.serial" | grep -Eq "$pattern"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            rc=1
            break
        fi
        if [ $(($(date +%s) - start)) -ge "$VM_BOOT_TIMEOUT" ]; then
            rc=124
            break
        fi
        sleep 0.05
    done
    [ "$rc" -ne 0 ] || sleep "$delay"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    printf '\n===== HCHOST power cut (rc=%s, %s s after the awaited line) =====\n' \
        "$rc" "$delay" >>"$log.serial"
    [ "$vars" = "$img.vars" ] || rm -f "$vars"
    vm_boot_end "$log" "$rc" "$start"
    return "$rc"
}

# ---------------------------------------------------------------- the environment as the checker writes it

# vm_hc_bin: prints the path of the host's health-checker binary (the one
# `cargo build` made for this repository), building it if there is none.
# Tests edit the environment with it, so the format has one implementation.
vm_hc_bin() {
    local dir=${CARGO_TARGET_DIR:-$VM_REPO/target} b
    if [ -n "${VM_HC_BIN:-}" ]; then
        echo "$VM_HC_BIN"
        return
    fi
    for b in "$dir/release/health-checker" "$dir/debug/health-checker"; do
        if [ -x "$b" ]; then
            echo "$b"
            return
        fi
    done
    vm_log "building health-checker for the host (its bootenv command writes the environment)"
    (cd "$VM_REPO" && cargo build --release -p health-checker >&2) || vm_die "cargo build failed"
    echo "$dir/release/health-checker"
}

# vm_env_write IMAGE KEY=VALUE... (KEY= unsets): changes the environment the
# way the checker does, with the checker itself: both copies are copied out
# of the ESP, `health-checker bootenv --file` edits them (next hc_seq, fresh
# hc_sum, primary then backup), and both are copied back, primary first.
vm_env_write() {
    local img=$1 tmpd bin kv
    local sets=() unsets=()
    shift
    for kv in "$@"; do
        case $kv in
            *=) unsets+=("${kv%=}") ;;
            *=*) sets+=("$kv") ;;
            *) vm_die "vm_env_write: $kv is not KEY=VALUE or KEY=" ;;
        esac
    done
    bin=$(vm_hc_bin)
    tmpd=$(mktemp -d)
    vm_env_pull "$img" "$tmpd"
    if [ "${#sets[@]}" -gt 0 ]; then
        "$bin" bootenv --file "$tmpd/grubenv" set "${sets[@]}" ||
            vm_die "health-checker bootenv set ${sets[*]} failed on the environment of $img"
    fi
    if [ "${#unsets[@]}" -gt 0 ]; then
        "$bin" bootenv --file "$tmpd/grubenv" unset "${unsets[@]}" ||
            vm_die "health-checker bootenv unset ${unsets[*]} failed on the environment of $img"
    fi
    vm_env_push "$img" "$tmpd"
    rm -rf "$tmpd"
}

# vm_env_raw IMAGE FILE > copy: the raw bytes of an environment file.
vm_env_raw() {
    local tmp rc=0
    tmp=$(mktemp)
    mcopy -o -i "$(vm_esp "$1")" "::$VM_ENV_DIR_ON_ESP/$2" "$tmp" 2>/dev/null && cat "$tmp" || rc=1
    rm -f "$tmp"
    return "$rc"
}

# vm_env_put_raw IMAGE FILE < bytes: replaces an environment file as is
# (to corrupt it, or to restore a saved copy).
vm_env_put_raw() {
    local tmp
    tmp=$(mktemp)
    cat >"$tmp"
    mcopy -o -i "$(vm_esp "$1")" "$tmp" "::$VM_ENV_DIR_ON_ESP/$2" || vm_die "writing $2 to the ESP"
    rm -f "$tmp"
}

# vm_console_value KEY [LOG]: the last "HCGRUB KEY=..." or "HCTEST KEY=..."
# value on the console of the last boot (or LOG).
vm_console_value() {
    local key=$1 log=${2:-$VM_LAST_SERIAL}
    tr -d '\r' <"$log" | sed -n "s/^.*\(HCGRUB\|HCTEST\) $key=//p" | tail -1
}

# vm_env_pull IMAGE DIR / vm_env_push IMAGE DIR: copy both environment files
# between the ESP and DIR (grubenv, grubenv.bak), e.g. to let the host's
# health-checker or grub-editenv act on them. Push writes the primary first.
vm_env_pull() {
    local esp f
    esp=$(vm_esp "$1")
    mkdir -p "$2"
    for f in grubenv grubenv.bak; do
        rm -f "$2/$f"
        mcopy -o -i "$esp" "::$VM_ENV_DIR_ON_ESP/$f" "$2/$f" 2>/dev/null || true
    done
}
vm_env_push() {
    local esp f
    esp=$(vm_esp "$1")
    mmd -i "$esp" "::$VM_ENV_DIR_ON_ESP" 2>/dev/null || true
    for f in grubenv grubenv.bak; do
        [ -e "$2/$f" ] || continue
        mcopy -o -i "$esp" "$2/$f" "::$VM_ENV_DIR_ON_ESP/$f" || vm_die "writing $f to the ESP"
    done
}

# vm_history IMAGE FILE: the checker's history from @/var of IMAGE: its
# events as one JSON array in FILE (whatever the file's format: a bare array,
# or an object whose "events" hold them), the file as it was in FILE.raw;
# an empty array when there is none.
vm_history() {
    vm_in_snapshot "$1" @/var 'cat "$S/lib/health-checker/history.json"' >"$2.raw" 2>/dev/null || : >"$2.raw"
    if [ -s "$2.raw" ]; then
        jq 'if type == "object" then .events else . end' "$2.raw" >"$2" ||
            vm_die "the history of $1 is not JSON (kept in $2.raw)"
    else
        echo '[]' >"$2"
    fi
}

# vm_update IMAGE: what a transactional update tool does: a new snapshot of
# the default, made the new default. Prints its path. (Whether it is armed
# as a trial is the caller's business: `vm_env_write ... hc_trial=...`.)
vm_update() {
    local img=$1 new
    new=$(vm_snapshot_new "$img")
    vm_set_default "$img" "$new"
    echo "$new"
}

# ---------------------------------------------------------------- running tests, several at once

# How many tests vm_run_tests runs at once. Each TCG guest is one busy host
# thread, and each test boots its own copy of the disk.
VM_JOBS=${VM_JOBS:-2}

# vm_kill_tree SIGNAL PID: sends SIGNAL to PID and every process below it
# (children first found, then signalled from the top: a test's shell, its
# `timeout`, its QEMU).
vm_kill_tree() {
    local sig=$1 pid=$2 child
    for child in $(ps -o pid= --ppid "$pid" 2>/dev/null); do
        vm_kill_tree "$sig" "$child"
    done
    kill "-$sig" "$pid" 2>/dev/null || true
}

# vm_run_tests OUT TEST...: runs the shell functions test_TEST, up to
# VM_JOBS at once, each in its own process with its output in OUT/TEST.out,
# and prints their outputs in the order given (each as soon as it and those
# before it are done), each under "=== TEST" and followed by its time, then
# the failed tests, the total time and "N passed, N failed". A test fails
# when it stops with an error or prints FAILED. OUT/TEST.img (the test's
# disk, by convention) is removed when the test passed. Returns 1 when any
# test failed. The tests named in the array VM_LONG_TESTS (if the caller
# sets it) start first, longest first, so that the run does not end with
# one long test alone; the output keeps the order given.
#
# Tests that run at once share nothing but what they only read (the base
# image, the host's binary): each writes only OUT/TEST.* and files from
# mktemp, and loop devices come from `losetup --find`.
vm_run_tests() {
    # The caller's suite_start (its image build included), if it has one.
    local suite_start=${suite_start:-$(date +%s)}
    local out=$1 t i next=0 shown=0 running=0 pid rc secs passed=0 failed=0
    shift
    local tests=("$@") failures=() order=() long
    local -A index_of=() pids=() queued=()
    # The order in which they start.
    for long in ${VM_LONG_TESTS[@]+"${VM_LONG_TESTS[@]}"}; do
        for i in "${!tests[@]}"; do
            if [ "${tests[i]}" = "$long" ] && [ -z "${queued[$i]:-}" ]; then
                order+=("$i")
                queued[$i]=1
            fi
        done
    done
    for i in "${!tests[@]}"; do [ -n "${queued[$i]:-}" ] || order+=("$i"); done
    [ "$VM_JOBS" -ge 1 ] 2>/dev/null || vm_die "VM_JOBS must be a number of at least 1, not \"$VM_JOBS\""
    for i in "${!tests[@]}"; do rm -f "$out/${tests[i]}.rc"; done
    # On an interrupt, stop every running test (each undoes its own mounts
    # and loop devices on the way out) before this shell exits.
    # shellcheck disable=SC2064 # the trap's pids are read when it runs
    trap 'for pid in "${pids[@]}"; do vm_kill_tree TERM "$pid"; done; wait; exit 130' INT TERM
    while [ "$shown" -lt "${#tests[@]}" ]; do
        # Start as many as allowed.
        while [ "$next" -lt "${#tests[@]}" ] && [ "$running" -lt "$VM_JOBS" ]; do
            i=${order[next]}
            t=${tests[i]}
            (
                trap 'exit 143' TERM
                trap 'exit 130' INT
                start=$(date +%s)
                rc=0
                # In a subshell of its own, whose failure is caught here:
                # its EXIT trap undoes what it attached.
                ( trap 'exit 143' TERM; trap 'exit 130' INT; set -e; "test_$t" ) >"$out/$t.out" 2>&1 || rc=$?
                echo "$rc $(($(date +%s) - start))" >"$out/$t.rc.tmp"
                mv "$out/$t.rc.tmp" "$out/$t.rc"
            ) &
            pids[$i]=$!
            index_of[$!]=$i
            [ "$VM_JOBS" -eq 1 ] || vm_log "started $t"
            next=$((next + 1))
            running=$((running + 1))
        done
        # Print whatever is done, in order.
        while [ "$shown" -lt "${#tests[@]}" ] && [ -e "$out/${tests[shown]}.rc" ]; do
            t=${tests[shown]}
            read -r rc secs <"$out/$t.rc"
            rm -f "$out/$t.rc"
            echo "=== $t"
            cat "$out/$t.out"
            [ "$rc" -eq 0 ] || echo "    FAILED  $t stopped with an error (exit $rc)"
            if [ "$rc" -ne 0 ] || grep -q 'FAILED' "$out/$t.out"; then
                failed=$((failed + 1))
                failures+=("$t")
            else
                passed=$((passed + 1))
                rm -f "$out/$t.img" # kept only when the test failed
            fi
            echo "    ($secs s)"
            shown=$((shown + 1))
        done
        [ "$shown" -lt "${#tests[@]}" ] || break
        # Wait for the next test to end (any of them).
        if [ "$running" -gt 0 ]; then
            pid=
            rc=0
            wait -n -p pid "${pids[@]}" 2>/dev/null || rc=$?
            if [ -n "$pid" ] && [ -n "${index_of[$pid]:-}" ]; then
                i=${index_of[$pid]}
                unset "pids[$i]" "index_of[$pid]"
                running=$((running - 1))
                # A job that died before it wrote its result.
                [ -e "$out/${tests[i]}.rc" ] || echo "$((rc == 0 ? 1 : rc)) 0" >"$out/${tests[i]}.rc"
            fi
        fi
    done
    trap 'exit 130' INT TERM
    echo
    [ "$failed" -eq 0 ] || echo "failed: ${failures[*]}"
    echo "($(($(date +%s) - suite_start)) s in all, up to $VM_JOBS at once)"
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
}
