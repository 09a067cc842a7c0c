//! `scripts/local-cluster.sh --check`, the container-free version of `docker/compose.yaml`
//! (Redis, the demo origin, three instances on `docker/cachet.toml`), run with this build's
//! binary: an entry filled through one instance is a shared hit on another, and a purge
//! through one instance's admin API makes a third refetch. Runs in CI like every test
//! (`scripts/test.sh` installs `redis-server`).

#![cfg(unix)]

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// The script bounds its own waits (20 s); this only guards against a hung script.
const SCRIPT_WAIT: Duration = Duration::from_secs(60);

#[test]
fn local_cluster_check_passes() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut command = Command::new("bash");
    command
        .arg(format!("{root}/scripts/local-cluster.sh"))
        .arg("--check")
        .current_dir(root)
        .env("CACHET_BIN", env!("CARGO_BIN_EXE_cachet"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group, so a hung script can be killed with everything it started.
        .process_group(0);
    let mut child = command.spawn().expect("run scripts/local-cluster.sh");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out = thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if started.elapsed() > SCRIPT_WAIT {
            // The script's clean-up never ran: end its whole group.
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", child.id())])
                .status();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");
    let Some(status) = status else {
        panic!("scripts/local-cluster.sh --check ran over {SCRIPT_WAIT:?}\n{report}");
    };
    assert!(
        status.success(),
        "scripts/local-cluster.sh --check: {status}\n{report}"
    );
    assert!(
        stdout.contains("local cluster check passed"),
        "no success line\n{report}"
    );
}
