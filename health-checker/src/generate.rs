//! `health-checker generate`: manual pages and shell completions from the
//! command-line definition, so they never drift from the binary. Used by
//! `make install`; hidden from `--help`.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, CommandFactory};

use crate::cli::Cli;
use crate::exit::Code;

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Write manual pages (section 8) into DIR.
    #[arg(long, value_name = "DIR")]
    pub man: Option<PathBuf>,
    /// Write bash, zsh and fish completions into DIR/{bash,zsh,fish}.
    #[arg(long, value_name = "DIR")]
    pub completions: Option<PathBuf>,
}

const EXIT_STATUS: &str = "\
0: success; for check, the boot passed.
1: the boot failed (a required probe failed); for bootenv get, the key is not set; for doctor, the boot is not protected.
2: usage error.
3: configuration error.
4: boot environment error.
5: snapshot (btrfs) error.
6: any other runtime error (I/O, D-Bus).
7: check was run by a user who is not root; nothing was run.";

pub fn run(args: GenerateArgs) -> anyhow::Result<Code> {
    if let Some(dir) = &args.man {
        man_pages(dir)?;
    }
    if let Some(dir) = &args.completions {
        completions(dir)?;
    }
    Ok(Code::Ok)
}

fn man_pages(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    cmd.build();
    write_page(dir, &cmd, "health-checker", true)?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("health-checker-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        write_page(dir, &sub, &name, false)?;
    }
    Ok(())
}

fn write_page(dir: &Path, cmd: &clap::Command, name: &str, main: bool) -> anyhow::Result<()> {
    let man = clap_mangen::Man::new(cmd.clone()).section("8");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut out)?;
    }
    if main {
        out.extend_from_slice(b".SH \"EXIT STATUS\"\n");
        for line in EXIT_STATUS.lines() {
            out.extend_from_slice(format!(".TP\n{}\n", line.replacen(": ", "\n", 1)).as_bytes());
        }
        out.extend_from_slice(
            b".SH FILES\n.TP\n/etc/health-checker/config.toml, /etc/health-checker/config.d/*.toml\nConfiguration (vendor defaults in /usr/lib/health-checker/config.toml).\n.TP\n/usr/lib/health-checker/plugins.d/, /etc/health-checker/plugins.d/\nPlugin manifests.\n.TP\n/var/lib/health-checker/\nHistory and state.\n",
        );
    }
    man.render_version_section(&mut out)?;
    let path = dir.join(format!("{name}.8"));
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))
}

fn completions(dir: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    for (shell, sub) in [
        (Shell::Bash, "bash"),
        (Shell::Zsh, "zsh"),
        (Shell::Fish, "fish"),
    ] {
        let d = dir.join(sub);
        std::fs::create_dir_all(&d).with_context(|| format!("creating {}", d.display()))?;
        let mut cmd = Cli::command();
        clap_complete::generate_to(shell, &mut cmd, "health-checker", &d)
            .with_context(|| format!("writing {sub} completions into {}", d.display()))?;
    }
    Ok(())
}
