//! Rendering in a child process. The operator binary runs itself with [`WORKER_ARG`] for each
//! chart: the child gets the chart, values and release facts on stdin, renders under
//! [`limits`](super::limits) with its memory capped ([`limits::worker_memory`]) and an empty
//! environment, and answers on stdout. Whatever a chart does to the child (exhausts its stack or
//! memory, runs past the deadline), the operator goes on and the chart's DIG gets the reason.
//! At most [`limits::workers`] charts are loaded and rendered at once ([`Slot`]); more wait
//! their turn, so the pod's memory is bounded: the operator's own plus workers × the cap. The job
//! streams to the child as it is serialized, the chart's files as base64, never copied whole.
//! Without [`enable`] (unit tests, `crdgen`) charts render in the calling thread.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::engine::{self, RenderContext, RenderError};
use super::{Chart, limits};

/// The argument that makes the operator binary a render worker.
pub const WORKER_ARG: &str = "render-worker";
/// The child is killed this long after the renderer's own deadline.
const GRACE: Duration = Duration::from_secs(3);

static WORKER: OnceLock<PathBuf> = OnceLock::new();
/// Workers running now, and the wait for a free one.
static RUNNING: (Mutex<usize>, Condvar) = (Mutex::new(0), Condvar::new());
/// Passes the memory cap to the worker (whose environment is otherwise empty).
const MEMORY_VAR: &str = "EMCO_RENDER_WORKER_MEMORY_MIB";

/// A render slot: at most [`limits::workers`] charts are loaded and rendered at once. Callers hold
/// one from loading a chart until its manifests are back (see `orchestrator::plan`).
pub struct Slot;

impl Slot {
    /// Waits for a free slot.
    pub fn take() -> Slot {
        let (count, free) = &RUNNING;
        let mut running = count.lock().unwrap_or_else(|e| e.into_inner());
        while *running >= limits::workers() {
            running = free.wait(running).unwrap_or_else(|e| e.into_inner());
        }
        *running += 1;
        Slot
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let (count, free) = &RUNNING;
        *count.lock().unwrap_or_else(|e| e.into_inner()) -= 1;
        free.notify_one();
    }
}

/// Renders every chart from now on in a child process running `exe` with [`WORKER_ARG`].
pub fn enable(exe: PathBuf) {
    let _ = WORKER.set(exe);
}

#[derive(serde::Deserialize)]
struct Job {
    chart: Chart,
    values: Value,
    ctx: RenderContext,
}

/// A [`Job`] as the operator sends it, without copying the chart.
#[derive(serde::Serialize)]
struct JobRef<'a> {
    chart: &'a Chart,
    values: &'a Value,
    ctx: &'a RenderContext,
}

/// Renders in a child process when enabled, else here.
pub fn render(chart: &Chart, values: &Value, ctx: &RenderContext) -> Result<Vec<Value>, RenderError> {
    match WORKER.get() {
        Some(exe) => in_child(exe, chart, values, ctx),
        None => engine::render_templates(chart, values, ctx),
    }
}

fn in_child(exe: &PathBuf, chart: &Chart, values: &Value, ctx: &RenderContext) -> Result<Vec<Value>, RenderError> {
    let limit = |limit: String| RenderError::Limit { chart: chart.name.clone(), limit };
    let memory_mib = limits::worker_memory() / (1024 * 1024);
    let mut child = Command::new(exe)
        .arg(WORKER_ARG)
        .env_clear()
        .env(MEMORY_VAR, memory_mib.to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| limit(format!("cannot start the renderer: {e}")))?;
    let (stdin, mut stdout, mut stderr) =
        (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"), child.stderr.take().expect("piped"));
    let (status, answer, complaints) = std::thread::scope(|s| {
        // The job is written as it is serialized: the operator never holds a copy of it.
        s.spawn(move || {
            let mut job = std::io::BufWriter::with_capacity(64 * 1024, stdin);
            let _ = serde_json::to_writer(&mut job, &JobRef { chart, values, ctx }).map(|_| job.flush());
        });
        let reader = s.spawn(move || {
            let mut answer = Vec::new();
            // Manifests are at most the output limit, as JSON a little more.
            let _ = (&mut stdout).take(2 * limits::OUTPUT_BYTES as u64).read_to_end(&mut answer);
            answer
        });
        let complaints = s.spawn(move || {
            let mut text = String::new();
            let _ = (&mut stderr).take(64 * 1024).read_to_string(&mut text);
            text
        });
        let status = wait(&mut child);
        (status, reader.join().unwrap_or_default(), complaints.join().unwrap_or_default())
    });
    match status {
        Err(e) => Err(limit(format!("the renderer was lost: {e}"))),
        Ok(None) => Err(limit(format!("rendering took longer than {} s", limits::DEADLINE.as_secs()))),
        Ok(Some(s)) if s.success() => serde_json::from_slice::<Result<Vec<Value>, RenderError>>(&answer)
            .unwrap_or_else(|_| Err(limit("the renderer's answer was cut short (output over the limit)".into()))),
        Ok(Some(_)) => Err(limit(crash_reason(&complaints))),
    }
}

/// The child's exit, or `None` when it ran past the deadline (then it is killed).
fn wait(child: &mut std::process::Child) -> std::io::Result<Option<std::process::ExitStatus>> {
    let deadline = Instant::now() + limits::DEADLINE + GRACE;
    loop {
        match child.try_wait()? {
            Some(status) => return Ok(Some(status)),
            None if Instant::now() > deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            None => std::thread::sleep(Duration::from_millis(2)),
        }
    }
}

/// Why the child died, in the words of the limit it hit.
fn crash_reason(stderr: &str) -> String {
    if stderr.contains("overflowed its stack") {
        "recursion too deep: the template exhausted the renderer's stack".into()
    } else if stderr.contains("memory allocation") || stderr.contains("capacity overflow") {
        format!("rendering needed more than {} MiB of memory", limits::worker_memory() / (1024 * 1024))
    } else {
        "the renderer crashed".into()
    }
}

/// The child's side: caps its own memory, renders the job on stdin, answers on stdout.
pub fn worker_main() -> ! {
    cap_memory();
    let mut input = Vec::new();
    let answer = match std::io::stdin().read_to_end(&mut input) {
        Ok(_) => match serde_json::from_slice::<Job>(&input) {
            Ok(job) => engine::render_templates(&job.chart, &job.values, &job.ctx),
            Err(e) => Err(RenderError::Limit { chart: "?".into(), limit: format!("unreadable job: {e}") }),
        },
        Err(e) => Err(RenderError::Limit { chart: "?".into(), limit: format!("unreadable job: {e}") }),
    };
    let mut out = std::io::stdout().lock();
    let ok = serde_json::to_writer(&mut out, &answer).is_ok() && out.flush().is_ok();
    std::process::exit(if ok { 0 } else { 1 })
}

fn cap_memory() {
    let bytes = limits::worker_memory();
    let cap = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit only reads the struct passed by reference.
    unsafe {
        libc::setrlimit(libc::RLIMIT_DATA, &cap);
        let cpu = libc::rlimit { rlim_cur: 15, rlim_max: 15 };
        libc::setrlimit(libc::RLIMIT_CPU, &cpu);
    }
}
