//! The systemd-boot backend on real files: a temporary ESP and efivarfs,
//! with a model of systemd-boot's boot counting (`common::sdboot`) starting
//! the "machine". Arming, counting down, falling back, promotion with
//! blessing, a failed trial, systemd #33504, a full ESP.

mod common;

use common::sdboot::World;
use health_checker::engine::{
    arm, grub_choose, mark_bad, mark_good, BootEnv, BootState, GrubChoice, GrubEntry,
};
use health_checker::snapshots::SnapshotRef;

fn snap(n: u64) -> SnapshotRef {
    SnapshotRef {
        id: 255 + n,
        path: format!("@/.snapshots/{n}/snapshot"),
    }
}

/// Apply `new` over what `env` holds, as the engine does.
fn write(env: &dyn BootEnv, new: &BootState) -> BootState {
    let old = env.load().unwrap();
    env.store(&new.diff(&old)).unwrap();
    env.load().unwrap()
}

/// An entry `name` on the ESP that the backend did not write (left by an
/// earlier run or another tool), booting what the known-good entry boots.
fn plant(w: &World, name: &str) {
    let d = w.esp().join("loader/entries");
    std::fs::copy(d.join("health-checker-boot-good-256.conf"), d.join(name)).unwrap();
}

fn with_good(w: &World) -> BootState {
    let env = w.env(5);
    let s = write(
        &env,
        &BootState {
            good: Some(snap(1)),
            ..BootState::default()
        },
    );
    assert_eq!(s.good, Some(snap(1)));
    s
}

#[test]
fn no_state_file_is_an_error_naming_it() {
    let w = World::new();
    let env = w.env(5);
    std::fs::remove_file(w.esp().join("health-checker/state.env")).unwrap();
    std::fs::remove_file(w.esp().join("health-checker/state.env.bak")).ok();
    let e = format!("{:#}", env.load().unwrap_err());
    assert!(
        e.contains("state.env") && e.contains("boot-entries sync"),
        "{e}"
    );
}

#[test]
fn arming_writes_a_counted_entry_and_systemd_boot_counts_it_down_then_falls_back() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    assert_eq!(w.entries(), ["health-checker-boot-good-256.conf"]);
    assert_eq!(
        std::fs::read_to_string(w.esp().join("loader/loader.conf")).unwrap(),
        "timeout 3\ndefault health-checker-boot-*\n"
    );
    let armed = write(&env, &arm(&s, snap(2), 3).unwrap());
    assert_eq!((armed.trial.clone(), armed.tries), (Some(snap(2)), 3));
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf",
            "health-checker-boot-trial-257+3.conf"
        ]
    );
    let text = std::fs::read_to_string(
        w.esp()
            .join("loader/entries/health-checker-boot-trial-257+3.conf"),
    )
    .unwrap();
    assert!(
        text.contains("options root=UUID=test ro rootflags=subvol=@/.snapshots/2/snapshot"),
        "{text}"
    );
    // The kernel named is on the ESP.
    let linux = text.lines().find_map(|l| l.strip_prefix("linux ")).unwrap();
    assert!(w.esp().join(linux.trim_start_matches('/')).is_file());

    // Every boot, the model of systemd-boot and GRUB's model agree.
    let mut state = armed;
    for left in (0..3).rev() {
        let booted = w.boot().unwrap();
        assert!(
            booted.starts_with("health-checker-boot-trial-257+"),
            "{booted}"
        );
        let (choice, grub) = grub_choose(&state);
        assert_eq!(choice, GrubChoice::Trial(snap(2)));
        state = env.load().unwrap();
        assert_eq!(state.tries, left);
        assert_eq!(state.booted, Some(GrubEntry::Trial));
        assert_eq!(
            (state.tries, state.fallback.clone()),
            (grub.tries, grub.fallback)
        );
    }
    // Out of attempts: the known-good boots, and the fall-back shows.
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
    let (choice, grub) = grub_choose(&state);
    assert_eq!(choice, GrubChoice::Good(snap(1)));
    let fell = env.load().unwrap();
    assert_eq!(fell.fallback, Some(snap(2).path));
    assert_eq!(fell.fallback, grub.fallback);
    assert_eq!(fell.booted, Some(GrubEntry::Good));

    // The checker clears the trial: its entry is marked bad, G stays.
    let cleared = write(
        &env,
        &BootState {
            trial: None,
            tries: 0,
            fallback: None,
            ..fell
        },
    );
    assert_eq!(cleared.fallback, None);
    assert_eq!(
        w.entries(),
        [
            "health-checker-257+0-3.conf",
            "health-checker-boot-good-256.conf",
        ]
    );
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
}

#[test]
fn a_promoted_trial_becomes_the_default_and_blessing_leaves_one_entry() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 3).unwrap());
    assert!(w.boot().unwrap().contains("trial"));
    let booted = env.load().unwrap();
    // The late phase passed: T becomes known-good.
    let promoted = write(
        &env,
        &BootState {
            good: Some(snap(2)),
            trial: None,
            tries: 0,
            ..booted
        },
    );
    assert_eq!(promoted.good, Some(snap(2)));
    // G is a menu entry now; the counted entry this boot came from is left
    // for systemd-bless-boot.
    assert_eq!(
        w.entries(),
        [
            "health-checker-256.conf",
            "health-checker-boot-good-257.conf",
            "health-checker-boot-trial-257+2-1.conf",
        ]
    );
    assert_eq!(
        w.bless().as_deref(),
        Some("health-checker-boot-trial-257.conf")
    );
    // The next change of the entries removes the blessed leftover; until
    // then both default candidates boot the same snapshot.
    let next = w.boot().unwrap();
    assert!(next.ends_with("-257.conf"), "{next}");
    let s = env.load().unwrap();
    assert_eq!((s.good.clone(), s.trial.clone()), (Some(snap(2)), None));
    assert_eq!(s.fallback, None);
    write(&env, &arm(&s, snap(3), 2).unwrap());
    assert_eq!(
        w.entries(),
        [
            "health-checker-256.conf",
            "health-checker-boot-good-257.conf",
            "health-checker-boot-trial-258+2.conf",
        ]
    );
}

#[test]
fn a_failed_trial_is_marked_bad_and_the_known_good_boots() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 3).unwrap());
    w.boot();
    let booted = env.load().unwrap();
    let rolled = write(&env, &mark_bad(&booted, &snap(2)));
    assert_eq!(rolled.trial, None);
    assert_eq!(
        w.entries(),
        [
            "health-checker-257+0-1.conf",
            "health-checker-boot-good-256.conf"
        ]
    );
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
    // Marking it good by hand later makes it the default.
    let s = env.load().unwrap();
    write(&env, &mark_good(&s, snap(2)));
    assert_eq!(
        w.entries(),
        [
            "health-checker-256.conf",
            "health-checker-boot-good-257.conf"
        ]
    );
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-257.conf");
}

#[test]
fn an_unsuffixed_entry_of_the_same_name_never_stays_beside_a_counted_one() {
    // systemd #33504: with NAME.conf beside NAME+3.conf, counting does
    // nothing. A blessed trial entry left behind (NAME.conf) must go when
    // the same snapshot is armed again, afresh.
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    plant(&w, "health-checker-boot-trial-257.conf");
    write(&env, &arm(&s, snap(2), 2).unwrap());
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf",
            "health-checker-boot-trial-257+2.conf"
        ]
    );
    // Counting works: two boots of the trial, then the known-good.
    assert!(w.boot().unwrap().contains("trial-257+2"));
    assert!(w.boot().unwrap().contains("trial-257+1-1"));
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
}

#[test]
fn rearming_a_trial_starts_its_count_afresh() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 3).unwrap());
    w.boot();
    w.boot();
    let s = env.load().unwrap();
    assert_eq!(s.tries, 1);
    let again = write(&env, &arm(&s, snap(2), 3).unwrap());
    assert_eq!(again.tries, 3);
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf",
            "health-checker-boot-trial-257+3.conf"
        ]
    );
}

#[test]
fn a_full_esp_refuses_the_trial_and_writes_nothing() {
    common::require::root("mounting a small tmpfs as the ESP");
    let w = World::new();
    let esp = w.esp();
    // A 1 MiB ESP: less than the reserve the backend keeps free.
    let status = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(&esp)
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs failed");
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(&self.0).status();
        }
    }
    let _u = Unmount(esp.clone());
    std::fs::create_dir_all(esp.join("loader/entries")).unwrap();
    std::fs::write(esp.join("loader/loader.conf"), "timeout 3\n").unwrap();
    let env = w.env(5);
    let before = env.load().unwrap();
    let e = env
        .store(&arm(&before, snap(2), 3).unwrap().diff(&before))
        .unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("KiB free") && msg.contains(&esp.display().to_string()),
        "{msg}"
    );
    assert!(w.entries().is_empty(), "{:?}", w.entries());
    assert_eq!(env.load().unwrap(), before);
    assert!(
        !esp.join("health-checker/files").exists()
            || std::fs::read_dir(esp.join("health-checker/files"))
                .unwrap()
                .next()
                .is_none()
    );
}

#[test]
fn kernels_are_shared_between_entries_and_removed_with_the_last_one() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w); // ID 256: kernel 256 % 3 = 1
    let files = || {
        let mut v: Vec<String> = std::fs::read_dir(w.esp().join("health-checker/files"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(files().len(), 2);
    // ID 259: 259 % 3 = 1, the same kernel and initrd: nothing copied.
    write(&env, &arm(&s, snap(4), 3).unwrap());
    assert_eq!(files().len(), 2);
    // ID 257: another kernel.
    let s = env.load().unwrap();
    write(&env, &arm(&s, snap(2), 3).unwrap());
    assert_eq!(w.entries().len(), 3, "{:?}", w.entries());
    assert_eq!(files().len(), 4);
}

#[test]
fn the_booted_entry_is_unknown_without_efivarfs_and_the_snapshot_decides() {
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 1).unwrap());
    w.boot();
    std::fs::remove_file(w.vars().path("LoaderEntrySelected")).unwrap();
    let s = env.load().unwrap();
    assert_eq!(s.booted, None);
    assert_eq!(s.tries, 0);
    // Without the variable, no attempts left reads as a fall-back; the
    // engine then judges the booted subvolume (the trial: a stale mark).
    assert_eq!(s.fallback, Some(snap(2).path));
}

#[test]
fn a_trial_blessed_before_it_was_judged_gets_one_counted_attempt_back() {
    // systemd-bless-boot renamed the trial's entry (boot-complete.target was
    // reached without a promotion): unsuffixed, it would boot on every start
    // with nothing counting. The next change of the entries counts it again.
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 3).unwrap());
    w.boot();
    assert_eq!(
        w.bless().as_deref(),
        Some("health-checker-boot-trial-257.conf")
    );
    let s = env.load().unwrap();
    assert_eq!((s.trial.clone(), s.tries), (Some(snap(2)), 0));
    // Any store (here: the failure streak counted) rewrites the entries.
    write(&env, &BootState { good_fails: 1, ..s });
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf",
            "health-checker-boot-trial-257+1.conf"
        ]
    );
    assert!(w.boot().unwrap().contains("trial-257+1"));
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
}

#[test]
fn a_power_cut_between_the_trial_entry_and_the_state_is_judged_as_an_unarmed_default() {
    use health_checker::engine::{decide, Action, EarlyPhase, EngineConfig, Inputs};
    use health_checker::verdict::{Phase, PhaseReport};
    // `arm` writes the counted entry first, then the state. Cut in between:
    // the entry is there, the state names no trial.
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    plant(&w, "health-checker-boot-trial-257+3.conf");
    // systemd-boot boots it, counting.
    assert_eq!(
        w.boot().as_deref(),
        Some("health-checker-boot-trial-257+3.conf")
    );
    let loaded = env.load().unwrap();
    assert_eq!((loaded.trial.clone(), loaded.good.clone()), (None, s.good));
    // The update tool had made it the default: the engine arms it now and
    // judges it as a trial; the backend writes a fresh counted entry.
    let report = PhaseReport::new(Phase::Early, vec![]);
    let dec = decide(&Inputs {
        state: &loaded,
        booted: &snap(2),
        default: &snap(2),
        good_exists: true,
        report: &report,
        early: EarlyPhase::NotRun,
        config: &EngineConfig::default(),
    });
    assert_eq!(dec.action, Action::Nothing, "{dec:?}");
    assert_eq!(dec.state.trial, Some(snap(2)), "{dec:?}");
    env.store(&dec.state.diff(&loaded)).unwrap();
    let after = env.load().unwrap();
    assert_eq!((after.trial, after.tries), (Some(snap(2)), dec.state.tries));
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf".to_string(),
            format!("health-checker-boot-trial-257+{}.conf", dec.state.tries),
        ]
    );
}

/// The snapshots 1 and 2, the default `default`, for the backend's `sync`
/// (what `health-checker-boot-entries.service` runs on every boot).
struct Two(SnapshotRef);

impl health_checker::snapshots::Snapshots for Two {
    fn booted(&self) -> anyhow::Result<SnapshotRef> {
        Ok(self.0.clone())
    }
    fn default_subvolume(&self) -> anyhow::Result<SnapshotRef> {
        Ok(self.0.clone())
    }
    fn set_default(&self, _: u64) -> anyhow::Result<()> {
        anyhow::bail!("not in this test")
    }
    fn lookup(&self, path: &str) -> anyhow::Result<Option<SnapshotRef>> {
        Ok([snap(1), snap(2)].into_iter().find(|s| s.path == path))
    }
    fn list(&self) -> anyhow::Result<Vec<health_checker::snapshots::SnapshotInfo>> {
        Ok([snap(1), snap(2)]
            .into_iter()
            .map(|s| health_checker::snapshots::SnapshotInfo {
                snapshot: s,
                number: None,
                description: None,
                read_only: true,
            })
            .collect())
    }
}

#[test]
fn an_entry_left_empty_by_a_power_cut_is_written_again_under_its_name() {
    // On Linux's vfat a renamed file's directory entry gets its first
    // cluster and size only when the inode is written back: a power cut
    // after `arm` renamed the trial's entry into place (and wrote the
    // state) but before that left the counted name on an empty file.
    let w = World::new();
    let env = w.env(5);
    let s = with_good(&w);
    write(&env, &arm(&s, snap(2), 3).unwrap());
    let entries = w.esp().join("loader/entries");
    let trial = entries.join("health-checker-boot-trial-257+3.conf");
    let whole = std::fs::read_to_string(&trial).unwrap();
    std::fs::write(&trial, "").unwrap();

    // systemd-boot skips the empty entry and boots the known-good; the
    // state still names the trial with all its attempts, and nothing else
    // would ever boot it.
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
    let st = env.load().unwrap();
    assert_eq!(
        (st.trial.clone(), st.tries, st.fallback.clone()),
        (Some(snap(2)), 3, None)
    );

    // A temporary file of an entry write that a cut stopped before its
    // rename: no entry to systemd-boot or the checker, and left alone (on
    // a FAT not yet checked by fsck.fat, deleting it could free clusters
    // another file uses since).
    let tmp = entries.join(".health-checker-boot-trial-257+3.conf.tmp-99-0");
    std::fs::write(&tmp, &whole[..10]).unwrap();

    // The sync of that boot writes the entry again, counter and all.
    let done = env.sync(&Two(snap(2))).unwrap();
    assert!(tmp.exists(), "{done:?}");
    assert!(
        done.lines
            .iter()
            .any(|l| l.starts_with("rewrote health-checker-boot-trial-257+3.conf")),
        "{done:?}"
    );
    assert_eq!(std::fs::read_to_string(&trial).unwrap(), whole);
    assert_eq!(
        w.entries(),
        [
            "health-checker-boot-good-256.conf",
            "health-checker-boot-trial-257+3.conf"
        ]
    );
    // Now systemd-boot boots the trial and counts it.
    assert_eq!(w.boot().unwrap(), "health-checker-boot-trial-257+3.conf");
    let st = env.load().unwrap();
    assert_eq!((st.tries, st.booted), (2, Some(GrubEntry::Trial)));

    // The known-good's entry, emptied the same way, is written again by any
    // change of the state too (here: the trial marked bad).
    let good = entries.join("health-checker-boot-good-256.conf");
    let whole = std::fs::read_to_string(&good).unwrap();
    std::fs::write(&good, "").unwrap();
    write(&env, &mark_bad(&st, &snap(2)));
    assert_eq!(std::fs::read_to_string(&good).unwrap(), whole);
    assert_eq!(w.boot().unwrap(), "health-checker-boot-good-256.conf");
}
