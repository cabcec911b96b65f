//! Downloads cannot hold a build forever: a server that trickles bytes hits the progress and
//! overall deadlines (`STACK_DOWNLOAD_STALL_TIMEOUT`, `STACK_DOWNLOAD_TIMEOUT`), and a
//! `Retry-After` beyond 30 s is answered with an error, not waited for.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::{project, stack, stderr_unwrapped};

/// Serves every request on loopback with `answer` (one connection per request).
fn serve(answer: fn(TcpStream)) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                        break;
                    }
                }
                answer(conn);
            });
        }
    });
    port
}

/// A 1 MB file sent one byte every 200 ms: never silent, never done.
fn trickle(mut conn: TcpStream) {
    let _ =
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n");
    for _ in 0..1_000_000 {
        if conn.write_all(b"x").is_err() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Unavailable, come back in two minutes.
fn unavailable(mut conn: TcpStream) {
    let _ = conn.write_all(
        b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 120\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
}

/// Builds `add URL` with the deadlines given; returns the time it took and standard error.
fn build_adding(port: u16, env: &[(&str, &str)]) -> (Duration, bool, String) {
    let dir = project(&format!(
        "stack version=1\nimage a {{\n    from \"scratch\"\n    add \"http://127.0.0.1:{port}/file.bin\" to=\"/file.bin\"\n}}\n"
    ));
    let mut cmd = stack();
    cmd.current_dir(dir.path())
        .env("STACK_CACHE_DIR", dir.path().join("cache"))
        .args(["build", "--out", "out"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let started = Instant::now();
    let mut child = cmd.spawn().unwrap();
    let limit = Duration::from_secs(40);
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the build was still downloading after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let o = std::process::Output { stderr: out.stderr, ..out };
    (started.elapsed(), o.status.success(), stderr_unwrapped(&o))
}

#[test]
fn a_trickling_server_hits_the_download_deadlines() {
    let port = serve(trickle);
    // The overall deadline, with a stall window too long to matter.
    let (took, ok, err) = build_adding(
        port,
        &[("STACK_DOWNLOAD_TIMEOUT", "3"), ("STACK_DOWNLOAD_STALL_TIMEOUT", "60")],
    );
    assert!(!ok, "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(err.contains("STACK_DOWNLOAD_TIMEOUT"), "{err}");
    // The progress deadline: fewer than 1 KiB per window.
    let (took, ok, err) = build_adding(
        port,
        &[("STACK_DOWNLOAD_TIMEOUT", "600"), ("STACK_DOWNLOAD_STALL_TIMEOUT", "1")],
    );
    assert!(!ok, "{err}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(err.contains("stalled") && err.contains("STACK_DOWNLOAD_STALL_TIMEOUT"), "{err}");
}

#[test]
fn a_long_retry_after_is_not_waited_for() {
    let port = serve(unavailable);
    let (took, ok, err) = build_adding(port, &[]);
    assert!(!ok, "{err}");
    assert!(took < Duration::from_secs(10), "took {took:?}: the Retry-After was waited for");
    assert!(err.contains("503"), "{err}");
}

#[test]
fn sigterm_stops_a_download_during_planning() {
    let port = serve(trickle);
    let dir = project(&format!(
        "stack version=1\nimage a {{\n    from \"scratch\"\n    add \"http://127.0.0.1:{port}/file.bin\" to=\"/file.bin\"\n}}\n"
    ));
    let mut child = stack()
        .current_dir(dir.path())
        .env("STACK_CACHE_DIR", dir.path().join("cache"))
        .args(["build", "--out", "out"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let pid = rustix::process::Pid::from_child(&child);
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let sent = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if sent.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the download went on after SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(sent.elapsed() < Duration::from_secs(5), "took {:?}", sent.elapsed());
    assert_eq!(out.status.code(), Some(130), "{}", stderr_unwrapped(&out));
    assert!(stderr_unwrapped(&out).contains("interrupted"));
}
