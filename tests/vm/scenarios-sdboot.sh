# shellcheck shell=bash
# The systemd-boot scenarios of run-scenarios (sourced by it, after its
# helpers): the same checker on a guest booted by Debian's systemd-boot
# (`build-image --bootloader systemd-boot`, work/sdboot.img), its trials
# protected by Boot Loader Specification entries with boot counters
# (docs/systemd-boot.md). As in the GRUB scenarios the guest updates itself
# and the host only builds the disk, boots it, and reads back: the console
# (the kernel's command line, the loader's variables LoaderEntrySelected and
# LoaderBootCountPath, the reporter's HCTEST lines), the entries and the
# checker's state on the ESP (mtools), the history and the default subvolume.

sdbase=$VM_WORK/sdboot.img

# The image is built once, before any test runs (tests may run at once).
sdboot_selected=0
if [ "${#selected[@]}" -eq 0 ]; then
    sdboot_selected=1
else
    for t in "${selected[@]}"; do
        case $t in sdboot_*) sdboot_selected=1 ;; esac
    done
fi
if [ "$sdboot_selected" -eq 1 ] &&
    { [ "$build" -eq 1 ] || [ ! -s "$sdbase" ] || ! grep -qx bootloader=systemd-boot "$sdbase.info" 2>/dev/null ||
        ! grep -qx with_checker=1 "$sdbase.info"; }; then
    "$VM_DIR/build-image" --bootloader systemd-boot -o "$sdbase"
fi

# sd_disk NAME: a copy of the systemd-boot image as installed (the package
# made snapshot 1's entry; no known-good yet), its firmware variables, and
# the test configuration of fresh_disk.
sd_disk() { fresh_disk "$1" "$sdbase"; }

# sd_entries IMAGE: the file names in loader/entries on the ESP, sorted, on
# one line.
sd_entries() {
    mdir -b -i "$(vm_esp "$1")" ::/loader/entries 2>/dev/null | sed 's|.*/||' | grep -v '^$' |
        LC_ALL=C sort | tr '\n' ' ' | sed 's/ $//'
}

# sd_loader_default IMAGE: the default line of loader/loader.conf.
sd_loader_default() {
    mtype -i "$(vm_esp "$1")" ::/loader/loader.conf 2>/dev/null | tr -d '\r' |
        sed -n 's/^default[[:space:]]\+//p' | tail -1
}

# sd_state IMAGE KEY: a key of the checker's state on the ESP
# (health-checker/state.env and its backup), read by the host's checker;
# empty when unset, "error: ..." when unreadable.
sd_state() {
    local tmpd f v rc=0
    tmpd=$(mktemp -d)
    for f in state.env state.env.bak; do
        mcopy -o -i "$(vm_esp "$1")" "::/health-checker/$f" "$tmpd/$f" 2>/dev/null || true
    done
    v=$("$(vm_hc_bin)" bootenv --file "$tmpd/state.env" get "$2" 2>&1) || rc=$?
    rm -rf "$tmpd"
    if [ "$rc" -eq 0 ]; then
        echo "$v"
    elif ! printf '%s' "$v" | grep -q 'is not set'; then
        echo "error: $v"
    fi
}

# sd_var NAME: a loader variable as the reporter printed it on the last boot.
sd_var() { vm_console_value "sdboot $1"; }

# sd_cmdline_subvol: the subvolume on the kernel's command line of the last
# boot, as the kernel printed it (also when it panicked before userspace).
sd_cmdline_subvol() {
    tr -d '\r' <"$VM_LAST_SERIAL" | grep -a -m1 'Kernel command line:' |
        sed -n 's/.*rootflags=subvol=\([^ ]*\).*/\1/p'
}

# sd_status_says_backend: 1 when `status --json` (as the guest printed it)
# names the systemd-boot backend.
sd_status_says_backend() {
    tr -d '\r' <"$VM_LAST_SERIAL" | sed -n 's/^HCTEST status //p' | grep -c 'systemd-boot' | sed 's/^[1-9][0-9]*$/1/'
}

# An update cycle on systemd-boot, from inside the guest: the first boot
# (the package's entry for snapshot 1) makes 1 known-good; the guest installs
# hc-demo-app 1 in snapper snapshot 2 and arms it (a counted entry); it is
# booted, counted, promoted and blessed; then hc-demo-app 2 in snapshot 3,
# whose service fails: the late phase fails, its entry is marked bad and the
# machine reboots into snapshot 2's entry.
test_sdboot_update() {
    local d log=$out/sdboot_update.log t1=@/.snapshots/2/snapshot t2=@/.snapshots/3/snapshot
    local gid id1 id2 h
    d=$(sd_disk sdboot_update)
    gid=$(vm_id_of "$d" "$G")
    queue "$d" "apt-arm 1" "apt-arm 2"
    check "the image: the first entry made by" "$(sed -n 's/^entries_by=//p' "$sdbase.info")" package
    check "the image: entries as installed" "$(sd_entries "$d")" "health-checker-boot-good-$gid.conf"
    check "the image: loader.conf's default" "$(sd_loader_default "$d")" "health-checker-boot-*"

    echo "    boot 1 (the package's entry for snapshot 1; then the guest installs hc-demo-app 1 in snapshot 2)"
    boot "$d" "$log"
    check "systemd-boot booted the checker's entry of G" "$(sd_var LoaderEntrySelected)" "health-checker-boot-good-$gid.conf"
    check "not a counted boot" "$(sd_var LoaderBootCountPath)" ""
    check "booted subvolume" "$(vm_console_value subvol)" "$G"
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "the guest's status" "$(guest_status .state)" good
    check "the guest's status names the backend" "$(sd_status_says_backend)" 1
    check "update: armed" "$(update_said armed)" 2
    check "update: no error" "$(update_said error)" ""
    check "boot ended by" "$(ending)" reboot
    id1=$(vm_id_of "$d" "$t1")
    check "ESP: the trial's counted entry beside G's" "$(sd_entries "$d")" \
        "health-checker-boot-good-$gid.conf health-checker-boot-trial-$id1+3.conf"
    check "state: hc_good" "$(sd_state "$d" hc_good)" "$G"
    check "state: hc_trial" "$(sd_state "$d" hc_trial)" "$t1"
    check "default subvolume: set by the guest's arm" "$(vm_get_default "$d")" "$t1"

    echo "    boot 2 (the trial, counted: promoted and blessed; then hc-demo-app 2 in snapshot 3)"
    boot "$d" "$log"
    check "the kernel's command line: the trial" "$(sd_cmdline_subvol)" "$t1"
    # The entry's ID is its file name when systemd-boot read it.
    check "systemd-boot booted the trial's entry" "$(sd_var LoaderEntrySelected)" \
        "health-checker-boot-trial-$id1+3.conf"
    check "systemd-boot counted the attempt before the kernel" "$(sd_var LoaderBootCountPath)" \
        "\\loader\\entries\\health-checker-boot-trial-$id1+2-1.conf"
    check "booted subvolume" "$(vm_console_value subvol)" "$t1"
    check "hc-demo-app runs" "$(vm_console_value 'unit hc-demo-app.service')" active/success
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "systemd-bless-boot blessed the counted entry" \
        "$(vm_console_value 'unit systemd-bless-boot.service')" active/success
    check "the guest's status" "$(guest_status .state)" good
    check "the guest's doctor after the promotion: the boot is protected" "$(vm_console_value doctor-rc)" 0
    check "update: armed" "$(update_said armed)" 3
    check "update: no error" "$(update_said error)" ""
    check "boot ended by" "$(ending)" reboot
    id2=$(vm_id_of "$d" "$t2")
    check "ESP: 2 known-good, 1 a menu entry, 3 counted, 2's blessed entry gone" "$(sd_entries "$d")" \
        "health-checker-$gid.conf health-checker-boot-good-$id1.conf health-checker-boot-trial-$id2+3.conf"
    check "state: hc_good" "$(sd_state "$d" hc_good)" "$t1"
    check "state: hc_trial" "$(sd_state "$d" hc_trial)" "$t2"

    echo "    boot 3 (the trial with hc-demo-app 2: fails, marked bad, reboot)"
    boot "$d" "$log"
    check "the kernel's command line: the trial" "$(sd_cmdline_subvol)" "$t2"
    check "boot ended by" "$(ending)" reboot
    check "no reporter (rebooted first)" "$(reporter_ran)" 0
    check "ESP: 3's entry out of attempts, nothing counting" "$(sd_entries "$d")" \
        "health-checker-$gid.conf health-checker-$id2+0-1.conf health-checker-boot-good-$id1.conf"
    check "state: hc_good" "$(sd_state "$d" hc_good)" "$t1"
    check "state: hc_trial cleared" "$(sd_state "$d" hc_trial)" ""
    check "default subvolume back to 2" "$(vm_get_default "$d")" "$t1"

    echo "    boot 4 (snapshot 2 again)"
    boot "$d" "$log"
    check "systemd-boot booted the known-good entry" "$(sd_var LoaderEntrySelected)" "health-checker-boot-good-$id1.conf"
    check "booted subvolume" "$(vm_console_value subvol)" "$t1"
    check "hc-demo-app 1 (the snapshot's own package database)" "$(vm_console_value 'pkg hc-demo-app')" 1
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "the guest's status" "$(guest_status .state)" good
    check "the reporter powered off" "$(ending)/$(reporter_ran)" poweroff/1
    check "ESP: unchanged by a good boot" "$(sd_entries "$d")" \
        "health-checker-$gid.conf health-checker-$id2+0-1.conf health-checker-boot-good-$id1.conf"
    h=$(history "$d" sdboot_update)
    check "history: promotions" \
        "$(hq "$h" '[.[] | select(.kind == "promotion") | .snapshot.path] | join(",")')" "$G,$t1"
    check "history: the rollback of 3 in the late phase" \
        "$(hq "$h" '[.[] | select(.kind == "rollback")] | map("\(.snapshot.path) \(.phase)") | join(",")')" "$t2 late"
    check_match "history: the rollback says why" \
        "$(hq "$h" '[.[] | select(.kind == "rollback")] | last | .reason')" "hc-demo-app"
}

# A trial whose kernel panics (its initrd is garbage), made by a tool that
# only sets the default subvolume: armed at shutdown with 2 attempts,
# systemd-boot counts both down before the kernel starts, then boots the
# known-good entry; the checker records the fall-back and marks the entry
# bad.
test_sdboot_panic() {
    local d log=$out/sdboot_panic.log t=@/.snapshots/2/snapshot gid tid h
    d=$(sd_disk sdboot_panic)
    gid=$(vm_id_of "$d" "$G")
    vm_write_file "$d" "$G" /etc/health-checker/config.d/60-tries.toml 0644 <<'EOF'
[boot]
tries = 2
EOF
    queue "$d" set-default-panic

    echo "    boot 1 (G; then a snapshot with a broken initrd, only made the default)"
    boot "$d" "$log"
    check "systemd-boot booted the checker's entry of G" "$(sd_var LoaderEntrySelected)" "health-checker-boot-good-$gid.conf"
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "update: the default set" "$(update_said default)" "$t"
    check "update: no error" "$(update_said error)" ""
    check "boot ended by" "$(ending)" reboot
    tid=$(vm_id_of "$d" "$t")
    check "ESP: armed at shutdown with 2 attempts" "$(sd_entries "$d")" \
        "health-checker-boot-good-$gid.conf health-checker-boot-trial-$tid+2.conf"
    check "state: hc_trial" "$(sd_state "$d" hc_trial)" "$t"

    for n in 1 2; do
        echo "    boot $((n + 1)) (the trial: the kernel panics)"
        boot "$d" "$log"
        check "the kernel's command line: the trial" "$(sd_cmdline_subvol)" "$t"
        check_match "boot ended by a panic" "$(ending)" '^(panic|reboot)$'
        check "the kernel panicked" "$(grep -ac 'Kernel panic' "$VM_LAST_SERIAL")" 1
        check "ESP: counted down before the kernel started" "$(sd_entries "$d")" \
            "health-checker-boot-good-$gid.conf health-checker-boot-trial-$tid+$((2 - n))-$n.conf"
    done

    echo "    boot 4 (no attempt left: systemd-boot falls back to G)"
    boot "$d" "$log"
    check "systemd-boot booted the known-good entry" "$(sd_var LoaderEntrySelected)" "health-checker-boot-good-$gid.conf"
    check "booted subvolume" "$(vm_console_value subvol)" "$G"
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "the guest's status" "$(guest_status .state)" good
    check "the reporter powered off" "$(ending)/$(reporter_ran)" poweroff/1
    check "ESP: the trial's entry marked bad" "$(sd_entries "$d")" \
        "health-checker-$tid+0-2.conf health-checker-boot-good-$gid.conf"
    check "state: hc_trial cleared" "$(sd_state "$d" hc_trial)" ""
    check "state: hc_good" "$(sd_state "$d" hc_good)" "$G"
    check "default subvolume back to G" "$(vm_get_default "$d")" "$G"
    h=$(history "$d" sdboot_panic)
    check "history: armed at shutdown" "$(hq "$h" '[.[] | select(.kind == "arm")] | map(.snapshot.path) | join(",")')" "$t"
    check_match "history: the fall-back from the trial" \
        "$(hq "$h" '[.[] | select(.kind | test("fallback"))] | map(.reason) | join(",")')" "trial $t never reached a verdict"
    check "history: only G promoted" \
        "$(hq "$h" '[.[] | select(.kind == "promotion") | .snapshot.path] | join(",")')" "$G"
}

# A power cut while the guest arms an update (`health-checker arm` writes
# the trial's kernel, initrd and counted entry, then the state): the host
# kills QEMU at a random instant up to 1.5 s after the guest said it starts
# arming. The ESP must need no repair, the state must read, the entries must
# still boot (G's entry and the default line intact, at most one entry per
# snapshot), and the next boot, whichever entry it takes, must pass.
test_sdboot_power_cut() {
    local d log=$out/sdboot_power_cut.log t1=@/.snapshots/2/snapshot gid rc delay fsck_out damage
    local trial entries
    d=$(sd_disk sdboot_power_cut)
    gid=$(vm_id_of "$d" "$G")
    queue "$d" "apt-arm 1"
    delay=$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))
    case $delay in 1.[5-9]*) delay=0.${delay#1.} ;; esac

    echo "    boot 1 (G; the guest arms snapshot 2: power cut ${delay} s after it starts)"
    rc=0
    vm_boot_cut "$d" "$log" 'HCTEST update arming=' "$delay" || rc=$?
    printf '    boot: %s s, ended by a power cut (rc %s)\n' "$VM_LAST_BOOT_SECONDS" "$rc"
    check "the power was cut while the guest was arming" "$rc" 0
    check "late phase before the update" "$(vm_console_value 'unit health-checker-late.service')" active/success
    echo "    the guest said armed before the cut: $([ -n "$(update_said armed)" ] && echo yes || echo no)"
    fsck_out=$(vm_esp_fsck "$d" -n 2>&1 || true)
    damage=$(printf '%s\n' "$fsck_out" | grep -Ei 'truncat|free cluster|reclaim|chain|delet|bad|lost|duplicate|cross|invalid' || true)
    [ -z "$damage" ] || printf '%s\n' "$fsck_out" | sed 's/^/      fsck.fat -n | /'
    check "fsck.fat finds no damage on the ESP" "$(printf '%s' "$damage" | tr '\n' ' ')" ""
    entries=$(sd_entries "$d")
    echo "    ESP after the cut: $entries"
    check_match "ESP: G's entry intact" "$entries" "(^| )health-checker-boot-good-$gid\.conf( |\$)"
    check "ESP: loader.conf's default" "$(sd_loader_default "$d")" "health-checker-boot-*"
    check "state: hc_good readable, G" "$(sd_state "$d" hc_good)" "$G"
    check_match "state: hc_trial none or the update" "[$(sd_state "$d" hc_trial)]" "^\[($t1)?\]\$"

    echo "    boot 2 (whatever the entries say: it must pass)"
    boot "$d" "$log"
    check_match "booted G or the update" "$(vm_console_value subvol)" "^($G|$t1)\$"
    check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
    check "no failed unit of the checker" \
        "$(grep -ac 'HCTEST failed-unit=health-checker' "$VM_LAST_SERIAL" || true)" 0
    # good, or trial-armed: when the cut left the update as the default
    # subvolume without its trial, the early phase arms it for the next boot.
    check_match "the guest's status" "$(guest_status .state)" '^(good|trial-armed)$'
    check "the reporter powered off" "$(ending)/$(reporter_ran)" poweroff/1
    sd_power_cut_consistent "$d" 2
    trial=$(sd_state "$d" hc_trial)
    if [ -n "$trial" ]; then
        check "state: the trial left armed is the update" "$trial" "$t1"
        check "default subvolume: the update" "$(vm_get_default "$d")" "$t1"
        echo "    boot 3 (the update armed after the cut: booted, counted, promoted)"
        boot "$d" "$log"
        check "booted subvolume" "$(vm_console_value subvol)" "$t1"
        check_match "a counted boot of the update's entry" "$(sd_var LoaderBootCountPath)" \
            "health-checker-boot-trial-$(vm_id_of "$d" "$t1")\+[0-9]+-1\.conf\$"
        check "late phase" "$(vm_console_value 'unit health-checker-late.service')" active/success
        check "the guest's status" "$(guest_status .state)" good
        check "the reporter powered off" "$(ending)/$(reporter_ran)" poweroff/1
        check "state: hc_good, the update" "$(sd_state "$d" hc_good)" "$t1"
        sd_power_cut_consistent "$d" 3
    else
        check "default subvolume: the known-good" "$(vm_get_default "$d")" "$(sd_state "$d" hc_good)"
    fi
}

# sd_power_cut_consistent IMAGE BOOT: after a boot, the entries on the ESP
# agree with the state: one known-good entry, the state's; at most one entry
# per snapshot; nothing but entries in loader/entries.
sd_power_cut_consistent() {
    local d=$1 good entries
    good=$(sd_state "$d" hc_good)
    check_match "state: hc_good is G or the update" "$good" "^($G|@/.snapshots/2/snapshot)\$"
    entries=$(sd_entries "$d")
    echo "    ESP after boot $2: $entries"
    check "ESP: one known-good entry, the state's" \
        "$(printf '%s\n' $entries | grep -c '^health-checker-boot-good-')/$(printf '%s\n' $entries | grep -c "^health-checker-boot-good-$(vm_id_of "$d" "$good")\.conf\$")" 1/1
    check "ESP: at most one entry per snapshot" \
        "$(printf '%s\n' $entries | sed -n 's/^health-checker-\(boot-good-\|boot-trial-\)\?\([0-9]*\).*\.conf$/\2/p' | sort | uniq -d | tr '\n' ' ')" ""
    check "ESP: nothing but entries in loader/entries" \
        "$(printf '%s\n' $entries | grep -v '\.conf$' | tr '\n' ' ')" ""
}
