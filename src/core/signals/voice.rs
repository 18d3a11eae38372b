//! Voice signals of a call, measured from its audio: how long each party
//! talked, how long they talked over each other, dead air, and hold time.
//!
//! # How it measures
//!
//! - **Voice activity** is decided per frame from energy: a frame is voiced
//!   when its mean square (linear PCM) exceeds a threshold given in dBov.
//!   0 dBov is the mean square of a full-scale square wave (32768²), so a
//!   full-scale sine is about -3 dBov (the ITU-T G.191 / P.56 convention).
//! - **Talk spurts**: voiced audio becomes talk once a run of contiguous voiced
//!   audio lasts `onset_ms` (single clicks and pops do not count); a spurt
//!   lasts until `hangover_ms` after its last voiced frame, so the pauses
//!   between words and syllables count as talking. When the onset is reached,
//!   the spurt counts from the first voiced frame of the run. A voiced frame
//!   that starts while the party is still talking (within the hangover)
//!   extends the spurt without needing an onset.
//! - **Talk time** is the total length of a party's spurts, measured in
//!   milliseconds of audio (payload length / 8 samples per ms), never in
//!   frame counts. Hangover past the end of the call does not count.
//! - **The timeline** (crosstalk, dead air, hold) is driven by the caller's
//!   frames, which form a continuous stream. It is settled
//!   `onset_ms + agent_lag_ms` behind the newest caller audio, so a spurt whose
//!   onset is confirmed a frame later, or agent audio arriving a little after
//!   the caller's audio for the same moment, is still placed where it
//!   happened. Agent audio that arrives later than that is still talk time
//!   but is missed for crosstalk and dead air.
//! - **Crosstalk**: both parties in a spurt at once, not on hold.
//! - **Dead air**: a stretch where nobody is in a spurt, not on hold, lasting
//!   at least `dead_air_ms`; such stretches count in full, shorter ones not
//!   at all. Hold ends a stretch.
//! - **Gaps in the caller's stream**: a gap up to `max_gap_ms` (lost
//!   packets) is treated as the caller being silent. A longer gap means the
//!   audio is unknown: it is neither talk, crosstalk nor dead air; it ends
//!   any running dead-air stretch, and the timeline resumes at the next
//!   caller frame. The same rule applies between the last caller frame and
//!   the end of the call. `duration_ms` still includes gaps.
//! - **Timestamps**: each party's frames are expected in order of their start
//!   time. A frame starting before the previous frame of the same party
//!   (reordered, replayed, or a stream whose clock restarted) is dropped, so
//!   the shell must keep each stream on the call's timeline. Overlapping
//!   frames are harmless: spurts are unions of intervals. Agent frames should
//!   be stamped by their position in the agent's stream, not by arrival time
//!   in bursts.
//! - Nothing allocates: pending spurts and hold changes live in small
//!   fixed-size queues. If one overflows (an agent stream running seconds
//!   ahead of the caller's, or many hold toggles before any caller audio),
//!   the oldest entry is given up deterministically (see [`Pending`]).

use crate::core::model::Millis;

/// Samples per millisecond of 8 kHz G.711 audio.
const SAMPLES_PER_MS: usize = 8;

/// Mean square of a full-scale square wave in 16-bit PCM: the 0 dBov reference.
const FULL_SCALE_MEAN_SQUARE: f64 = 32768.0 * 32768.0;

/// Voiced audio that starts at most this long after the end of the previous
/// voiced frame continues the same run (absorbs stamping jitter of a few ms).
const RUN_JOIN_TOLERANCE_MS: Millis = 10;

/// Capacity of the fixed queues of spurts and hold changes that the timeline
/// has not yet passed. A few suffice: the timeline trails the newest audio by
/// a fraction of a second and each spurt lasts at least onset + hangover.
const PENDING_CAPACITY: usize = 8;

/// G.711 mu-law code to 16-bit linear PCM (range -32124..=32124), the
/// standard decoding: bits are transmitted inverted; sign, 3-bit segment,
/// 4-bit step.
pub const MULAW_TO_LINEAR: [i16; 256] = build_mulaw_table();

const fn build_mulaw_table() -> [i16; 256] {
    let mut table = [0i16; 256];
    let mut code = 0;
    while code < 256 {
        table[code] = decode_mulaw(code as u8);
        code += 1;
    }
    table
}

const fn decode_mulaw(code: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let bits = !code;
    let segment = (bits >> 4) & 0x07;
    let step = (bits & 0x0F) as i32;
    let magnitude = (((step << 3) + BIAS) << segment) - BIAS;
    if bits & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Square of each code's linear value, so the frame energy is one lookup and
/// one add per sample.
const MULAW_SQUARED: [u32; 256] = build_squared_table();

const fn build_squared_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut code = 0;
    while code < 256 {
        let sample = MULAW_TO_LINEAR[code] as i32;
        table[code] = (sample * sample) as u32;
        code += 1;
    }
    table
}

/// Decodes one G.711 mu-law byte to 16-bit linear PCM.
pub fn mulaw_to_linear(code: u8) -> i16 {
    MULAW_TO_LINEAR[code as usize]
}

/// Who is speaking in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Party {
    /// The customer, audio from the telephony provider (continuous stream).
    Caller,
    /// The agent, audio from the agent client (may stop while muted).
    Agent,
}

/// Tuning of the voice meter.
#[derive(Clone, Debug, PartialEq)]
pub struct VoiceSettings {
    /// A frame is voiced when its level exceeds this (dBov, 0 = full-scale
    /// square wave).
    ///
    /// Default -40 dBov. Telephone speech is normalised around -26 dBov
    /// active level (ITU-T P.56/G.223 nominal), and quiet talkers sit about
    /// 10 dB below that, so -40 keeps ~14 dB of margin under nominal speech.
    /// Idle line noise on a digital path is far lower (below -60 dBov) and
    /// background noise after a phone's noise suppression is typically -50
    /// to -60 dBov, so -40 stays ~10 dB clear of it. Weak consonants that dip
    /// under the threshold are bridged by the hangover. Very noisy lines
    /// (car, street) can exceed -40 and read as talk: raise it there.
    /// A non-finite value falls back to the default.
    pub threshold_dbov: f32,
    /// Talk continues this long after the last voiced frame (default 200 ms:
    /// longer than the gaps between syllables and words, ~100-200 ms, shorter
    /// than a real pause between turns).
    pub hangover_ms: u64,
    /// Nobody talking for at least this long is dead air (default 3000 ms).
    pub dead_air_ms: u64,
    /// Voiced audio must run this long before it counts as talk (default
    /// 40 ms = two 20 ms frames): a click or line pop fills one frame, any
    /// real syllable lasts 50 ms or more. 0 accepts single voiced frames.
    pub onset_ms: u64,
    /// A gap in the caller's stream up to this long is caller silence; a
    /// longer one is unknown audio (default 1000 ms: a few lost packets are
    /// normal, a second of nothing means the stream stalled).
    pub max_gap_ms: u64,
    /// How far behind the caller's frames the agent's frames for the same
    /// moment may arrive and still count for crosstalk and dead air
    /// (default 200 ms). Only delays the settling of the timeline; snapshots
    /// always include all audio received.
    pub agent_lag_ms: u64,
}

impl Default for VoiceSettings {
    fn default() -> Self {
        VoiceSettings {
            threshold_dbov: DEFAULT_THRESHOLD_DBOV,
            hangover_ms: 200,
            dead_air_ms: 3000,
            onset_ms: 40,
            max_gap_ms: 1000,
            agent_lag_ms: 200,
        }
    }
}

const DEFAULT_THRESHOLD_DBOV: f32 = -40.0;

/// What the meter measured for a call, all in milliseconds except `silences`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VoiceSignals {
    /// From the start of the call (or its earliest frame) to the latest time seen.
    pub duration_ms: u64,
    /// Time the caller was talking (spurts, including hangover).
    pub caller_talk_ms: u64,
    /// Time the agent was talking (spurts, including hangover).
    pub agent_talk_ms: u64,
    /// Time both talked at once, outside hold.
    pub crosstalk_ms: u64,
    /// Total of the dead-air stretches (each at least `dead_air_ms`).
    pub silence_ms: u64,
    /// Number of dead-air stretches.
    pub silences: u32,
    /// The longest dead-air stretch.
    pub longest_silence_ms: u64,
    /// Time on hold.
    pub hold_ms: u64,
}

/// Half-open time interval `[from, to)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Span {
    from: Millis,
    to: Millis,
}

/// The call goes on or off hold at `at`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct HoldChange {
    at: Millis,
    on: bool,
}

/// Fixed-capacity FIFO (no allocation). Pushing into a full queue gives up
/// the oldest entry and returns it, so the caller decides what that means.
#[derive(Clone, Copy, Debug)]
struct Pending<T: Copy + Default> {
    items: [T; PENDING_CAPACITY],
    len: usize,
}

impl<T: Copy + Default> Pending<T> {
    fn new() -> Self {
        Pending {
            items: [T::default(); PENDING_CAPACITY],
            len: 0,
        }
    }

    fn front(&self) -> Option<T> {
        self.items[..self.len].first().copied()
    }

    fn last_mut(&mut self) -> Option<&mut T> {
        self.items[..self.len].last_mut()
    }

    fn pop_front(&mut self) {
        if self.len > 0 {
            self.items.copy_within(1..self.len, 0);
            self.len -= 1;
        }
    }

    /// Appends `item`; if the queue was full, first removes and returns the oldest.
    fn push(&mut self, item: T) -> Option<T> {
        let evicted = if self.len == PENDING_CAPACITY {
            let oldest = self.front();
            self.pop_front();
            oldest
        } else {
            None
        };
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = item;
            self.len += 1;
        }
        evicted
    }
}

/// Talk detection and talk time of one party.
#[derive(Clone, Copy, Debug)]
struct Talker {
    /// Start of the latest accepted frame; earlier-starting frames are dropped.
    last_start: Option<Millis>,
    /// The current run of contiguous voiced audio (broken by an unvoiced frame).
    run: Option<Span>,
    /// End of the latest spurt (last confirmed voiced audio + hangover).
    talk_until: Millis,
    /// End of the last voiced audio that counted as talk.
    voiced_end: Millis,
    /// Total length of all spurts so far, up to `talk_until`.
    talk_ms: u64,
    /// Spurts the timeline has not passed yet, in time order, disjoint.
    spurts: Pending<Span>,
}

impl Talker {
    fn new() -> Self {
        Talker {
            last_start: None,
            run: None,
            talk_until: 0,
            voiced_end: 0,
            talk_ms: 0,
            spurts: Pending::new(),
        }
    }

    /// Whether a frame starting at `at` is in order for this party.
    fn accepts(&self, at: Millis) -> bool {
        self.last_start.is_none_or(|last| at >= last)
    }

    /// Takes one accepted frame `[at, end)`, voiced or not.
    fn frame(&mut self, at: Millis, end: Millis, voiced: bool, settings: &VoiceSettings) {
        self.last_start = Some(at);
        if !voiced {
            self.run = None;
            return;
        }
        let run = match self.run {
            Some(run) if at <= run.to.saturating_add(RUN_JOIN_TOLERANCE_MS) => Span {
                from: run.from,
                to: run.to.max(end),
            },
            _ => Span { from: at, to: end },
        };
        self.run = Some(run);
        let continues_spurt = run.from < self.talk_until;
        if !continues_spurt && run.to - run.from < settings.onset_ms {
            return;
        }
        let until = run.to.saturating_add(settings.hangover_ms);
        self.talk_ms += until.saturating_sub(run.from.max(self.talk_until));
        self.talk_until = self.talk_until.max(until);
        self.voiced_end = self.voiced_end.max(run.to);
        match self.spurts.last_mut() {
            Some(last) if run.from <= last.to => last.to = last.to.max(until),
            // On overflow the oldest spurt is dropped: the timeline is then
            // seconds behind this party, and losing old crosstalk is the
            // conservative error.
            _ => {
                _ = self.spurts.push(Span {
                    from: run.from,
                    to: until,
                })
            }
        }
    }

    /// Whether a spurt covers `at`, and when that next changes. Forgets
    /// spurts that ended by `at` (the timeline never goes back).
    fn talking_at(&mut self, at: Millis) -> (bool, Millis) {
        while self.spurts.front().is_some_and(|spurt| spurt.to <= at) {
            self.spurts.pop_front();
        }
        match self.spurts.front() {
            None => (false, Millis::MAX),
            Some(spurt) if spurt.from <= at => (true, spurt.to),
            Some(spurt) => (false, spurt.from),
        }
    }

    /// Talk time if the call ends at `end`: hangover past `end` does not count
    /// (voiced audio received always does).
    fn talk_ms_until(&self, end: Millis) -> u64 {
        let hangover_after_end = self.talk_until.saturating_sub(end.max(self.voiced_end));
        self.talk_ms.saturating_sub(hangover_after_end)
    }
}

/// Measures the voice signals of one call. Feed it every audio frame of both
/// parties and the hold changes; read [`VoiceMeter::snapshot`] at any time and
/// [`VoiceMeter::finish`] at the end.
#[derive(Clone, Debug)]
pub struct VoiceMeter {
    settings: VoiceSettings,
    /// A frame is voiced when its sum of squares exceeds this times its sample count.
    voiced_mean_square: u64,
    /// Start of the call's timeline for `duration_ms`.
    origin: Millis,
    /// Latest time seen (frame ends, hold changes, finish).
    latest: Millis,
    caller: Talker,
    agent: Talker,

    /// The timeline is settled up to here; `None` until the first caller frame.
    settled: Option<Millis>,
    /// End of the newest caller audio.
    caller_end: Millis,
    /// Hold state at `settled`.
    held_at_settled: bool,
    /// Hold changes the timeline has not reached yet, in time order.
    hold_changes: Pending<HoldChange>,
    /// Start of the running stretch where nobody talks, if any.
    quiet_since: Option<Millis>,
    crosstalk_ms: u64,
    silence_ms: u64,
    silences: u32,
    longest_silence_ms: u64,

    /// Hold as last requested (may be ahead of `held_at_settled`).
    on_hold: bool,
    /// When the current hold began, or the time of the latest hold change.
    last_hold_change: Millis,
    /// Hold time of the holds already ended.
    held_ms: u64,

    /// The final signals once `finish` was called; the meter is then closed.
    finished: Option<VoiceSignals>,
}

impl VoiceMeter {
    /// A meter for a call whose timeline starts at `start`.
    pub fn new(settings: &VoiceSettings, start: Millis) -> VoiceMeter {
        let dbov = if settings.threshold_dbov.is_finite() {
            settings.threshold_dbov
        } else {
            DEFAULT_THRESHOLD_DBOV
        };
        let voiced_mean_square =
            (FULL_SCALE_MEAN_SQUARE * 10f64.powf(f64::from(dbov) / 10.0)).round() as u64;
        VoiceMeter {
            settings: settings.clone(),
            voiced_mean_square,
            origin: start,
            latest: start,
            caller: Talker::new(),
            agent: Talker::new(),
            settled: None,
            caller_end: start,
            held_at_settled: false,
            hold_changes: Pending::new(),
            quiet_since: None,
            crosstalk_ms: 0,
            silence_ms: 0,
            silences: 0,
            longest_silence_ms: 0,
            on_hold: false,
            last_hold_change: start,
            held_ms: 0,
            finished: None,
        }
    }

    /// One frame of mu-law audio from `party`, starting at `at` (ms on the call's timeline).
    ///
    /// Its duration is the payload length / 8 samples per ms, rounded; a
    /// payload under half a millisecond is ignored. Frames after `finish` are
    /// ignored.
    pub fn frame(&mut self, party: Party, at: Millis, mulaw: &[u8]) {
        let duration = (mulaw.len() + SAMPLES_PER_MS / 2) / SAMPLES_PER_MS;
        if duration == 0 || self.finished.is_some() {
            return;
        }
        let talker = match party {
            Party::Caller => &self.caller,
            Party::Agent => &self.agent,
        };
        if !talker.accepts(at) {
            return;
        }
        let end = at.saturating_add(duration as u64);
        let voiced = is_voiced(mulaw, self.voiced_mean_square);
        self.origin = self.origin.min(at);
        self.latest = self.latest.max(end);
        match party {
            Party::Caller => {
                self.caller.frame(at, end, voiced, &self.settings);
                self.extend_timeline(at, end);
            }
            Party::Agent => self.agent.frame(at, end, voiced, &self.settings),
        }
    }

    /// The agent puts the call on hold (`on`) or takes it off at `at`.
    /// Repeating the current state is ignored; a change stamped before the
    /// previous one is taken as happening at the previous one.
    pub fn hold(&mut self, on: bool, at: Millis) {
        if self.finished.is_some() || on == self.on_hold {
            return;
        }
        let at = at.max(self.last_hold_change);
        self.latest = self.latest.max(at);
        if !on {
            self.held_ms += at - self.last_hold_change;
        }
        self.on_hold = on;
        self.last_hold_change = at;
        // On overflow the oldest change takes effect now, slightly early.
        if let Some(oldest) = self.hold_changes.push(HoldChange { at, on }) {
            self.held_at_settled = oldest.on;
        }
    }

    /// The signals so far, as if the call ended at `at` (a dead-air stretch
    /// still running counts if already long enough). After `finish`, the
    /// final signals.
    pub fn snapshot(&self, at: Millis) -> VoiceSignals {
        if let Some(signals) = self.finished {
            return signals;
        }
        self.clone().close(at)
    }

    /// Closes the call's timeline at `at` and returns the final signals.
    /// Later frames and hold changes are ignored; calling it again returns the
    /// same signals.
    pub fn finish(&mut self, at: Millis) -> VoiceSignals {
        if let Some(signals) = self.finished {
            return signals;
        }
        let signals = self.close(at);
        self.finished = Some(signals);
        signals
    }

    /// Settles the whole timeline up to `at` and computes the signals.
    fn close(&mut self, at: Millis) -> VoiceSignals {
        let end = at.max(self.latest);
        if self.settled.is_some() {
            // The tail after the last caller frame is a gap like any other.
            let tail_known = end <= self.caller_end.saturating_add(self.settings.max_gap_ms);
            self.settle(if tail_known { end } else { self.caller_end });
            self.end_quiet_stretch();
        }
        let running_hold = if self.on_hold {
            end.saturating_sub(self.last_hold_change)
        } else {
            0
        };
        VoiceSignals {
            duration_ms: end - self.origin,
            caller_talk_ms: self.caller.talk_ms_until(end),
            agent_talk_ms: self.agent.talk_ms_until(end),
            crosstalk_ms: self.crosstalk_ms,
            silence_ms: self.silence_ms,
            silences: self.silences,
            longest_silence_ms: self.longest_silence_ms,
            hold_ms: self.held_ms + running_hold,
        }
    }

    /// Moves the timeline on with a caller frame `[at, end)`.
    fn extend_timeline(&mut self, at: Millis, end: Millis) {
        match self.settled {
            None => {
                self.settled = Some(at);
                self.caller_end = end;
            }
            Some(_) => {
                if at > self.caller_end.saturating_add(self.settings.max_gap_ms) {
                    // Long gap: settle what we heard, skip the unknown part.
                    self.settle(self.caller_end);
                    self.end_quiet_stretch();
                    self.settled = Some(at);
                }
                self.caller_end = self.caller_end.max(end);
            }
        }
        let delay = self
            .settings
            .onset_ms
            .saturating_add(self.settings.agent_lag_ms);
        self.settle(self.caller_end.saturating_sub(delay));
    }

    /// Accounts crosstalk and dead air from `settled` up to `to`, in pieces
    /// where the talk and hold states do not change.
    fn settle(&mut self, to: Millis) {
        let Some(mut now) = self.settled else {
            return;
        };
        while now < to {
            while let Some(change) = self.hold_changes.front() {
                if change.at > now {
                    break;
                }
                self.held_at_settled = change.on;
                self.hold_changes.pop_front();
            }
            let (caller_talks, caller_next) = self.caller.talking_at(now);
            let (agent_talks, agent_next) = self.agent.talking_at(now);
            let hold_next = self.hold_changes.front().map_or(Millis::MAX, |c| c.at);
            let next = to.min(caller_next).min(agent_next).min(hold_next);
            if self.held_at_settled {
                self.end_quiet_stretch_at(now);
            } else {
                match (caller_talks, agent_talks) {
                    (true, true) => {
                        self.crosstalk_ms += next - now;
                        self.end_quiet_stretch_at(now);
                    }
                    (false, false) => {
                        self.quiet_since.get_or_insert(now);
                    }
                    _ => self.end_quiet_stretch_at(now),
                }
            }
            now = next;
        }
        self.settled = Some(now);
    }

    /// Ends the running quiet stretch at the settled time.
    fn end_quiet_stretch(&mut self) {
        if let Some(now) = self.settled {
            self.end_quiet_stretch_at(now);
        }
    }

    /// Ends the running quiet stretch at `at`; it counts as dead air if long enough.
    fn end_quiet_stretch_at(&mut self, at: Millis) {
        if let Some(since) = self.quiet_since.take() {
            let length = at.saturating_sub(since);
            if length > 0 && length >= self.settings.dead_air_ms {
                self.silence_ms += length;
                self.silences = self.silences.saturating_add(1);
                self.longest_silence_ms = self.longest_silence_ms.max(length);
            }
        }
    }
}

/// Whether the frame's mean square exceeds `threshold` (integer arithmetic,
/// no division or logarithm per frame: sum of squares against threshold × samples).
fn is_voiced(mulaw: &[u8], threshold: u64) -> bool {
    let sum_of_squares: u64 = mulaw
        .iter()
        .map(|&code| u64::from(MULAW_SQUARED[code as usize]))
        .sum();
    sum_of_squares > threshold.saturating_mul(mulaw.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FRAME: usize = 160;
    const FRAME_MS: Millis = 20;

    /// G.711 mu-law encoder (the reference "linear2ulaw"), for synthesising audio.
    fn encode_mulaw(sample: i16) -> u8 {
        const BIAS: i32 = 0x84;
        const CLIP: i32 = 32635;
        let mut pcm = i32::from(sample);
        let sign = if pcm < 0 {
            pcm = -pcm;
            0x80
        } else {
            0
        };
        pcm = pcm.min(CLIP) + BIAS;
        let mut segment = 0;
        while segment < 7 && pcm >= (0x100 << segment) {
            segment += 1;
        }
        let step = (pcm >> (segment + 3)) & 0x0F;
        !(sign | (segment << 4) | step) as u8
    }

    /// Sine amplitude for a level in dBov (mean square = amplitude² / 2).
    fn amplitude(dbov: f64) -> f64 {
        32768.0 * 2f64.sqrt() * 10f64.powf(dbov / 20.0)
    }

    #[derive(Clone, Copy)]
    enum Sound {
        Silence,
        Tone(f64),
        Noise(f64),
    }

    /// Deterministic audio source: continuous sine phase, LCG noise.
    struct Source {
        phase: f64,
        seed: u32,
    }

    impl Source {
        fn new() -> Self {
            Source {
                phase: 0.0,
                seed: 12345,
            }
        }

        fn next_random(&mut self) -> u32 {
            self.seed = self
                .seed
                .wrapping_mul(1_664_525)
                .wrapping_add(1_013_904_223);
            self.seed >> 8
        }

        fn frame(&mut self, sound: Sound) -> [u8; FRAME] {
            let mut out = [0xFFu8; FRAME];
            match sound {
                Sound::Silence => {}
                Sound::Tone(dbov) => {
                    let a = amplitude(dbov);
                    for byte in out.iter_mut() {
                        *byte = encode_mulaw((a * self.phase.sin()) as i16);
                        self.phase += 2.0 * std::f64::consts::PI * 440.0 / 8000.0;
                    }
                }
                Sound::Noise(dbov) => {
                    // Uniform in [-a, a] has RMS a/sqrt(3).
                    let a = 32768.0 * 10f64.powf(dbov / 20.0) * 3f64.sqrt();
                    for byte in out.iter_mut() {
                        let unit = f64::from(self.next_random()) / f64::from(1u32 << 24);
                        *byte = encode_mulaw((a * (2.0 * unit - 1.0)) as i16);
                    }
                }
            }
            out
        }
    }

    /// Feeds `party` 20 ms frames of `sound` covering `[from, to)`.
    fn feed(meter: &mut VoiceMeter, party: Party, from: Millis, to: Millis, sound: Sound) {
        let mut source = Source::new();
        let mut at = from;
        while at < to {
            meter.frame(party, at, &source.frame(sound));
            at += FRAME_MS;
        }
    }

    fn meter() -> VoiceMeter {
        VoiceMeter::new(&VoiceSettings::default(), 0)
    }

    const SPEECH: Sound = Sound::Tone(-20.0);

    #[test]
    fn table_matches_g711_formula_for_all_codes() {
        for code in 0..=255u8 {
            // G.711 mu-law: transmitted bits inverted; decoded magnitude in
            // 14-bit units is (2*step + 33) * 2^segment - 33, scaled by 4 to 16 bits.
            let bits = !code;
            let segment = u32::from((bits >> 4) & 7);
            let step = i32::from(bits & 0x0F);
            let magnitude = 4 * ((2 * step + 33) * 2i32.pow(segment) - 33);
            let expected = if bits & 0x80 != 0 {
                -magnitude
            } else {
                magnitude
            };
            assert_eq!(
                i32::from(mulaw_to_linear(code)),
                expected,
                "code {code:#04x}"
            );
        }
        assert_eq!(mulaw_to_linear(0xFF), 0);
        assert_eq!(mulaw_to_linear(0x7F), 0);
        assert_eq!(mulaw_to_linear(0x80), 32124);
        assert_eq!(mulaw_to_linear(0x00), -32124);
    }

    #[test]
    fn squared_table_matches_linear_table() {
        for code in 0..=255u8 {
            let sample = i64::from(mulaw_to_linear(code));
            assert_eq!(i64::from(MULAW_SQUARED[code as usize]), sample * sample);
        }
    }

    #[test]
    fn stamping_jitter_does_not_lose_talk() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 3000, Sound::Silence);
        let mut source = Source::new();
        for k in 0..50u64 {
            let jitter = [0i64, 3, -4, 7][(k % 4) as usize];
            let at = (1000 + 20 * k as i64 + jitter) as Millis;
            m.frame(Party::Agent, at, &source.frame(SPEECH));
        }
        let s = m.finish(3000);
        // First frame at 1000, last ends at 2003, plus 200 ms hangover.
        assert_eq!(s.agent_talk_ms, 1203);
    }

    #[test]
    fn encoder_round_trips_every_code() {
        for code in 0..=255u8 {
            let back = encode_mulaw(mulaw_to_linear(code));
            // Negative zero (0x7F) encodes as positive zero (0xFF).
            let expected = if code == 0x7F { 0xFF } else { code };
            assert_eq!(back, expected, "code {code:#04x}");
        }
    }

    #[test]
    fn levels_decide_voicing() {
        let threshold = VoiceMeter::new(&VoiceSettings::default(), 0).voiced_mean_square;
        // -40 dBov of 32768²: 107374.
        assert_eq!(threshold, 107_374);
        let mut source = Source::new();
        for (sound, voiced) in [
            (Sound::Silence, false),
            (Sound::Noise(-55.0), false),
            (Sound::Noise(-45.0), false),
            (Sound::Tone(-45.0), false),
            (Sound::Tone(-35.0), true),
            (Sound::Tone(-30.0), true),
            (Sound::Noise(-30.0), true),
            (Sound::Tone(-3.0), true),
        ] {
            for _ in 0..50 {
                assert_eq!(is_voiced(&source.frame(sound), threshold), voiced);
            }
        }
    }

    #[test]
    fn talk_silence_talk_from_caller() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 3000, SPEECH);
        feed(&mut m, Party::Caller, 3000, 7000, Sound::Silence);
        feed(&mut m, Party::Caller, 7000, 9000, SPEECH);
        let s = m.finish(9000);
        assert_eq!(
            s,
            VoiceSignals {
                duration_ms: 9000,
                // 3000 + 200 hangover, then 2000 (hangover after the end is cut).
                caller_talk_ms: 5200,
                agent_talk_ms: 0,
                crosstalk_ms: 0,
                // 3200..7000.
                silence_ms: 3800,
                silences: 1,
                longest_silence_ms: 3800,
                hold_ms: 0,
            }
        );
    }

    #[test]
    fn short_silence_is_not_dead_air() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 3000, SPEECH);
        feed(&mut m, Party::Caller, 3000, 5000, Sound::Silence);
        feed(&mut m, Party::Caller, 5000, 7000, SPEECH);
        let s = m.finish(7000);
        assert_eq!(s.caller_talk_ms, 5200);
        assert_eq!((s.silence_ms, s.silences, s.longest_silence_ms), (0, 0, 0));
        assert_eq!(s.duration_ms, 7000);
    }

    #[test]
    fn dead_air_is_just_over_threshold_counted_in_full() {
        // Quiet from 1200 to 4200 = exactly 3000 ms.
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 4200, Sound::Silence);
        feed(&mut m, Party::Caller, 4200, 5000, SPEECH);
        let s = m.finish(5000);
        assert_eq!((s.silence_ms, s.silences), (3000, 1));
    }

    #[test]
    fn both_talking_is_crosstalk() {
        let mut m = meter();
        // Interleaved in arrival order, agent frames at the same stamps.
        let mut caller = Source::new();
        let mut agent = Source::new();
        for at in (0..4000).step_by(20) {
            let sound = if at < 3000 { SPEECH } else { Sound::Silence };
            m.frame(Party::Caller, at, &caller.frame(sound));
            if (1000..2000).contains(&at) {
                m.frame(Party::Agent, at, &agent.frame(SPEECH));
            }
        }
        let s = m.finish(4000);
        assert_eq!(s.caller_talk_ms, 3200);
        // Agent only sent 1000..2000 (muted otherwise): 1000 + 200 hangover.
        assert_eq!(s.agent_talk_ms, 1200);
        // Agent spurt 1000..2200 lies inside the caller's 0..3200.
        assert_eq!(s.crosstalk_ms, 1200);
        assert_eq!(s.silences, 0);
    }

    #[test]
    fn late_or_early_agent_audio_is_placed_where_it_happened() {
        for agent_offset in [-1000i64, -100, 0, 60, 180] {
            let mut m = meter();
            let mut caller = Source::new();
            let mut agent = Source::new();
            // The agent's frame for moment t is delivered with the caller's
            // frame for t + offset (positive offset: agent arrives late).
            for step in 0..400i64 {
                let caller_at = step * 20;
                let sound = if caller_at < 1000 {
                    SPEECH
                } else {
                    Sound::Silence
                };
                m.frame(Party::Caller, caller_at as Millis, &caller.frame(sound));
                let agent_at = caller_at - agent_offset;
                if (4000..5000).contains(&agent_at) {
                    m.frame(Party::Agent, agent_at as Millis, &agent.frame(SPEECH));
                }
            }
            let s = m.finish(8000);
            assert_eq!(s.agent_talk_ms, 1200, "offset {agent_offset}");
            assert_eq!(s.crosstalk_ms, 0, "offset {agent_offset}");
            // Quiet 1200..4000 (2800, too short) and 5200..8000 (2800, too short).
            assert_eq!(s.silences, 0, "offset {agent_offset}");
        }
        // Now with the agent interrupting the caller.
        for agent_offset in [-1000i64, 0, 180] {
            let mut m = meter();
            let mut caller = Source::new();
            let mut agent = Source::new();
            for step in 0..400i64 {
                let caller_at = step * 20;
                let sound = if caller_at < 5000 {
                    SPEECH
                } else {
                    Sound::Silence
                };
                m.frame(Party::Caller, caller_at as Millis, &caller.frame(sound));
                let agent_at = caller_at - agent_offset;
                if (4000..6000).contains(&agent_at) {
                    m.frame(Party::Agent, agent_at as Millis, &agent.frame(SPEECH));
                }
            }
            let s = m.finish(8000);
            // Caller 0..5200, agent 4000..6200.
            assert_eq!(s.crosstalk_ms, 1200, "offset {agent_offset}");
        }
    }

    #[test]
    fn hold_is_not_dead_air_nor_crosstalk() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 2000, Sound::Silence);
        m.hold(true, 2000);
        m.hold(true, 2500); // repeated: ignored
        feed(&mut m, Party::Caller, 2000, 6000, Sound::Silence);
        // Both talk during hold: talk time, but no conversation.
        feed(&mut m, Party::Agent, 6000, 7000, SPEECH);
        feed(&mut m, Party::Caller, 6000, 7000, SPEECH);
        feed(&mut m, Party::Caller, 7000, 12000, Sound::Silence);
        m.hold(false, 12000);
        feed(&mut m, Party::Caller, 12000, 12500, Sound::Silence);
        feed(&mut m, Party::Caller, 12500, 13500, SPEECH);
        let s = m.finish(13500);
        assert_eq!(s.hold_ms, 10000);
        assert_eq!((s.silence_ms, s.silences), (0, 0));
        assert_eq!(s.caller_talk_ms, 3400);
        assert_eq!(s.agent_talk_ms, 1200);
        assert_eq!(s.crosstalk_ms, 0);

        // The same call without hold has 800 + 10000 + 500 ms of dead air,
        // split by the agent's spurt 6000..7200: 1200..6000 and 7200..12500.
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 6000, Sound::Silence);
        feed(&mut m, Party::Agent, 6000, 7000, SPEECH);
        feed(&mut m, Party::Caller, 6000, 12500, Sound::Silence);
        feed(&mut m, Party::Caller, 12500, 13500, SPEECH);
        let s = m.finish(13500);
        assert_eq!(
            (s.silence_ms, s.silences, s.longest_silence_ms),
            (4800 + 5300, 2, 5300)
        );
    }

    #[test]
    fn hold_still_on_at_the_end_counts_until_the_end() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, Sound::Silence);
        m.hold(true, 1000);
        feed(&mut m, Party::Caller, 1000, 5000, Sound::Silence);
        let s = m.snapshot(5000);
        assert_eq!(s.hold_ms, 4000);
        // 0..1000 quiet then hold: too short for dead air.
        assert_eq!(s.silences, 0);
    }

    #[test]
    fn line_noise_is_not_talk_but_quiet_tone_is() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 5000, Sound::Noise(-55.0));
        let s = m.finish(5000);
        assert_eq!(s.caller_talk_ms, 0);
        assert_eq!((s.silence_ms, s.silences), (5000, 1));

        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 5000, Sound::Tone(-30.0));
        let s = m.finish(5000);
        assert_eq!(s.caller_talk_ms, 5000);
        assert_eq!(s.silences, 0);
    }

    #[test]
    fn a_click_is_not_talk_and_does_not_break_dead_air() {
        let mut m = meter();
        let mut source = Source::new();
        for at in (0..5000).step_by(20) {
            let sound = if at == 2000 { SPEECH } else { Sound::Silence };
            m.frame(Party::Caller, at, &source.frame(sound));
        }
        let s = m.finish(5000);
        assert_eq!(s.caller_talk_ms, 0);
        assert_eq!((s.silence_ms, s.silences), (5000, 1));

        // With onset 0 the click is a 220 ms spurt splitting the quiet.
        let settings = VoiceSettings {
            onset_ms: 0,
            ..VoiceSettings::default()
        };
        let mut m = VoiceMeter::new(&settings, 0);
        let mut source = Source::new();
        for at in (0..5000).step_by(20) {
            let sound = if at == 2000 { SPEECH } else { Sound::Silence };
            m.frame(Party::Caller, at, &source.frame(sound));
        }
        let s = m.finish(5000);
        assert_eq!(s.caller_talk_ms, 220);
        assert_eq!((s.silence_ms, s.silences), (0, 0));
    }

    #[test]
    fn hangover_bridges_gaps_between_words() {
        let mut m = meter();
        let mut source = Source::new();
        // 200 ms syllables with 100 ms pauses for 3 s.
        for at in (0..3000).step_by(20) {
            let sound = if at % 300 < 200 {
                SPEECH
            } else {
                Sound::Silence
            };
            m.frame(Party::Caller, at, &source.frame(sound));
        }
        let s = m.finish(3000);
        // Last syllable 2700..2900, hangover cut at 3000.
        assert_eq!(s.caller_talk_ms, 3000);
    }

    #[test]
    fn snapshot_counts_a_running_stretch_once_long_enough() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 3000, Sound::Silence);
        let s = m.snapshot(3000);
        assert_eq!((s.silence_ms, s.silences, s.caller_talk_ms), (0, 0, 1200));
        feed(&mut m, Party::Caller, 3000, 4700, Sound::Silence);
        let s = m.snapshot(4700);
        assert_eq!((s.silence_ms, s.silences), (3500, 1));
        // Snapshot does not disturb the meter: the stretch keeps growing.
        feed(&mut m, Party::Caller, 4700, 6000, Sound::Silence);
        feed(&mut m, Party::Caller, 6000, 7000, SPEECH);
        let s = m.finish(7000);
        assert_eq!((s.silence_ms, s.silences), (4800, 1));
        // Closed: later input is ignored, same result again.
        feed(&mut m, Party::Caller, 7000, 20000, Sound::Silence);
        m.hold(true, 8000);
        assert_eq!(m.finish(30000), s);
        assert_eq!(m.snapshot(30000), s);
    }

    #[test]
    fn a_long_gap_in_the_caller_stream_is_not_dead_air() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 2000, Sound::Silence);
        // Ten minutes of nothing.
        feed(&mut m, Party::Caller, 602_000, 606_000, Sound::Silence);
        feed(&mut m, Party::Caller, 606_000, 607_000, SPEECH);
        let s = m.finish(607_000);
        assert_eq!(s.duration_ms, 607_000);
        assert_eq!(s.caller_talk_ms, 2200);
        // Only 602000..606000 counts; 1200..2000 ended at the gap.
        assert_eq!(
            (s.silence_ms, s.silences, s.longest_silence_ms),
            (4000, 1, 4000)
        );

        // Stream stalls and the call ends ten minutes later.
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 5000, Sound::Silence);
        let s = m.finish(605_000);
        assert_eq!(s.duration_ms, 605_000);
        assert_eq!((s.silence_ms, s.silences), (3800, 1));
    }

    #[test]
    fn a_short_gap_is_caller_silence() {
        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 1000, SPEECH);
        feed(&mut m, Party::Caller, 1000, 2000, Sound::Silence);
        // 600 ms of lost packets.
        feed(&mut m, Party::Caller, 2600, 5000, Sound::Silence);
        feed(&mut m, Party::Caller, 5000, 6000, SPEECH);
        let s = m.finish(6000);
        assert_eq!((s.silence_ms, s.silences), (3800, 1));
    }

    #[test]
    fn reordered_and_replayed_frames_are_dropped() {
        let mut reference = meter();
        feed(&mut reference, Party::Caller, 0, 2000, SPEECH);
        feed(&mut reference, Party::Caller, 2000, 6000, Sound::Silence);
        feed(&mut reference, Party::Agent, 500, 1500, SPEECH);
        let expected = reference.finish(6000);

        let mut m = meter();
        feed(&mut m, Party::Caller, 0, 2000, SPEECH);
        feed(&mut m, Party::Agent, 500, 1500, SPEECH);
        // Replays and a clock that went backwards.
        feed(&mut m, Party::Caller, 1000, 1500, SPEECH);
        feed(&mut m, Party::Agent, 0, 400, SPEECH);
        m.frame(Party::Caller, 0, &[0u8; FRAME]);
        feed(&mut m, Party::Caller, 2000, 6000, Sound::Silence);
        m.hold(true, 100); // before the last change: taken at the start
        m.hold(false, 100);
        assert_eq!(m.finish(6000), expected);
    }

    #[test]
    fn odd_and_empty_payloads() {
        let mut m = meter();
        m.frame(Party::Caller, 0, &[]);
        m.frame(Party::Agent, 0, &[]);
        m.frame(Party::Caller, 0, &[0x00]); // under half a ms: ignored
        assert_eq!(m.snapshot(0), VoiceSignals::default());
        // 80-byte (10 ms) loud frames: talk accrues by duration.
        let loud = [0x10u8; 80];
        for at in (0..1000).step_by(10) {
            m.frame(Party::Caller, at, &loud);
        }
        // 81 bytes rounds to 10 ms, 163 to 20 ms.
        m.frame(Party::Caller, 1000, &[0x10u8; 81]);
        m.frame(Party::Caller, 1010, &[0x10u8; 163]);
        let s = m.finish(1030);
        assert_eq!(s.caller_talk_ms, 1030);
        assert_eq!(s.duration_ms, 1030);
    }

    #[test]
    fn agent_only_and_hold_without_audio() {
        let mut m = meter();
        feed(&mut m, Party::Agent, 0, 1000, SPEECH);
        m.hold(true, 2000);
        let s = m.finish(5000);
        assert_eq!(s.agent_talk_ms, 1200);
        assert_eq!(s.hold_ms, 3000);
        assert_eq!(s.duration_ms, 5000);
        // No caller audio: no timeline, so no dead air or crosstalk.
        assert_eq!((s.silence_ms, s.crosstalk_ms), (0, 0));
    }

    #[test]
    fn weird_settings_do_not_panic() {
        for settings in [
            VoiceSettings {
                threshold_dbov: f32::NAN,
                ..VoiceSettings::default()
            },
            VoiceSettings {
                threshold_dbov: f32::INFINITY,
                ..VoiceSettings::default()
            },
            VoiceSettings {
                threshold_dbov: 10.0,
                ..VoiceSettings::default()
            },
            VoiceSettings {
                threshold_dbov: -200.0,
                ..VoiceSettings::default()
            },
            VoiceSettings {
                threshold_dbov: -40.0,
                hangover_ms: u64::MAX,
                dead_air_ms: 0,
                onset_ms: u64::MAX,
                max_gap_ms: u64::MAX,
                agent_lag_ms: u64::MAX,
            },
            VoiceSettings {
                threshold_dbov: -40.0,
                hangover_ms: 0,
                dead_air_ms: u64::MAX,
                onset_ms: 0,
                max_gap_ms: 0,
                agent_lag_ms: 0,
            },
        ] {
            let mut m = VoiceMeter::new(&settings, 0);
            feed(&mut m, Party::Caller, 0, 2000, SPEECH);
            feed(&mut m, Party::Agent, 500, 2500, SPEECH);
            feed(&mut m, Party::Caller, 2000, 6000, Sound::Silence);
            let s = m.finish(6000);
            check_invariants(&s);
        }
    }

    fn check_invariants(s: &VoiceSignals) {
        assert!(s.caller_talk_ms <= s.duration_ms, "{s:?}");
        assert!(s.agent_talk_ms <= s.duration_ms, "{s:?}");
        assert!(
            s.crosstalk_ms <= s.caller_talk_ms.min(s.agent_talk_ms),
            "{s:?}"
        );
        assert!(s.silence_ms + s.crosstalk_ms <= s.duration_ms, "{s:?}");
        assert!(s.longest_silence_ms <= s.silence_ms, "{s:?}");
        assert!(s.hold_ms <= s.duration_ms, "{s:?}");
        assert_eq!(s.silences == 0, s.silence_ms == 0, "{s:?}");
    }

    #[test]
    fn random_input_never_panics_and_stays_consistent() {
        let mut seed = 7u64;
        let mut next = move || {
            seed = seed
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            seed >> 33
        };
        let mut payload = [0u8; 400];
        for round in 0..200 {
            let mut m = VoiceMeter::new(&VoiceSettings::default(), 1000);
            let mut now: Millis = if round % 10 == 0 {
                u64::MAX - 100_000
            } else {
                0
            };
            for _ in 0..2000 {
                now = match next() % 100 {
                    0 => now.saturating_sub(next() % 5000),
                    1 => now.saturating_add(next() % 700_000),
                    _ => now.saturating_add(next() % 40),
                };
                let op = next() % 20;
                if op == 0 {
                    m.hold(next() % 2 == 0, now);
                } else if op == 1 {
                    check_invariants(&m.snapshot(now));
                } else {
                    let len = match next() % 4 {
                        0 => (next() % 400) as usize,
                        _ => 160,
                    };
                    let loud = next() % 2 == 0;
                    for byte in payload[..len].iter_mut() {
                        *byte = if loud {
                            next() as u8
                        } else {
                            0xFF - (next() % 3) as u8
                        };
                    }
                    let party = if op % 2 == 0 {
                        Party::Caller
                    } else {
                        Party::Agent
                    };
                    m.frame(party, now, &payload[..len]);
                }
            }
            check_invariants(&m.finish(now));
        }
    }

    /// Micro benchmark: `cargo test --release -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn bench_frame() {
        let mut source = Source::new();
        let frames = [
            source.frame(SPEECH),
            source.frame(Sound::Silence),
            source.frame(Sound::Noise(-55.0)),
            source.frame(Sound::Tone(-30.0)),
        ];
        let mut m = meter();
        const CALLS: u64 = 1_000_000;
        let started = std::time::Instant::now();
        for i in 0..CALLS {
            let at = (i / 2) * 20;
            let party = if i % 2 == 0 {
                Party::Caller
            } else {
                Party::Agent
            };
            let frame = &frames[((i / 2 / 37) % 4) as usize];
            m.frame(party, std::hint::black_box(at), std::hint::black_box(frame));
        }
        let elapsed = started.elapsed();
        let s = std::hint::black_box(m.finish(CALLS * 10));
        println!(
            "frame(): {:.1} ns/frame over {CALLS} frames ({s:?})",
            elapsed.as_nanos() as f64 / CALLS as f64
        );
    }
}
