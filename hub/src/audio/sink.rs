//! Playing one clip at a time on the hub's speaker, or pretending to.
//!
//! Everything that waits on a sound (timers, "ding then listen") must behave
//! the same whether or not a speaker works, so every way a playback can go
//! wrong still ends it after the clip's real duration rather than at once or
//! never.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use super::{AudioError, Clip};

/// Sample rate reported by the null sink: the rate most USB and HDMI outputs
/// run at, so clips synthesized for it need no conversion if a speaker appears.
pub const NULL_SAMPLE_RATE: u32 = 48_000;

/// Which output to use (config `audio.backend`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backend {
    /// The speaker if one works, otherwise silently keep time (with one warning).
    #[default]
    Auto,
    /// The speaker, or an error from [`AudioOut::open`].
    Cpal,
    /// Never touch audio hardware.
    Null,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Auto => "auto",
            Backend::Cpal => "cpal",
            Backend::Null => "null",
        }
    }
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(Backend::Auto),
            "cpal" => Ok(Backend::Cpal),
            "null" => Ok(Backend::Null),
            other => Err(format!(
                "unknown audio.backend {other:?}; use \"auto\", \"cpal\" or \"null\""
            )),
        }
    }
}

/// Why a playback ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaybackEnd {
    /// Played to the end (or, on the null sink, its duration passed).
    Completed,
    /// [`Playback::stop`] or a [`PlaybackStopper`] ended it.
    Stopped,
    /// Another [`AudioOut::play`] took over the speaker.
    Replaced,
    /// The speaker failed, so the clip was not heard. Still reported only once
    /// the clip's duration has passed, so callers pacing on it keep their rhythm
    /// (an alarm that repeats until dismissed does not spin).
    Failed,
}

/// Shared by a playback's handles and whatever is producing its sound.
#[derive(Debug)]
struct Control {
    id: u64,
    /// Read by the real-time audio callback, which must not lock.
    quiet: AtomicBool,
    end: watch::Sender<Option<PlaybackEnd>>,
}

impl Control {
    /// Records how the playback ended; the first caller wins, so a stop that
    /// races with natural completion reports whichever really happened first.
    fn finish(&self, end: PlaybackEnd) -> bool {
        self.quiet.store(true, Ordering::Release);
        self.end.send_if_modified(|slot| {
            if slot.is_none() {
                *slot = Some(end);
                true
            } else {
                false
            }
        })
    }

    fn ended(&self) -> Option<PlaybackEnd> {
        *self.end.borrow()
    }
}

/// One clip being played. Dropping it does not stop the sound (fire and
/// forget is the common case); call [`Playback::stop`] for that.
#[derive(Debug)]
pub struct Playback {
    control: Arc<Control>,
    ended: watch::Receiver<Option<PlaybackEnd>>,
}

impl Playback {
    /// Unique per [`AudioOut`], increasing with each `play`.
    pub fn id(&self) -> u64 {
        self.control.id
    }

    /// Ends the playback promptly (a few milliseconds of fade on a speaker).
    /// Does nothing if it already ended.
    pub fn stop(&self) {
        self.control.finish(PlaybackEnd::Stopped);
    }

    /// How it ended, or `None` while it is still playing.
    pub fn end(&self) -> Option<PlaybackEnd> {
        self.control.ended()
    }

    /// Waits until the clip completed, was stopped or replaced, or failed.
    /// Cancel-safe, and returns the same answer if awaited again.
    pub async fn finished(&mut self) -> PlaybackEnd {
        match self.ended.wait_for(Option::is_some).await {
            Ok(end) => end.unwrap_or(PlaybackEnd::Failed),
            // Unreachable while `self` holds the sender, but never hang on it.
            Err(_) => PlaybackEnd::Failed,
        }
    }

    /// A handle that can stop this playback from elsewhere (a cancel command).
    pub fn stopper(&self) -> PlaybackStopper {
        PlaybackStopper {
            control: Arc::clone(&self.control),
        }
    }
}

/// Cheap, cloneable handle that can only stop one playback.
#[derive(Debug, Clone)]
pub struct PlaybackStopper {
    control: Arc<Control>,
}

impl PlaybackStopper {
    pub fn id(&self) -> u64 {
        self.control.id
    }

    /// Same as [`Playback::stop`].
    pub fn stop(&self) {
        self.control.finish(PlaybackEnd::Stopped);
    }

    pub fn is_finished(&self) -> bool {
        self.control.ended().is_some()
    }
}

/// Remembers which warnings were already logged, so a broken speaker logs
/// once per distinct problem instead of once per sound.
#[derive(Debug, Default)]
struct Warnings(Mutex<HashSet<String>>);

impl Warnings {
    /// True the first time `message` is seen.
    fn first(&self, message: &str) -> bool {
        let mut seen = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // Bounded, in case some error message embeds an ever-changing detail.
        if seen.len() >= 64 {
            seen.clear();
        }
        seen.insert(message.to_owned())
    }
}

#[derive(Debug)]
enum Output {
    Null,
    #[cfg(feature = "audio-cpal")]
    Cpal(device::Handle),
}

#[derive(Debug)]
struct Inner {
    output: Output,
    sample_rate: u32,
    next_id: AtomicU64,
    /// The one playback allowed to be audible.
    current: Mutex<Option<Arc<Control>>>,
    warnings: Arc<Warnings>,
}

/// The hub's speaker. Cloning is cheap and clones share the speaker, so
/// "one clip at a time" holds across all of them.
#[derive(Debug, Clone)]
pub struct AudioOut {
    inner: Arc<Inner>,
}

impl AudioOut {
    /// Opens the output chosen by `backend`.
    ///
    /// `Auto` probes the default output device and its default configuration;
    /// if that fails it logs one warning saying why and that sounds will not be
    /// heard, and returns the null sink. `Cpal` returns that failure instead.
    /// `Null` touches no hardware. Without the `audio-cpal` feature, `Auto` is
    /// the null sink (logged at info) and `Cpal` is an error.
    ///
    /// Blocks briefly while probing; call it at startup.
    pub fn open(backend: Backend) -> Result<AudioOut, AudioError> {
        match backend {
            Backend::Null => Ok(AudioOut::null()),
            Backend::Cpal => AudioOut::open_cpal(),
            Backend::Auto => match AudioOut::open_cpal() {
                Ok(out) => Ok(out),
                Err(AudioError::NoAudioSupport) => {
                    tracing::info!(
                        "this build has no speaker support (no `audio-cpal` feature); sounds will not be heard"
                    );
                    Ok(AudioOut::null())
                }
                Err(AudioError::Device { what, reason }) => {
                    tracing::warn!(
                        "no usable speaker: {what} failed: {reason}; sounds will not be heard \
                         (timers and events still work). Set audio.backend = \"null\" to silence this warning"
                    );
                    Ok(AudioOut::null())
                }
                Err(other) => {
                    tracing::warn!("no usable speaker: {other}; sounds will not be heard");
                    Ok(AudioOut::null())
                }
            },
        }
    }

    /// A silent output that keeps each clip's real timing.
    pub fn null() -> AudioOut {
        AudioOut::with_output(Output::Null, NULL_SAMPLE_RATE, Arc::default())
    }

    fn with_output(output: Output, sample_rate: u32, warnings: Arc<Warnings>) -> AudioOut {
        AudioOut {
            inner: Arc::new(Inner {
                output,
                sample_rate,
                next_id: AtomicU64::new(0),
                current: Mutex::new(None),
                warnings,
            }),
        }
    }

    #[cfg(feature = "audio-cpal")]
    fn open_cpal() -> Result<AudioOut, AudioError> {
        let warnings = Arc::<Warnings>::default();
        let (handle, rate) = device::start(Arc::clone(&warnings))?;
        tracing::info!("sounds play on the default output device ({rate} Hz)");
        Ok(AudioOut::with_output(Output::Cpal(handle), rate, warnings))
    }

    #[cfg(not(feature = "audio-cpal"))]
    fn open_cpal() -> Result<AudioOut, AudioError> {
        Err(AudioError::NoAudioSupport)
    }

    /// "cpal" or "null".
    pub fn backend_name(&self) -> &'static str {
        match self.inner.output {
            Output::Null => "null",
            #[cfg(feature = "audio-cpal")]
            Output::Cpal(_) => "cpal",
        }
    }

    /// The rate to synthesize clips at: the device's default rate (null: 48 kHz).
    pub fn sample_rate(&self) -> u32 {
        self.inner.sample_rate
    }

    /// Starts playing `clip` now at `volume` (linear gain, clamped to 0..=1),
    /// ending whatever was playing with [`PlaybackEnd::Replaced`]. Returns at
    /// once. Must be called inside a tokio runtime, whose timer paces the null
    /// sink and any fallback; without one the playback ends as `Failed`.
    pub fn play(&self, clip: Clip, volume: f32) -> Playback {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let control = Arc::new(Control {
            id,
            quiet: AtomicBool::new(false),
            end: watch::channel(None).0,
        });
        let previous = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(Arc::clone(&control));
        if let Some(previous) = previous {
            previous.finish(PlaybackEnd::Replaced);
        }
        let volume = if volume.is_nan() {
            0.0
        } else {
            volume.clamp(0.0, 1.0)
        };
        let runtime = tokio::runtime::Handle::try_current().ok();

        match &self.inner.output {
            Output::Null => {
                // Silence is silence at any volume.
                let _ = volume;
                keep_time(
                    Arc::clone(&control),
                    clip.duration(),
                    PlaybackEnd::Completed,
                    runtime,
                    &self.inner.warnings,
                );
            }
            #[cfg(feature = "audio-cpal")]
            Output::Cpal(handle) => handle.play(device::Request {
                clip,
                volume,
                control: Arc::clone(&control),
                runtime,
            }),
        }
        let ended = control.end.subscribe();
        Playback { control, ended }
    }

    /// Stops whatever is playing (ends it as [`PlaybackEnd::Stopped`]).
    pub fn stop_all(&self) {
        let current = self
            .inner
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(current) = current {
            current.finish(PlaybackEnd::Stopped);
        }
    }
}

/// Ends `control` with `end` after `duration`, unless something ends it first.
/// This is the whole of the null sink, and the fallback when a speaker fails.
fn keep_time(
    control: Arc<Control>,
    duration: Duration,
    end: PlaybackEnd,
    runtime: Option<tokio::runtime::Handle>,
    warnings: &Warnings,
) {
    let Some(runtime) = runtime else {
        let message =
            "AudioOut::play was called outside a tokio runtime, so the clip cannot be timed";
        if warnings.first(message) {
            tracing::warn!("{message}; it is reported as failed at once");
        }
        control.finish(PlaybackEnd::Failed);
        return;
    };
    runtime.spawn(async move {
        let mut ended = control.end.subscribe();
        tokio::select! {
            () = tokio::time::sleep(duration) => {
                control.finish(end);
            }
            _ = ended.wait_for(Option::is_some) => {}
        }
    });
}

/// The cpal (ALSA) speaker. cpal streams must stay on the thread that made
/// them, so one dedicated thread owns every stream and is fed by a channel.
/// A stream exists only while a clip plays, so an idle hub leaves the sound
/// card closed and the board free to sleep.
#[cfg(feature = "audio-cpal")]
mod device {
    use std::sync::atomic::{AtomicU8, Ordering};
    use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
    use std::sync::{Arc, Mutex, PoisonError};
    use std::time::{Duration, Instant};

    use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
    use cpal::{FromSample, Sample, SampleFormat, SizedSample};

    use super::{Control, PlaybackEnd, Warnings, keep_time};
    use crate::audio::{AudioError, Clip};

    /// Play requests waiting for the thread; more than this means it is stuck.
    const QUEUE: usize = 8;
    /// How often the thread checks on a playing clip. Only while playing:
    /// idle, it blocks on the channel.
    const POLL: Duration = Duration::from_millis(20);
    /// Silence played after a clip (or a stop) before closing the stream, so
    /// the audio still buffered in the device is heard rather than cut off.
    const TAIL: Duration = Duration::from_millis(200);
    /// A fade this long turns a stop into a soft end instead of a click.
    const FADE: Duration = Duration::from_millis(5);
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
                Err(TrySendError::Disconnected(request)) => {
                    (request, "the audio thread has stopped")
                }
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
            let voice = Voice::new(&request, &config, Arc::clone(&progress));
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

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    #[repr(u8)]
    enum Stage {
        Playing = 0,
        /// The clip's audio is over (ended or faded out); playing the tail.
        Tail = 1,
        /// Tail played: the stream can be closed.
        Done = 2,
    }

    /// What the stream's callbacks tell the audio thread. The real-time data
    /// callback only touches the atomic, as it must never wait on a lock.
    #[derive(Debug, Default)]
    struct Progress {
        stage: AtomicU8,
        /// Written once by cpal's error callback (not real-time).
        error: Mutex<Option<cpal::Error>>,
    }

    impl Progress {
        fn stage(&self) -> Stage {
            match self.stage.load(Ordering::Acquire) {
                0 => Stage::Playing,
                1 => Stage::Tail,
                _ => Stage::Done,
            }
        }

        fn advance(&self, stage: Stage) {
            self.stage.fetch_max(stage as u8, Ordering::AcqRel);
        }

        fn record(&self, error: cpal::Error) {
            // Glitches and reroutes leave the stream playing; only errors that
            // end it matter here.
            if matches!(
                error.kind(),
                cpal::ErrorKind::Xrun
                    | cpal::ErrorKind::DeviceChanged
                    | cpal::ErrorKind::RealtimeDenied
            ) {
                return;
            }
            let mut slot = self.error.lock().unwrap_or_else(PoisonError::into_inner);
            slot.get_or_insert(error);
        }

        fn take_error(&self) -> Option<cpal::Error> {
            self.error
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
        }
    }

    /// The audio callback's state: converts the clip to the device's rate and
    /// channel layout on the fly, so clips are never copied or resampled up front.
    struct Voice {
        samples: Arc<[f32]>,
        in_channels: usize,
        in_frames: usize,
        out_channels: usize,
        /// Source frames per device frame.
        step: f64,
        volume: f32,
        /// Device frames rendered so far; the source position is derived from
        /// it each frame, so rounding never accumulates over a long clip.
        rendered: u64,
        fade_frames: u32,
        /// Remaining fade frames once a stop was seen.
        fading: Option<u32>,
        tail_left: u64,
        control: Arc<Control>,
        progress: Arc<Progress>,
    }

    impl Voice {
        fn new(
            request: &Request,
            config: &cpal::SupportedStreamConfig,
            progress: Arc<Progress>,
        ) -> Voice {
            let clip = &request.clip;
            let out_rate = config.sample_rate();
            let in_frames = if clip.sample_rate == 0 {
                0
            } else {
                clip.frames()
            };
            let frames_for = |d: Duration| (d.as_secs_f64() * f64::from(out_rate)).ceil() as u64;
            Voice {
                samples: Arc::clone(&clip.samples),
                in_channels: usize::from(clip.channels.max(1)),
                in_frames,
                out_channels: usize::from(config.channels()),
                step: f64::from(clip.sample_rate) / f64::from(out_rate),
                volume: request.volume,
                rendered: 0,
                fade_frames: frames_for(FADE).max(1) as u32,
                fading: None,
                tail_left: frames_for(TAIL),
                control: Arc::clone(&request.control),
                progress,
            }
        }

        fn render<T: Sample + FromSample<f32>>(&mut self, out: &mut [T]) {
            if self.fading.is_none() && self.control.quiet.load(Ordering::Acquire) {
                self.fading = Some(self.fade_frames);
            }
            for frame in out.chunks_mut(self.out_channels) {
                let gain = match self.fading {
                    None => 1.0,
                    Some(0) => 0.0,
                    Some(left) => {
                        self.fading = Some(left - 1);
                        left as f32 / self.fade_frames as f32
                    }
                };
                let pos = self.rendered as f64 * self.step;
                let index = pos as usize;
                if gain == 0.0 || index >= self.in_frames {
                    frame.fill(T::EQUILIBRIUM);
                    self.progress.advance(Stage::Tail);
                    self.tail_left = self.tail_left.saturating_sub(1);
                    if self.tail_left == 0 {
                        self.progress.advance(Stage::Done);
                    }
                    continue;
                }
                self.rendered += 1;
                let frac = (pos - index as f64) as f32;
                let next = (index + 1).min(self.in_frames - 1);
                let volume = self.volume * gain;
                for (channel, sample) in frame.iter_mut().enumerate() {
                    let a = self.source(index, channel);
                    let b = self.source(next, channel);
                    let value = ((a + (b - a) * frac) * volume).clamp(-1.0, 1.0);
                    *sample = T::from_sample(value);
                }
            }
        }

        /// The source sample for device channel `channel`: mono feeds every
        /// channel, a mono device gets the average of all source channels,
        /// otherwise channels map one to one and extra device channels are silent.
        fn source(&self, frame: usize, channel: usize) -> f32 {
            let base = frame * self.in_channels;
            if self.in_channels == 1 {
                self.samples[base]
            } else if self.out_channels == 1 {
                self.samples[base..base + self.in_channels]
                    .iter()
                    .sum::<f32>()
                    / self.in_channels as f32
            } else if channel < self.in_channels {
                self.samples[base + channel]
            } else {
                0.0
            }
        }
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
        use super::*;

        fn voice(
            clip: Clip,
            out_rate: u32,
            out_channels: u16,
            volume: f32,
        ) -> (Voice, Arc<Control>) {
            let control = Arc::new(Control {
                id: 1,
                quiet: Default::default(),
                end: tokio::sync::watch::channel(None).0,
            });
            let request = Request {
                clip,
                volume,
                control: Arc::clone(&control),
                runtime: None,
            };
            let config = cpal::SupportedStreamConfig::new(
                out_channels,
                out_rate,
                cpal::SupportedBufferSize::Unknown,
                SampleFormat::F32,
            );
            (Voice::new(&request, &config, Arc::default()), control)
        }

        fn clip(rate: u32, channels: u16, samples: &[f32]) -> Clip {
            Clip {
                sample_rate: rate,
                channels,
                samples: samples.into(),
            }
        }

        #[test]
        fn mono_is_copied_to_every_device_channel_with_volume_applied() {
            let (mut v, _) = voice(clip(48_000, 1, &[0.5, -0.5]), 48_000, 2, 0.5);
            let mut out = [9.0f32; 6];
            v.render(&mut out);
            assert_eq!(out, [0.25, 0.25, -0.25, -0.25, 0.0, 0.0]);
        }

        #[test]
        fn stereo_is_averaged_for_a_mono_device() {
            let (mut v, _) = voice(clip(48_000, 2, &[1.0, 0.0, 0.2, 0.4]), 48_000, 1, 1.0);
            let mut out = [9.0f32; 3];
            v.render(&mut out);
            assert!(
                (out[0] - 0.5).abs() < 1e-6 && (out[1] - 0.3).abs() < 1e-6 && out[2] == 0.0,
                "{out:?}"
            );
        }

        #[test]
        fn extra_device_channels_are_silent_and_extra_source_channels_dropped() {
            let (mut v, _) = voice(clip(48_000, 2, &[0.1, 0.2]), 48_000, 4, 1.0);
            let mut out = [9.0f32; 4];
            v.render(&mut out);
            assert_eq!(out, [0.1, 0.2, 0.0, 0.0]);
            let (mut v, _) = voice(clip(48_000, 3, &[0.1, 0.2, 0.3]), 48_000, 2, 1.0);
            let mut out = [9.0f32; 2];
            v.render(&mut out);
            assert_eq!(out, [0.1, 0.2]);
        }

        #[test]
        fn rates_are_converted_by_linear_interpolation() {
            let (mut v, _) = voice(clip(24_000, 1, &[0.0, 1.0, 0.0]), 48_000, 1, 1.0);
            let mut out = [9.0f32; 6];
            v.render(&mut out);
            assert_eq!(out, [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]);
        }

        #[test]
        fn integer_devices_get_converted_samples() {
            let (mut v, _) = voice(clip(48_000, 1, &[1.0, -1.0, 0.0]), 48_000, 1, 1.0);
            let mut out = [0i16; 3];
            v.render(&mut out);
            assert_eq!(out, [i16::MAX, i16::MIN, 0]);
            let (mut v, _) = voice(clip(48_000, 1, &[0.0]), 48_000, 1, 1.0);
            let mut out = [0u16; 2];
            v.render(&mut out);
            assert_eq!(out, [32_768, 32_768]);
        }

        #[test]
        fn the_end_is_signalled_only_after_the_tail_of_silence() {
            let (mut v, _) = voice(clip(1_000, 1, &[0.5; 10]), 1_000, 1, 1.0);
            let mut out = [0.0f32; 10];
            v.render(&mut out);
            assert_eq!(v.progress.stage(), Stage::Playing);
            let mut tail = vec![1.0f32; 200];
            v.render(&mut tail);
            assert!(tail.iter().all(|s| *s == 0.0));
            assert_eq!(v.progress.stage(), Stage::Done);
        }

        #[test]
        fn a_stop_fades_out_instead_of_cutting() {
            let (mut v, control) = voice(clip(1_000, 1, &[1.0; 1_000]), 1_000, 1, 1.0);
            let mut out = [0.0f32; 10];
            v.render(&mut out);
            control.finish(PlaybackEnd::Stopped);
            let mut out = [9.0f32; 10];
            v.render(&mut out);
            assert!(out[0] > 0.5 && out[0] <= 1.0, "{out:?}");
            assert!(out.windows(2).all(|w| w[1] <= w[0]), "{out:?}");
            assert_eq!(out[9], 0.0);
            assert_eq!(v.progress.stage(), Stage::Tail);
        }

        #[test]
        fn an_empty_or_malformed_clip_just_plays_the_tail() {
            let (mut v, _) = voice(clip(0, 0, &[]), 1_000, 2, 1.0);
            let mut out = vec![9.0f32; 400];
            v.render(&mut out);
            assert!(out.iter().all(|s| *s == 0.0));
            assert_eq!(v.progress.stage(), Stage::Done);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::synth;

    fn silence(seconds: u32) -> Clip {
        Clip {
            sample_rate: 1_000,
            channels: 1,
            samples: vec![0.0; 1_000 * seconds as usize].into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_null_sink_completes_after_the_clips_duration() {
        let out = AudioOut::open(Backend::Null).unwrap();
        assert_eq!(
            (out.backend_name(), out.sample_rate()),
            ("null", NULL_SAMPLE_RATE)
        );
        let playback = out.play(silence(2), 1.0);
        // Let the sink's timer start before moving the clock.
        tokio::task::yield_now().await;
        tokio::time::advance(Duration::from_millis(1_999)).await;
        tokio::task::yield_now().await;
        assert_eq!(playback.end(), None);
        tokio::time::advance(Duration::from_millis(2)).await;
        tokio::task::yield_now().await;
        assert_eq!(playback.end(), Some(PlaybackEnd::Completed));
    }

    #[tokio::test(start_paused = true)]
    async fn finishing_takes_the_real_duration_of_a_builtin() {
        let out = AudioOut::null();
        let start = tokio::time::Instant::now();
        let mut playback = out.play(synth::alarm(out.sample_rate()), 0.8);
        assert_eq!(playback.finished().await, PlaybackEnd::Completed);
        let elapsed = start.elapsed();
        assert!(
            elapsed >= Duration::from_secs(3) && elapsed < Duration::from_millis(3_010),
            "{elapsed:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn stop_ends_the_playback_at_once_as_stopped() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(60), 1.0);
        let start = tokio::time::Instant::now();
        playback.stop();
        playback.stop();
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
        assert_eq!(start.elapsed(), Duration::ZERO);
        // Stopping must not turn into a completion later.
        tokio::time::sleep(Duration::from_secs(120)).await;
        assert_eq!(playback.end(), Some(PlaybackEnd::Stopped));
    }

    #[tokio::test(start_paused = true)]
    async fn a_stopper_from_elsewhere_stops_it() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(60), 1.0);
        let stopper = playback.stopper();
        assert_eq!(stopper.id(), playback.id());
        let cancel = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(1)).await;
            stopper.clone().stop();
        });
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
        cancel.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_play_replaces_the_first() {
        let out = AudioOut::null();
        let mut first = out.play(silence(10), 1.0);
        let mut second = out.clone().play(silence(1), 1.0);
        assert!(second.id() > first.id());
        assert_eq!(first.finished().await, PlaybackEnd::Replaced);
        assert_eq!(second.finished().await, PlaybackEnd::Completed);
        // Finishing late must not rewrite how the first one ended.
        tokio::time::sleep(Duration::from_secs(20)).await;
        assert_eq!(first.end(), Some(PlaybackEnd::Replaced));
    }

    #[tokio::test(start_paused = true)]
    async fn stop_all_stops_the_current_playback() {
        let out = AudioOut::null();
        let mut playback = out.play(silence(10), 1.0);
        out.stop_all();
        assert_eq!(playback.finished().await, PlaybackEnd::Stopped);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_clip_completes_immediately() {
        let out = AudioOut::null();
        let mut playback = out.play(
            Clip {
                sample_rate: 0,
                channels: 0,
                samples: Arc::from([]),
            },
            f32::NAN,
        );
        assert_eq!(playback.finished().await, PlaybackEnd::Completed);
    }

    #[test]
    fn playing_outside_a_runtime_fails_instead_of_panicking() {
        let playback = AudioOut::null().play(silence(1), 1.0);
        assert_eq!(playback.end(), Some(PlaybackEnd::Failed));
    }

    #[test]
    fn backend_names_parse_from_config() {
        for backend in [Backend::Auto, Backend::Cpal, Backend::Null] {
            assert_eq!(backend.as_str().parse::<Backend>(), Ok(backend));
        }
        assert!(
            "alsa"
                .parse::<Backend>()
                .unwrap_err()
                .contains("\"auto\", \"cpal\" or \"null\"")
        );
    }

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
        let out = AudioOut::open(Backend::Auto).expect("auto never fails");
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
        match AudioOut::open(Backend::Cpal) {
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

    #[cfg(not(feature = "audio-cpal"))]
    #[test]
    fn without_cpal_support_auto_is_null_and_cpal_is_an_error() {
        assert_eq!(
            AudioOut::open(Backend::Auto).unwrap().backend_name(),
            "null"
        );
        let error = AudioOut::open(Backend::Cpal).unwrap_err();
        assert!(matches!(error, AudioError::NoAudioSupport));
        assert!(error.to_string().contains("audio-cpal"));
    }
}
