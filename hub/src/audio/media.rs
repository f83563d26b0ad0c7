//! Turning a requested sound name into something playable without letting the
//! name reach files outside the media directory.
//!
//! Names arrive from skills, MQTT and voice commands, so they are untrusted.
//! They are checked twice: lexically (cheap, and gives the clearest message)
//! and then by canonicalizing, which is the check that actually holds, since
//! it also sees through symbolic links.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use super::{AudioError, Clip, synth, wav};

/// Where a sound comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoundSource {
    /// One of [`synth::BUILTIN_SOUNDS`].
    Builtin(&'static str),
    /// A canonical path to a regular file inside the media directory.
    File(PathBuf),
}

// Far longer than any sensible name, short enough that the OS never has to
// report "name too long" with a less helpful message.
const MAX_NAME_BYTES: usize = 1024;

/// Resolves `name`: "chime" or "alarm" (built in), or `"<name>.wav"` relative to
/// `media_dir` (subfolders allowed). Refuses empty names, absolute paths, `..`,
/// backslashes, NUL bytes, other extensions, a missing media dir, files that do
/// not exist, and anything whose real path (after following symbolic links)
/// is outside the real media dir.
pub fn resolve(name: &str, media_dir: Option<&Path>) -> Result<SoundSource, AudioError> {
    if let Some(builtin) = synth::BUILTIN_SOUNDS.iter().find(|b| **b == name) {
        return Ok(SoundSource::Builtin(builtin));
    }
    let refuse = |reason: &'static str| AudioError::BadName {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(refuse("it is empty"));
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(refuse("it is longer than 1024 bytes"));
    }
    if name.contains('\0') {
        return Err(refuse("it contains a NUL byte"));
    }
    // A backslash is an ordinary file-name byte on Linux, but in a name typed
    // for a Windows-minded user it means a folder; neither reading is safe to guess.
    if name.contains('\\') {
        return Err(refuse("it contains a backslash (separate folders with /)"));
    }
    let relative = Path::new(name);
    if name.starts_with('/') || relative.is_absolute() || relative.has_root() {
        return Err(refuse(
            "it is an absolute path (give a path relative to audio.media_dir)",
        ));
    }
    for component in relative.components() {
        match component {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(refuse("it contains a `..` component")),
            Component::RootDir | Component::Prefix(_) => {
                return Err(refuse("it is an absolute path"));
            }
        }
    }
    let is_wav = relative
        .extension()
        .is_some_and(|ext| ext.eq_ignore_ascii_case("wav"));
    if !is_wav {
        return Err(refuse("it is neither a built-in sound nor a .wav file"));
    }

    let media_dir = media_dir.ok_or(AudioError::MediaDirNotSet)?;
    let media_error = |reason: String| AudioError::MediaDir {
        path: media_dir.to_owned(),
        reason,
    };
    let root = media_dir.canonicalize().map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => media_error("the folder does not exist".to_owned()),
        _ => media_error(e.to_string()),
    })?;
    if !root.is_dir() {
        return Err(media_error("it is not a folder".to_owned()));
    }

    let joined = root.join(relative);
    let real = joined.canonicalize().map_err(|e| match e.kind() {
        // NotADirectory: "a.wav/b.wav" where a.wav is a file; to the user it just isn't there.
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory => AudioError::NotFound {
            name: name.to_owned(),
            media_dir: media_dir.to_owned(),
        },
        _ => AudioError::Read {
            path: joined.clone(),
            error: e,
        },
    })?;
    if !real.starts_with(&root) {
        return Err(AudioError::OutsideMediaDir {
            name: name.to_owned(),
        });
    }
    if !real.is_file() {
        return Err(refuse("it is not a regular file"));
    }
    Ok(SoundSource::File(real))
}

/// Resolves `name` and produces its clip: built-ins are synthesized at
/// `sample_rate`, files are read (size-checked against [`wav::MAX_WAV_BYTES`]
/// before reading) and decoded at their own rate; the player converts rates.
/// This does blocking file I/O; from async code call it via `spawn_blocking`
/// if the media dir may be on slow storage.
pub fn load(name: &str, media_dir: Option<&Path>, sample_rate: u32) -> Result<Clip, AudioError> {
    let path = match resolve(name, media_dir)? {
        SoundSource::Builtin(builtin) => {
            return Ok(synth::builtin(builtin, sample_rate)
                .expect("resolve only returns listed built-ins"));
        }
        SoundSource::File(path) => path,
    };
    let read_error = |error| AudioError::Read {
        path: path.clone(),
        error,
    };
    let file = std::fs::File::open(&path).map_err(read_error)?;
    // Measured on the open handle so a file swapped after resolve is still measured.
    let size = file.metadata().map_err(read_error)?.len();
    let too_large = |size| AudioError::TooLarge {
        path: path.clone(),
        size,
        max: wav::MAX_WAV_BYTES,
    };
    if size > wav::MAX_WAV_BYTES {
        return Err(too_large(size));
    }
    let mut bytes = Vec::with_capacity(size as usize);
    // The limit also holds if the file grows while being read.
    file.take(wav::MAX_WAV_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > wav::MAX_WAV_BYTES {
        return Err(too_large(bytes.len() as u64));
    }
    wav::decode(&bytes).map_err(|e| match e {
        AudioError::InvalidWav { reason, .. } => AudioError::InvalidWav {
            path: Some(path.clone()),
            reason,
        },
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Clip;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh directory under the system temp dir, removed when dropped.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let unique = format!(
                "hark-media-test-{}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            );
            let path = std::env::temp_dir().join(unique);
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A media dir holding `doorbell.wav` and `birds/robin.wav`.
    fn media() -> (TempDir, PathBuf) {
        let tmp = TempDir::new();
        let dir = tmp.0.join("media");
        std::fs::create_dir_all(dir.join("birds")).unwrap();
        let clip = Clip {
            sample_rate: 16_000,
            channels: 1,
            samples: vec![0.5; 160].into(),
        };
        std::fs::write(dir.join("doorbell.wav"), wav::encode_pcm16(&clip)).unwrap();
        std::fs::write(dir.join("birds/robin.wav"), wav::encode_pcm16(&clip)).unwrap();
        (tmp, dir)
    }

    fn bad_name_reason(name: &str, dir: Option<&Path>) -> &'static str {
        match resolve(name, dir) {
            Err(AudioError::BadName { reason, .. }) => reason,
            other => panic!("{name:?} should be refused as a bad name, got {other:?}"),
        }
    }

    #[test]
    fn builtin_names_need_no_media_dir() {
        assert_eq!(
            resolve("chime", None).unwrap(),
            SoundSource::Builtin("chime")
        );
        assert_eq!(
            resolve("alarm", None).unwrap(),
            SoundSource::Builtin("alarm")
        );
        assert_eq!(load("alarm", None, 16_000).unwrap().sample_rate, 16_000);
    }

    #[test]
    fn a_file_in_the_media_dir_resolves_and_loads() {
        let (_tmp, dir) = media();
        let SoundSource::File(path) = resolve("doorbell.wav", Some(&dir)).unwrap() else {
            panic!()
        };
        assert_eq!(path, dir.canonicalize().unwrap().join("doorbell.wav"));
        let clip = load("doorbell.wav", Some(&dir), 48_000).unwrap();
        assert_eq!((clip.sample_rate, clip.frames()), (16_000, 160));
    }

    #[test]
    fn a_file_in_a_subdirectory_is_accepted() {
        let (_tmp, dir) = media();
        assert!(matches!(
            resolve("birds/robin.wav", Some(&dir)),
            Ok(SoundSource::File(_))
        ));
        assert!(matches!(
            resolve("./birds/robin.WAV", Some(&dir)),
            Err(AudioError::NotFound { .. })
        ));
        assert!(load("./birds/robin.wav", Some(&dir), 48_000).is_ok());
    }

    #[test]
    fn an_empty_name_is_refused() {
        assert_eq!(bad_name_reason("", None), "it is empty");
    }

    #[test]
    fn absolute_paths_are_refused() {
        let (_tmp, dir) = media();
        let absolute = dir.join("doorbell.wav");
        assert!(bad_name_reason(absolute.to_str().unwrap(), Some(&dir)).contains("absolute"));
        assert!(bad_name_reason("/etc/passwd.wav", Some(&dir)).contains("absolute"));
    }

    #[test]
    fn parent_directory_components_are_refused_anywhere_in_the_name() {
        let (_tmp, dir) = media();
        for name in [
            "../doorbell.wav",
            "birds/../doorbell.wav",
            "birds/../../x.wav",
            "..",
        ] {
            assert!(bad_name_reason(name, Some(&dir)).contains(".."), "{name}");
        }
    }

    #[test]
    fn backslashes_and_nul_bytes_are_refused() {
        let (_tmp, dir) = media();
        assert!(bad_name_reason("birds\\robin.wav", Some(&dir)).contains("backslash"));
        assert!(bad_name_reason("..\\..\\x.wav", Some(&dir)).contains("backslash"));
        assert!(bad_name_reason("door\0bell.wav", Some(&dir)).contains("NUL"));
    }

    #[test]
    fn names_other_than_builtins_and_wav_files_are_refused() {
        let (_tmp, dir) = media();
        for name in [
            "doorbell",
            "doorbell.mp3",
            "doorbell.wav.txt",
            ".wav",
            "Chime",
        ] {
            assert!(bad_name_reason(name, Some(&dir)).contains(".wav"), "{name}");
        }
        assert!(bad_name_reason(&"a".repeat(2000), Some(&dir)).contains("longer"));
    }

    #[test]
    fn a_wav_name_without_a_media_dir_explains_that_only_builtins_play() {
        let err = resolve("doorbell.wav", None).unwrap_err();
        assert!(matches!(err, AudioError::MediaDirNotSet));
        assert!(err.to_string().contains(
            "audio.media_dir is not set, so only the built-in sounds chime and alarm can play"
        ));
    }

    #[test]
    fn a_media_dir_that_does_not_exist_is_reported_as_such() {
        let tmp = TempDir::new();
        let err = resolve("doorbell.wav", Some(&tmp.0.join("nope"))).unwrap_err();
        assert!(matches!(err, AudioError::MediaDir { .. }));
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn a_missing_file_is_not_found() {
        let (_tmp, dir) = media();
        for name in ["nothing.wav", "birds/nothing.wav", "doorbell.wav/inner.wav"] {
            let err = resolve(name, Some(&dir)).unwrap_err();
            assert!(
                matches!(err, AudioError::NotFound { .. }),
                "{name}: {err:?}"
            );
        }
    }

    #[test]
    fn a_directory_named_like_a_wav_file_is_refused() {
        let (_tmp, dir) = media();
        std::fs::create_dir(dir.join("folder.wav")).unwrap();
        assert!(bad_name_reason("folder.wav", Some(&dir)).contains("regular file"));
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_inside_the_media_dir_pointing_outside_is_refused() {
        let (tmp, dir) = media();
        let secret = tmp.0.join("passwd");
        std::fs::write(&secret, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        std::os::unix::fs::symlink(&secret, dir.join("sneaky.wav")).unwrap();
        std::os::unix::fs::symlink(&tmp.0, dir.join("escape")).unwrap();
        std::fs::write(tmp.0.join("outside.wav"), b"RIFF").unwrap();

        for name in ["sneaky.wav", "escape/outside.wav"] {
            let err = resolve(name, Some(&dir)).unwrap_err();
            assert!(
                matches!(err, AudioError::OutsideMediaDir { .. }),
                "{name}: {err:?}"
            );
            assert!(load(name, Some(&dir), 48_000).is_err());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlink_that_stays_inside_the_media_dir_is_fine() {
        let (_tmp, dir) = media();
        std::os::unix::fs::symlink(dir.join("birds/robin.wav"), dir.join("bird.wav")).unwrap();
        assert!(load("bird.wav", Some(&dir), 48_000).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn a_media_dir_reached_through_a_symlink_still_works() {
        let (tmp, dir) = media();
        let link = tmp.0.join("media-link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(load("doorbell.wav", Some(&link), 48_000).is_ok());
    }

    #[test]
    fn an_oversized_file_is_refused_before_it_is_read() {
        let (_tmp, dir) = media();
        let big = std::fs::File::create(dir.join("big.wav")).unwrap();
        // Sparse: costs no disk space, but its size is over the limit.
        big.set_len(wav::MAX_WAV_BYTES + 1).unwrap();
        let err = load("big.wav", Some(&dir), 48_000).unwrap_err();
        assert!(matches!(err, AudioError::TooLarge { .. }), "{err:?}");
    }

    #[test]
    fn a_corrupt_file_names_the_file_in_the_error() {
        let (_tmp, dir) = media();
        std::fs::write(dir.join("broken.wav"), b"RIFF\x04\x00\x00\x00WAVE").unwrap();
        let err = load("broken.wav", Some(&dir), 48_000).unwrap_err();
        assert!(
            matches!(&err, AudioError::InvalidWav { path: Some(_), .. }),
            "{err:?}"
        );
        assert!(err.to_string().contains("broken.wav"), "{err}");
    }
}
