//! Loan approval: a credit check, then a human decision awaited as a signal with a timeout.
//! With no decision in time the case is escalated to a manager; with none after that either it
//! is rejected. While it waits, the instance answers a `progress` query and accepts notes
//! through an `add-note` update, both methods running beside the main function on shared state.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use baton::{Channel, Either, Method, Workflow, WorkflowContext, race};
use serde::{Deserialize, Serialize};

/// A loan application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanRequest {
    /// Who applies.
    pub applicant: String,
    /// How much, in cents.
    pub amount_cents: u64,
    /// How long an officer has to decide before escalation (the manager gets twice as long).
    pub decision_window_ms: u64,
}

/// A human decision.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Approved or not.
    pub approved: bool,
    /// Who decided.
    pub by: String,
}

/// Where an application stands.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanProgress {
    /// Current stage.
    pub stage: String,
    /// Whether it was escalated.
    pub escalated: bool,
    /// Notes added by reviewers.
    pub notes: Vec<String>,
}

/// How an application ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoanOutcome {
    /// Approved or not.
    pub approved: bool,
    /// Who (or what) decided.
    pub decided_by: String,
    /// Whether it was escalated.
    pub escalated: bool,
    /// Reviewers' notes.
    pub notes: Vec<String>,
}

/// The decision channel.
pub const DECISION: Channel<Decision> = Channel::new("decision");
/// Query: where the application stands.
pub const PROGRESS: Method<(), LoanProgress> = Method::new("progress");
/// Update: add a reviewer's note; returns how many notes there are.
pub const ADD_NOTE: Method<String, usize> = Method::new("add-note");

/// Credit bureau.
#[baton::service]
pub trait Credit {
    /// The applicant's credit score.
    async fn score(&self, applicant: String) -> Result<u32, String>;
}

/// Escalations.
#[baton::service]
pub trait Escalation {
    /// Tells a manager an application waits for them.
    async fn notify_manager(&self, applicant: String, amount_cents: u64) -> Result<(), String>;
}

/// The loan approval workflow.
pub struct LoanApproval;

impl Workflow for LoanApproval {
    const NAME: &'static str = "LoanApproval";
    type Input = LoanRequest;
    type Output = LoanOutcome;
    type Error = String;

    async fn run(ctx: WorkflowContext, request: LoanRequest) -> Result<LoanOutcome, String> {
        let progress = Rc::new(RefCell::new(LoanProgress {
            stage: "credit check".into(),
            ..LoanProgress::default()
        }));
        ctx.handle(&PROGRESS, {
            let progress = progress.clone();
            move |()| {
                let snapshot = progress.borrow().clone();
                async move { Ok(snapshot) }
            }
        });
        ctx.handle(&ADD_NOTE, {
            let progress = progress.clone();
            move |note: String| {
                let mut p = progress.borrow_mut();
                p.notes.push(note);
                let count = p.notes.len();
                async move { Ok(count) }
            }
        });
        let finish = |approved: bool, decided_by: String| {
            let p = progress.borrow();
            Ok(LoanOutcome {
                approved,
                decided_by,
                escalated: p.escalated,
                notes: p.notes.clone(),
            })
        };

        let score = ctx
            .service::<CreditStub>()
            .score(request.applicant.clone())
            .await
            .map_err(|e| e.to_string())?;
        if score < 500 {
            return finish(false, "credit policy".into());
        }
        let window = Duration::from_millis(request.decision_window_ms);
        progress.borrow_mut().stage = "waiting for an officer".into();
        if let Either::Left(decision) = race(ctx.receive(&DECISION), ctx.sleep(window)).await {
            let d = decision.map_err(|e| e.to_string())?;
            return finish(d.approved, d.by);
        }
        ctx.service::<EscalationStub>()
            .notify_manager(request.applicant.clone(), request.amount_cents)
            .await
            .map_err(|e| e.to_string())?;
        {
            let mut p = progress.borrow_mut();
            p.escalated = true;
            p.stage = "escalated to a manager".into();
        }
        match race(ctx.receive(&DECISION), ctx.sleep(window * 2)).await {
            Either::Left(decision) => {
                let d = decision.map_err(|e| e.to_string())?;
                finish(d.approved, d.by)
            }
            Either::Right(()) => finish(false, "no decision in time".into()),
        }
    }
}

/// The loan services: a credit bureau that scores by name, and an escalation counter.
#[derive(Clone, Default)]
pub struct LoanDesk {
    escalations: Arc<AtomicU32>,
}

impl LoanDesk {
    /// Managers notified so far.
    pub fn escalations(&self) -> u32 {
        self.escalations.load(Ordering::SeqCst)
    }
}

impl Credit for LoanDesk {
    async fn score(&self, applicant: String) -> Result<u32, String> {
        Ok(if applicant.starts_with("risky") { 420 } else { 710 })
    }
}

impl Escalation for LoanDesk {
    async fn notify_manager(&self, _applicant: String, _amount_cents: u64) -> Result<(), String> {
        self.escalations.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

/// Hosts the loan services and workflow on an embedded builder.
pub fn embedded(desk: &LoanDesk, builder: baton::EmbeddedBuilder) -> baton::EmbeddedBuilder {
    builder
        .service(CreditService::new(desk.clone()))
        .service(EscalationService::new(desk.clone()))
        .workflow::<LoanApproval>()
}
