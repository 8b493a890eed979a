//! Messages consumed by the timer service (`timers`, keyed by timer shard).

use serde::{Deserialize, Serialize};

use crate::{TimerId, Timestamp};

/// An already-encoded message to publish when a timer is due.
pub type ScheduledMessage = crate::EncodedMessage;

/// Messages for the timer service. Append-only.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimerMessage {
    /// Store a timer (idempotent per timer id).
    Schedule {
        /// The timer.
        timer_id: TimerId,
        /// When to fire.
        due: Timestamp,
        /// What to publish then.
        message: ScheduledMessage,
    },
    /// Drop a timer that has not fired.
    Cancel {
        /// The timer.
        timer_id: TimerId,
    },
}

impl TimerMessage {
    /// The timer the message is about.
    pub fn timer_id(&self) -> TimerId {
        match self {
            Self::Schedule { timer_id, .. } | Self::Cancel { timer_id } => *timer_id,
        }
    }
}
