//! The cpal (ALSA) speaker. cpal streams must stay on the thread that made
//! them, so one dedicated thread owns every stream and is fed by a channel.
//! A stream exists only while a clip plays, so an idle hub leaves the sound
//! card closed and the board free to sleep.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, SampleFormat, SizedSample};

use super::null::{Warnings, keep_time};
use super::playback::{Control, PlaybackEnd};
use super::render::{Progress, Stage, TAIL, Voice};
use crate::audio::{AudioError, Clip};

/// Play requests waiting for the thread; more than this means it is stuck.
const QUEUE: usize = 8;
/// How often the thread checks on a playing clip. Only while playing:
/// idle, it blocks on the channel.
const POLL: Duration = Duration::from_millis(20);
/// How long a replaced clip may take to fade before its stream is dropped.
const FADE_WAIT: Duration = Duration::from_millis(50);
/// After a stop, the longest we wait for the tail before dropping anyway.
const STOP_WAIT: Duration = Duration::from_millis(400);
/// A stream that is this late past its clip's end has stalled.
const STALL_GRACE: Duration = Duration::from_secs(2);
const PROBE_TIMEOUT: Duration = Duration::from_secs(10);
const BUILD_TIMEOUT: Duration = Duration::from_secs(3);

pub(super) struct Request {
    pub(super) clip: Clip,
    pub(super) volume: f32,
    pub(super) control: Arc<Control>,
    pub(super) runtime: Option<tokio::runtime::Handle>,
}

pub(super) struct Handle {
    tx: SyncSender<Request>,
    warnings: Arc<Warnings>,
}

impl std::fmt::Debug for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("cpal::Handle").finish_non_exhaustive()
    }
}

impl Handle {
    pub(super) fn play(&self, request: Request) {
        let (request, why) = match self.tx.try_send(request) {
            Ok(()) => return,
            Err(TrySendError::Full(request)) => (request, "the audio thread is not keeping up"),
            Err(TrySendError::Disconnected(request)) => (request, "the audio thread has stopped"),
        };
        if self.warnings.first(why) {
            tracing::warn!("{why}; this sound will not be heard");
        }
        let duration = request.clip.duration();
        keep_time(
            request.control,
            duration,
            PlaybackEnd::Failed,
            request.runtime,
            &self.warnings,
        );
    }
}

fn device_error(what: &'static str, error: impl std::fmt::Display) -> AudioError {
    // cpal's messages end in a full stop; ours continue after the reason.
    AudioError::Device {
        what,
        reason: error.to_string().trim_end_matches('.').to_owned(),
    }
}

/// Starts the audio thread and probes the speaker on it. Returns the
/// device's default sample rate, or why there is no usable speaker.
pub(super) fn start(warnings: Arc<Warnings>) -> Result<(Handle, u32), AudioError> {
    let (tx, rx) = mpsc::sync_channel::<Request>(QUEUE);
    let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<u32, AudioError>>(1);
    let thread_warnings = Arc::clone(&warnings);
    std::thread::Builder::new()
        .name("hark-audio".to_owned())
        .spawn(move || {
            alsa_errors_to_log();
            let probed =
                open_host().and_then(|host| probe(&host).map(|(_, config)| (host, config)));
            match probed {
                Ok((host, config)) => {
                    let _ = ready_tx.send(Ok(config.sample_rate()));
                    drop(ready_tx);
                    run(&host, &rx, &thread_warnings);
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error));
                }
            }
        })
        .map_err(|e| device_error("starting the audio thread", e))?;
    match ready_rx.recv_timeout(PROBE_TIMEOUT) {
        Ok(Ok(rate)) => Ok((Handle { tx, warnings }, rate)),
        Ok(Err(error)) => Err(error),
        Err(RecvTimeoutError::Timeout) => Err(device_error(
            "probing the default output device",
            format!("no answer within {} s", PROBE_TIMEOUT.as_secs()),
        )),
        Err(RecvTimeoutError::Disconnected) => Err(device_error(
            "probing the default output device",
            "the audio thread stopped unexpectedly",
        )),
    }
}

/// alsa-lib prints its errors straight to stderr: on a board without a
/// sound card, eight `ALSA lib confmisc.c:855:(parse_card) cannot find card
/// '0'` lines at every start, which are not log lines (they break
/// `--log-format json`) and say nothing the hub's own warning does not.
/// On this thread, where the hub talks to ALSA, they go to the hub's log
/// instead, at debug level, target `alsa`. (The handler is per thread; a
/// playing stream's own thread, which cpal starts, keeps alsa-lib's.)
#[cfg(target_os = "linux")]
fn alsa_errors_to_log() {
    use std::ffi::{CStr, c_char, c_int};
    unsafe extern "C" fn to_log(
        file: *const c_char,
        line: c_int,
        function: *const c_char,
        err: c_int,
        _fmt: *const c_char,
        _args: *mut alsa_sys::__va_list_tag,
    ) {
        let text = |p: *const c_char| {
            if p.is_null() {
                String::new()
            } else {
                // SAFETY: alsa-lib passes NUL-terminated strings (its
                // __FILE__ and __func__) that outlive the call.
                unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
            }
        };
        let reason = if err == 0 {
            String::new()
        } else {
            // SAFETY: snd_strerror returns a static string for any code.
            text(unsafe { alsa_sys::snd_strerror(err) })
        };
        tracing::debug!(target: "alsa", "{}:{} ({}) {}", text(file), line, text(function), reason);
    }
    // SAFETY: sets this thread's handler; `to_log` has the signature
    // alsa-lib calls it with and never unwinds (tracing does not panic).
    unsafe {
        alsa_sys::snd_lib_error_set_local(Some(to_log));
    }
}

#[cfg(not(target_os = "linux"))]
fn alsa_errors_to_log() {}

/// The audio thread without the startup probe, so tests on a machine with
/// no sound card can reach the play-time failure path.
#[cfg(test)]
pub(super) fn start_unprobed(warnings: Arc<Warnings>) -> Handle {
    let (tx, rx) = mpsc::sync_channel::<Request>(QUEUE);
    let thread_warnings = Arc::clone(&warnings);
    std::thread::spawn(move || {
        if let Ok(host) = open_host() {
            run(&host, &rx, &thread_warnings);
        }
    });
    Handle { tx, warnings }
}

#[cfg(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
))]
fn open_host() -> Result<cpal::Host, AudioError> {
    // Not `cpal::default_host()`: on ALSA it panics if the library cannot
    // load its configuration, and release builds abort on panic.
    cpal::host_from_id(cpal::HostId::Alsa).map_err(|e| device_error("opening ALSA", e))
}

#[cfg(not(any(
    target_os = "linux",
    target_os = "dragonfly",
    target_os = "freebsd",
    target_os = "netbsd"
)))]
fn open_host() -> Result<cpal::Host, AudioError> {
    Ok(cpal::default_host())
}

/// The default output device and its default configuration, checked for
/// things the player cannot handle. Asked afresh for every clip so a USB
/// speaker plugged in later is used.
fn probe(host: &cpal::Host) -> Result<(cpal::Device, cpal::SupportedStreamConfig), AudioError> {
    let device = host.default_output_device().ok_or_else(|| {
        device_error(
            "finding the default output device",
            "the system reports no output device",
        )
    })?;
    let config = device
        .default_output_config()
        .map_err(|e| device_error("reading the default output device's configuration", e))?;
    if config.channels() == 0 || config.sample_rate() == 0 {
        return Err(device_error(
            "reading the default output device's configuration",
            format!(
                "it reports {} channels at {} Hz",
                config.channels(),
                config.sample_rate()
            ),
        ));
    }
    if !SUPPORTED_FORMATS.contains(&config.sample_format()) {
        return Err(device_error(
            "choosing a sample format",
            format!(
                "the device wants {} samples, which Hark cannot produce",
                config.sample_format()
            ),
        ));
    }
    Ok((device, config))
}

const SUPPORTED_FORMATS: &[SampleFormat] = &[
    SampleFormat::F32,
    SampleFormat::F64,
    SampleFormat::I8,
    SampleFormat::I16,
    SampleFormat::I24,
    SampleFormat::I32,
    SampleFormat::I64,
    SampleFormat::U8,
    SampleFormat::U16,
    SampleFormat::U24,
    SampleFormat::U32,
    SampleFormat::U64,
];

fn run(host: &cpal::Host, rx: &mpsc::Receiver<Request>, warnings: &Warnings) {
    let mut active: Option<Active> = None;
    loop {
        let next = if active.is_some() {
            match rx.recv_timeout(POLL) {
                Ok(request) => Some(request),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        } else {
            match rx.recv() {
                Ok(request) => Some(request),
                Err(_) => break,
            }
        };
        // A request replaced while it queued is skipped without touching
        // the speaker, so a burst of play() calls only opens it once.
        if let Some(request) = next.filter(|r| r.control.ended().is_none()) {
            if let Some(old) = active.take() {
                old.control.finish(PlaybackEnd::Replaced);
                old.wait_for(Stage::Tail, FADE_WAIT);
            }
            active = start_playing(host, request, warnings);
        }
        if let Some(playing) = active.take() {
            active = playing.check(warnings);
        }
    }
    // Every AudioOut handle is gone: the hub is shutting down.
    if let Some(playing) = active {
        playing.control.finish(PlaybackEnd::Stopped);
    }
}

fn start_playing(host: &cpal::Host, request: Request, warnings: &Warnings) -> Option<Active> {
    let duration = request.clip.duration();
    let progress = Arc::new(Progress::default());
    let attempt = probe(host).and_then(|(device, config)| {
        let voice = Voice::new(
            &request.clip,
            request.volume,
            &request.control,
            &config,
            Arc::clone(&progress),
        );
        let stream = build_stream(&device, &config, voice)
            .map_err(|e| device_error("opening an output stream", e))?;
        stream
            .play()
            .map_err(|e| device_error("starting the output stream", e))?;
        Ok(stream)
    });
    match attempt {
        Ok(stream) => Some(Active {
            control: request.control,
            runtime: request.runtime,
            progress,
            started: Instant::now(),
            stop_seen: None,
            duration,
            _stream: stream,
        }),
        Err(error) => {
            let message = error.to_string();
            if warnings.first(&message) {
                tracing::warn!("{message}. Sounds will not be heard until this is fixed");
            }
            keep_time(
                request.control,
                duration,
                PlaybackEnd::Failed,
                request.runtime,
                warnings,
            );
            None
        }
    }
}

fn build_stream(
    device: &cpal::Device,
    config: &cpal::SupportedStreamConfig,
    voice: Voice,
) -> Result<cpal::Stream, cpal::Error> {
    let stream_config = config.config();
    match config.sample_format() {
        SampleFormat::F32 => build_typed::<f32>(device, stream_config, voice),
        SampleFormat::F64 => build_typed::<f64>(device, stream_config, voice),
        SampleFormat::I8 => build_typed::<i8>(device, stream_config, voice),
        SampleFormat::I16 => build_typed::<i16>(device, stream_config, voice),
        SampleFormat::I24 => build_typed::<cpal::I24>(device, stream_config, voice),
        SampleFormat::I32 => build_typed::<i32>(device, stream_config, voice),
        SampleFormat::I64 => build_typed::<i64>(device, stream_config, voice),
        SampleFormat::U8 => build_typed::<u8>(device, stream_config, voice),
        SampleFormat::U16 => build_typed::<u16>(device, stream_config, voice),
        SampleFormat::U24 => build_typed::<cpal::U24>(device, stream_config, voice),
        SampleFormat::U32 => build_typed::<u32>(device, stream_config, voice),
        SampleFormat::U64 => build_typed::<u64>(device, stream_config, voice),
        other => Err(cpal::Error::with_message(
            cpal::ErrorKind::UnsupportedConfig,
            format!("the device wants {other} samples, which Hark cannot produce"),
        )),
    }
}

fn build_typed<T>(
    device: &cpal::Device,
    config: cpal::StreamConfig,
    mut voice: Voice,
) -> Result<cpal::Stream, cpal::Error>
where
    T: SizedSample + FromSample<f32>,
{
    let progress = Arc::clone(&voice.progress);
    device.build_output_stream(
        config,
        move |data: &mut [T], _: &cpal::OutputCallbackInfo| voice.render(data),
        move |error: cpal::Error| progress.record(error),
        Some(BUILD_TIMEOUT),
    )
}

struct Active {
    control: Arc<Control>,
    runtime: Option<tokio::runtime::Handle>,
    progress: Arc<Progress>,
    started: Instant,
    stop_seen: Option<Instant>,
    duration: Duration,
    /// Dropping it closes the device.
    _stream: cpal::Stream,
}

impl Active {
    /// Waits (briefly, bounded) for the callback to reach `stage`.
    fn wait_for(&self, stage: Stage, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.progress.stage() < stage && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Returns `self` if it is still playing, or ends it and returns `None`.
    fn check(mut self, warnings: &Warnings) -> Option<Active> {
        if let Some(error) = self.progress.take_error() {
            let message = format!("the speaker stopped working during playback: {error}");
            if warnings.first(&message) {
                tracing::warn!("{message}. Sounds will not be heard until this is fixed");
            }
            let remaining = self.duration.saturating_sub(self.started.elapsed());
            let control = Arc::clone(&self.control);
            let runtime = self.runtime.take();
            drop(self);
            keep_time(control, remaining, PlaybackEnd::Failed, runtime, warnings);
            return None;
        }
        if self.progress.stage() == Stage::Done {
            self.control.finish(PlaybackEnd::Completed);
            return None;
        }
        if self.control.ended().is_some() {
            let seen = *self.stop_seen.get_or_insert_with(Instant::now);
            return if seen.elapsed() < STOP_WAIT {
                Some(self)
            } else {
                None
            };
        }
        if self.started.elapsed() > self.duration + TAIL + STALL_GRACE {
            let message = "the speaker stopped taking audio (the output stream stalled)";
            if warnings.first(message) {
                tracing::warn!("{message}. Sounds will not be heard until this is fixed");
            }
            self.control.finish(PlaybackEnd::Failed);
            return None;
        }
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use crate::audio::sink::device;
    use crate::audio::sink::null::{NULL_SAMPLE_RATE, Warnings};
    use crate::audio::sink::player::Output;
    use crate::audio::sink::test_util::silence;
    use crate::audio::{AudioBackend, AudioError, AudioOut, PlaybackEnd};

    /// This test machine may or may not have a sound card; CI boxes do not.
    #[cfg(feature = "audio-cpal")]
    fn machine_has_no_sound_card() -> bool {
        match std::fs::read_to_string("/proc/asound/cards") {
            Ok(cards) => cards.trim().is_empty() || cards.contains("no soundcards"),
            Err(_) => cfg!(target_os = "linux"),
        }
    }

    #[cfg(feature = "audio-cpal")]
    #[tokio::test(start_paused = true)]
    async fn auto_without_a_sound_card_falls_back_to_the_null_sink() {
        let out = AudioOut::open(AudioBackend::Auto).expect("auto never fails");
        if machine_has_no_sound_card() {
            assert_eq!(out.backend_name(), "null");
        }
        let mut playback = out.play(silence(1), 0.0);
        let end = playback.finished().await;
        assert!(
            matches!(end, PlaybackEnd::Completed | PlaybackEnd::Failed),
            "{end:?}"
        );
    }

    #[cfg(feature = "audio-cpal")]
    #[test]
    fn cpal_without_a_sound_card_is_an_error_that_says_what_failed() {
        match AudioOut::open(AudioBackend::Cpal) {
            Err(error) => {
                assert!(matches!(error, AudioError::Device { .. }), "{error:?}");
                let message = error.to_string();
                assert!(
                    message.contains("cannot use the speaker") && message.contains("failed"),
                    "{message}"
                );
                assert!(message.contains("audio.backend"), "{message}");
            }
            Ok(out) => {
                assert!(
                    !machine_has_no_sound_card(),
                    "opened a speaker on a machine without one"
                );
                assert_eq!(out.backend_name(), "cpal");
            }
        }
    }

    #[cfg(feature = "audio-cpal")]
    #[tokio::test(start_paused = true)]
    async fn a_speaker_failing_at_play_time_still_ends_the_clip_after_its_duration() {
        if !machine_has_no_sound_card() {
            return;
        }
        let warnings = Arc::<Warnings>::default();
        let handle = device::start_unprobed(Arc::clone(&warnings));
        let out = AudioOut::with_output(Output::Cpal(handle), NULL_SAMPLE_RATE, warnings);
        assert_eq!(out.backend_name(), "cpal");

        let start = tokio::time::Instant::now();
        let mut playback = out.play(silence(2), 1.0);
        assert_eq!(playback.finished().await, PlaybackEnd::Failed);
        assert_eq!(start.elapsed(), Duration::from_secs(2));

        // The fallback can still be stopped and replaced like any playback.
        let mut first = out.play(silence(30), 1.0);
        let mut second = out.play(silence(30), 1.0);
        assert_eq!(first.finished().await, PlaybackEnd::Replaced);
        second.stop();
        assert_eq!(second.finished().await, PlaybackEnd::Stopped);
        assert!(start.elapsed() < Duration::from_secs(3));
    }
}
