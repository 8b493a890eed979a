//! Methods on running instances (queries and updates), and the billing and loan examples,
//! through the real components.
#![allow(missing_docs)]

mod common;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use baton::{Channel, ClientError, Embedded, FailureKind, Method, StartOptions, Workflow, WorkflowContext};
use baton_examples::billing::{self, BillingLedger, MonthlyBilling, Subscription, UNSUBSCRIBE, Unsubscribe};
use baton_examples::loan::{self, ADD_NOTE, DECISION, Decision, LoanApproval, LoanDesk, LoanRequest, PROGRESS};

pub const TOTAL: Method<(), u32> = Method::new("total");
pub const ADD: Method<u32, u32> = Method::new("add");
pub const CLOSE: Channel<()> = Channel::new("close");

/// A counter: `add` updates it, `total` reads it, `close` ends the run with the final total.
struct Counter;
impl Workflow for Counter {
    const NAME: &'static str = "Counter";
    type Input = u32;
    type Output = u32;
    type Error = String;

    async fn run(ctx: WorkflowContext, start: u32) -> Result<u32, String> {
        let total = Rc::new(RefCell::new(start));
        ctx.handle(&TOTAL, {
            let total = total.clone();
            move |()| {
                let now = *total.borrow();
                async move { Ok(now) }
            }
        });
        ctx.handle(&ADD, {
            let total = total.clone();
            move |n: u32| {
                let total = total.clone();
                async move {
                    if n == 0 {
                        return Err("adding zero is pointless".to_string());
                    }
                    *total.borrow_mut() += n;
                    Ok(*total.borrow())
                }
            }
        });
        ctx.receive(&CLOSE).await.map_err(|e| e.to_string())?;
        let final_total = *total.borrow();
        Ok(final_total)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_and_updates_run_beside_the_main_function_on_shared_state() {
    let baton = Embedded::builder().workflow::<Counter>().start().await.expect("start");
    let handle = baton.client().start::<Counter>(&10).await.expect("start");
    common::wait_pending(baton.client(), "Counter", handle.id(), 1).await;
    assert_eq!(handle.call(&TOTAL, &()).await.expect("query"), 10);
    assert_eq!(handle.call(&ADD, &5).await.expect("update"), 15);
    assert_eq!(handle.call(&ADD, &7).await.expect("update"), 22);
    assert_eq!(handle.call(&TOTAL, &()).await.expect("query"), 22);
    match handle.call(&ADD, &0).await {
        Err(ClientError::MethodFailed(f)) => assert!(f.message.contains("pointless"), "{f}"),
        other => panic!("{other:?}"),
    }
    // The main function sees the updates.
    handle.signal(&CLOSE, &()).await.expect("close");
    assert_eq!(handle.result().await.expect("result"), 22);
    // An ended instance has no methods to call.
    match handle.call(&TOTAL, &()).await {
        Err(ClientError::MethodFailed(f)) => assert_eq!(f.kind, FailureKind::InstanceEnded),
        other => panic!("{other:?}"),
    }
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_method_or_instance_is_an_error() {
    let baton = Embedded::builder().workflow::<Counter>().start().await.expect("start");
    let handle = baton.client().start::<Counter>(&1).await.expect("start");
    common::wait_pending(baton.client(), "Counter", handle.id(), 1).await;
    let nope: Method<(), u32> = Method::new("nope");
    match handle.call(&nope, &()).await {
        Err(ClientError::MethodFailed(f)) => assert_eq!(f.kind, FailureKind::UnknownMethod),
        other => panic!("{other:?}"),
    }
    let ghost = baton.client().handle::<Counter>(baton::WorkflowId::new());
    assert!(matches!(
        ghost.call(&TOTAL, &()).await,
        Err(ClientError::UnknownWorkflow(_))
    ));
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_method_called_by_tag_reaches_every_tagged_instance() {
    let baton = Embedded::builder().workflow::<Counter>().start().await.expect("start");
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["team-a".into()],
        ..StartOptions::default()
    };
    let a = client.start_with::<Counter>(&1, tagged.clone()).await.expect("start");
    let b = client.start_with::<Counter>(&2, tagged).await.expect("start");
    common::wait_tagged(client, "Counter", "team-a", 2).await;
    common::wait_pending(client, "Counter", a.id(), 1).await;
    common::wait_pending(client, "Counter", b.id(), 1).await;
    client
        .call_by_tag("Counter", "team-a", &ADD, &100)
        .await
        .expect("call by tag");
    for (handle, expected) in [(&a, 101), (&b, 102)] {
        let mut total = 0;
        for _ in 0..500 {
            total = handle.call(&TOTAL, &()).await.expect("query");
            if total == expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(total, expected);
    }
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redelivered_call_by_tag_runs_once_per_instance() {
    use baton_shared_schemas::messages::{TagEngineMessage, TaggedCommand};
    use baton_shared_schemas::{EncodedMessage, Envelope, Payload, Timestamp, Topic};

    let baton = Embedded::builder().workflow::<Counter>().start().await.expect("start");
    let client = baton.client();
    let tagged = StartOptions {
        tags: vec!["team-b".into()],
        ..StartOptions::default()
    };
    let handle = client.start_with::<Counter>(&1, tagged).await.expect("start");
    common::wait_tagged(client, "Counter", "team-b", 1).await;
    common::wait_pending(client, "Counter", handle.id(), 1).await;
    // The same message twice, as a broker redelivers it after the tag engine died before
    // acknowledging: the instance must be updated once.
    let add_ten = TagEngineMessage::ByTag {
        workflow_name: "Counter".into(),
        tag: "team-b".into(),
        command: TaggedCommand::CallMethod {
            method: ADD.name().into(),
            args: Payload::json(&10u32).expect("args"),
        },
        cursor: None,
    };
    let envelope = Envelope::new(add_ten, Timestamp::now_system());
    let once = EncodedMessage::encode(&Topic::workflow_tag("Counter"), &envelope).expect("encode");
    for _ in 0..2 {
        let (topic, message) = baton_transport::outgoing(once.clone());
        baton.transport().publish(&topic, message).await.expect("publish");
    }
    // A later, distinct call by tag: once it shows, both copies above were handled (one key,
    // one order).
    client
        .call_by_tag("Counter", "team-b", &ADD, &100)
        .await
        .expect("call by tag");
    let mut total = 0;
    for _ in 0..500 {
        total = handle.call(&TOTAL, &()).await.expect("query");
        if total >= 111 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(total, 111, "1 + 10 once + 100");
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn billing_invoices_exactly_the_months_before_each_unsubscription() {
    let ledger = BillingLedger::default();
    let baton = billing::embedded(&ledger, Embedded::builder())
        .start()
        .await
        .expect("start");
    let months = 6;
    let mut handles = Vec::new();
    for n in 0..30u32 {
        let sub = Subscription {
            customer: format!("c{n}"),
            months_billed: 0,
            horizon: months,
            stop_after: None,
            // Long enough that the unsubscription, sent right after the start, arrives before
            // its month even on a loaded machine.
            month_ms: 100,
        };
        let handle = baton.client().start::<MonthlyBilling>(&sub).await.expect("start");
        if let Some(after_month) = billing::unsubscribes_after(n, months) {
            handle
                .signal(&UNSUBSCRIBE, &Unsubscribe { after_month })
                .await
                .expect("unsubscribe");
        }
        handles.push((n, handle));
    }
    let mut total = 0;
    for (n, handle) in handles {
        let summary = handle.result().await.expect("summary");
        let expected = billing::unsubscribes_after(n, months).unwrap_or(months);
        assert_eq!(summary.invoices, expected, "customer {n}");
        assert_eq!(summary.unsubscribed, billing::unsubscribes_after(n, months).is_some());
        total += expected;
    }
    let by_customer = ledger.invoices_by_customer();
    assert_eq!(by_customer.values().map(Vec::len).sum::<usize>() as u32, total);
    for (customer, invoiced) in by_customer {
        assert_eq!(
            invoiced,
            (1..=invoiced.len() as u32).collect::<Vec<_>>(),
            "{customer} billed each month once, in order"
        );
    }
    assert_eq!(ledger.emails() as u32, total);
    baton.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loan_waits_for_a_decision_escalates_on_timeout_and_answers_queries() {
    let desk = LoanDesk::default();
    let baton = loan::embedded(&desk, Embedded::builder()).start().await.expect("start");
    let request = |who: &str| LoanRequest {
        applicant: who.into(),
        amount_cents: 1_000_000,
        decision_window_ms: 150,
    };
    let quick = baton
        .client()
        .start::<LoanApproval>(&request("ada"))
        .await
        .expect("start");
    let slow = baton
        .client()
        .start::<LoanApproval>(&request("grace"))
        .await
        .expect("start");
    let risky = baton
        .client()
        .start::<LoanApproval>(&request("risky-bob"))
        .await
        .expect("start");

    let mut stage = String::new();
    for _ in 0..500 {
        stage = quick.call(&PROGRESS, &()).await.expect("query").stage;
        if stage == "waiting for an officer" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(stage, "waiting for an officer");
    assert_eq!(quick.call(&ADD_NOTE, &"docs ok".to_string()).await.expect("update"), 1);
    quick
        .signal(
            &DECISION,
            &Decision {
                approved: true,
                by: "officer".into(),
            },
        )
        .await
        .expect("decide");
    let outcome = quick.result().await.expect("result");
    assert!(outcome.approved && !outcome.escalated && outcome.decided_by == "officer");
    assert_eq!(outcome.notes, vec!["docs ok".to_string()]);

    for _ in 0..500 {
        if slow.call(&PROGRESS, &()).await.expect("query").escalated {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    slow.signal(
        &DECISION,
        &Decision {
            approved: true,
            by: "manager".into(),
        },
    )
    .await
    .expect("decide");
    let outcome = slow.result().await.expect("result");
    assert!(
        outcome.approved && outcome.escalated && outcome.decided_by == "manager",
        "{outcome:?}"
    );

    let outcome = risky.result().await.expect("result");
    assert!(!outcome.approved && outcome.decided_by == "credit policy");
    assert_eq!(desk.escalations(), 1);
    baton.shutdown().await;
}
