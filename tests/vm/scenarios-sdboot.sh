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

# A power cut while the guest arms an update (`health-checker arm` sets the
# default subvolume, writes the trial's kernel, initrd and counted entry,
# then the state): the host kills QEMU at a random instant up to 1.5 s after
# the guest said it starts arming; VM_CUT_DELAY=SECONDS (e.g. 0.7 or 3)
# cuts at that instant instead, to reproduce a failure. The ESP must need no
# repair beyond lost space (clusters in no file, a stale free-cluster count)
# and our temporary files (what FAT without a journal can be left with,
# docs/systemd-boot.md, "Renames on FAT"), the state must read, the entries
# must still boot (G's entry complete and the default line intact; when the
# state names the trial, its entry complete, for it is written first;
# otherwise the trial's entry absent, complete, or empty, a rename whose
# inode was not yet written back), and the next boot, whichever entry it
# takes, must pass and leave every entry complete, at most one entry per
# snapshot. After the cut and after each boot the test prints what it found
# (sd_diag).
test_sdboot_power_cut() {
    local d log=$out/sdboot_power_cut.log t1=@/.snapshots/2/snapshot gid rc delay fsck_out
    local trial entries found incomplete
    d=$(sd_disk sdboot_power_cut)
    gid=$(vm_id_of "$d" "$G")
    queue "$d" "apt-arm 1"
    if [ -n "${VM_CUT_DELAY:-}" ]; then
        delay=$VM_CUT_DELAY
    else
        delay=$(printf '%d.%03d' $((RANDOM % 2)) $((RANDOM % 1000)))
        case $delay in 1.[5-9]*) delay=0.${delay#1.} ;; esac
    fi

    echo "    boot 1 (G; the guest arms snapshot 2: power cut ${delay} s after it starts)"
    rc=0
    vm_boot_cut "$d" "$log" 'HCTEST update arming=' "$delay" || rc=$?
    printf '    boot: %s s, ended by a power cut (rc %s)\n' "$VM_LAST_BOOT_SECONDS" "$rc"
    check "the power was cut while the guest was arming" "$rc" 0
    check "late phase before the update" "$(vm_console_value 'unit health-checker-late.service')" active/success
    echo "    the guest said armed before the cut: $([ -n "$(update_said armed)" ] && echo yes || echo no)"
    fsck_out=$(vm_esp_fsck "$d" -n 2>&1 || true)
    # What fsck.fat finds, by kind: "lost" space (clusters allocated to no
    # file; FSInfo's count of free clusters, a hint, behind the FAT), "tmp"
    # (about one of our temporary files, a write cut before its rename),
    # "damage" (anything else): docs/systemd-boot.md, "Renames on FAT".
    found=$(printf '%s\n' "$fsck_out" | awk '
        /^\// { t = ($0 ~ /\/\.[^\/]*\.tmp-[0-9]+-[0-9]+$/); next }
        !/^  / { t = 0 }
        tolower($0) ~ /truncat|free cluster|reclaim|chain|delet|bad|lost|duplicate|cross|invalid/ {
            if (t) print "tmp: " $0
            else if ($0 ~ /^ *Reclaimed [0-9]+ unused clusters? \([0-9]+ bytes\)\.$/ ||
                     $0 ~ /^ *Free cluster summary wrong \([0-9]+ vs\. really [0-9]+\)$/) print "lost: " $0
            else print "damage: " $0
        }')
    [ -z "$found" ] || printf '%s\n' "$fsck_out" | sed 's/^/      fsck.fat -n | /'
    sd_diag "$d" "after the cut"
    echo "    fsck.fat: lost space: $(printf '%s\n' "$found" | sed -n 's/^lost: //p' | tr '\n' ' ')"
    echo "    fsck.fat: our temporary files: $(printf '%s\n' "$found" | sed -n 's/^tmp: //p' | tr -s ' \n' ' ')"
    check "fsck.fat finds no damage on the ESP (lost space and our temporary files aside)" \
        "$(printf '%s\n' "$found" | sed -n 's/^damage: //p' | tr '\n' ' ')" ""
    entries=$(sd_entries "$d")
    echo "    ESP after the cut: $entries"
    incomplete=$(sd_incomplete_entries "$d")
    check "ESP: G's entry complete" \
        "$(printf '%s\n' "$incomplete" | grep "^health-checker-boot-good-$gid\.conf " | tr '\n' ' ')" ""
    if [ "$(sd_state "$d" hc_trial)" = "$t1" ]; then
        check "ESP: the state names the trial, so its entry is complete (written before the state)" \
            "$(printf '%s\n' "$incomplete" | grep '^health-checker-boot-trial-' | tr '\n' ' ')" ""
    else
        check "ESP: the trial's entry absent, complete, or empty (its rename not yet written back)" \
            "$(printf '%s\n' "$incomplete" | grep '^health-checker-boot-trial-' | grep -v ' (0 bytes):' | tr '\n' ' ')" ""
    fi
    check "ESP: no other entry incomplete" \
        "$(printf '%s\n' "$incomplete" | grep -v -e "^health-checker-boot-good-$gid\.conf " -e '^health-checker-boot-trial-' | grep -v '^$' | tr '\n' ' ')" ""
    check_match "ESP: G's entry intact" "$entries" "(^| )health-checker-boot-good-$gid\.conf( |\$)"
    check "ESP: loader.conf's default" "$(sd_loader_default "$d")" "health-checker-boot-*"
    check "state: hc_good readable, G" "$(sd_state "$d" hc_good)" "$G"
    check_match "state: hc_trial none or the update" "[$(sd_state "$d" hc_trial)]" "^\[($t1)?\]\$"

    echo "    boot 2 (whatever the entries say: it must pass)"
    boot "$d" "$log"
    sd_diag "$d" "after boot 2"
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
        sd_diag "$d" "after boot 3"
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
# per snapshot, every one complete; nothing but entries in loader/entries,
# and our temporary files a cut left there (the checker leaves them to be
# removed once fsck.fat has checked the ESP: docs/systemd-boot.md).
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
    echo "    our temporary files left in loader/entries: $(printf '%s\n' $entries | grep -E '^\.health-checker-.*\.conf\.tmp-[0-9]+-[0-9]+$' | tr '\n' ' ')"
    check "ESP: nothing but entries in loader/entries (and our temporary files)" \
        "$(printf '%s\n' $entries | grep -v '\.conf$' | grep -Ev '^\.health-checker-.*\.conf\.tmp-[0-9]+-[0-9]+$' | tr '\n' ' ')" ""
    check "ESP: every entry complete (its kernel and initrd there, whole)" \
        "$(sd_incomplete_entries "$d" | tr '\n' ' ')" ""
}

# sd_esp_get IMAGE PATH FILE: one file of the ESP copied to FILE (each on
# its own: a file a cut left damaged must not keep the others from being
# read).
sd_esp_get() { mcopy -n -i "$(vm_esp "$1")" "::$2" "$3" 2>/dev/null; }

# sd_incomplete_entries IMAGE: our entries on the ESP that would not boot
# what they name, one line each, "NAME (SIZE bytes): why": an entry must be
# readable, have its linux, initrd and options lines, and the files it
# loads must be there, whole (the checker names them <crc32>-<size>[-N]).
sd_incomplete_entries() {
    local tmpd n f k p base size crc why
    tmpd=$(mktemp -d)
    for n in $(sd_entries "$1"); do
        case $n in health-checker-*.conf) ;; *) continue ;; esac
        f=$tmpd/$n
        if ! sd_esp_get "$1" "/loader/entries/$n" "$f"; then
            printf '%s (? bytes): unreadable\n' "$n"
            continue
        fi
        why=""
        for k in linux initrd options; do
            grep -q "^$k " "$f" || why="$why no $k line;"
        done
        for k in linux initrd; do
            p=$(sed -n "s/^$k //p" "$f" | tr -d '\r' | head -1)
            [ -n "$p" ] || continue
            base=${p##*/}
            crc=${base%%-*}
            size=${base#*-}
            size=${size%%-*}
            rm -f "$tmpd/file"
            if ! sd_esp_get "$1" "$p" "$tmpd/file"; then
                why="$why $p missing or unreadable;"
            elif [ "$(stat -c %s "$tmpd/file")" != "$size" ] ||
                [ "$(gzip -c <"$tmpd/file" | tail -c 8 | od -An -tx4 -N4 | tr -d ' ')" != "$crc" ]; then
                why="$why $p not whole;"
            fi
        done
        [ -z "$why" ] || printf '%s (%s bytes):%s\n' "$n" "$(stat -c %s "$f")" "$why"
    done
    rm -rf "$tmpd"
}

# sd_diag IMAGE WHEN: what a failure needs to be understood, after a cut or
# a boot: the loader's variables on the last boot, the default subvolume,
# the state's keys, each entry on the ESP with its size and what it boots,
# the files directory, and the guest's status.
sd_diag() {
    local d=$1 tmpd f n
    tmpd=$(mktemp -d)
    echo "    diag $2: LoaderEntrySelected=$(sd_var LoaderEntrySelected) LoaderBootCountPath=$(sd_var LoaderBootCountPath)"
    echo "    diag $2: default subvolume $(vm_get_default "$d")"
    sd_esp_get "$d" /health-checker/state.env "$tmpd/state.env" || true
    sd_esp_get "$d" /health-checker/state.env.bak "$tmpd/state.env.bak" || true
    if [ -e "$tmpd/state.env" ] || [ -e "$tmpd/state.env.bak" ]; then
        "$(vm_hc_bin)" bootenv --file "$tmpd/state.env" list 2>&1 |
            grep -v '^#' | tr '\n' ' ' | sed "s/^/    diag $2: state: /; s/ \$/\n/"
    else
        echo "    diag $2: no state file"
    fi
    for n in $(sd_entries "$d"); do
        f=$tmpd/entry
        rm -f "$f"
        if sd_esp_get "$d" "/loader/entries/$n" "$f"; then
            printf '    diag %s: entry %s (%s bytes): %s\n' "$2" "$n" "$(stat -c %s "$f")" \
                "$(tr -d '\r' <"$f" | sed -n 's/^\(linux\|initrd\) //p; s/^options .*\(rootflags=[^ ]*\).*/\1/p' | tr '\n' ' ')"
        else
            echo "    diag $2: entry $n: unreadable"
        fi
    done
    echo "    diag $2: files: $(mdir -b -i "$(vm_esp "$d")" ::/health-checker/files 2>/dev/null | sed 's|.*/||' | tr '\n' ' ')"
    echo "    diag $2: loader.conf default: $(sd_loader_default "$d")"
    echo "    diag $2: status: $(tr -d '\r' <"$VM_LAST_SERIAL" | sed -n 's/^HCTEST status //p' |
        jq -c '{state, booted: .booted.path, default: .default.path, trial: .boot_environment.trial.path,
            attempts_left: .boot_environment.attempts_left, fallback: .boot_environment.fallback,
            booted_entry: .boot_environment.systemd_boot.booted_entry,
            default_entry: .boot_environment.systemd_boot.default_entry}' 2>/dev/null | tr '\n' ' ')"
    rm -rf "$tmpd"
}
