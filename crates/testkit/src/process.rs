use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A child process in a process group of its own, with stdout and stderr in
/// a log file. Dropping it stops the whole group: SIGTERM, then SIGKILL.
#[derive(Debug)]
pub struct ManagedProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
    /// Where this run's output starts in the log.
    log_start: u64,
}

impl ManagedProcess {
    /// Starts `cmd`, logging to `<dir>/<name>.log` (appending, so a restarted
    /// process keeps one log).
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> std::io::Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::options().create(true).append(true).open(&log)?;
        // What an earlier run of the same name wrote is not this run's.
        let log_start = out.metadata()?.len();
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null())
            .process_group(0);
        let child = cmd.spawn()?;
        Ok(Self {
            name: name.to_owned(),
            child: Some(child),
            log,
            log_start,
        })
    }

    /// The process id, until the process is killed or stopped.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file its stdout and stderr go to.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Waits until a line of the log satisfies `find`, returning what it
    /// returned. Fails if the process exits first or `timeout` passes.
    pub fn wait_for_line<T>(
        &mut self,
        timeout: Duration,
        find: impl Fn(&str) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = Instant::now() + timeout;
        loop {
            for line in self.this_run()? {
                if let Some(found) = find(&line) {
                    return Ok(found);
                }
            }
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                anyhow::bail!(
                    "{} exited with {status} before it was ready:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "{} was not ready after {timeout:?}:\n{}",
                    self.name,
                    self.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The lines this run of the process has logged so far.
    pub fn log_lines(&self) -> Vec<String> {
        self.this_run().map(Iterator::collect).unwrap_or_default()
    }

    /// The log's lines from where this run's output starts, read as they
    /// are asked for.
    fn this_run(&self) -> std::io::Result<impl Iterator<Item = String>> {
        let mut file = File::open(&self.log)?;
        file.seek(SeekFrom::Start(self.log_start))?;
        Ok(BufReader::new(file).lines().map_while(Result::ok))
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|c| c.try_wait()), Some(Ok(None)))
    }

    /// Sends a signal to the whole process group.
    pub fn signal(&self, signal: &str) {
        if let Some(id) = self.id() {
            kill_group(id, signal);
        }
    }

    /// SIGKILL, no chance to clean up: what a crash looks like.
    pub fn kill_hard(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill_group(child.id(), "KILL");
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`. Returns the
    /// exit status if it exited on its own.
    pub fn stop(&mut self, grace: Duration) -> Option<std::process::ExitStatus> {
        let mut child = self.child.take()?;
        kill_group(child.id(), "TERM");
        let deadline = Instant::now() + grace;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => {
                    // Reap any helper left in the group.
                    self.signal_group_of(child.id(), "KILL");
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                _ => {
                    self.signal_group_of(child.id(), "KILL");
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    fn signal_group_of(&self, id: u32, signal: &str) {
        kill_group(id, signal);
    }

    /// The last `lines` lines of the log.
    pub fn log_tail(&self, lines: usize) -> String {
        let Ok(mut file) = File::open(&self.log) else {
            return String::new();
        };
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = file.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
        let mut text = String::new();
        let _ = file.read_to_string(&mut text);
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }
}

/// Sends `signal` to process group `pgid` (the `--` keeps `kill` from
/// reading the negative id as an option).
fn kill_group(pgid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args(["-s", signal, "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "----- {} log (tail) -----\n{}\n-----",
                self.name,
                self.log_tail(400)
            );
        }
        self.stop(Duration::from_secs(3));
    }
}
