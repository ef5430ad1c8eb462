//! A `mito server` child process for tests: started on ports it chooses (`--http
//! 127.0.0.1:0 --pg 127.0.0.1:0`, the HTTP address read back from what it prints), stopped
//! by its PID with SIGTERM (clean shutdown) or SIGKILL, and always killed when dropped.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};

/// A running server.
#[derive(Debug)]
pub struct ServerProcess {
    child: Child,
    /// Where its HTTP API listens.
    pub addr: SocketAddr,
    stderr: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl ServerProcess {
    /// Starts `mito` (the binary at `exe`) as `mito --data-dir DIR server --http
    /// 127.0.0.1:0 --pg 127.0.0.1:0 ARGS..` (no `--pg` if ARGS has `--no-pg`; a free port
    /// either way, so tests run side by side) and waits for it to listen. `Err` holds what it
    /// printed if it exited instead.
    pub fn start(exe: &Path, dir: &Path, args: &[&str]) -> Result<Self, String> {
        let mut child = Command::new(exe)
            .arg("--data-dir")
            .arg(dir)
            .args(["server", "--http", "127.0.0.1:0"])
            .args(if args.contains(&"--no-pg") {
                &[][..]
            } else {
                &["--pg", "127.0.0.1:0"][..]
            })
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", exe.display()))?;
        let stderr = child.stderr.take().ok_or("stderr is piped")?;
        let mut lines = BufReader::new(stderr).lines();
        let mut seen = String::new();
        let addr = loop {
            match lines.next() {
                Some(Ok(line)) => {
                    seen.push_str(&line);
                    seen.push('\n');
                    if let Some(a) = line.split("listening on http://").nth(1) {
                        break a.trim().parse().map_err(|e| format!("address {a}: {e}"))?;
                    }
                }
                _ => {
                    let status = child.wait().map_err(|e| e.to_string())?;
                    return Err(format!(
                        "the server exited ({status}) before listening:\n{seen}"
                    ));
                }
            }
        };
        let shared = Arc::new(Mutex::new(seen));
        let sink = shared.clone();
        let reader = std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                let mut s = sink
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                s.push_str(&line);
                s.push('\n');
            }
        });
        Ok(Self {
            child,
            addr,
            stderr: shared,
            reader: Some(reader),
        })
    }

    /// What the server printed on standard error so far.
    pub fn stderr(&self) -> String {
        self.stderr
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Sends SIGTERM and waits for the exit; returns the status and everything printed.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill -TERM");
        assert!(sent.success(), "kill -TERM {pid} failed");
        let status = self.child.wait().expect("waiting for the server");
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status, self.stderr())
    }

    /// SIGKILL, and waits for it to die.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
