//! The `maas` command line: `serve`, `openapi`, and client verbs for what operators do often.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use serde_json::Value;

use crate::settings::{LogFormat, Overrides, Settings};

#[derive(Debug, Parser)]
#[command(
    name = "maas",
    version,
    about = "Model-as-a-service gateway: versioned ONNX models over HTTP"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Print the OpenAPI document.
    Openapi,
    /// List models, their versions and default versions.
    Models {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Deploy an ONNX file as a new version of NAME.
    Deploy {
        name: String,
        file: PathBuf,
        /// Version number (default: last used + 1).
        #[arg(long)]
        version: Option<u64>,
        /// Class labels as a JSON array, e.g. '["setosa","versicolor","virginica"]'.
        #[arg(long)]
        class_names: Option<String>,
        /// Feature names as a JSON array, for `records` predicts.
        #[arg(long)]
        feature_names: Option<String>,
        /// Keep the deployed versions serving beside this one (default: it replaces them; they
        /// stay kept, one `rollback` away).
        #[arg(long)]
        append: bool,
        /// Backend: tract, ort-cpu, ort-cuda or auto (default: the server's).
        #[arg(long)]
        backend: Option<String>,
        /// Serving options as JSON, e.g. '{"instances": 2, "max_batch_size": 64}'.
        #[arg(long)]
        serving: Option<String>,
        /// Save the model's predicts in the prediction log by default (`--log-predictions` or
        /// `--log-predictions=false`; left out, the model's setting stays as it is).
        #[arg(long, num_args = 0..=1, default_missing_value = "true", value_name = "BOOL")]
        log_predictions: Option<bool>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Predict with NAME. ROWS is a JSON file (or - for stdin) holding an array of rows, or a
    /// whole request body ({"instances": ...} or {"records": ...}).
    Predict {
        name: String,
        rows: PathBuf,
        /// Predict with this version instead of the default.
        #[arg(long)]
        version: Option<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Make VERSION the only deployed version of NAME.
    Rollback {
        name: String,
        version: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Log in and print a bearer token. The password comes from MAAS_PASSWORD, else from a
    /// prompt when stdin is a terminal (not echoed), else from the first line of stdin.
    Token {
        #[arg(long, default_value = "admin")]
        username: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Offline drift detection on CSV files (the same detectors as the server).
    Drift(crate::drift_cli::DriftArgs),
    /// Manage users directly in the store (works with the server stopped or running).
    User {
        #[command(subcommand)]
        action: UserAction,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Stop serving VERSION of NAME (it is kept).
    Undeploy {
        name: String,
        version: u64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Training jobs: submit a workflow, list, show, cancel, follow a task's log.
    Job {
        #[command(subcommand)]
        action: crate::job_cli::JobCommand,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Print the JSON Schema of workflow definitions (scheduler/workflow.schema.json).
    WorkflowSchema,
    /// Run one task attempt in its folder (what the scheduler's executors start; not for people).
    #[command(hide = true)]
    Task {
        #[command(subcommand)]
        action: TaskAction,
    },
    /// A model's service: create it, show its state and actions, or run an action.
    Model {
        #[command(subcommand)]
        action: ModelAction,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum TaskAction {
    /// Run the task described by DIR/task.json; writes DIR/result.json.
    Exec { dir: PathBuf },
}

#[derive(Debug, Subcommand)]
pub enum ModelAction {
    /// Create NAME with no version yet.
    Create { name: String },
    /// Show NAME's service state and the actions it allows.
    Actions { name: String },
    /// Serve a kept version again (the newest unless --version), the only one unless --append.
    Deploy {
        name: String,
        #[arg(long)]
        version: Option<u64>,
        #[arg(long)]
        append: bool,
    },
    /// Change serving options (JSON) and/or drift settings (JSON) at run time.
    Update {
        name: String,
        #[arg(long)]
        serving: Option<String>,
        #[arg(long)]
        drift: Option<String>,
        /// The saved workflow that retrains the model ("" to clear).
        #[arg(long)]
        retrain_workflow: Option<String>,
    },
    /// Submit the model's retraining workflow now; prints the job id.
    Retrain { name: String },
    /// Refuse predicts (503 model_paused), keeping everything loaded.
    Pause { name: String },
    /// Answer predicts again.
    Resume { name: String },
    /// Undeploy every version, keeping the history.
    Finish { name: String },
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// TOML configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Folder for the SQLite database and model files.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// ADDR:PORT to listen on (port 0 picks a free port).
    #[arg(long)]
    bind: Option<String>,
    /// ADDR:PORT of the gRPC service (default 127.0.0.1:8081; port 0 picks a free port; an
    /// empty value turns gRPC off).
    #[arg(long)]
    grpc_bind: Option<String>,
    /// sqlite://… or postgres://… (default: SQLite under the data folder).
    #[arg(long)]
    database_url: Option<String>,
    /// PEM certificate chain: serve HTTPS (with --tls-key).
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// PEM private key for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a user. The password is read from the first line of stdin with --password-stdin,
    /// else generated and printed.
    Add {
        username: String,
        #[arg(long, default_value = "viewer")]
        role: String,
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users and their roles.
    List,
    /// Remove a user (their API keys are revoked).
    Remove { username: String },
    /// Set a user's password (from stdin with --password-stdin, else generated and printed).
    Passwd {
        username: String,
        #[arg(long)]
        password_stdin: bool,
    },
}

/// Which store a `user` command works on: the same layers as `maas serve`.
#[derive(Debug, Args)]
struct StoreArgs {
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[arg(long, global = true)]
    database_url: Option<String>,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// The maas server.
    #[arg(long, env = "MAAS_URL", default_value = "http://127.0.0.1:8080")]
    url: String,
    /// A PEM file of CA certificates to trust for an https URL, beside the system's (a
    /// private CA, a self-signed server certificate).
    #[arg(long, env = "MAAS_CACERT")]
    cacert: Option<PathBuf>,
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Openapi => {
            println!("{}", crate::http::openapi::pretty_json());
            Ok(())
        }
        Command::User { action, store } => user(action, store),
        Command::Drift(args) => crate::drift_cli::run(args),
        Command::WorkflowSchema => {
            print!("{}", maas_scheduler::workflow::json_schema());
            Ok(())
        }
        Command::Task {
            action: TaskAction::Exec { dir },
        } => {
            let code = maas_scheduler::runner::exec(&dir);
            return ExitCode::from(u8::try_from(code).unwrap_or(1));
        }
        other => client(other),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging(settings: &Settings) {
    let base = std::env::var("RUST_LOG")
        .ok()
        .filter(|f| tracing_subscriber::EnvFilter::try_new(f).is_ok())
        .or_else(|| {
            tracing_subscriber::EnvFilter::try_new(&settings.log.level)
                .is_ok()
                .then(|| settings.log.level.clone())
        })
        .unwrap_or_else(|| "info".to_owned());
    let filter = tracing_subscriber::EnvFilter::new(&base);
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        // A closed stderr must not take the server down: drop log lines rather than panic.
        .log_internal_errors(false);
    // The `debug` runtime setting swaps the filter while the server runs.
    macro_rules! start {
        ($builder:expr) => {{
            let builder = $builder.with_filter_reloading();
            let handle = builder.reload_handle();
            crate::services::runtime::install_log_reload(
                base.clone(),
                Box::new(move |filter: &str| {
                    let filter = tracing_subscriber::EnvFilter::try_new(filter)
                        .map_err(|e| e.to_string())?;
                    handle.reload(filter).map_err(|e| e.to_string())
                }),
            );
            builder.init();
        }};
    }
    match settings.log.format {
        LogFormat::Text => start!(builder),
        LogFormat::Json => start!(builder.json()),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let overrides = Overrides {
        data_dir: args.data_dir,
        bind: args.bind,
        grpc_bind: args.grpc_bind,
        database_url: args.database_url,
        tls_cert: args.tls_cert,
        tls_key: args.tls_key,
    };
    let settings = Settings::load(args.config.as_deref(), &overrides)?;
    init_logging(&settings);
    actix_web::rt::System::new().block_on(crate::server::serve(settings))
}

fn client(command: Command) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run_client(command))
}

/// The client verbs' connection to a maas server.
pub(crate) struct Client {
    pub(crate) base: String,
    http: reqwest::Client,
}

impl Client {
    fn new(args: &ClientArgs) -> anyhow::Result<Client> {
        let mut builder = reqwest::Client::builder();
        if let Some(path) = &args.cacert {
            let pem = std::fs::read(path)
                .with_context(|| format!("--cacert: cannot read {}", path.display()))?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem)
                .ok()
                .filter(|c| !c.is_empty())
                .with_context(|| {
                    format!(
                        "--cacert: {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                        path.display()
                    )
                })?;
            for certificate in certificates {
                builder = builder.add_root_certificate(certificate);
            }
        }
        Ok(Client {
            base: args.url.trim_end_matches('/').to_owned(),
            http: builder.build().context("cannot set up the HTTP client")?,
        })
    }

    pub(crate) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let builder = self.http.request(method, format!("{}{path}", self.base));
        match std::env::var("MAAS_TOKEN") {
            Ok(token) if !token.is_empty() => builder.bearer_auth(token),
            _ => builder,
        }
    }

    /// Send, and turn an error body into a readable error.
    pub(crate) async fn send(&self, builder: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = builder
            .send()
            .await
            .with_context(|| format!("cannot reach maas at {}", self.base))?;
        let status = response.status();
        let text = response.text().await?;
        let body: Value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        if status.is_success() {
            return Ok(body);
        }
        match (
            body.get("code").and_then(Value::as_str),
            body.get("message").and_then(Value::as_str),
        ) {
            (Some(code), Some(message)) => anyhow::bail!("{status}: {code}: {message}"),
            _ => anyhow::bail!("{status}: {body}"),
        }
    }
}

pub(crate) fn print(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

fn read_rows(path: &Path) -> anyhow::Result<Value> {
    let text = if path == Path::new("-") {
        std::io::read_to_string(std::io::stdin())?
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?
    };
    let value: Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
    Ok(match value {
        Value::Array(_) => serde_json::json!({ "instances": value }),
        Value::Object(_) => value,
        _ => anyhow::bail!(
            "{} must hold an array of rows or a request object",
            path.display()
        ),
    })
}

async fn run_client(command: Command) -> anyhow::Result<()> {
    use reqwest::Method;
    match command {
        Command::Serve(_)
        | Command::Openapi
        | Command::User { .. }
        | Command::Drift(_)
        | Command::WorkflowSchema
        | Command::Task { .. } => Ok(()),
        Command::Token { username, client } => {
            let c = Client::new(&client)?;
            let password = match std::env::var("MAAS_PASSWORD") {
                Ok(p) if !p.is_empty() => p,
                _ if std::io::IsTerminal::is_terminal(&std::io::stdin()) => {
                    let p = rpassword::prompt_password(format!("password for {username}: "))
                        .context("cannot read the password from the terminal")?;
                    if p.is_empty() {
                        anyhow::bail!("no password given");
                    }
                    p
                }
                _ => read_password()?,
            };
            let body = serde_json::json!({ "username": username, "password": password });
            let answer = c
                .send(c.request(Method::POST, "/v1/auth/token").json(&body))
                .await?;
            println!(
                "{}",
                answer
                    .get("access_token")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            );
            Ok(())
        }
        Command::Models { client } => {
            let c = Client::new(&client)?;
            let body = c.send(c.request(Method::GET, "/v1/models")).await?;
            let models = body
                .get("models")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if models.is_empty() {
                println!("no models");
            }
            for model in models {
                let name = model.get("name").and_then(Value::as_str).unwrap_or("?");
                let default = model.get("default_version").and_then(Value::as_u64);
                let versions: Vec<String> = model
                    .get("versions")
                    .and_then(Value::as_array)
                    .map(|vs| {
                        vs.iter()
                            .map(|v| {
                                let n = v.get("version").and_then(Value::as_u64).unwrap_or(0);
                                let state = v.get("state").and_then(Value::as_str).unwrap_or("?");
                                let mark = if Some(n) == default { "*" } else { "" };
                                format!("v{n}{mark} ({state})")
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                println!("{name}\t{}", versions.join(", "));
            }
            Ok(())
        }
        Command::Deploy {
            name,
            file,
            version,
            class_names,
            feature_names,
            append,
            backend,
            serving,
            log_predictions,
            client,
        } => {
            let c = Client::new(&client)?;
            let bytes = tokio::fs::read(&file)
                .await
                .with_context(|| format!("reading {}", file.display()))?;
            let file_name = file
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model.onnx".into());
            let mut form = reqwest::multipart::Form::new().part(
                "model",
                reqwest::multipart::Part::bytes(bytes).file_name(file_name),
            );
            if let Some(v) = version {
                form = form.text("version", v.to_string());
            }
            if let Some(names) = class_names {
                form = form.text("class_names", names);
            }
            if let Some(names) = feature_names {
                form = form.text("feature_names", names);
            }
            if append {
                form = form.text("append", "true");
            }
            if let Some(options) = serving_options(serving.as_deref(), backend.as_deref())? {
                form = form.text("serving", options);
            }
            if let Some(on) = log_predictions {
                form = form.text("log_predictions", on.to_string());
            }
            print(
                &c.send(
                    c.request(Method::POST, &format!("/v1/models/{name}/versions"))
                        .multipart(form),
                )
                .await?,
            )
        }
        Command::Predict {
            name,
            rows,
            version,
            client,
        } => {
            let c = Client::new(&client)?;
            let body = read_rows(&rows)?;
            let path = match version {
                Some(v) => format!("/v1/models/{name}/versions/{v}/predict"),
                None => format!("/v1/models/{name}/predict"),
            };
            print(&c.send(c.request(Method::POST, &path).json(&body)).await?)
        }
        Command::Rollback {
            name,
            version,
            client,
        } => {
            let c = Client::new(&client)?;
            let path = format!("/v1/models/{name}/versions/{version}/deploy");
            print(
                &c.send(
                    c.request(Method::POST, &path)
                        .json(&serde_json::json!({"append": false})),
                )
                .await?,
            )
        }
        Command::Undeploy {
            name,
            version,
            client,
        } => {
            let c = Client::new(&client)?;
            let path = format!("/v1/models/{name}/versions/{version}/undeploy");
            print(&c.send(c.request(Method::POST, &path)).await?)
        }
        Command::Job { action, client } => {
            crate::job_cli::run(action, &Client::new(&client)?).await
        }
        Command::Model { action, client } => {
            let c = Client::new(&client)?;
            let json = |flag: &str, text: Option<String>| -> anyhow::Result<Option<Value>> {
                text.map(|t| {
                    serde_json::from_str(&t).with_context(|| format!("{flag} must be JSON"))
                })
                .transpose()
            };
            let (name, verb, body) = match action {
                ModelAction::Create { name } => {
                    let request = c
                        .request(Method::POST, "/v1/models")
                        .json(&serde_json::json!({ "name": name }));
                    return print(&c.send(request).await?);
                }
                ModelAction::Actions { name } => {
                    let path = format!("/v1/models/{name}/actions");
                    return print(&c.send(c.request(Method::GET, &path)).await?);
                }
                ModelAction::Deploy {
                    name,
                    version,
                    append,
                } => (
                    name,
                    "deploy",
                    serde_json::json!({ "version": version, "append": append }),
                ),
                ModelAction::Update {
                    name,
                    serving,
                    drift,
                    retrain_workflow,
                } => (
                    name,
                    "update",
                    serde_json::json!({
                        "serving": json("--serving", serving)?,
                        "drift": json("--drift", drift)?,
                        "retrain_workflow": retrain_workflow,
                    }),
                ),
                ModelAction::Retrain { name } => {
                    let path = format!("/v1/models/{name}/retrain");
                    let job = c.send(c.request(Method::POST, &path)).await?;
                    println!(
                        "{}",
                        job.get("id").and_then(Value::as_str).unwrap_or_default()
                    );
                    return Ok(());
                }
                ModelAction::Pause { name } => (name, "pause", serde_json::json!({})),
                ModelAction::Resume { name } => (name, "resume", serde_json::json!({})),
                ModelAction::Finish { name } => (name, "finish", serde_json::json!({})),
            };
            // Leave out what was not given, so the server's defaults apply.
            let body: serde_json::Map<String, Value> = body
                .as_object()
                .into_iter()
                .flatten()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            let path = format!("/v1/models/{name}/actions/{verb}");
            print(&c.send(c.request(Method::POST, &path).json(&body)).await?)
        }
    }
}

fn read_password() -> anyhow::Result<String> {
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    let password = line.trim_end_matches(['\r', '\n']).to_owned();
    if password.is_empty() {
        anyhow::bail!("no password on stdin");
    }
    Ok(password)
}

fn user(action: UserAction, args: StoreArgs) -> anyhow::Result<()> {
    use crate::services::auth::{passwords, Role};
    use crate::store::SqlStore;
    let overrides = Overrides {
        data_dir: args.data_dir,
        database_url: args.database_url,
        ..Overrides::default()
    };
    let settings = Settings::load(args.config.as_deref(), &overrides)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let store = SqlStore::connect(&settings.database_url()?).await?;
        let password = |from_stdin: bool| -> anyhow::Result<(String, bool)> {
            if from_stdin {
                Ok((read_password()?, false))
            } else {
                Ok((passwords::random(), true))
            }
        };
        match action {
            UserAction::Add {
                username,
                role,
                password_stdin,
            } => {
                let role: Role = role.parse().map_err(|e: String| anyhow::anyhow!(e))?;
                let (password, show) = password(password_stdin)?;
                let hash = passwords::hash(&password).map_err(|e| anyhow::anyhow!(e))?;
                store.create_user(&username, &hash, role).await?;
                println!("added {username} ({})", role.as_str());
                if show {
                    println!("password: {password}");
                }
            }
            UserAction::List => {
                for u in store.users().await? {
                    println!("{}\t{}", u.username, u.role.as_str());
                }
            }
            UserAction::Remove { username } => {
                let users = store.users().await?;
                let admins = users.iter().filter(|u| u.role == Role::Admin).count();
                if admins == 1
                    && users
                        .iter()
                        .any(|u| u.username == username && u.role == Role::Admin)
                {
                    anyhow::bail!("'{username}' is the last admin; add another admin first");
                }
                store.delete_user(&username).await?;
                println!("removed {username}");
            }
            UserAction::Passwd {
                username,
                password_stdin,
            } => {
                let (password, show) = password(password_stdin)?;
                let hash = passwords::hash(&password).map_err(|e| anyhow::anyhow!(e))?;
                store.update_user(&username, Some(&hash), None).await?;
                println!("password of {username} changed");
                if show {
                    println!("password: {password}");
                }
            }
        }
        Ok(())
    })
}

/// The deploy's `serving` field from `--serving` JSON and the `--backend` shorthand.
fn serving_options(json: Option<&str>, backend: Option<&str>) -> anyhow::Result<Option<String>> {
    let mut options = match json {
        Some(text) => serde_json::from_str::<serde_json::Value>(text)
            .context("--serving must be a JSON object")?,
        None if backend.is_none() => return Ok(None),
        None => serde_json::json!({}),
    };
    let object = options
        .as_object_mut()
        .context("--serving must be a JSON object")?;
    if let Some(backend) = backend {
        object.insert("backend".into(), backend.into());
    }
    Ok(Some(options.to_string()))
}
