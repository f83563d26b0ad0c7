//! The worker threads that run skill calls, off the MQTT loop, so a runaway
//! skill never delays built-ins or other satellites.
//!
//! The queue in front of them is bounded and fair ([`Scheduler`]): one queue
//! per satellite, served in turn; a satellite runs at most `workers - 1`
//! calls at once, so one worker is always left for everyone else, and holds
//! at most its share of the queue. A satellite keeping ten slow calls in
//! flight gets `busy` for its own extra calls while another satellite's cheap
//! call runs at once. When the queue (or the satellite's share) is full the
//! request is answered `busy`.

use std::sync::{Arc, Condvar, Mutex};

use wasmi::Engine;

pub use crate::fair::{Refusal, Scheduler, Shares};

use super::WasmSkill;
use super::exec::{self, Outcome};
use super::host::{CallState, linker};
use crate::effects::{Effects, Env};
use crate::events::Protocol;
use crate::inflight::CancelFlag;

/// One call waiting for a worker.
#[derive(Debug)]
pub struct Job {
    pub skill: Arc<WasmSkill>,
    pub input: Vec<u8>,
    pub satellite: String,
    pub request_id: String,
    pub protocol: Protocol,
    pub cancel: Arc<CancelFlag>,
    pub reply: tokio::sync::oneshot::Sender<Outcome>,
}

#[derive(Debug)]
struct Shared {
    scheduler: Mutex<Scheduler<Job>>,
    ready: Condvar,
    /// Set when the last [`Pool`] handle is dropped: the workers finish what
    /// is queued and end, letting go of the hub's services.
    closed: std::sync::atomic::AtomicBool,
}

/// Closes the pool when the last handle goes.
#[derive(Debug)]
struct Closer(Arc<Shared>);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0
            .closed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        // Take the lock so no worker is between its check and its wait.
        drop(self.0.lock());
        self.0.ready.notify_all();
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler<Job>> {
        // The scheduler's bookkeeping is done in single steps; a panic
        // elsewhere cannot leave it half-changed.
        self.scheduler.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug, Clone)]
pub struct Pool {
    shared: Arc<Shared>,
    _closer: Arc<Closer>,
    workers: usize,
    shares: Shares,
}

impl Pool {
    /// Starts `workers` threads behind a fair queue of `queue` jobs. The
    /// threads enter `runtime` so host functions can hand work to the hub's
    /// tasks. They end when the last handle is dropped.
    pub fn start(
        workers: usize,
        queue: usize,
        engine: Engine,
        env: Arc<Env>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Pool> {
        let shares = Shares::for_workers(workers, queue);
        let shared = Arc::new(Shared {
            scheduler: Mutex::new(Scheduler::new(shares)),
            ready: Condvar::new(),
            closed: std::sync::atomic::AtomicBool::new(false),
        });
        for n in 0..workers {
            let (shared, engine, env, runtime) =
                (shared.clone(), engine.clone(), env.clone(), runtime.clone());
            std::thread::Builder::new()
                .name(format!("hark-skill-{n}"))
                // Skill calls run in wasmi's own stack; the thread needs little.
                .stack_size(512 * 1024)
                .spawn(move || work(&shared, &engine, &env, &runtime))?;
        }
        Ok(Pool {
            _closer: Arc::new(Closer(shared.clone())),
            shared,
            workers,
            shares,
        })
    }

    /// Queues `job`; gives it back with the reason when there is no room.
    pub fn submit(&self, job: Job) -> Result<(), (Job, Refusal)> {
        let satellite = job.satellite.clone();
        self.shared.lock().push(&satellite, job)?;
        // Every worker may be waiting on another satellite's share; wake
        // them all to look (there are two or three).
        self.shared.ready.notify_all();
        Ok(())
    }

    pub fn workers(&self) -> usize {
        self.workers
    }

    pub fn shares(&self) -> Shares {
        self.shares
    }
}

fn work(shared: &Shared, engine: &Engine, env: &Arc<Env>, runtime: &tokio::runtime::Handle) {
    let _runtime = runtime.enter();
    let linker = linker(engine);
    loop {
        let (satellite, job) = {
            let mut scheduler = shared.lock();
            loop {
                if let Some(next) = scheduler.start_next() {
                    break next;
                }
                if shared.closed.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                scheduler = shared
                    .ready
                    .wait(scheduler)
                    .unwrap_or_else(|e| e.into_inner());
            }
        };
        if !job.reply.is_closed() {
            run(job, engine, &linker, env);
        }
        shared.lock().done(&satellite);
        // This satellite may have more waiting that only now fits its share.
        shared.ready.notify_all();
    }
}

fn run(job: Job, engine: &Engine, linker: &wasmi::Linker<CallState>, env: &Arc<Env>) {
    let state = CallState::new(Effects::for_call(
        env.clone(),
        job.skill.info.clone(),
        job.skill.kv.clone(),
        &job.satellite,
        &job.request_id,
        job.protocol,
    ));
    let started = std::time::Instant::now();
    let outcome = crate::panics::caught_sync(|| {
        exec::call(
            engine,
            linker,
            &job.skill.module,
            &job.skill.limits,
            state,
            &job.input,
            &job.cancel,
        )
    })
    .unwrap_or_else(|panic| {
        tracing::error!(skill = %job.skill.info.name, "a skill call hit a bug in the hub: {panic}");
        Outcome {
            result: Err(exec::CallError::Trap(format!(
                "the hub hit a bug while running it ({panic}); it was logged"
            ))),
            elapsed: started.elapsed(),
            fuel_used: 0,
            memory_bytes: 0,
        }
    });
    tracing::debug!(
        skill = %job.skill.info.name,
        satellite = %job.satellite,
        elapsed_us = outcome.elapsed.as_micros() as u64,
        fuel = outcome.fuel_used,
        "skill call finished"
    );
    let _ = job.reply.send(outcome);
}
