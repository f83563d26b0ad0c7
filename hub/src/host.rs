//! The hub's side of the built-in skills' [`Host`] trait: timers, playback and
//! in-flight calls, acting for the satellite (and protocol) of one request.

use std::sync::Arc;
use std::time::Duration;

use hark_skills_builtin::{Host, HostError, PlaybackView, Stopped, Target, TimerView};

use crate::events::Protocol;
use crate::inflight::InFlight;
use crate::playback::PlaybackService;
use crate::timers::{StartError, TimerError, TimerService, now_ms};

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
    pub services: &'a Services,
    pub protocol: Protocol,
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
            .start(satellite, self.protocol, label, duration)
        {
            Ok(timer) => Ok(timer.view(now_ms())),
            Err(StartError::Timer(e @ TimerError::TooMany)) => Err(HostError {
                code: "too_many_timers",
                message: e.to_string(),
                detail: None,
                pointer: None,
            }),
            Err(StartError::Store(e)) => {
                tracing::error!("{e}");
                Err(HostError {
                    code: "storage",
                    message: "The timer could not be saved, so it was not started.".to_string(),
                    detail: Some(e.to_string()),
                    pointer: None,
                })
            }
        }
    }

    fn timers(&self, satellite: &str) -> Vec<TimerView> {
        self.services.timers.of_satellite(satellite)
    }

    fn cancel_timers(&self, satellite: &str, ids: &[String]) -> Result<Vec<TimerView>, HostError> {
        match self.services.timers.cancel(satellite, ids) {
            Ok(gone) => {
                let now = now_ms();
                Ok(gone.iter().map(|t| t.view(now)).collect())
            }
            Err(e) => {
                tracing::error!("{e}");
                Err(HostError {
                    code: "storage",
                    message: "The timers could not be saved, so they keep running.".to_string(),
                    detail: Some(e.to_string()),
                    pointer: None,
                })
            }
        }
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
