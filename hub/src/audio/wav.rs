//! RIFF/WAVE decoding and encoding.
//!
//! Media files come from users and from the network, so the decoder trusts no
//! size in the header: every length is checked against the bytes actually
//! present, and memory is only ever allocated in proportion to those bytes.

use std::sync::Arc;

use super::{AudioError, Clip};

/// Largest WAV file the hub will read (about 3 minutes of 16-bit 48 kHz stereo).
pub const MAX_WAV_BYTES: u64 = 32 * 1024 * 1024;

/// Most channels accepted: 7.1 surround. More is almost surely a corrupt header.
pub const MAX_CHANNELS: u16 = 8;

// Outside this range a "rate" is a corrupt header, not a real recording.
const MIN_RATE: u32 = 1_000;
const MAX_RATE: u32 = 384_000;

// 8-bit input expands 4x when decoded to f32; cap the decoded size so even a
// maximal 8-bit file costs no more memory than a maximal 16-bit one.
const MAX_DECODED_SAMPLES: usize = (MAX_WAV_BYTES / 2) as usize;

const FORMAT_PCM: u16 = 0x0001;
const FORMAT_FLOAT: u16 = 0x0003;
const FORMAT_EXTENSIBLE: u16 = 0xFFFE;

// KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by these 14 bytes.
const SUBFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Int,
    Float,
}

#[derive(Debug, Clone, Copy)]
struct Format {
    encoding: Encoding,
    channels: u16,
    sample_rate: u32,
    /// Container size; for extensible files the valid bits may be fewer, but
    /// those are left-justified, so decoding the whole container is right.
    bytes_per_sample: usize,
}

fn invalid(reason: impl Into<String>) -> AudioError {
    AudioError::InvalidWav {
        path: None,
        reason: reason.into(),
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Decodes a RIFF/WAVE file: integer PCM of 8, 16, 24 or 32 bits, or 32/64-bit
/// float, plain or WAVE_FORMAT_EXTENSIBLE, 1 to 8 channels. Unknown chunks are
/// skipped. The error's `path` is `None`; [`super::media::load`] fills it in.
pub fn decode(bytes: &[u8]) -> Result<Clip, AudioError> {
    if bytes.len() as u64 > MAX_WAV_BYTES {
        return Err(invalid(format!(
            "it is {} bytes, more than the {MAX_WAV_BYTES}-byte limit",
            bytes.len()
        )));
    }
    if bytes.len() < 12 {
        return Err(invalid("it is too short to have a WAV header"));
    }
    if &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return Err(invalid("it does not start with a RIFF/WAVE header"));
    }
    // The RIFF size field is ignored: streaming recorders often leave it 0 or
    // 0xFFFFFFFF, and the chunk walk below is bounded by the real length anyway.

    let mut format: Option<Format> = None;
    let mut data: Option<&[u8]> = None;
    let mut at = 12usize;
    while bytes.len() - at >= 8 && (format.is_none() || data.is_none()) {
        let id = &bytes[at..at + 4];
        let size = u32_at(bytes, at + 4) as usize;
        let body = at + 8;
        let available = bytes.len() - body;
        if size > available {
            let name = String::from_utf8_lossy(id).escape_debug().to_string();
            return Err(invalid(format!(
                "the {name:?} chunk claims {size} bytes but only {available} remain (the file is truncated or corrupt)"
            )));
        }
        let chunk = &bytes[body..body + size];
        match id {
            b"fmt " if format.is_none() => format = Some(parse_format(chunk)?),
            b"data" if data.is_none() => data = Some(chunk),
            _ => {}
        }
        // Chunks are word-aligned: an odd-sized chunk is followed by a pad byte.
        at = body + size + (size & 1);
        if at > bytes.len() {
            break;
        }
    }

    let format = format.ok_or_else(|| invalid("it has no \"fmt \" chunk describing the audio"))?;
    let data = data.ok_or_else(|| invalid("it has no \"data\" chunk with audio samples"))?;

    let frame_bytes = format.bytes_per_sample * usize::from(format.channels);
    let frames = data.len() / frame_bytes;
    if frames == 0 {
        return Err(invalid("its data chunk holds no complete audio frame"));
    }
    let sample_count = frames * usize::from(format.channels);
    if sample_count > MAX_DECODED_SAMPLES {
        return Err(invalid(format!(
            "it holds {sample_count} samples, more than the {MAX_DECODED_SAMPLES}-sample limit"
        )));
    }
    // A trailing partial frame (a recorder cut off mid-write) is dropped.
    let data = &data[..frames * frame_bytes];
    let samples: Arc<[f32]> = match (format.encoding, format.bytes_per_sample) {
        (Encoding::Int, 1) => data
            .iter()
            .map(|&b| (f32::from(b) - 128.0) / 128.0)
            .collect(),
        (Encoding::Int, 2) => data
            .chunks_exact(2)
            .map(|c| f32::from(i16::from_le_bytes([c[0], c[1]])) / 32_768.0)
            .collect(),
        (Encoding::Int, 3) => data
            .chunks_exact(3)
            // Shift into the top of an i32 and back to sign-extend the 24 bits.
            .map(|c| (i32::from_le_bytes([0, c[0], c[1], c[2]]) >> 8) as f32 / 8_388_608.0)
            .collect(),
        (Encoding::Int, 4) => data
            .chunks_exact(4)
            .map(|c| {
                (f64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])) / 2_147_483_648.0) as f32
            })
            .collect(),
        (Encoding::Float, 4) => data
            .chunks_exact(4)
            .map(|c| sanitize(f32::from_le_bytes([c[0], c[1], c[2], c[3]])))
            .collect(),
        (Encoding::Float, 8) => data
            .chunks_exact(8)
            .map(|c| {
                let v = f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
                sanitize(v as f32)
            })
            .collect(),
        // parse_format only lets the combinations above through.
        _ => return Err(invalid("its sample format is not supported")),
    };
    Ok(Clip {
        sample_rate: format.sample_rate,
        channels: format.channels,
        samples,
    })
}

/// Float files may hold NaN, infinities or overs; none of those may reach a
/// speaker at full scale.
fn sanitize(v: f32) -> f32 {
    if v.is_finite() {
        v.clamp(-1.0, 1.0)
    } else {
        0.0
    }
}

fn parse_format(chunk: &[u8]) -> Result<Format, AudioError> {
    if chunk.len() < 16 {
        return Err(invalid(format!(
            "its \"fmt \" chunk is {} bytes, fewer than the 16 required",
            chunk.len()
        )));
    }
    let mut tag = u16_at(chunk, 0);
    let channels = u16_at(chunk, 2);
    let sample_rate = u32_at(chunk, 4);
    let block_align = u16_at(chunk, 12);
    let bits = u16_at(chunk, 14);

    if tag == FORMAT_EXTENSIBLE {
        if chunk.len() < 40 {
            return Err(invalid("its WAVE_FORMAT_EXTENSIBLE header is cut short"));
        }
        let valid_bits = u16_at(chunk, 18);
        if valid_bits > bits {
            return Err(invalid(format!(
                "it claims {valid_bits} valid bits in a {bits}-bit sample"
            )));
        }
        if chunk[26..40] != SUBFORMAT_TAIL {
            return Err(invalid(
                "its WAVE_FORMAT_EXTENSIBLE sub-format is not PCM or float",
            ));
        }
        tag = u16_at(chunk, 24);
    }

    if channels == 0 {
        return Err(invalid("it claims to have 0 channels"));
    }
    if channels > MAX_CHANNELS {
        return Err(invalid(format!(
            "it claims {channels} channels; at most {MAX_CHANNELS} are supported"
        )));
    }
    if sample_rate == 0 {
        return Err(invalid("it claims a sample rate of 0 Hz"));
    }
    if !(MIN_RATE..=MAX_RATE).contains(&sample_rate) {
        return Err(invalid(format!(
            "its sample rate of {sample_rate} Hz is outside the supported {MIN_RATE}-{MAX_RATE} Hz"
        )));
    }

    let encoding = match (tag, bits) {
        (FORMAT_PCM, 8 | 16 | 24 | 32) => Encoding::Int,
        (FORMAT_FLOAT, 32 | 64) => Encoding::Float,
        (FORMAT_PCM, _) => {
            return Err(invalid(format!(
                "it uses {bits}-bit integer samples; 8, 16, 24 or 32 bits are supported"
            )));
        }
        (FORMAT_FLOAT, _) => {
            return Err(invalid(format!(
                "it uses {bits}-bit float samples; 32 or 64 bits are supported"
            )));
        }
        (0x0002 | 0x0011, _) => return Err(invalid("it is ADPCM-compressed")),
        (0x0006, _) => return Err(invalid("it is A-law encoded")),
        (0x0007, _) => return Err(invalid("it is mu-law encoded")),
        (0x0055, _) => return Err(invalid("it holds MP3 data")),
        _ => {
            return Err(invalid(format!(
                "its audio format (tag {tag:#06x}) is not uncompressed PCM or float"
            )));
        }
    };
    let bytes_per_sample = usize::from(bits / 8);
    let expected_align = bytes_per_sample * usize::from(channels);
    // Refusing a mismatch beats guessing: reading frames at the wrong stride
    // would play full-scale noise.
    if usize::from(block_align) != expected_align {
        return Err(invalid(format!(
            "its block alignment is {block_align} bytes but {channels} channel(s) of {bits}-bit samples need {expected_align}"
        )));
    }
    Ok(Format {
        encoding,
        channels,
        sample_rate,
        bytes_per_sample,
    })
}

/// Encodes as 16-bit PCM WAV (the format every satellite can play, e.g. for
/// Hermes `playBytes`). A clip with 0 channels is written as mono, and a
/// trailing partial frame is dropped, so the output is always well-formed.
pub fn encode_pcm16(clip: &Clip) -> Vec<u8> {
    let channels = clip.channels.max(1);
    let ch = usize::from(channels);
    // A RIFF size is a u32; cut (impossibly long) clips at the last whole frame that fits.
    let max_samples = (u32::MAX as usize - 36) / 2 / ch * ch;
    let count = (clip.samples.len() / ch * ch).min(max_samples);
    let data_len = count * 2;
    let block_align = channels * 2;
    let byte_rate = clip.sample_rate.saturating_mul(u32::from(block_align));

    let mut out = Vec::with_capacity(44 + data_len);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&((36 + data_len) as u32).to_le_bytes());
    out.extend_from_slice(b"WAVE");
    out.extend_from_slice(b"fmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&FORMAT_PCM.to_le_bytes());
    out.extend_from_slice(&channels.to_le_bytes());
    out.extend_from_slice(&clip.sample_rate.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&block_align.to_le_bytes());
    out.extend_from_slice(&16u16.to_le_bytes());
    out.extend_from_slice(b"data");
    out.extend_from_slice(&(data_len as u32).to_le_bytes());
    for &s in &clip.samples[..count] {
        let v = (sanitize(s) * 32_767.0).round() as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a WAV file from raw parts, so tests can also build broken ones.
    fn wav_with(fmt: &[u8], extra_chunks: &[(&[u8; 4], &[u8])], data: &[u8]) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(b"WAVE");
        let mut chunk = |id: &[u8; 4], payload: &[u8]| {
            body.extend_from_slice(id);
            body.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            body.extend_from_slice(payload);
            if payload.len() % 2 == 1 {
                body.push(0);
            }
        };
        chunk(b"fmt ", fmt);
        for (id, payload) in extra_chunks {
            chunk(id, payload);
        }
        chunk(b"data", data);
        let mut out = b"RIFF".to_vec();
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }

    fn fmt_chunk(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let align = channels * (bits / 8);
        let mut f = Vec::new();
        f.extend_from_slice(&tag.to_le_bytes());
        f.extend_from_slice(&channels.to_le_bytes());
        f.extend_from_slice(&rate.to_le_bytes());
        f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
        f.extend_from_slice(&align.to_le_bytes());
        f.extend_from_slice(&bits.to_le_bytes());
        f
    }

    fn extensible_fmt(
        sub_tag: u16,
        channels: u16,
        rate: u32,
        bits: u16,
        valid_bits: u16,
    ) -> Vec<u8> {
        let mut f = fmt_chunk(FORMAT_EXTENSIBLE, channels, rate, bits);
        f.extend_from_slice(&22u16.to_le_bytes());
        f.extend_from_slice(&valid_bits.to_le_bytes());
        f.extend_from_slice(&0x3u32.to_le_bytes()); // front left | front right
        f.extend_from_slice(&sub_tag.to_le_bytes());
        f.extend_from_slice(&SUBFORMAT_TAIL);
        f
    }

    fn simple(tag: u16, channels: u16, bits: u16, data: &[u8]) -> Vec<u8> {
        wav_with(&fmt_chunk(tag, channels, 8_000, bits), &[], data)
    }

    fn reason(result: Result<Clip, AudioError>) -> String {
        match result {
            Err(AudioError::InvalidWav { reason, .. }) => reason,
            Err(other) => panic!("wrong error kind: {other}"),
            Ok(clip) => panic!("decoded garbage into {clip:?}"),
        }
    }

    fn assert_samples(clip: &Clip, expected: &[f32]) {
        assert_eq!(clip.samples.len(), expected.len());
        for (got, want) in clip.samples.iter().zip(expected) {
            assert!((got - want).abs() < 1e-4, "{got} != {want}");
        }
    }

    #[test]
    fn encode_then_decode_round_trips_within_16_bit_precision() {
        let samples: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.05).sin() * 0.9).collect();
        let clip = Clip {
            sample_rate: 22_050,
            channels: 2,
            samples: samples.clone().into(),
        };
        let bytes = encode_pcm16(&clip);
        assert_eq!(bytes.len(), 44 + 2000);
        let back = decode(&bytes).unwrap();
        assert_eq!((back.sample_rate, back.channels), (22_050, 2));
        assert_samples(&back, &samples);
    }

    #[test]
    fn encoding_clamps_overs_and_drops_a_partial_frame() {
        let clip = Clip {
            sample_rate: 8_000,
            channels: 2,
            samples: vec![2.0, -2.0, f32::NAN].into(),
        };
        let back = decode(&encode_pcm16(&clip)).unwrap();
        assert_samples(&back, &[32_767.0 / 32_768.0, -32_767.0 / 32_768.0]);
    }

    #[test]
    fn decodes_8_bit_unsigned() {
        let clip = decode(&simple(FORMAT_PCM, 1, 8, &[128, 255, 0, 192])).unwrap();
        assert_samples(&clip, &[0.0, 127.0 / 128.0, -1.0, 0.5]);
    }

    #[test]
    fn decodes_16_bit() {
        let data: Vec<u8> = [0i16, 16_384, -32_768, 32_767]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&simple(FORMAT_PCM, 1, 16, &data)).unwrap();
        assert_samples(&clip, &[0.0, 0.5, -1.0, 32_767.0 / 32_768.0]);
    }

    #[test]
    fn decodes_24_bit_with_sign_extension() {
        let data = [0x00, 0x00, 0x40, 0x00, 0x00, 0xC0, 0xFF, 0xFF, 0xFF];
        let clip = decode(&simple(FORMAT_PCM, 1, 24, &data)).unwrap();
        assert_samples(&clip, &[0.5, -0.5, -1.0 / 8_388_608.0]);
    }

    #[test]
    fn decodes_32_bit_int() {
        let data: Vec<u8> = [i32::MIN, 1 << 30, 0]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&simple(FORMAT_PCM, 1, 32, &data)).unwrap();
        assert_samples(&clip, &[-1.0, 0.5, 0.0]);
    }

    #[test]
    fn decodes_32_bit_float_and_neutralises_nan_and_overs() {
        let data: Vec<u8> = [0.25f32, -0.75, f32::NAN, 3.0, f32::NEG_INFINITY]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&simple(FORMAT_FLOAT, 1, 32, &data)).unwrap();
        assert_samples(&clip, &[0.25, -0.75, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn decodes_64_bit_float() {
        let data: Vec<u8> = [0.5f64, -0.25]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&simple(FORMAT_FLOAT, 1, 64, &data)).unwrap();
        assert_samples(&clip, &[0.5, -0.25]);
    }

    #[test]
    fn decodes_extensible_int_and_float() {
        let data: Vec<u8> = [16_384i16, -16_384]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&wav_with(
            &extensible_fmt(FORMAT_PCM, 2, 48_000, 16, 16),
            &[],
            &data,
        ))
        .unwrap();
        assert_eq!((clip.channels, clip.sample_rate), (2, 48_000));
        assert_samples(&clip, &[0.5, -0.5]);

        // 24 valid bits in a 32-bit container are left-justified.
        let data: Vec<u8> = [1i32 << 30].iter().flat_map(|v| v.to_le_bytes()).collect();
        let clip = decode(&wav_with(
            &extensible_fmt(FORMAT_PCM, 1, 48_000, 32, 24),
            &[],
            &data,
        ))
        .unwrap();
        assert_samples(&clip, &[0.5]);

        let data: Vec<u8> = 0.125f32.to_le_bytes().to_vec();
        let clip = decode(&wav_with(
            &extensible_fmt(FORMAT_FLOAT, 1, 48_000, 32, 32),
            &[],
            &data,
        ))
        .unwrap();
        assert_samples(&clip, &[0.125]);
    }

    #[test]
    fn decodes_interleaved_stereo() {
        let data: Vec<u8> = [8_192i16, -8_192, 16_384, -16_384]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let clip = decode(&simple(FORMAT_PCM, 2, 16, &data)).unwrap();
        assert_eq!(clip.channels, 2);
        assert_eq!(clip.frames(), 2);
        assert_samples(&clip, &[0.25, -0.25, 0.5, -0.5]);
    }

    #[test]
    fn skips_unknown_chunks_including_odd_sized_ones_with_padding() {
        let data: Vec<u8> = [16_384i16].iter().flat_map(|v| v.to_le_bytes()).collect();
        let file = wav_with(
            &fmt_chunk(FORMAT_PCM, 1, 8_000, 16),
            &[(b"LIST", b"odd"), (b"junk", b"12345")],
            &data,
        );
        let clip = decode(&file).unwrap();
        assert_samples(&clip, &[0.5]);
    }

    #[test]
    fn accepts_data_before_fmt_and_a_bogus_riff_size() {
        let mut file = b"RIFF\xFF\xFF\xFF\xFFWAVE".to_vec();
        file.extend_from_slice(b"data\x02\x00\x00\x00\x00\x40");
        let fmt = fmt_chunk(FORMAT_PCM, 1, 8_000, 16);
        file.extend_from_slice(b"fmt ");
        file.extend_from_slice(&(fmt.len() as u32).to_le_bytes());
        file.extend_from_slice(&fmt);
        assert_samples(&decode(&file).unwrap(), &[0.5]);
    }

    #[test]
    fn rejects_a_truncated_header() {
        let file = simple(FORMAT_PCM, 1, 16, &[0, 0]);
        for len in [0, 4, 11] {
            assert!(reason(decode(&file[..len])).contains("too short"));
        }
        assert!(reason(decode(&file[..12])).contains("no \"fmt \" chunk"));
        assert!(reason(decode(&file[..20])).contains("truncated"));
        assert!(reason(decode(&file[..30])).contains("truncated"));
    }

    #[test]
    fn rejects_a_data_chunk_larger_than_the_file() {
        let mut file = simple(FORMAT_PCM, 1, 16, &[0, 0, 0, 0]);
        let at = file.len() - 4 - 4;
        file[at..at + 4].copy_from_slice(&1000u32.to_le_bytes());
        let why = reason(decode(&file));
        assert!(
            why.contains("\"data\" chunk claims 1000 bytes but only 4 remain"),
            "{why}"
        );
    }

    #[test]
    fn a_claimed_size_of_one_gibibyte_is_refused_without_allocating_it() {
        let mut file = simple(FORMAT_PCM, 2, 16, &[0; 8]);
        let at = file.len() - 8 - 4;
        file[at..at + 4].copy_from_slice(&(1u32 << 30).to_le_bytes());
        // Were the claim trusted, this would try to build a 2 GiB f32 buffer.
        assert!(reason(decode(&file)).contains("truncated"));
    }

    #[test]
    fn rejects_zero_channels_zero_hertz_and_absurd_channel_counts() {
        let mut zero_channels = fmt_chunk(FORMAT_PCM, 1, 8_000, 16);
        zero_channels[2..4].copy_from_slice(&0u16.to_le_bytes());
        assert!(reason(decode(&wav_with(&zero_channels, &[], &[0, 0]))).contains("0 channels"));

        let zero_hz = fmt_chunk(FORMAT_PCM, 1, 0, 16);
        assert!(reason(decode(&wav_with(&zero_hz, &[], &[0, 0]))).contains("0 Hz"));

        let mut many = fmt_chunk(FORMAT_PCM, 1, 8_000, 16);
        many[2..4].copy_from_slice(&65_535u16.to_le_bytes());
        assert!(reason(decode(&wav_with(&many, &[], &[0, 0]))).contains("65535 channels"));

        let absurd_rate = fmt_chunk(FORMAT_PCM, 1, u32::MAX / 4, 16);
        assert!(reason(decode(&wav_with(&absurd_rate, &[], &[0, 0]))).contains("outside"));
    }

    #[test]
    fn rejects_unsupported_encodings_by_name() {
        assert!(reason(decode(&simple(0x0055, 1, 16, &[0, 0]))).contains("MP3"));
        assert!(reason(decode(&simple(FORMAT_PCM, 1, 12, &[0, 0]))).contains("12-bit"));
        assert!(reason(decode(&simple(FORMAT_FLOAT, 1, 16, &[0, 0]))).contains("16-bit float"));
        let mut odd_guid = extensible_fmt(FORMAT_PCM, 1, 8_000, 16, 16);
        odd_guid[30] ^= 0xFF;
        assert!(reason(decode(&wav_with(&odd_guid, &[], &[0, 0]))).contains("sub-format"));
    }

    #[test]
    fn rejects_a_block_alignment_that_disagrees_with_the_format() {
        let mut fmt = fmt_chunk(FORMAT_PCM, 2, 8_000, 16);
        fmt[12..14].copy_from_slice(&6u16.to_le_bytes());
        assert!(reason(decode(&wav_with(&fmt, &[], &[0; 12]))).contains("block alignment"));
    }

    #[test]
    fn rejects_missing_or_empty_audio() {
        assert!(
            reason(decode(&simple(FORMAT_PCM, 2, 16, &[]))).contains("no complete audio frame")
        );
        assert!(
            reason(decode(&simple(FORMAT_PCM, 2, 16, &[1, 2, 3])))
                .contains("no complete audio frame")
        );
        let mut no_data = b"RIFF\x00\x00\x00\x00WAVEfmt \x10\x00\x00\x00".to_vec();
        no_data.extend_from_slice(&fmt_chunk(FORMAT_PCM, 1, 8_000, 16));
        assert!(reason(decode(&no_data)).contains("no \"data\" chunk"));
    }

    #[test]
    fn rejects_files_that_are_not_riff_wave() {
        assert!(reason(decode(b"RIFX\x00\x00\x00\x00WAVEfmt ")).contains("RIFF/WAVE"));
        assert!(
            reason(decode(b"ID3\x03\x00\x00\x00\x00\x00\x00\x00\x00\x00")).contains("RIFF/WAVE")
        );
    }

    /// xorshift64*: deterministic, so a failure can be replayed from the seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
    }

    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        let valid = encode_pcm16(&Clip {
            sample_rate: 16_000,
            channels: 2,
            samples: vec![0.1; 64].into(),
        });
        for case in 0..10_000 {
            let mut bytes = if case % 2 == 0 {
                // Mutated valid files reach far deeper into the parser than pure noise.
                let mut b = valid.clone();
                for _ in 0..=(rng.next() % 8) {
                    let at = (rng.next() as usize) % b.len();
                    b[at] = rng.next() as u8;
                }
                b.truncate((rng.next() as usize) % (b.len() + 1));
                b
            } else {
                let len = (rng.next() % 128) as usize;
                (0..len).map(|_| rng.next() as u8).collect::<Vec<u8>>()
            };
            if case % 3 == 0 && bytes.len() >= 12 {
                bytes[..4].copy_from_slice(b"RIFF");
                bytes[8..12].copy_from_slice(b"WAVE");
            }
            if let Ok(clip) = decode(&bytes) {
                assert!(
                    clip.samples.len() <= bytes.len(),
                    "case {case} allocated beyond its input"
                );
                assert!(clip.samples.iter().all(|s| (-1.0..=1.0).contains(s)));
            }
        }
    }
}
