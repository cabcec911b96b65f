//! `add "https://…"`: files fetched into the store and pinned in `stack.lock` (or by
//! `checksum=`; then no request at all), revalidated with `ETag` by `stack lock`, and errors
//! that name the URL.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};

use crate::support::{
    busybox_base, have, run_stack, skip, stderr, stderr_unwrapped, stdout, unpack, write_files,
};

/// What the test server serves and what it saw.
#[derive(Default)]
struct Served {
    body: String,
    etag: String,
    /// (path, status) of every request.
    log: Vec<(String, u16)>,
}

/// A small HTTP/1.1 server on loopback: `/tool.sh` is `body` with `etag` (304 when the client
/// already has it), anything else is 404. One request per connection.
fn serve(state: Arc<Mutex<Served>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut if_none_match = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = line.split_once(':')
                    && k.eq_ignore_ascii_case("if-none-match")
                {
                    if_none_match = Some(v.trim().to_owned());
                }
            }
            let mut s = state.lock().unwrap();
            let (status, body) = if path.split('?').next() == Some("/tool.sh") {
                if if_none_match.as_deref() == Some(s.etag.as_str()) {
                    (304, String::new())
                } else {
                    (200, s.body.clone())
                }
            } else {
                (404, "not found\n".to_owned())
            };
            s.log.push((path, status));
            let _ = write!(
                conn,
                "HTTP/1.1 {status} X\r\nETag: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                s.etag,
                body.len()
            );
        }
    });
    port
}

fn sha256(text: &str) -> String {
    stack::api::digest::OciDigest::of(text.as_bytes()).to_string()
}

#[test]
fn add_fetches_urls_revalidates_and_pins_by_checksum() {
    let Some(base) = busybox_base() else { return };
    let v1 = "#!/bin/sh\necho tool v1\n";
    let state = Arc::new(Mutex::new(Served {
        body: v1.to_owned(),
        etag: "\"v1\"".to_owned(),
        log: Vec::new(),
    }));
    let port = serve(Arc::clone(&state));
    let url = format!("http://127.0.0.1:{port}/tool.sh?download=1");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let build = |checksum: &str| {
        format!(
            "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    add \"{url}\" to=\"/usr/local/bin/\"\n    add \"{url}\" to=\"/opt/tool\" chmod=\"0755\" checksum=\"{checksum}\"\n}}\n",
            base.display()
        )
    };
    write_files(d, &[("stack.kdl", &build(&sha256(v1)))]);
    let cache = d.join("cache");
    let first = run_stack(d, &cache, &["build"]);
    assert!(first.status.success(), "{}", stderr(&first));
    if !have("umoci") {
        return skip("umoci is missing (apt-get install umoci)");
    }
    let bundle = d.join("bundle");
    unpack(&d.join("stack-out"), "app", &bundle);
    let named = bundle.join("rootfs/usr/local/bin/tool.sh");
    assert_eq!(std::fs::read_to_string(&named).unwrap(), v1);
    assert_eq!(std::fs::metadata(&named).unwrap().permissions().mode() & 0o777, 0o600);
    let pinned = bundle.join("rootfs/opt/tool");
    assert_eq!(std::fs::read_to_string(&pinned).unwrap(), v1);
    assert_eq!(std::fs::metadata(&pinned).unwrap().permissions().mode() & 0o777, 0o755);
    // The pinned add asked nothing: its blob was in the store once the first add fetched it.
    assert_eq!(state.lock().unwrap().log, [("/tool.sh?download=1".to_owned(), 200)]);

    // The first build pinned the unpinned add's content in stack.lock.
    let lock = std::fs::read_to_string(d.join("stack.lock")).unwrap();
    assert!(lock.contains(&format!("url \"{url}\" digest=\"{}\"", sha256(v1))), "{lock}");
    // Nothing changed: pinned and stored, so no request at all, and the same image.
    let again = run_stack(d, &cache, &["build"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(stdout(&again), stdout(&first));
    assert_eq!(state.lock().unwrap().log.len(), 1);

    // The file changed on the server: a build elsewhere (empty store) refuses it, pinned by
    // stack.lock as by checksum=.
    let v2 = "#!/bin/sh\necho tool v2\n";
    {
        let mut s = state.lock().unwrap();
        s.body = v2.to_owned();
        s.etag = "\"v2\"".to_owned();
    }
    let fresh = d.join("cache-fresh");
    let refused = run_stack(d, &fresh, &["build"]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    let err = stderr_unwrapped(&refused);
    assert!(err.contains("not the checksum") && err.contains(&sha256(v1)), "{err}");
    assert!(err.contains("changed since") && err.contains("stack lock"), "{err}");
    // `stack lock` takes the new content (a full request, the ETag differs), then asks again
    // with a conditional request that the server answers 304.
    let relock = run_stack(d, &cache, &["lock"]);
    assert!(relock.status.success(), "{}", stderr(&relock));
    let lock = std::fs::read_to_string(d.join("stack.lock")).unwrap();
    assert!(lock.contains(&sha256(v2)), "{lock}");
    assert_eq!(state.lock().unwrap().log.last().unwrap().1, 200);
    let relock = run_stack(d, &cache, &["lock"]);
    assert!(relock.status.success(), "{}", stderr(&relock));
    assert_eq!(state.lock().unwrap().log.last().unwrap().1, 304);
    write_files(d, &[("stack.kdl", &build(&sha256(v2)))]);
    let moved = run_stack(d, &cache, &["build"]);
    assert!(moved.status.success(), "{}", stderr(&moved));
    assert_ne!(stdout(&moved), stdout(&first));
    // `--locked` refuses a URL that stack.lock does not pin.
    let other = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    add \"http://127.0.0.1:{port}/tool.sh?v=3\" to=\"/opt/t\"\n}}\n",
        base.display()
    );
    write_files(d, &[("other/stack.kdl", &other)]);
    let out = run_stack(&d.join("other"), &cache, &["build", "--locked"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr_unwrapped(&out);
    assert!(err.contains("not pinned"), "{err}");

    // Pinned and stored: builds with the server gone.
    let offline = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    add \"http://127.0.0.1:9/tool.sh\" to=\"/opt/tool\" checksum=\"{}\"\n}}\n",
        base.display(),
        sha256(v2)
    );
    write_files(d, &[("offline/stack.kdl", &offline)]);
    let out = run_stack(&d.join("offline"), &cache, &["build"]);
    assert!(out.status.success(), "{}", stderr(&out));

    // A missing file names the URL and the status.
    let missing = format!(
        "stack version=1\nimage app {{\n    from \"oci:{}:base\"\n    add \"http://127.0.0.1:{port}/nope.tar.gz\" to=\"/opt/\"\n}}\n",
        base.display()
    );
    write_files(d, &[("missing/stack.kdl", &missing)]);
    let out = run_stack(&d.join("missing"), &cache, &["build"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(err.contains("nope.tar.gz") && err.contains("HTTP 404"), "{err}");
    assert!(err.contains("stack.kdl:4:"), "points at the step: {err}");
}
