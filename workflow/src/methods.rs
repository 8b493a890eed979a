//! Methods on a running instance: handlers registered by the workflow, run beside its main
//! function when a client calls them, sharing its state (queries and updates).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::rc::Rc;

use baton_shared_schemas::{Failure, FailureKind, Payload};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::context::WorkflowContext;

/// The future of one handler invocation, types erased.
pub(crate) type HandlerFuture = Pin<Box<dyn Future<Output = Result<Payload, Failure>>>>;
/// A registered handler, types erased.
pub(crate) type Handler = Rc<dyn Fn(Payload) -> HandlerFuture>;

/// A method of a workflow taking `A` and returning `R`, declared once and shared by the
/// workflow (which handles it) and clients (which call it).
///
/// ```text
/// pub const PROGRESS: Method<(), Progress> = Method::new("progress");
/// // in the workflow:   ctx.handle(&PROGRESS, move |()| { let s = state.clone(); async move { Ok(s.borrow().progress()) } });
/// // from a client:     let p = handle.call(&PROGRESS, &()).await?;
/// ```
pub struct Method<A, R> {
    name: &'static str,
    _types: PhantomData<fn(A) -> R>,
}

impl<A, R> Method<A, R> {
    /// A method named `name` (unique within its workflow).
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            _types: PhantomData,
        }
    }

    /// The method's name.
    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl WorkflowContext {
    /// Handles calls of `method`: each call runs `handler` beside the main function, in the same
    /// deterministic executor, so both can share state through an `Rc<RefCell<_>>`. A handler
    /// may await service calls, timers and signals like any workflow code. Register handlers at
    /// the start of the workflow: a call that arrives before its handler is registered fails.
    pub fn handle<A, R, F, Fut>(&self, method: &Method<A, R>, handler: F)
    where
        A: DeserializeOwned + 'static,
        R: Serialize + 'static,
        F: Fn(A) -> Fut + 'static,
        Fut: Future<Output = Result<R, String>> + 'static,
    {
        let name = method.name;
        let erased: Handler = Rc::new(move |args: Payload| -> HandlerFuture {
            match args.decode::<A>() {
                Ok(args) => {
                    let running = handler(args);
                    Box::pin(async move {
                        match running.await {
                            Ok(value) => Payload::json(&value).map_err(|e| {
                                Failure::new(FailureKind::Serialization, format!("result of method {name}: {e}"))
                            }),
                            Err(message) => Err(Failure {
                                error: Payload::json(&message).ok(),
                                ..Failure::new(FailureKind::WorkflowError, message)
                            }),
                        }
                    })
                }
                Err(e) => {
                    let failure = Failure::new(
                        FailureKind::InvalidArguments,
                        format!("arguments of method {name}: {e}"),
                    );
                    Box::pin(async move { Err(failure) })
                }
            }
        });
        self.state.borrow_mut().handlers.insert(name.to_string(), erased);
    }
}
