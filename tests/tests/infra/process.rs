//! Process helpers: child guards, free ports, waiting for TCP.

use sidescan_testkit::process::{ChildGuard, free_port, wait_for_tcp};
use std::process::Command;
use std::time::{Duration, Instant};

fn alive(pid: u32) -> bool {
    // A reaped process has no /proc entry; a zombie would say "Z".
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.split_whitespace().nth(2).is_none_or(|st| st != "Z"))
        .unwrap_or(false)
}

#[test]
fn child_guard_terminates_on_drop() {
    let g = ChildGuard::new(Command::new("sleep").arg("30").spawn().unwrap(), "sleep");
    let pid = g.pid();
    assert!(alive(pid));
    let t = Instant::now();
    drop(g);
    assert!(!alive(pid));
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "SIGTERM suffices for sleep"
    );
}

#[test]
fn child_guard_kills_what_ignores_sigterm() {
    let mut g = ChildGuard::new(
        Command::new("sh")
            .args(["-c", "trap '' TERM; exec sleep 30"])
            .spawn()
            .unwrap(),
        "stubborn",
    );
    let pid = g.pid();
    std::thread::sleep(Duration::from_millis(200));
    let t = Instant::now();
    let status = g.stop().expect("exit status");
    assert!(
        t.elapsed() >= Duration::from_millis(2900),
        "waited for the grace period"
    );
    assert!(!status.success());
    assert!(!alive(pid));
    assert!(g.stop().is_none(), "stop is idempotent");
}

#[test]
fn free_port_and_wait_for_tcp() {
    let port = free_port();
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let err = wait_for_tcp(addr, Duration::from_millis(200)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    let _l = std::net::TcpListener::bind(addr).unwrap();
    wait_for_tcp(addr, Duration::from_secs(1)).unwrap();
}

#[test]
#[should_panic(expected = "run 'apt-get install -y no-such-package' (or scripts/install-deps)")]
fn missing_tool_panics_with_install_command() {
    sidescan_testkit::tool::require(
        "sidescan-no-such-binary",
        "apt-get install -y no-such-package",
    );
}

#[test]
fn registry_stops_and_cleans_up_on_drop() {
    let reg = sidescan_testkit::registry::Registry::anonymous();
    let (pid, dir, addr) = (reg.pid(), reg.dir().to_path_buf(), reg.addr());
    assert!(alive(pid) && dir.exists());
    drop(reg);
    assert!(!alive(pid));
    assert!(!dir.exists());
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_err());
}
