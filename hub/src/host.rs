//! The hub's side of the built-in skills' [`Host`] trait: timers, playback and
//! in-flight calls, acting for the satellite (and protocol) of one request.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Duration;

use hark_skills_builtin::{Host, HostError, PlaybackView, Stopped, Target, TimerView};

use crate::events::Protocol;
use crate::inflight::InFlight;
use crate::playback::PlaybackService;
use crate::timers::{Ticket, TimerService, now_ms};

/// The long-lived services skills act through.
#[derive(Debug, Clone)]
pub struct Services {
    pub timers: Arc<TimerService>,
    pub playback: Arc<PlaybackService>,
    pub inflight: Arc<InFlight>,
}

/// [`Services`] seen from one request.
#[derive(Debug)]
pub struct RequestHost<'a> {
    services: &'a Services,
    protocol: Protocol,
    /// The newest timer change this request made: its reply waits until
    /// that is on disk ([`RequestHost::ticket`]).
    ticket: Cell<Option<Ticket>>,
}

impl<'a> RequestHost<'a> {
    pub fn new(services: &'a Services, protocol: Protocol) -> RequestHost<'a> {
        RequestHost {
            services,
            protocol,
            ticket: Cell::new(None),
        }
    }

    /// The change to wait for before replying, if the request made any.
    pub fn ticket(&self) -> Option<Ticket> {
        self.ticket.get()
    }

    fn made(&self, ticket: Option<Ticket>) {
        if ticket.is_some() {
            self.ticket.set(self.ticket.get().max(ticket));
        }
    }
}

impl Host for RequestHost<'_> {
    fn start_timer(
        &self,
        satellite: &str,
        label: Option<&str>,
        duration: Duration,
    ) -> Result<TimerView, HostError> {
        match self
            .services
            .timers
            .begin_start(satellite, self.protocol, label, duration)
        {
            Ok((timer, ticket)) => {
                self.made(Some(ticket));
                Ok(timer.view(now_ms()))
            }
            Err(e) => Err(HostError {
                code: "too_many_timers",
                message: e.to_string(),
                detail: None,
                pointer: None,
            }),
        }
    }

    fn timers(&self, satellite: &str) -> Vec<TimerView> {
        self.services.timers.of_satellite(satellite)
    }

    fn cancel_timers(&self, satellite: &str, ids: &[String]) -> Result<Vec<TimerView>, HostError> {
        let (gone, ticket) = self.services.timers.begin_cancel(satellite, ids);
        self.made(ticket);
        let now = now_ms();
        Ok(gone.iter().map(|t| t.view(now)).collect())
    }

    fn play(
        &self,
        satellite: &str,
        sound: &str,
        target: Target,
        volume: f32,
    ) -> Result<PlaybackView, HostError> {
        self.services
            .playback
            .play(satellite, self.protocol, sound, target, volume)
    }

    fn stop_activity(&self, satellite: &str, request_id: &str) -> Stopped {
        Stopped {
            playbacks: self.services.playback.stop(satellite),
            calls: self
                .services
                .inflight
                .cancel_satellite(satellite, request_id),
        }
    }
}
