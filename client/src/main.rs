//! The `baton` command line: start workflows and inspect and repair instances from a shell.
//!
//! Exit codes: 0 success; 1 the workflow failed, was cancelled or is stuck on a failed
//! workflow task (for `result` and `start --wait`), or a called method failed; 2 bad input
//! (flags, JSON, tags, configuration); 3 unknown instance; 4 the broker is unreachable, no
//! component answered, or the result did not come within `--timeout`.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use baton_client::{Client, ClientError, StartOptions};
use baton_runtime::SystemClock;
use baton_server::{CommonArgs, connect_transport};
use baton_shared_schemas::messages::{TaggedCommand, TaskFilter, WorkflowOutcome};
use baton_shared_schemas::{FailureKind, Payload, SignalId, TaskId, WorkflowId};
use clap::{Args, Parser, Subcommand};

mod dev;

/// Start, inspect and repair Baton workflows.
#[derive(Parser, Debug)]
#[command(name = "baton", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// How long to wait for the broker, for replies and for results, in seconds (at least 1).
    #[arg(long, default_value_t = 30, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

/// One instance by id, or every instance carrying a tag.
#[derive(Args, Debug, Clone)]
#[group(required = true, multiple = false)]
struct Target {
    /// The instance's id.
    #[arg(long)]
    id: Option<String>,
    /// Every instance carrying this tag.
    #[arg(long)]
    tag: Option<String>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Start an instance; prints its id (or its result with --wait).
    Start {
        /// Workflow name.
        workflow: String,
        /// Input as JSON.
        input: String,
        /// A tag (repeatable).
        #[arg(long = "tag")]
        tags: Vec<String>,
        /// A business key: starting twice with one custom id starts one instance.
        #[arg(long)]
        custom_id: Option<String>,
        /// Metadata, `key=value` (repeatable).
        #[arg(long = "meta", value_parser = parse_meta)]
        meta: Vec<(String, String)>,
        /// Wait for the result and print it.
        #[arg(long)]
        wait: bool,
    },
    /// Run a whole local deployment for your own worker: Redis, a broker, the engine, the
    /// timer service, the tag engine, and the API and dashboard, until Ctrl-C.
    Dev(dev::DevArgs),
    /// Print an instance's status as JSON.
    Status {
        /// Workflow name.
        workflow: String,
        /// The instance's id.
        id: String,
    },
    /// Wait for an instance's result and print it as JSON.
    Result {
        /// Workflow name.
        workflow: String,
        /// The instance's id.
        id: String,
    },
    /// Send a signal.
    Signal {
        /// Workflow name.
        workflow: String,
        #[command(flatten)]
        target: Target,
        /// Channel name.
        channel: String,
        /// Value as JSON.
        value: String,
    },
    /// Call a method of a running instance and print its result.
    Call {
        /// Workflow name.
        workflow: String,
        /// The instance's id.
        id: String,
        /// Method name.
        method: String,
        /// Arguments as JSON.
        #[arg(default_value = "null")]
        args: String,
    },
    /// Cancel.
    Cancel {
        /// Workflow name.
        workflow: String,
        #[command(flatten)]
        target: Target,
        /// Why.
        #[arg(long, default_value = "cancelled from the command line")]
        reason: String,
    },
    /// Retry the failed workflow task (after deploying a fix).
    RetryWorkflowTask {
        /// Workflow name.
        workflow: String,
        #[command(flatten)]
        target: Target,
    },
    /// Retry failed tasks of a failed run; the run resumes.
    RetryTask {
        /// Workflow name.
        workflow: String,
        #[command(flatten)]
        target: Target,
        /// Only this task.
        #[arg(long)]
        task_id: Option<String>,
        /// Only tasks of this service.
        #[arg(long)]
        service: Option<String>,
        /// Only tasks that failed this way (e.g. Panic, ExecutionTimeout, ServiceError).
        #[arg(long, value_parser = parse_failure_kind)]
        failure: Option<FailureKind>,
    },
    /// Fire pending timers now.
    CompleteTimers {
        /// Workflow name.
        workflow: String,
        #[command(flatten)]
        target: Target,
    },
    /// List the ids of instances carrying a tag.
    List {
        /// Workflow name.
        workflow: String,
        /// The tag.
        #[arg(long)]
        tag: String,
    },
}

fn parse_meta(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not key=value"))
}

fn parse_failure_kind(s: &str) -> Result<FailureKind, String> {
    serde_json::from_value(serde_json::Value::String(s.to_string()))
        .map_err(|_| format!("`{s}` is not a failure kind (ServiceError, Panic, ExecutionTimeout, TimedOut, …)"))
}

/// A failure with its exit code.
struct Exit(u8, String);

impl From<ClientError> for Exit {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::UnknownWorkflow(_) => Exit(3, e.to_string()),
            ClientError::Timeout(_) | ClientError::Transport(_) | ClientError::Closed => Exit(4, e.to_string()),
            ClientError::Payload(_) | ClientError::InvalidInput(_) => Exit(2, e.to_string()),
            ClientError::MethodFailed(_) => Exit(1, e.to_string()),
        }
    }
}

/// The component that answers a request.
#[derive(Clone, Copy)]
enum Answerer {
    Engine,
    TagEngine,
}

impl Answerer {
    fn name(self) -> &'static str {
        match self {
            Self::Engine => "workflow engine",
            Self::TagEngine => "tag engine",
        }
    }

    /// The setting that makes it serve a workflow.
    fn setting(self) -> &'static str {
        match self {
            Self::Engine => "engine.workflows",
            Self::TagEngine => "tag_engine.workflows",
        }
    }
}

/// What a timeout means for a request `component` should have answered for `workflow`.
fn unanswered(component: Answerer, workflow: &str, timeout: Duration) -> impl Fn(ClientError) -> Exit {
    let workflow = workflow.to_string();
    move |e| match e {
        ClientError::Timeout(_) => Exit(
            4,
            format!(
                "no {} answered for workflow `{workflow}` within {}s: is one running with `{workflow}` in {}?",
                component.name(),
                timeout.as_secs(),
                component.setting()
            ),
        ),
        other => other.into(),
    }
}

fn tag(text: &str) -> Result<(), Exit> {
    baton_shared_schemas::validate_tag(text).map_err(|e| Exit(2, e.to_string()))
}

/// Waits up to `timeout` for how instance `id` ends, printing it. Also watches its status, so
/// a run stuck on a failed workflow task (undecodable input, a bug) is reported instead of
/// waited on.
async fn wait_for_outcome(client: &Client, workflow: &str, id: WorkflowId, timeout: Duration) -> Result<(), Exit> {
    let deadline = tokio::time::Instant::now() + timeout;
    let outcome = client.outcome(workflow, id);
    tokio::pin!(outcome);
    let mut poll = tokio::time::interval(Duration::from_millis(500));
    // Whether the engine answered a status query: at the deadline, a silent engine and a
    // run still going are different failures.
    let mut answered = false;
    loop {
        tokio::select! {
            result = &mut outcome => return print_outcome(&result?),
            _ = tokio::time::sleep_until(deadline) => {
                if !answered {
                    return Err(unanswered(Answerer::Engine, workflow, timeout)(ClientError::Timeout(timeout)));
                }
                return Err(Exit(4, format!(
                    "{workflow} {id} is still running after {}s (see `baton status {workflow} {id}`)",
                    timeout.as_secs()
                )));
            }
            _ = poll.tick() => {
                match tokio::time::timeout_at(deadline, client.status(workflow, id)).await {
                    Ok(Ok(status)) => {
                        answered = true;
                        if let Some(failure) = status.workflow_task_failure {
                            return Err(Exit(1, format!(
                                "workflow task failed: {failure}\n{workflow} {id} waits for a fix; after deploying one, run `baton retry-workflow-task {workflow} --id {id}`"
                            )));
                        }
                    }
                    Ok(Err(ClientError::Timeout(_))) | Err(_) => {}
                    Ok(Err(e)) => return Err(e.into()),
                }
            }
        }
    }
}

fn json(text: &str, what: &str) -> Result<Payload, Exit> {
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| Exit(2, format!("{what} is not valid JSON: {e}")))?;
    Payload::json(&value).map_err(|e| Exit(2, e.to_string()))
}

fn id(text: &str) -> Result<WorkflowId, Exit> {
    text.parse()
        .map_err(|_| Exit(2, format!("`{text}` is not a workflow id (a UUID)")))
}

fn print_payload(payload: &Payload) {
    match payload.decode::<serde_json::Value>() {
        Ok(v) => println!("{v}"),
        Err(_) => println!("{}", String::from_utf8_lossy(&payload.bytes)),
    }
}

fn print_outcome(outcome: &WorkflowOutcome) -> Result<(), Exit> {
    match outcome {
        WorkflowOutcome::Completed(p) => {
            print_payload(p);
            Ok(())
        }
        WorkflowOutcome::Failed(f) => Err(Exit(1, format!("workflow failed: {f}"))),
        WorkflowOutcome::Cancelled { reason } => Err(Exit(1, format!("workflow cancelled: {reason}"))),
    }
}

async fn by_target(
    client: &Client,
    workflow: &str,
    target: &Target,
    command: TaggedCommand,
    timeout: Duration,
) -> Result<(), Exit> {
    match (&target.id, &target.tag) {
        (_, Some(tag)) => {
            // A one-id page first: it proves a tag engine serves the workflow, so the command
            // is not left on a topic nothing reads.
            client
                .ids_by_tag_page(workflow, tag, None, 1)
                .await
                .map_err(unanswered(Answerer::TagEngine, workflow, timeout))?;
            Ok(client.by_tag(workflow, tag, command).await?)
        }
        (Some(text), None) => {
            let id = id(text)?;
            // The status first: an unknown instance is an error (exit 3), not a silent no-op.
            client
                .status(workflow, id)
                .await
                .map_err(unanswered(Answerer::Engine, workflow, timeout))?;
            match command {
                TaggedCommand::Signal { channel, value, .. } => {
                    Ok(client.signal_raw(workflow, id, &channel, value).await?)
                }
                TaggedCommand::Cancel { reason } => Ok(client.cancel(workflow, id, &reason).await?),
                TaggedCommand::RetryWorkflowTask => Ok(client.retry_workflow_task(workflow, id).await?),
                TaggedCommand::RetryTasksMatching { filter } => Ok(client.retry_tasks(workflow, id, filter).await?),
                TaggedCommand::CompleteTimers => Ok(client.complete_timers(workflow, id).await?),
                TaggedCommand::RetryTasks { selector } => Ok(client.retry_tasks(workflow, id, selector.into()).await?),
                TaggedCommand::CallMethod { .. } => Err(Exit(2, "calls by id use `baton call`".into())),
            }
        }
        (None, None) => Err(Exit(2, "give --id or --tag".into())),
    }
}

async fn execute(cli: Cli) -> Result<(), Exit> {
    if let Command::Dev(args) = cli.command {
        return dev::run(args).await.map_err(|e| {
            let code = match e {
                dev::DevError::Missing(_) | dev::DevError::Binary { .. } => 2,
                dev::DevError::Start(_) => 1,
            };
            Exit(code, e.to_string())
        });
    }
    let config = cli.common.load().map_err(|e| Exit(2, e.to_string()))?;
    config.validate().map_err(|e| Exit(2, e.to_string()))?;
    if cli.common.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    // Check input before touching the broker.
    let target_tag = |target: &Target| target.tag.as_deref().map(tag).unwrap_or(Ok(()));
    let target_id = |target: &Target| target.id.as_deref().map(|t| id(t).map(drop)).unwrap_or(Ok(()));
    match &cli.command {
        // Handled above, before any configuration is read.
        Command::Dev(_) => {}
        Command::Start {
            input, tags, custom_id, ..
        } => {
            drop(json(input, "the input")?);
            baton_shared_schemas::validate_tags(tags).map_err(|e| Exit(2, e.to_string()))?;
            if custom_id.as_deref().is_some_and(str::is_empty) {
                return Err(Exit(2, "--custom-id must not be empty".into()));
            }
        }
        Command::Signal { value, target, .. } => {
            drop(json(value, "the value")?);
            target_tag(target)?;
            target_id(target)?;
        }
        Command::Call { args, id: text, .. } => {
            drop(json(args, "the arguments")?);
            id(text)?;
        }
        Command::Status { id: text, .. } | Command::Result { id: text, .. } => {
            id(text)?;
        }
        Command::Cancel { target, .. }
        | Command::RetryWorkflowTask { target, .. }
        | Command::RetryTask { target, .. }
        | Command::CompleteTimers { target, .. } => {
            target_tag(target)?;
            target_id(target)?;
        }
        Command::List { tag: text, .. } => tag(text)?,
    }
    let timeout = Duration::from_secs(cli.timeout);
    let silent = |_| {
        Exit(
            4,
            format!(
                "the broker at {} did not answer within {timeout:?}",
                config.transport.url
            ),
        )
    };
    let transport = tokio::time::timeout(timeout, connect_transport(&config.transport))
        .await
        .map_err(silent)?
        .map_err(|e| Exit(4, e.to_string()))?;
    // A Kafka client connects lazily: ask the broker once, so an unreachable one is named as
    // such rather than as a component that did not answer.
    transport.check(timeout).await.map_err(|e| {
        Exit(
            4,
            format!(
                "the broker at {} is unreachable: {e}",
                baton_server::config::redact_url(&config.transport.url)
            ),
        )
    })?;
    let client = tokio::time::timeout(
        timeout,
        Client::connect_with(transport, std::sync::Arc::new(SystemClock), timeout),
    )
    .await
    .map_err(silent)??;
    let work = async {
        match cli.command {
            Command::Dev(_) => Ok(()),
            Command::Start {
                workflow,
                input,
                tags,
                custom_id,
                meta,
                wait,
            } => {
                let options = StartOptions {
                    id: None,
                    custom_id,
                    tags,
                    meta: meta.into_iter().collect::<BTreeMap<_, _>>(),
                };
                let id = client.start_raw(&workflow, json(&input, "the input")?, options).await?;
                if wait {
                    wait_for_outcome(&client, &workflow, id, timeout).await
                } else {
                    // The status proves an engine took the start; otherwise the id names an
                    // instance nothing has started (it will, once an engine serves the workflow).
                    client.status(&workflow, id).await.map_err(|e| {
                        match unanswered(Answerer::Engine, &workflow, timeout)(e) {
                            Exit(4, message) => {
                                Exit(4, format!("{message}\nthe start of {id} stays queued until one does"))
                            }
                            other => other,
                        }
                    })?;
                    println!("{id}");
                    Ok(())
                }
            }
            Command::Status { workflow, id: text } => {
                let status = client.status(&workflow, id(&text)?).await.map_err(unanswered(
                    Answerer::Engine,
                    &workflow,
                    timeout,
                ))?;
                println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
                Ok(())
            }
            Command::Result { workflow, id: text } => {
                let id = id(&text)?;
                // The status first: it answers at once for an unknown id or a silent engine.
                client
                    .status(&workflow, id)
                    .await
                    .map_err(unanswered(Answerer::Engine, &workflow, timeout))?;
                wait_for_outcome(&client, &workflow, id, timeout).await
            }
            Command::Signal {
                workflow,
                target,
                channel,
                value,
            } => {
                let value = json(&value, "the value")?;
                by_target(
                    &client,
                    &workflow,
                    &target,
                    TaggedCommand::Signal {
                        channel,
                        value,
                        signal_id: SignalId::new(),
                    },
                    timeout,
                )
                .await
            }
            Command::Call {
                workflow,
                id: text,
                method,
                args,
            } => {
                let result = client
                    .call_raw(&workflow, id(&text)?, &method, json(&args, "the arguments")?)
                    .await
                    .map_err(unanswered(Answerer::Engine, &workflow, timeout))?;
                print_payload(&result);
                Ok(())
            }
            Command::Cancel {
                workflow,
                target,
                reason,
            } => by_target(&client, &workflow, &target, TaggedCommand::Cancel { reason }, timeout).await,
            Command::RetryWorkflowTask { workflow, target } => {
                by_target(&client, &workflow, &target, TaggedCommand::RetryWorkflowTask, timeout).await
            }
            Command::RetryTask {
                workflow,
                target,
                task_id,
                service,
                failure,
            } => {
                let task_id = match task_id {
                    Some(t) => Some(
                        t.parse::<TaskId>()
                            .map_err(|_| Exit(2, format!("`{t}` is not a task id (a UUID)")))?,
                    ),
                    None => None,
                };
                let filter = TaskFilter {
                    task_id,
                    service,
                    failure,
                };
                by_target(
                    &client,
                    &workflow,
                    &target,
                    TaggedCommand::RetryTasksMatching { filter },
                    timeout,
                )
                .await
            }
            Command::CompleteTimers { workflow, target } => {
                by_target(&client, &workflow, &target, TaggedCommand::CompleteTimers, timeout).await
            }
            Command::List { workflow, tag } => {
                let ids = client.ids_by_tag(&workflow, &tag).await.map_err(unanswered(
                    Answerer::TagEngine,
                    &workflow,
                    timeout,
                ))?;
                for id in ids {
                    println!("{id}");
                }
                Ok(())
            }
        }
    };
    let result = work.await;
    client.close();
    result
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    baton_server::init_logging("warn");
    let code = match execute(cli).await {
        Ok(()) => 0,
        Err(Exit(code, message)) => {
            eprintln!("baton: {message}");
            i32::from(code)
        }
    };
    // Exit here rather than by returning: a broker client's background threads must not
    // keep the command alive past its answer.
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code)
}
