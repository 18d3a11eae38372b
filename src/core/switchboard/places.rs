//! Places in line: each waiting customer is told their place and an estimate when it
//! changes (and swept at most once a second), so nobody waits without knowing.

use std::cmp::Reverse;

use super::{Conversation, Staffing, Switchboard, Timer, queued_notice, staffed_for, wait_key};
use crate::core::io::Effect;
use crate::core::model::{ConversationState, Id, Millis};

impl Switchboard {
    /// Tells waiting customers their place. At once: each queue's new first in line,
    /// and whoever joined the line (new, or back from an offer or an agent). Everyone else whose place moved: by a sweep
    /// of the line at most once per `queued_update_interval_ms`, so a departure with
    /// 100,000 waiting does not cost a pass over them all (nor a frame to each).
    pub(super) fn tell_places(&mut self, now: Millis, out: &mut Vec<Effect>) {
        let mut told: Vec<(Id, u32)> = Vec::new();
        for queue in std::mem::take(&mut self.waiting.new_front) {
            if let Some((_, id)) = self.waiting.front(&queue) {
                told.push((id.clone(), 1));
            }
        }
        let joined = std::mem::take(&mut self.waiting.joined);
        for (key, place) in joined.iter().zip(self.waiting.places(&joined)) {
            if let Some(place) = place {
                told.push((self.waiting.get(key).expect("in line").clone(), place));
            }
        }
        // How many each queue's agents can hold, once per queue and channel.
        let mut staffed = Staffing::new();
        for (id, place) in told {
            self.tell_place(&id, place, now, Some(&mut staffed), out);
        }
        if !(self.waiting.shifted || self.positions_due) {
            return;
        }
        let interval = self.settings.queued_update_interval_ms;
        // A sweep set for later waits for its timer (so it comes on a tick, not in
        // reply to whatever input happens to come first).
        if self.positions_due || (!self.sweep_armed && now >= self.last_sweep + interval) {
            self.waiting.shifted = false;
            self.positions_due = false;
            self.last_sweep = now;
            self.sweep_places(now, out);
        } else if !self.sweep_armed {
            self.sweep_armed = true;
            self.timers
                .push(Reverse((self.last_sweep + interval, Timer::Positions)));
        }
    }

    /// Tells every waiting customer whose place changed since they were last told.
    pub(super) fn sweep_places(&mut self, now: Millis, out: &mut Vec<Effect>) {
        let mut moved: Vec<(Id, u32)> = Vec::new();
        for (_, line) in self.waiting.by_queue() {
            for (place, id) in (1u32..).zip(line.values()) {
                let sent = self.conversations.get(id).and_then(|c| c.queued_sent);
                if sent.is_none_or(|(p, _)| p != place) {
                    moved.push((id.clone(), place));
                }
            }
        }
        // How many each queue's agents can hold, once per queue and channel.
        let mut staffed = Staffing::new();
        for (id, place) in moved {
            self.tell_place(&id, place, now, Some(&mut staffed), out);
        }
    }

    /// Sends `queued` with `place` unless the customer was told it already.
    pub(super) fn tell_place(
        &mut self,
        id: &Id,
        place: u32,
        now: Millis,
        staffed: Option<&mut Staffing>,
        out: &mut Vec<Effect>,
    ) {
        let Some(conv) = self.conversations.get(id) else {
            return;
        };
        if conv.queued_sent.is_some_and(|(p, _)| p == place) {
            return;
        }
        let staff = match staffed {
            Some(cache) => *cache
                .entry((
                    conv.rec.queue.clone(),
                    conv.rec.channel,
                    conv.rec.language.clone(),
                ))
                .or_insert_with(|| staffed_for(&self.queues, &self.agents, conv)),
            None => staffed_for(&self.queues, &self.agents, conv),
        };
        out.push(queued_notice(&self.queues, conv, place, staff, now));
        if let Some(conv) = self.conversations.get_mut(id) {
            conv.queued_sent = Some((place, now));
        }
    }

    /// Place of a waiting conversation in its queue (1 = next).
    pub(super) fn position(&self, conv: &Conversation) -> Option<u32> {
        if conv.rec.state != ConversationState::Queued {
            return None;
        }
        self.waiting.place(&wait_key(conv), &conv.rec.queue)
    }
}
