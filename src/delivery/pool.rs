//! The sender pool: `delivery.workers` supervised actors, each making one HTTP attempt at a time.
//!
//! The dispatcher is their supervisor and their only client: it decides *what* is due (due-time
//! queue, per-endpoint limits, Slack pacing) and hands one delivery to an idle sender; the sender
//! formats the per-attempt headers, sends, classifies the answer and reports back. A plain pool
//! rather than `ractor::factory`: the factory's routing (by key or round robin) would have to
//! re-implement what the dispatcher's queue already decides, and the dispatcher must know which
//! delivery a crashed sender held in order to reschedule it — simplest when it is the supervisor.
//!
//! A sender that crashes mid-attempt is replaced; its delivery never left the outbox and is
//! rescheduled with the same id, counted as a failed attempt.

use super::sender::{Attempt, Sender};
use super::Delivery;
use ractor::{Actor, ActorProcessingErr, ActorRef};

/// What a sender is asked to do.
pub enum SendWorkerMsg {
    /// Send `delivery` once with `client`, report to `reply`.
    Attempt {
        delivery: Box<Delivery>,
        client: Sender,
        reply: ActorRef<super::dispatcher::DispatcherMsg>,
    },
}

/// One sender actor.
pub struct SendWorker;

impl Actor for SendWorker {
    type Msg = SendWorkerMsg;
    type State = ();
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        _args: (),
    ) -> Result<(), ActorProcessingErr> {
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Self::Msg>,
        msg: Self::Msg,
        _state: &mut (),
    ) -> Result<(), ActorProcessingErr> {
        let SendWorkerMsg::Attempt {
            delivery,
            client,
            reply,
        } = msg;
        if crate::testhooks::sender_should_crash() {
            panic!("test hook: sender crashes during delivery {}", delivery.id);
        }
        let now = crate::clock::now_ms();
        let attempt: Attempt = client.attempt(&delivery, now / 1000).await;
        let _ = reply.cast(super::dispatcher::DispatcherMsg::Done {
            worker: myself.get_id(),
            delivery,
            attempt,
        });
        Ok(())
    }
}
