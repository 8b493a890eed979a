//! The `baton` command line: start workflows and inspect and repair instances from a shell.
//!
//! Exit codes: 0 success; 1 the workflow failed or was cancelled (for `result`); 2 bad input
//! (flags, JSON, configuration); 3 unknown instance; 4 broker unreachable or no reply in time.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use baton_client::{Client, ClientError, StartOptions};
use baton_runtime::SystemClock;
use baton_server::{CommonArgs, connect_transport};
use baton_shared_schemas::messages::{TaggedCommand, TaskFilter, WorkflowOutcome};
use baton_shared_schemas::{FailureKind, Payload, SignalId, TaskId, WorkflowId};
use clap::{Args, Parser, Subcommand};

/// Start, inspect and repair Baton workflows.
#[derive(Parser, Debug)]
#[command(name = "baton", version, about)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    /// How long to wait for the broker and for replies, in seconds.
    #[arg(long, default_value_t = 30, global = true)]
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
            ClientError::Payload(_) => Exit(2, e.to_string()),
            ClientError::MethodFailed(_) => Exit(1, e.to_string()),
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

async fn by_target(client: &Client, workflow: &str, target: &Target, command: TaggedCommand) -> Result<(), Exit> {
    match (&target.id, &target.tag) {
        (_, Some(tag)) => Ok(client.by_tag(workflow, tag, command).await?),
        (Some(text), None) => {
            let id = id(text)?;
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
    let config = cli.common.load().map_err(|e| Exit(2, e.to_string()))?;
    config.validate().map_err(|e| Exit(2, e.to_string()))?;
    if cli.common.print_config {
        print!("{}", config.to_toml());
        return Ok(());
    }
    // Check input before touching the broker.
    match &cli.command {
        Command::Start { input, .. } => drop(json(input, "the input")?),
        Command::Signal { value, .. } => drop(json(value, "the value")?),
        Command::Call { args, .. } => drop(json(args, "the arguments")?),
        Command::Status { id: text, .. } | Command::Result { id: text, .. } => drop(id(text)?),
        _ => {}
    }
    let timeout = Duration::from_secs(cli.timeout.max(1));
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
    let client = tokio::time::timeout(
        timeout,
        Client::connect_with(transport, std::sync::Arc::new(SystemClock), timeout),
    )
    .await
    .map_err(silent)??;
    let work = async {
        match cli.command {
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
                    print_outcome(&client.outcome(&workflow, id).await?)
                } else {
                    println!("{id}");
                    Ok(())
                }
            }
            Command::Status { workflow, id: text } => {
                let status = client.status(&workflow, id(&text)?).await?;
                println!("{}", serde_json::to_string_pretty(&status).unwrap_or_default());
                Ok(())
            }
            Command::Result { workflow, id: text } => print_outcome(&client.outcome(&workflow, id(&text)?).await?),
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
                    .await?;
                print_payload(&result);
                Ok(())
            }
            Command::Cancel {
                workflow,
                target,
                reason,
            } => by_target(&client, &workflow, &target, TaggedCommand::Cancel { reason }).await,
            Command::RetryWorkflowTask { workflow, target } => {
                by_target(&client, &workflow, &target, TaggedCommand::RetryWorkflowTask).await
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
                )
                .await
            }
            Command::CompleteTimers { workflow, target } => {
                by_target(&client, &workflow, &target, TaggedCommand::CompleteTimers).await
            }
            Command::List { workflow, tag } => {
                for id in client.ids_by_tag(&workflow, &tag).await? {
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
    match execute(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(Exit(code, message)) => {
            eprintln!("baton: {message}");
            ExitCode::from(code)
        }
    }
}
