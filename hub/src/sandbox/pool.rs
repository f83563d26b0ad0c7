//! The worker threads that run skill calls, off the MQTT loop, so a runaway
//! skill never delays built-ins or other satellites. The queue in front of
//! them is bounded: when it is full a request is answered `busy` at once.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

use wasmi::Engine;

use super::WasmSkill;
use super::exec::{self, Outcome};
use super::host::{CallState, HostEnv, linker};
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

#[derive(Debug, Clone)]
pub struct Pool {
    tx: SyncSender<Job>,
    workers: usize,
}

impl Pool {
    /// Starts `workers` threads behind a queue of `queue` jobs. The threads
    /// enter `runtime` so host functions can hand work to the hub's tasks.
    pub fn start(
        workers: usize,
        queue: usize,
        engine: Engine,
        env: Arc<HostEnv>,
        runtime: tokio::runtime::Handle,
    ) -> std::io::Result<Pool> {
        let (tx, rx) = sync_channel::<Job>(queue);
        let rx = Arc::new(Mutex::new(rx));
        for n in 0..workers {
            let (rx, engine, env, runtime) =
                (rx.clone(), engine.clone(), env.clone(), runtime.clone());
            std::thread::Builder::new()
                .name(format!("hark-skill-{n}"))
                // Skill calls run in wasmi's own stack; the thread needs little.
                .stack_size(512 * 1024)
                .spawn(move || work(&rx, &engine, &env, &runtime))?;
        }
        Ok(Pool { tx, workers })
    }

    /// Queues `job`; gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => Err(job),
        }
    }

    pub fn workers(&self) -> usize {
        self.workers
    }
}

fn work(
    rx: &Mutex<Receiver<Job>>,
    engine: &Engine,
    env: &Arc<HostEnv>,
    runtime: &tokio::runtime::Handle,
) {
    let _runtime = runtime.enter();
    let linker = linker(engine);
    loop {
        let job = {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match rx.recv() {
                Ok(job) => job,
                Err(_) => return,
            }
        };
        if job.reply.is_closed() {
            continue;
        }
        let state = CallState::new(
            job.skill.info.clone(),
            env.clone(),
            &job.satellite,
            &job.request_id,
            job.protocol,
        );
        let outcome = exec::call(
            engine,
            &linker,
            &job.skill.module,
            &job.skill.limits,
            state,
            &job.input,
            &job.cancel,
        );
        tracing::debug!(
            skill = %job.skill.info.name,
            satellite = %job.satellite,
            elapsed_us = outcome.elapsed.as_micros() as u64,
            fuel = outcome.fuel_used,
            "skill call finished"
        );
        let _ = job.reply.send(outcome);
    }
}
