//! The Wyoming listener: bounded connections, each reading events in turn
//! and answering each before reading the next. An `intent` goes to the
//! hub's loop for admission under its satellite's key, like any request,
//! and its answer comes back to the connection that asked.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hark_skill_sdk::{ErrorCode, Reply};
use serde_json::{Value, json};
use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;

use super::PROTOCOL;
use super::config::WyomingConfig;
use super::event::{self, Event, Read};
use super::mapping::{self, Asker};
use crate::dispatch::Dispatcher;
use crate::protocols::{Inbound, Job, Sending, log_reply};
use crate::request::{Failure, Known, Rejected, Request};

/// Connections served at once; one more is told so and closed.
pub const MAX_CONNECTIONS: usize = 32;

/// A connection that sends nothing for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Longest wait to write one answer to a client that does not read.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Shared {
    pub dispatcher: Arc<Dispatcher>,
    pub admit: mpsc::Sender<Inbound>,
    /// `[wyoming]` as last read: its intents, satellite and `allow` apply
    /// to the next event of every connection after a reload (its `listen`
    /// waits for a restart).
    pub settings: watch::Sender<Arc<WyomingConfig>>,
    /// Refused connections audited this minute (a scanner must not fill the log).
    pub refusals: std::sync::Mutex<crate::satellites::gate::Window>,
    pub max_payload: usize,
    pub next_id: AtomicU64,
}

/// Accepts connections until the task is aborted (which closes them all).
pub async fn listen(listener: TcpListener, shared: Arc<Shared>) {
    let permits = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if !shared.settings().allows(peer.ip()) {
                        refuse(&shared, peer);
                        continue;
                    }
                    if let Err(e) = stream.set_nodelay(true) {
                        tracing::debug!(%peer, "cannot set TCP_NODELAY: {e}");
                    }
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let shared = shared.clone();
                            connections.spawn(async move {
                                serve(stream, peer, &shared).await;
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, "Wyoming connection refused: {MAX_CONNECTIONS} already open");
                            connections.spawn(too_many(stream));
                        }
                    }
                }
                Err(e) => {
                    // Out of file descriptors, most likely: wait for some to close.
                    tracing::warn!("Wyoming listener: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = connections.join_next() => {}
        }
    }
}

/// A client `wyoming.allow` does not name: closed unanswered, logged and
/// audited (up to [`crate::satellites::gate::REFUSALS_PER_MIN`] a minute).
fn refuse(shared: &Shared, peer: SocketAddr) {
    tracing::warn!(%peer, "Wyoming connection refused: not in wyoming.allow");
    let (within, earlier) = shared
        .refusals
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .admit(crate::satellites::gate::REFUSALS_PER_MIN);
    if !within {
        return;
    }
    let mut message = format!("refused a Wyoming connection from {peer}: not in wyoming.allow");
    if earlier > 0 {
        message.push_str(&format!(" ({earlier} more refusals in the minute before)"));
    }
    shared.dispatcher.audit(&crate::audit::Record {
        kind: crate::audit::Kind::Refusal,
        decision: Some(crate::audit::Decision::Deny),
        rule: Some("wyoming.allow".into()),
        message: Some(message),
        ..Default::default()
    });
}

async fn too_many(mut stream: TcpStream) {
    let error = Event::new(
        "error",
        json!({"text": format!("the hub already serves {MAX_CONNECTIONS} Wyoming connections; \
                                try again when one closes"),
               "code": ErrorCode::Busy.to_string()}),
    );
    let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&error.encode())).await;
}

/// One connection: events in, one answer each, in order. A reload that
/// takes its address out of `wyoming.allow` closes it at once.
async fn serve(stream: TcpStream, peer: SocketAddr, shared: &Shared) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut reloads = shared.settings.subscribe();
    loop {
        let read = tokio::time::timeout(IDLE_TIMEOUT, event::read(&mut reader, shared.max_payload));
        tokio::pin!(read);
        let read = loop {
            tokio::select! {
                read = &mut read => break read,
                Ok(()) = reloads.changed() => {
                    if !reloads.borrow_and_update().allows(peer.ip()) {
                        refuse(shared, peer);
                        return;
                    }
                }
            }
        };
        let read = match read {
            Err(_) => {
                tracing::debug!(%peer, "Wyoming connection idle; closed");
                return;
            }
            Ok(Err(e)) => {
                tracing::debug!(%peer, "Wyoming connection: {e}");
                return;
            }
            Ok(Ok(read)) => read,
        };
        let settings = shared.settings();
        if !settings.allows(peer.ip()) {
            // Read in the same instant as the reload that shut it out.
            refuse(shared, peer);
            return;
        }
        let asker = Asker {
            fixed: settings.satellite.clone(),
            peer: mapping::peer_satellite(peer),
        };
        let answer = match read {
            Read::Closed => return,
            Read::Bad(failure) => {
                let known = Known::new(&asker.satellite(None), PROTOCOL);
                let reply = shared.dispatcher.refuse(known, failure);
                log_reply("wyoming", &asker.satellite(None), &reply);
                Some(mapping::error(&reply))
            }
            Read::Event(event) => shared.answer(event, &asker, &settings).await,
        };
        let Some(answer) = answer else { continue };
        match tokio::time::timeout(WRITE_TIMEOUT, write.write_all(&answer.encode())).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, "Wyoming connection: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "Wyoming client does not read its answers; closed");
                return;
            }
        }
    }
}

impl Shared {
    /// `[wyoming]` as last read.
    pub fn settings(&self) -> Arc<WyomingConfig> {
        self.settings.borrow().clone()
    }

    /// The answer to one event, `None` for events the hub does not take
    /// (Wyoming peers drop what they do not know, and so does the hub).
    async fn answer(&self, event: Event, asker: &Asker, settings: &WyomingConfig) -> Option<Event> {
        let intents = &settings.intents;
        match event.kind.as_str() {
            "describe" => Some(mapping::info(&self.dispatcher.registry(), intents)),
            "ping" => Some(Event::new(
                "pong",
                json!({"text": event.data.get("text").cloned().unwrap_or(Value::Null)}),
            )),
            "intent" => {
                let id = format!(
                    "wyoming-{}",
                    self.next_id.fetch_add(1, Ordering::Relaxed) + 1
                );
                let size = serde_json::to_vec(&event.data).map_or(0, |b| b.len());
                let decoded = mapping::request(&event.data, intents, asker, &id);
                Some(self.run(decoded, size).await)
            }
            "transcript" | "recognize" => {
                let known = Known::new(&asker.satellite(event.data.get("context")), PROTOCOL);
                let failure = Failure::new(
                    ErrorCode::NotRecognized,
                    format!(
                        "Hark handles recognized intents, not text ({}): put an intent \
                         recognizer in front of it",
                        event.kind
                    ),
                );
                let reply = self.dispatcher.refuse(known, failure);
                log_reply("wyoming", &asker.satellite(None), &reply);
                Some(mapping::answer(&reply))
            }
            other => {
                tracing::debug!(
                    event = other,
                    "Wyoming event the hub does not take; ignored"
                );
                None
            }
        }
    }

    /// Sends the request to the hub's loop for its turn and waits for its
    /// reply: `handled` / `not-handled`, or `error` when it could not be read.
    async fn run(&self, decoded: Result<Request, Box<Rejected>>, size: usize) -> Event {
        let unreadable = decoded.is_err();
        let known = match &decoded {
            Ok(request) => Known::of(request),
            Err(rejected) => rejected.known.clone(),
        };
        let (tx, rx) = oneshot::channel();
        let job = Box::new(IntentJob {
            decoded: Some(decoded),
            known: known.clone(),
            tx,
        });
        let inbound = Inbound {
            key: known.satellite.clone(),
            bytes: size,
            job,
        };
        let reply = match self.admit.send(inbound).await {
            Ok(()) => rx.await.ok(),
            Err(_) => None,
        };
        let reply = reply.unwrap_or_else(|| {
            // The loop is gone: the hub is stopping.
            let failure = Failure::new(
                ErrorCode::ShuttingDown,
                "the hub is shutting down; retry in a moment",
            );
            self.dispatcher.refuse(known, failure)
        });
        if unreadable {
            mapping::error(&reply)
        } else {
            mapping::answer(&reply)
        }
    }
}

/// One `intent` event, decoded on its connection, waiting for its turn.
#[derive(Debug)]
struct IntentJob {
    decoded: Option<Result<Request, Box<Rejected>>>,
    known: Known,
    tx: oneshot::Sender<Reply>,
}

impl Job for IntentJob {
    fn decode(&mut self) -> Result<Request, Box<Rejected>> {
        self.decoded.take().unwrap_or_else(|| {
            Err(Box::new(Rejected {
                known: self.known.clone(),
                failure: Failure::new(ErrorCode::Internal, "the request was decoded twice"),
            }))
        })
    }

    fn known(&mut self) -> Known {
        self.known.clone()
    }

    fn answer(self: Box<Self>, reply: Reply) -> Sending {
        log_reply("wyoming", &self.known.satellite, &reply);
        // The connection waits for it; gone means the client hung up.
        let _ = self.tx.send(reply);
        Box::pin(async {})
    }
}
