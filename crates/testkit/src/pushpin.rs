use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::{free_port, ManagedProcess};

/// Pushpin settings a test may change.
#[derive(Debug, Clone)]
pub struct PushpinOptions {
    /// `[handler] message_rate`; 0 turns the rate limiter off (see docs/deploying.md,
    /// "Pushpin's configuration").
    pub message_rate: u32,
    /// `[handler] message_hwm`: the high-water mark of Pushpin's queue of
    /// messages to publish.
    pub message_hwm: u32,
    /// `[proxy] sig_key` used to sign `Grip-Sig`.
    pub sig_key: String,
}

impl Default for PushpinOptions {
    fn default() -> Self {
        Self {
            message_rate: 0,
            message_hwm: 100_000,
            sig_key: "changeme".into(),
        }
    }
}

/// A real Pushpin on loopback ports of its own.
#[derive(Debug)]
pub struct Pushpin {
    process: ManagedProcess,
    /// Where clients connect (`[runner] http_port`).
    pub http_port: u16,
    /// Where the origin and the worker publish (`GRIP_URL`).
    pub publish_port: u16,
    config: std::path::PathBuf,
    /// The origins its route names, tried in this order.
    targets: Vec<u16>,
}

fn config_text(
    dir: &Path,
    http: u16,
    publish: u16,
    pull: u16,
    sub: u16,
    cmd: u16,
    options: &PushpinOptions,
) -> String {
    format!(
        "[global]
include={{libdir}}/internal.conf
rundir={dir}/run
[runner]
services=condure,zurl,pushpin-proxy,pushpin-handler
http_port=127.0.0.1:{http}
logdir={dir}/log
[proxy]
routesfile=routes
zurl_out_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in
zurl_out_stream_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-in-stream
zurl_in_specs=ipc://{{rundir}}/{{ipc_prefix}}zurl-out
sig_iss=pushpin
sig_key={sig_key}
updates_check=off
[handler]
push_in_spec=tcp://127.0.0.1:{pull}
push_in_sub_specs=tcp://127.0.0.1:{sub}
push_in_http_addr=127.0.0.1
push_in_http_port={publish}
command_spec=tcp://127.0.0.1:{cmd}
stats_spec=ipc://{{rundir}}/{{ipc_prefix}}stats
message_rate={rate}
message_hwm={hwm}
",
        dir = dir.display(),
        sig_key = options.sig_key,
        rate = options.message_rate,
        hwm = options.message_hwm,
    )
}

impl Pushpin {
    /// Starts Pushpin in `dir` routing every request to `127.0.0.1:origin_port`,
    /// and waits until both the proxy and the publish endpoint answer.
    pub fn start(dir: &Path, origin_port: u16, options: &PushpinOptions) -> anyhow::Result<Self> {
        Self::start_routed(dir, &[origin_port], options)
    }

    /// Starts Pushpin in `dir` with one route to several origins. Pushpin
    /// tries a route's targets in order: the first that answers serves the
    /// request, so the later ones take over when it is down.
    pub fn start_routed(
        dir: &Path,
        targets: &[u16],
        options: &PushpinOptions,
    ) -> anyhow::Result<Self> {
        Self::start_on(dir, targets, options, free_port(), free_port())
    }

    fn start_on(
        dir: &Path,
        targets: &[u16],
        options: &PushpinOptions,
        http_port: u16,
        publish_port: u16,
    ) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir.join("run"))?;
        std::fs::create_dir_all(dir.join("log"))?;
        let config = dir.join("pushpin.conf");
        let text = config_text(
            dir,
            http_port,
            publish_port,
            free_port(),
            free_port(),
            free_port(),
            options,
        );
        std::fs::write(&config, text)?;
        let mut cmd = Command::new("pushpin");
        cmd.arg(format!("--config={}", config.display()))
            .arg("--merge-output")
            .args(
                std::env::var("PUSHPIN_LOGLEVEL")
                    .ok()
                    .map(|l| format!("--loglevel={l}")),
            )
            .arg(format!(
                "--route=* {}",
                targets
                    .iter()
                    .map(|port| format!("127.0.0.1:{port}"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        let process = ManagedProcess::spawn("pushpin", cmd, dir)?;
        let mut pushpin = Self {
            process,
            http_port,
            publish_port,
            config,
            targets: targets.to_vec(),
        };
        pushpin.wait_ready(Duration::from_secs(20))?;
        Ok(pushpin)
    }

    /// Stops Pushpin and starts it again on the same ports, as after a
    /// crash or a deploy. Held streams are lost; clients must reconnect.
    pub fn restart(&mut self, dir: &Path, options: &PushpinOptions) -> anyhow::Result<()> {
        self.process.stop(Duration::from_secs(5));
        self.kill_stragglers();
        let fresh = Self::start_on(
            dir,
            &self.targets.clone(),
            options,
            self.http_port,
            self.publish_port,
        )?;
        *self = fresh;
        Ok(())
    }

    /// The base URL clients use.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.http_port)
    }

    /// The GRIP_URL of this instance.
    pub fn grip_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.publish_port)
    }

    /// Its `pushpin.conf`, as written for this instance.
    pub fn config_path(&self) -> &Path {
        &self.config
    }

    /// Kills Pushpin at once, every process of it, as a crash of its host
    /// or container would.
    pub fn kill_hard(&mut self) {
        self.process.kill_hard();
        self.kill_stragglers();
    }

    /// Kills what is left of this instance's processes, and waits until
    /// they are gone (their ports free again). The runner's services do not
    /// all stay in its process group: after a `kill -9` of the group,
    /// `pushpin-handler` lived on, still bound to the publish port (a
    /// restarted instance then shared it, and half the publishes went to no
    /// subscriber), and `condure` kept the HTTP port (a restart failed to
    /// bind it). Each names this instance's configuration or its run
    /// directory on its command line.
    fn kill_stragglers(&self) {
        let config = format!("--config={}", self.config.display());
        let rundir = self
            .config
            .parent()
            .map(|dir| format!("{}/run/", dir.display()));
        let ours = |pid: &str| -> bool {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
                return false;
            };
            cmdline.split(|b| *b == 0).any(|arg| {
                let arg = String::from_utf8_lossy(arg);
                arg == config || rundir.as_deref().is_some_and(|run| arg.contains(run))
            })
        };
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left: Vec<String> = std::fs::read_dir("/proc")
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
                .filter(|pid| ours(pid))
                .collect();
            if left.is_empty() || Instant::now() > deadline {
                return;
            }
            for pid in &left {
                let _ = std::process::Command::new("kill")
                    .args(["-s", "KILL", pid])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .status();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until Pushpin has checked, with the origin, every stream that
    /// `channel` (the GRIP channel, prefix included) held when its first
    /// subscription was one second old.
    ///
    /// Pushpin 1.36 asks for the next link (`Grip-Link: rel=next`) of every
    /// stream on a channel one second after the channel's first
    /// subscription (its handler's `SUBSCRIBED_DELAY`), the same request as
    /// a recovery. Until that request is answered, the stream queues the
    /// channel's publishes rather than sending them; when it fails because
    /// the origin is down, Pushpin tries again after about 1, 2, 4, 8 and 16
    /// seconds and then closes the stream. A test that stops the origin
    /// just after its streams opened waits here first, so that it tests
    /// what streams do once held.
    ///
    /// Read from Pushpin's own log: its `subscribe ... channel=` lines and
    /// the `?recover=1 code=200 ... #channel=` lines of the answered checks.
    pub fn wait_subscription_checked(
        &mut self,
        channel: &str,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        let subscribed = format!("channel={channel}");
        let answered = format!("#{channel}=");
        loop {
            let lines = self.process.log_lines();
            let subscribes: Vec<u64> = lines
                .iter()
                .filter(|l| l.contains("[handler] subscribe ") && l.ends_with(&subscribed))
                .filter_map(|l| log_time_ms(l))
                .collect();
            if let Some(&first) = subscribes.first() {
                let check = first + 1000;
                let held = subscribes.iter().filter(|&&t| t < check).count();
                let checked = lines
                    .iter()
                    .filter(|l| l.contains("?recover=1 code=200") && l.contains(&answered))
                    .filter_map(|l| log_time_ms(l))
                    .filter(|&t| t >= check)
                    .count();
                if checked >= held {
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "pushpin did not check the streams of {channel} within {timeout:?}:\n{}",
                    self.process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The `pushpin` process, to stop, signal or read the log of.
    pub fn process(&mut self) -> &mut ManagedProcess {
        &mut self.process
    }

    /// How long after its ports answer a Pushpin is left to finish
    /// connecting its own processes before it is used.
    const SETTLE: Duration = Duration::from_millis(500);

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // The publish endpoint answering means the handler is up; any
            // answer from the proxy (even 502 while the origin is down)
            // means the proxy and zurl are up.
            let published =
                http_status("POST", self.publish_port, "/publish/", r#"{"items":[]}"#) == Some(200);
            let proxied = http_status("GET", self.http_port, "/healthz", "").is_some();
            if published && proxied {
                // Its ports answering is not all: Pushpin's processes go on
                // connecting their ZeroMQ links to each other for a moment,
                // and a message sent on one before then is lost (an answer
                // to a recovery request, 160 ms after a restart, never
                // reached the handler, and its subscriber missed the update).
                std::thread::sleep(Self::SETTLE);
                return Ok(());
            }
            if !self.process.is_running() {
                anyhow::bail!("pushpin exited:\n{}", self.process.log_tail(40));
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "pushpin not ready after {timeout:?}:\n{}",
                    self.process.log_tail(40)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// The time of a Pushpin log line (`[INFO] 2026-12-07 01:23:58.124 ...`),
/// in milliseconds since 1970 (UTC, as Pushpin logs it).
fn log_time_ms(line: &str) -> Option<u64> {
    let mut words = line.split_whitespace().skip(1);
    let (date, time) = (words.next()?, words.next()?);
    let mut ymd = date.split('-').map(|n| n.parse::<i64>().ok());
    let (y, m, d) = (ymd.next()??, ymd.next()??, ymd.next()??);
    let (hms, millis) = time.split_once('.')?;
    let mut hms = hms.split(':').map(|n| n.parse::<u64>().ok());
    let (h, min, s) = (hms.next()??, hms.next()??, hms.next()??);
    // Days since 1970-01-01 of a proleptic Gregorian date.
    let (y, m) = if m <= 2 { (y - 1, m + 9) } else { (y, m - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * m + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + h) * 60 + min) * 60_000 + s * 1000 + millis.parse::<u64>().ok()?)
}

/// The status of one plain HTTP/1.1 request to `127.0.0.1:port`; `None`
/// when nothing answered. Synchronous and dependency-free so that it can run
/// in constructors and drops.
pub(crate) fn http_status(method: &str, port: u16, path: &str, body: &str) -> Option<u16> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = [0u8; 32];
    let n = stream.read(&mut response).ok()?;
    let text = std::str::from_utf8(&response[..n]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::log_time_ms;

    #[test]
    fn log_times_count_from_1970_across_days() {
        assert_eq!(
            log_time_ms("[INFO] 1970-01-01 00:00:01.005 [handler] x"),
            Some(1005)
        );
        let before = log_time_ms("[INFO] 2026-12-06 23:59:59.900 [handler] x").unwrap();
        let after = log_time_ms("[DEBUG] 2026-12-07 00:00:00.100 [handler] x").unwrap();
        assert_eq!(after - before, 200);
        // 2000-03-01 is day 11,017 (a leap year's February counted).
        assert_eq!(
            log_time_ms("[INFO] 2000-03-01 00:00:00.000 x"),
            Some(11_017 * 86_400_000)
        );
        assert_eq!(log_time_ms("starting..."), None);
    }
}
