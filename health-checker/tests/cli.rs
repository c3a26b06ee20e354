//! The probe subcommands through the command-line definition: exit codes
//! for passes, failures, unknown probes and bad configuration.

mod probe_root;

use clap::Parser;
use health_checker::cli::{run, Cli};
use health_checker::exit::{code_for, Code};
use probe_root::{manifest, TestRoot};

fn cli(t: &TestRoot, args: &[&str]) -> Result<Code, anyhow::Error> {
    let root = t.path().to_string_lossy().into_owned();
    let mut argv = vec!["health-checker", "--root", root.as_str()];
    argv.extend_from_slice(args);
    run(Cli::try_parse_from(argv).expect("valid command line"))
}

#[test]
fn check_exits_0_on_pass_and_1_on_fail() {
    let t = TestRoot::new();
    t.vendor("ok", &manifest("early", "required", ""), Some("exit 0"));
    t.vendor("bad", &manifest("late", "required", ""), Some("exit 1"));
    assert_eq!(
        cli(&t, &["check", "--probes-only", "--phase", "early"]).unwrap(),
        Code::Ok
    );
    assert_eq!(
        cli(&t, &["check", "--probes-only", "--phase", "late", "--json"]).unwrap(),
        Code::BootFailed
    );
    // Judging needs a boot environment: without one, the error says so.
    let err = cli(&t, &["check", "--phase", "late", "--dry-run"]).unwrap_err();
    assert_eq!(health_checker::exit::code_for(&err), Code::BootEnv);
    assert!(
        health_checker::exit::chain(&err).contains("does not exist"),
        "{err:#}"
    );
    assert!(Cli::try_parse_from(["health-checker", "check", "--phase", "middle"]).is_err());
}

#[test]
fn probes_run_passes_skips_fails_and_rejects_unknown_names() {
    let t = TestRoot::new();
    t.vendor("ok", &manifest("early", "required", ""), Some("exit 0"));
    t.vendor("na", &manifest("early", "required", ""), Some("exit 77"));
    t.vendor("bad", &manifest("late", "wanted", ""), Some("exit 1"));
    assert_eq!(cli(&t, &["probes", "run", "ok"]).unwrap(), Code::Ok);
    assert_eq!(cli(&t, &["probes", "run", "na"]).unwrap(), Code::Ok);
    assert_eq!(
        cli(&t, &["probes", "run", "bad"]).unwrap(),
        Code::BootFailed
    );
    let e = cli(&t, &["probes", "run", "nosuch"]).unwrap_err();
    assert_eq!(code_for(&e), Code::Usage);
    assert_eq!(cli(&t, &["probes", "list"]).unwrap(), Code::Ok);
    assert_eq!(cli(&t, &["probes", "list", "--json"]).unwrap(), Code::Ok);
}

#[test]
fn a_bad_configuration_is_exit_code_3_for_config_show_and_a_failure_for_check() {
    let t = TestRoot::new();
    assert_eq!(cli(&t, &["config", "show", "--json"]).unwrap(), Code::Ok);
    t.config("[boot]\ntries = \"three\"\n");
    let e = cli(&t, &["config", "show"]).unwrap_err();
    assert_eq!(code_for(&e), Code::Config);
    assert_eq!(
        cli(&t, &["check", "--probes-only", "--phase", "early"]).unwrap(),
        Code::BootFailed
    );
}
