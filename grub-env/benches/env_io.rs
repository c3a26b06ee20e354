//! Time to read and to write a boot environment.
//!
//! `cargo bench -p grub-env --bench env_io [DIR]` (default: a temporary
//! directory under the system's temp dir). Writes are dominated by the
//! fsyncs: four per copy, two copies.

use std::time::{Duration, Instant};

use grub_env::{Env, Store};

fn time<F: FnMut()>(n: u32, mut f: F) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn main() {
    let dir_arg = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let tmp = match &dir_arg {
        Some(d) => tempfile::tempdir_in(d).expect("temp dir in the given directory"),
        None => tempfile::tempdir().expect("temp dir"),
    };
    let path = tmp.path().join("grubenv");
    let store = Store::for_file(&path);
    store
        .update(|env| {
            for (k, v) in [
                ("saved_entry", "gnulinux"),
                ("hc_good", "@/.snapshots/1/snapshot"),
                ("hc_good_id", "256"),
                ("hc_trial", "@/.snapshots/2/snapshot"),
                ("hc_tries", "3"),
            ] {
                env.set(k, v).map_err(|e| e.to_string())?;
            }
            Ok(())
        })
        .unwrap();
    let bytes = std::fs::read(&path).unwrap();

    let parse = time(100_000, || {
        std::hint::black_box(Env::parse(std::hint::black_box(&bytes)).unwrap());
    });
    let load = time(20_000, || {
        std::hint::black_box(store.load().unwrap());
    });
    let mut n = 0u32;
    let write = time(200, || {
        n += 1;
        store
            .update(|env| {
                env.set("hc_tries", &(n % 10).to_string())
                    .map_err(|e| e.to_string())
            })
            .unwrap();
    });
    println!("directory: {}", tmp.path().display());
    println!("parse one 1024-byte block:        {:>10.2?}", parse);
    println!("load (read + verify both copies): {:>10.2?}", load);
    println!("update (lock, load, write both):  {:>10.2?}", write);
}
