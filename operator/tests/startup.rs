//! The operator binary's start-up failures against the test ground's
//! apiserver: one line that says what to change, a non-zero exit, and no
//! panic or backtrace (even with RUST_BACKTRACE set, as images often have).

use std::time::{Duration, Instant};

use mcpk_e2e::{Ground, unique_name};

#[test]
fn a_lease_namespace_that_does_not_exist_is_one_line_naming_it_and_its_flag() {
    let ground = Ground::get();
    let missing = unique_name("no-such-namespace");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mcp-kafka-operator"))
        .args([
            "run",
            "--metrics-address",
            "127.0.0.1:0",
            "--lease-namespace",
            &missing,
        ])
        .env("KUBECONFIG", &ground.kubeconfig)
        .env("RUST_BACKTRACE", "1")
        .env_remove("POD_NAMESPACE")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting the operator");
    // It must end by itself; a hang would be a defect too.
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("waiting for the operator") {
            break status;
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("the operator did not exit within a minute");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();

    assert!(!status.success(), "exit status {status}; stderr:\n{stderr}");
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    assert!(
        last.contains(&format!("\"{missing}\"")) && last.contains("--lease-namespace"),
        "the last line names the namespace and the flag: {last:?}\nstderr:\n{stderr}"
    );
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("backtrace") && !lower.contains("panicked"),
        "no panic or backtrace:\n{stderr}"
    );
    assert_eq!(
        stderr.trim().lines().count(),
        1,
        "one line on stderr:\n{stderr}"
    );
}
