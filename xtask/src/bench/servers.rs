//! The server processes a benchmark runs against: a 3-member d-engine-kv cluster and,
//! optionally, a 3-member etcd cluster, both on loopback ports the OS picked.
//!
//! Every process is started by this module and remembered by its `Child` handle; `stop`
//! (also run on drop, so a failing or panicking benchmark leaves nothing behind) sends
//! SIGTERM to each by pid, waits a bounded time, then SIGKILLs what is left. The pids are
//! also kept in a process-wide list, so that a Ctrl-C or SIGTERM of xtask itself stops
//! them too ([`stop_on_signal`]). Nothing else is ever signalled.

use std::fmt::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a stopped server may take to exit after SIGTERM before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// How many members each cluster has.
pub const MEMBERS: usize = 3;

/// The pids of the processes this benchmark started and has not yet reaped.
static RUNNING: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Remembers `pid` as started by this benchmark, until [`forget`].
pub fn remember(pid: u32) {
    RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).push(pid);
}

/// Forgets `pid` once it has been reaped.
pub fn forget(pid: u32) {
    RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).retain(|running| *running != pid);
}

/// On SIGINT or SIGTERM of xtask: SIGTERM to every process this benchmark started, SIGKILL
/// to those still alive after `STOP_TIMEOUT`, then exit with status 130. Runs on a thread
/// of its own; call once, early.
pub fn stop_on_signal() -> Result<(), String> {
    crate::signals::on_interrupt(|| {
        eprintln!("\ninterrupted: stopping the servers ...");
        let pids = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for pid in &pids {
            signal_pid("TERM", *pid);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline && pids.iter().any(|pid| Path::new(&format!("/proc/{pid}")).exists()) {
            std::thread::sleep(Duration::from_millis(50));
        }
        // Only those not yet reaped (the main thread may be stopping them at the same time).
        let still_running = RUNNING.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        for pid in pids.iter().filter(|pid| still_running.contains(pid)) {
            signal_pid("KILL", *pid);
        }
        std::process::exit(130);
    })
}

/// `kill -<signal> <pid>`, quietly.
pub(crate) fn signal_pid(signal: &str, pid: u32) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Which server a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum System {
    /// d-engine-kv (default storage: state on redb, log in d-engine-wal; every write synced).
    DEngine,
    /// etcd (its defaults, every write fsynced).
    Etcd,
    /// d-engine-kv with metrics served and every request traced to an OTLP sink.
    DEngineObserved,
    /// Another build of d-engine-kv (`--baseline-server`), the same settings as `DEngine`.
    DEngineBaseline,
}

impl System {
    /// The name in tables and reports.
    pub fn name(self) -> &'static str {
        match self {
            System::DEngine => "d-engine",
            System::Etcd => "etcd",
            System::DEngineObserved => "d-engine+obs",
            System::DEngineBaseline => "baseline",
        }
    }
}

/// One server process.
struct Member {
    name: String,
    dir: PathBuf,
    child: Child,
}

/// A running 3-member cluster of one system.
pub struct Cluster {
    /// What runs.
    pub system: System,
    /// The client (etcd API) endpoints, host:port, in member order.
    pub endpoints: Vec<String>,
    members: Vec<Member>,
}

/// `n` loopback ports that were free a moment ago: bound together, read, released.
pub fn free_ports(n: usize) -> Result<Vec<u16>, String> {
    let listeners = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("cannot find a free loopback port: {error}"))?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().map(|address| address.port()))
        .collect::<Result<_, _>>()
        .map_err(|error| format!("cannot read a bound port: {error}"))
}

/// Deletes `dir` (a previous run's data) and creates it empty.
fn fresh_dir(dir: &Path) -> Result<(), String> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|error| format!("cannot delete {}: {error}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|error| format!("cannot create {}: {error}", dir.display()))
}

/// The settings file of d-engine-kv member `id` (1-based) of a cluster whose peer and
/// client ports are `peer_ports` and `client_ports`; defaults everywhere else (redb,
/// every write synced).
pub fn d_engine_settings(id: usize, data_dir: &Path, peer_ports: &[u16], client_ports: &[u16]) -> String {
    let mut text = String::from("# Written by `cargo xtask bench`.\n");
    let data_dir = data_dir.to_string_lossy().replace('\\', "\\\\").replace('"', "\\\"");
    let _ = writeln!(text, "[node]\nid = {id}\ndata_dir = \"{data_dir}\"\nstorage = \"redb\"\n");
    let _ = writeln!(text, "[cluster]\nid = \"bench\"\nmembers = [");
    for (index, (peer, client)) in peer_ports.iter().zip(client_ports).enumerate() {
        let _ = writeln!(
            text,
            "    {{ id = {}, peer_addr = \"127.0.0.1:{peer}\", client_addr = \"127.0.0.1:{client}\" }},",
            index + 1
        );
    }
    text.push_str("]\n");
    text
}

/// The OTLP sink an observed cluster traces to.
pub struct Sink {
    /// The `d-engine-otlp-sink` binary.
    pub binary: PathBuf,
    /// The fraction of requests the nodes trace.
    pub sample_ratio: f64,
}

/// The settings that switch a node's observability on: a `/metrics` endpoint on
/// `metrics_port`, and requests traced (at `sample_ratio`) to the OTLP collector at `otlp_port`.
pub fn observed_settings(id: usize, metrics_port: u16, otlp_port: u16, sample_ratio: f64) -> String {
    format!(
        "\n[metrics]\nlisten_addr = \"127.0.0.1:{metrics_port}\"\n\n[tracing]\n\
         otlp_endpoint = \"http://127.0.0.1:{otlp_port}\"\nservice_name = \"bench-node-{id}\"\n\
         sample_ratio = {sample_ratio:?}\n"
    )
}

impl Cluster {
    /// Starts d-engine-kv `binary` as 3 processes with data under `root/nodeN` (deleted
    /// first), named `system` in the tables. With `sink` (the `d-engine-otlp-sink` binary),
    /// every node also serves metrics and traces every request to that sink, which runs as
    /// a fourth member.
    pub fn start_d_engine(system: System, binary: &Path, root: &Path, sink: Option<&Sink>) -> Result<Cluster, String> {
        let ports = free_ports(4 * MEMBERS + 1)?;
        let (peer_ports, rest) = ports.split_at(MEMBERS);
        let (client_ports, rest) = rest.split_at(MEMBERS);
        let (metrics_ports, otlp_port) = (&rest[..MEMBERS], rest[2 * MEMBERS]);
        let mut cluster = Cluster {
            system,
            endpoints: client_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect(),
            members: Vec::new(),
        };
        if let Some(sink) = sink {
            let dir = root.join("otlp-sink");
            fresh_dir(&dir)?;
            let mut command = Command::new(&sink.binary);
            command.arg("--listen").arg(format!("127.0.0.1:{otlp_port}"));
            cluster.spawn("otlp sink".into(), dir, command)?;
        }
        for id in 1..=MEMBERS {
            let dir = root.join(format!("node{id}"));
            fresh_dir(&dir)?;
            let settings = dir.join("settings.toml");
            let mut text = d_engine_settings(id, &dir.join("data"), peer_ports, client_ports);
            if let Some(sink) = sink {
                text.push_str(&observed_settings(id, metrics_ports[id - 1], otlp_port, sink.sample_ratio));
            }
            std::fs::write(&settings, text).map_err(|error| format!("cannot write {}: {error}", settings.display()))?;
            let mut command = Command::new(binary);
            command.arg("--config").arg(&settings);
            cluster.spawn(format!("{} node {id}", cluster.system.name()), dir, command)?;
        }
        Ok(cluster)
    }

    /// Starts `etcd` (from PATH) as 3 members with data under `root/nodeN` (deleted first),
    /// etcd's default durability.
    pub fn start_etcd(root: &Path) -> Result<Cluster, String> {
        let ports = free_ports(2 * MEMBERS)?;
        let (peer_ports, client_ports) = ports.split_at(MEMBERS);
        let initial_cluster: Vec<String> =
            peer_ports.iter().enumerate().map(|(i, port)| format!("bench{}=http://127.0.0.1:{port}", i + 1)).collect();
        let mut cluster = Cluster {
            system: System::Etcd,
            endpoints: client_ports.iter().map(|port| format!("127.0.0.1:{port}")).collect(),
            members: Vec::new(),
        };
        for index in 0..MEMBERS {
            let dir = root.join(format!("node{}", index + 1));
            fresh_dir(&dir)?;
            let peer_url = format!("http://127.0.0.1:{}", peer_ports[index]);
            let client_url = format!("http://127.0.0.1:{}", client_ports[index]);
            let mut command = Command::new("etcd");
            command
                .arg(format!("--name=bench{}", index + 1))
                .arg(format!("--data-dir={}", dir.join("data").display()))
                .arg(format!("--listen-client-urls={client_url}"))
                .arg(format!("--advertise-client-urls={client_url}"))
                .arg(format!("--listen-peer-urls={peer_url}"))
                .arg(format!("--initial-advertise-peer-urls={peer_url}"))
                .arg(format!("--initial-cluster={}", initial_cluster.join(",")))
                .arg("--initial-cluster-state=new")
                .arg("--initial-cluster-token=d-engine-bench");
            cluster.spawn(format!("etcd member {}", index + 1), dir, command)?;
        }
        Ok(cluster)
    }

    fn spawn(&mut self, name: String, dir: PathBuf, mut command: Command) -> Result<(), String> {
        use std::os::unix::process::CommandExt;
        let log = |file: &str| {
            let path = dir.join(file);
            std::fs::File::create(&path).map_err(|error| format!("cannot create {}: {error}", path.display()))
        };
        let child = command
            .stdin(Stdio::null())
            .stdout(log("stdout.log")?)
            .stderr(log("stderr.log")?)
            // Its own process group: a Ctrl-C in the terminal reaches only xtask, whose
            // drop then stops the servers one by one.
            .process_group(0)
            .spawn()
            .map_err(|error| format!("cannot start {name}: {error}"))?;
        remember(child.id());
        self.members.push(Member { name, dir, child });
        Ok(())
    }

    /// Fails, with the end of its log, if a member has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        for member in &mut self.members {
            match member.child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let log = member.dir.join("stderr.log");
                    return Err(format!(
                        "{} exited on its own ({status}); the end of {}:\n{}",
                        member.name,
                        log.display(),
                        log_tail(&log, 20)
                    ));
                }
                Err(error) => return Err(format!("cannot watch {}: {error}", member.name)),
            }
        }
        Ok(())
    }

    /// CPU time (user + system, seconds) the server processes have used so far: every member
    /// but the OTLP sink, which stands in for a collector on another machine. `None` when
    /// `/proc` cannot be read.
    pub fn server_cpu_seconds(&self) -> Option<f64> {
        let ticks_per_second = clock_ticks_per_second()?;
        let mut ticks = 0;
        for member in self.members.iter().filter(|member| member.name != "otlp sink") {
            ticks += cpu_ticks(member.child.id())?;
        }
        Some(ticks as f64 / ticks_per_second as f64)
    }

    /// How many spans the OTLP sink member has received so far (its last `spans N` line).
    pub fn spans_exported(&self) -> Option<u64> {
        let sink = self.members.iter().find(|member| member.name == "otlp sink")?;
        let out = std::fs::read_to_string(sink.dir.join("stdout.log")).ok()?;
        out.lines().rev().find_map(|line| line.strip_prefix("spans ")?.parse().ok())
    }

    /// Each member's name and peak resident memory (VmHWM) in KiB, while it runs.
    pub fn peak_rss_kib(&self) -> Vec<(String, Option<u64>)> {
        self.members.iter().map(|member| (member.name.clone(), vm_hwm_kib(member.child.id()))).collect()
    }

    /// SIGTERM to every member still running, then SIGKILL to any still running after
    /// `STOP_TIMEOUT`; waits for (reaps) them all.
    pub fn stop(&mut self) {
        for member in &mut self.members {
            if matches!(member.child.try_wait(), Ok(None)) {
                signal_pid("TERM", member.child.id());
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        for member in &mut self.members {
            loop {
                match member.child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                    _ => {
                        eprintln!("{} did not stop within {STOP_TIMEOUT:?}; killing it", member.name);
                        let _ = member.child.kill();
                        let _ = member.child.wait();
                        break;
                    }
                }
            }
            forget(member.child.id());
        }
        self.members.clear();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// utime + stime of process `pid`, in clock ticks (`/proc/<pid>/stat` fields 14 and 15).
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its closing parenthesis do not.
    let after_name = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // `after_name` starts at field 3 (state): utime is field 14, stime field 15.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// The kernel's clock ticks per second (`getconf CLK_TCK`), read once.
fn clock_ticks_per_second() -> Option<u64> {
    static TICKS: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        let output = Command::new("getconf").arg("CLK_TCK").output().ok()?;
        String::from_utf8_lossy(&output.stdout).trim().parse().ok()
    })
}

/// VmHWM (peak resident set size) of process `pid`, in KiB.
fn vm_hwm_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    line.trim_start_matches("VmHWM:").trim().trim_end_matches("kB").trim().parse().ok()
}

/// The last `lines` lines of the file at `path`.
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(error) => format!("(cannot read it: {error})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_some_cpu_and_the_clock_ticks_are_known() {
        let busy: u64 = (0..20_000_000u64).fold(0, |sum, i| sum.wrapping_add(i * i));
        assert!(busy > 0);
        assert!(clock_ticks_per_second().is_some_and(|ticks| ticks > 0), "getconf CLK_TCK answers");
        assert!(cpu_ticks(std::process::id()).is_some(), "this process's /proc/<pid>/stat is read");
    }

    #[test]
    fn the_settings_name_every_member_with_its_client_address() {
        let text = d_engine_settings(2, Path::new("/tmp/b \"x\"/data"), &[1, 2, 3], &[4, 5, 6]);
        assert!(text.contains("id = 2\n"), "{text}");
        assert!(text.contains(r#"data_dir = "/tmp/b \"x\"/data""#), "{text}");
        assert!(text.contains(r#"{ id = 3, peer_addr = "127.0.0.1:3", client_addr = "127.0.0.1:6" }"#), "{text}");
        let settings = d_engine::Settings::from_toml(&text).expect("valid node settings");
        assert_eq!(settings.node.storage, d_engine::StorageKind::Redb);
        assert_eq!(settings.this_member().client_addr.as_deref(), Some("127.0.0.1:5"));
    }

    #[test]
    fn peak_rss_of_this_process_is_known() {
        assert!(vm_hwm_kib(std::process::id()).is_some_and(|kib| kib > 0));
    }
}
