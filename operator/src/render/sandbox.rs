//! Rendering in child processes. The operator binary runs itself with [`WORKER_ARG`] as a render
//! worker: a child with its memory capped ([`limits::worker_memory`]) and an empty environment that
//! renders job after job (chart, values and release facts, one JSON line each on stdin) under
//! [`limits`](super::limits) and answers each with one line on stdout. Workers are kept between
//! renders (a fresh process costs more than rendering a small chart) and replaced after
//! [`JOBS_PER_WORKER`] renders or when idle for long. Whatever a chart does to a worker (exhausts
//! its stack or memory, runs past the deadline, when it is killed), the operator goes on, the
//! chart's DIG gets the reason, and the next render gets a new worker. At most
//! [`limits::workers`] charts are loaded and rendered at once ([`Slot`]); more wait their turn, so
//! the pod's memory is bounded: the operator's own plus workers × the cap. The job streams to the
//! child as it is serialized, the chart's files as base64, never copied whole. Without [`enable`]
//! (unit tests, `crdgen`) charts render in the calling thread.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
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
/// Worker processes started so far.
static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
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

/// Worker processes started since this process began.
pub fn workers_started() -> usize {
    STARTED.load(std::sync::atomic::Ordering::Relaxed)
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
    let job = JobRef { chart, values, ctx };
    let start = || Worker::start(exe).map_err(|e| limit(format!("cannot start the renderer: {e}")));
    let mut worker = match idle_worker() {
        Some(worker) => worker,
        None => start()?,
    };
    let mut answered = worker.render(&job);
    // A kept worker that died on this job may have been dying already (killed while idle): the
    // chart gets a fresh worker before it is blamed.
    if matches!(answered, Err(Lost::Died)) && worker.jobs > 0 {
        worker.stop();
        worker = start()?;
        answered = worker.render(&job);
    }
    match answered {
        Ok(line) => match serde_json::from_slice::<Result<Vec<Value>, RenderError>>(&line) {
            Ok(answer) => {
                park(worker);
                answer
            }
            Err(_) => {
                worker.stop();
                Err(limit("the renderer's answer was unreadable".into()))
            }
        },
        Err(lost) => Err(limit(worker.retire(lost))),
    }
}

/// Idle workers, at most [`limits::workers`].
static IDLE: Mutex<Vec<Worker>> = Mutex::new(Vec::new());
/// Renders one worker serves before it is replaced.
const JOBS_PER_WORKER: u32 = 256;
/// A worker idle this long is stopped when the next render comes.
const IDLE_FOR: Duration = Duration::from_secs(120);

/// A render worker: a child process that renders job after job, one per line of its stdin,
/// answering each with one line on stdout.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    jobs: u32,
    idle_since: Instant,
}

/// How a worker was lost in a render.
enum Lost {
    /// It ran past the deadline and was killed.
    Deadline,
    /// Its answer was over the limit.
    CutShort,
    /// It died (a crash: stack or memory exhausted).
    Died,
}

/// An idle worker, stopping those idle too long or worn out.
fn idle_worker() -> Option<Worker> {
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    while let Some(mut worker) = idle.pop() {
        let alive = matches!(worker.child.try_wait(), Ok(None));
        if alive && worker.idle_since.elapsed() < IDLE_FOR {
            return Some(worker);
        }
        worker.stop();
    }
    None
}

/// Back to the idle workers (or stopped, after [`JOBS_PER_WORKER`] renders or when
/// [`limits::workers`] wait already).
fn park(mut worker: Worker) {
    worker.jobs += 1;
    let mut idle = IDLE.lock().unwrap_or_else(|e| e.into_inner());
    if worker.jobs >= JOBS_PER_WORKER || idle.len() >= limits::workers() {
        drop(idle);
        return worker.stop();
    }
    worker.idle_since = Instant::now();
    idle.push(worker);
}

impl Worker {
    fn start(exe: &PathBuf) -> std::io::Result<Worker> {
        let memory_mib = limits::worker_memory() / (1024 * 1024);
        let mut child = Command::new(exe)
            .arg(WORKER_ARG)
            .env_clear()
            .env(MEMORY_VAR, memory_mib.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let (stdin, stdout) = (child.stdin.take().expect("piped"), child.stdout.take().expect("piped"));
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout), jobs: 0, idle_since: Instant::now() })
    }

    /// Sends `job` and reads the answer line. The job is written as it is serialized (the
    /// operator never holds a copy of it); the worker is killed at the deadline.
    fn render(&mut self, job: &JobRef) -> Result<Vec<u8>, Lost> {
        let (stdin, stdout, pid) = (&mut self.stdin, &mut self.stdout, self.child.id());
        std::thread::scope(|s| {
            s.spawn(move || {
                let mut out = std::io::BufWriter::with_capacity(64 * 1024, stdin);
                let _ = serde_json::to_writer(&mut out, job).map(|_| out.write_all(b"\n").and_then(|_| out.flush()));
            });
            let (answered, answer) = std::sync::mpsc::channel::<()>();
            let watchdog = s.spawn(move || {
                let wait = answer.recv_timeout(limits::DEADLINE + GRACE);
                let late = matches!(wait, Err(std::sync::mpsc::RecvTimeoutError::Timeout));
                // SAFETY: kill only sends a signal to our own child, not yet reaped.
                late.then(|| unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) });
                late
            });
            // Manifests are at most the output limit, as JSON a little more.
            let mut line = Vec::new();
            let read = stdout.take(2 * limits::OUTPUT_BYTES as u64).read_until(b'\n', &mut line);
            drop(answered);
            match (watchdog.join().unwrap_or(false), read) {
                (true, _) => Err(Lost::Deadline),
                (false, Ok(_)) if line.ends_with(b"\n") => Ok(line),
                (false, Ok(n)) if n as u64 == 2 * limits::OUTPUT_BYTES as u64 => Err(Lost::CutShort),
                _ => Err(Lost::Died),
            }
        })
    }

    /// Ends a worker lost in a render and says why, in the words of the limit it hit.
    fn retire(mut self, lost: Lost) -> String {
        self.end();
        match lost {
            Lost::Deadline => format!("rendering took longer than {} s", limits::DEADLINE.as_secs()),
            Lost::CutShort => "the renderer's answer was cut short (output over the limit)".into(),
            Lost::Died => {
                let mut text = String::new();
                if let Some(stderr) = self.child.stderr.take() {
                    let _ = stderr.take(64 * 1024).read_to_string(&mut text);
                }
                crash_reason(&text)
            }
        }
    }

    /// Ends a worker that is not to be used again.
    fn stop(mut self) {
        self.end();
    }

    /// Kills the worker (if it still runs) and reaps it.
    fn end(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// The child's side: caps its own memory, then renders job after job, one per line of stdin,
/// answering each on one line of stdout, until stdin closes.
pub fn worker_main() -> ! {
    cap_memory();
    let (mut input, mut out) = (std::io::stdin().lock(), std::io::stdout().lock());
    loop {
        let mut line = Vec::new();
        match input.read_until(b'\n', &mut line) {
            Ok(0) => std::process::exit(0),
            Ok(_) => {}
            Err(_) => std::process::exit(1),
        }
        cap_cpu();
        let answer = match serde_json::from_slice::<Job>(&line) {
            Ok(job) => engine::render_templates(&job.chart, &job.values, &job.ctx),
            Err(e) => Err(RenderError::Limit { chart: "?".into(), limit: format!("unreadable job: {e}") }),
        };
        drop(line);
        let ok =
            serde_json::to_writer(&mut out, &answer).is_ok() && out.write_all(b"\n").is_ok() && out.flush().is_ok();
        if !ok {
            std::process::exit(1);
        }
        drop(answer);
        // What a large chart needed goes back to the system, not kept by an idle worker.
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim only releases free memory of this process's heap.
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

fn cap_memory() {
    let bytes = limits::worker_memory();
    let cap = libc::rlimit { rlim_cur: bytes, rlim_max: bytes };
    // SAFETY: setrlimit only reads the struct passed by reference.
    unsafe { libc::setrlimit(libc::RLIMIT_DATA, &cap) };
    // Blocks of 1 MiB and more are mapped for themselves and unmapped when freed, so that what
    // one job left fragmented in the heap does not count against the next job's cap.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only sets an allocator parameter.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1024 * 1024);
    }
}

/// CPU seconds one job may use beyond what the worker used before it (past the deadline, in case
/// the renderer's own checks are not reached).
const JOB_CPU_SECONDS: u64 = 15;

/// Caps the CPU time of the next job: the worker is killed (`SIGXCPU`) if it goes over.
fn cap_cpu() {
    // SAFETY: getrusage, getrlimit and setrlimit only write or read the structs passed.
    unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        let used = (usage.ru_utime.tv_sec + usage.ru_stime.tv_sec + 1) as u64;
        let mut cpu: libc::rlimit = std::mem::zeroed();
        libc::getrlimit(libc::RLIMIT_CPU, &mut cpu);
        cpu.rlim_cur = (used + JOB_CPU_SECONDS).min(cpu.rlim_max);
        libc::setrlimit(libc::RLIMIT_CPU, &cpu);
    }
}
