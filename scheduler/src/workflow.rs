//! Workflows: what a job runs. A workflow is a DAG of named tasks with variables, a priority,
//! retry and timeout policies and resource needs, written in YAML or JSON. Parsing checks the
//! whole definition (shape, names, kinds, dependencies, cycles) and says exactly what is wrong;
//! `workflow.schema.json` at the crate root is generated from these types (`maas workflow-schema`)
//! and a test keeps the committed copy fresh.

use std::collections::{BTreeMap, HashMap, HashSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ml::BUILTIN_KINDS;

/// Kinds run by the scheduler itself rather than by the ML library.
pub const SCRIPT: &str = "script";
pub const DEPLOY: &str = "deploy";

/// The parameters of a deploy task (run by the gateway, through its registry).
pub const DEPLOY_PARAMS: &[&str] = &[
    "model_name",
    "model",
    "features",
    "classes",
    "training_data",
    "label",
    "baseline_size",
    "holdout",
    "task",
    "compare",
    "metric",
    "append",
];

/// Longest task or workflow name; names become folder names and URL segments.
const MAX_NAME: usize = 64;
/// Largest workflow definition, in bytes: a real one is a few kilobytes.
pub const MAX_DEFINITION_BYTES: usize = 256 * 1024;
/// Deepest nesting of brackets (`[`, `{`) or indentation levels a definition may have: a real
/// one nests a handful deep, and a parser given 100,000 levels works for seconds to refuse them.
pub const MAX_DEFINITION_DEPTH: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum WorkflowError {
    #[error("the workflow is not valid {format}: {message}")]
    Syntax {
        format: &'static str,
        message: String,
    },
    #[error("{0}")]
    Invalid(String),
}

fn invalid(message: impl Into<String>) -> WorkflowError {
    WorkflowError::Invalid(message.into())
}

/// How urgent a job is; the pool starts the ready tasks of higher-priority jobs first.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Idle,
    Lowest,
    Low,
    #[default]
    Normal,
    High,
    Highest,
}

impl Priority {
    pub const ALL: [Priority; 6] = [
        Priority::Idle,
        Priority::Lowest,
        Priority::Low,
        Priority::Normal,
        Priority::High,
        Priority::Highest,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Idle => "idle",
            Priority::Lowest => "lowest",
            Priority::Low => "low",
            Priority::Normal => "normal",
            Priority::High => "high",
            Priority::Highest => "highest",
        }
    }

    /// A number that sorts like the priority (stored, so the store can order by it).
    pub fn rank(self) -> i64 {
        match self {
            Priority::Idle => 0,
            Priority::Lowest => 1,
            Priority::Low => 2,
            Priority::Normal => 3,
            Priority::High => 4,
            Priority::Highest => 5,
        }
    }

    pub fn parse(text: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == text)
    }
}

/// Where a task runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ExecutorKind {
    /// A process on the machine of the maas that claimed the task (the default).
    Local,
    /// A Slurm batch job submitted with `sbatch`.
    Slurm,
}

impl ExecutorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutorKind::Local => "local",
            ExecutorKind::Slurm => "slurm",
        }
    }
}

/// What a job does when one of its tasks has failed every attempt.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTaskError {
    /// The job fails: tasks not started are skipped (running ones finish).
    #[default]
    FailJob,
    /// The job goes `in_error` and waits: retry the task, or cancel or kill the job.
    Suspend,
}

/// The interpreter of a script task.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScriptLanguage {
    #[default]
    Shell,
    Python,
}

/// A variable's value: written as a string, number or boolean, always passed on as a string.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum Scalar {
    Text(String),
    Number(serde_json::Number),
    Bool(bool),
}

impl Scalar {
    pub fn to_text(&self) -> String {
        match self {
            Scalar::Text(t) => t.clone(),
            Scalar::Number(n) => n.to_string(),
            Scalar::Bool(b) => b.to_string(),
        }
    }
}

/// How often a task is tried, and how long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
    /// Seconds to wait before the second attempt.
    #[serde(default = "one_second")]
    pub backoff_secs: f64,
    /// Each later wait is the previous one times this.
    #[serde(default = "two")]
    pub backoff_factor: f64,
}

fn one() -> u32 {
    1
}
fn one_second() -> f64 {
    1.0
}
fn two() -> f64 {
    2.0
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 1,
            backoff_secs: 1.0,
            backoff_factor: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Seconds to wait after failed attempt `attempt` (1-based) before the next one.
    pub fn backoff_after(&self, attempt: u32) -> f64 {
        let exponent = i32::try_from(attempt.saturating_sub(1)).unwrap_or(i32::MAX);
        (self.backoff_secs * self.backoff_factor.powi(exponent)).min(3600.0)
    }
}

/// What a task needs from the executor that runs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    #[serde(default = "one")]
    pub cpus: u32,
    /// Memory in MiB (passed to Slurm as `--mem`).
    #[serde(default)]
    pub memory_mb: Option<u64>,
    /// GPUs; a task that needs one waits for an executor that has one.
    #[serde(default)]
    pub gpus: u32,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpus: 1,
            memory_mb: None,
            gpus: 0,
        }
    }
}

/// One task of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Unique in the workflow: letters, digits, `_` and `-`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// `script`, `deploy`, or a built-in ML task: `load_csv`, `load_dataset`, `split`,
    /// `preprocess`, `train`, `evaluate`, `compare`.
    pub kind: String,
    /// Tasks that must finish first; their exported variables are visible here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// Variables of this task only (override the workflow's and the exported ones).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Scalar>,
    /// The script of a `script` task. It runs in the task's own folder with every variable in
    /// its environment; it exports variables by appending `NAME=value` lines to the file named
    /// by `$MAAS_EXPORTS`, and files it writes under `artifacts/` are kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<ScriptLanguage>,
    /// Parameters of a built-in or deploy task; strings may hold `${VARIABLE}` references.
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    #[schemars(with = "BTreeMap<String, serde_json::Value>")]
    pub params: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub retries: RetryPolicy,
    /// Seconds an attempt may run before it is ended and counted as failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_secs: Option<u64>,
    #[serde(default)]
    pub resources: Resources,
    /// Overrides the workflow's executor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorKind>,
    /// Extra `sbatch` arguments for this task on Slurm (the seed's NATIVE_SCHEDULER_PARAMS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
}

/// A workflow definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    /// Letters, digits, `_`, `-` and `.`.
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Variables with their defaults; a submit may override them (and only them).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub variables: BTreeMap<String, Scalar>,
    #[serde(default)]
    pub priority: Priority,
    /// Where tasks run unless they say otherwise (default: the server's `scheduler.executor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<ExecutorKind>,
    #[serde(default)]
    pub on_task_error: OnTaskError,
    pub tasks: Vec<TaskSpec>,
}

/// The JSON Schema of a workflow definition, as committed in `scheduler/workflow.schema.json`.
pub fn json_schema() -> String {
    let schema = schemars::schema_for!(Workflow);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

fn valid_name(name: &str, extra: &[char]) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || extra.contains(&c))
}

/// The line where `text` first nests deeper than [`MAX_DEFINITION_DEPTH`]: open brackets (outside
/// quoted strings), or indentation in steps of at least one space. A cheap pass before the
/// parsers, which take time proportional to the depth at every level.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (number, line) in text.lines().enumerate() {
        // Block nesting: each level is indented further than the one holding it; counting
        // distinct indentation widths seen on the way down bounds it.
        let indent = line.len() - line.trim_start_matches([' ', '-']).len();
        if quote.is_none() && indent > MAX_DEFINITION_DEPTH * 8 {
            return Some(number + 1);
        }
        for c in line.chars() {
            if let Some(q) = quote {
                if escaped {
                    escaped = false;
                } else if c == '\\' && q == '"' {
                    escaped = true;
                } else if c == q {
                    quote = None;
                }
                continue;
            }
            match c {
                '"' | '\'' => quote = Some(c),
                '#' => break,
                '[' | '{' => {
                    depth += 1;
                    if depth > MAX_DEFINITION_DEPTH {
                        return Some(number + 1);
                    }
                }
                ']' | '}' => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        // Quotes end with their line: JSON strings cannot span lines, and a quote inside a plain
        // YAML scalar (`it's`) is no quote at all, so a stray one must not hide what follows.
        quote = None;
        escaped = false;
    }
    None
}

/// Variable names are environment variable names.
pub fn valid_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && name.len() <= 128
}

impl Workflow {
    /// Parse YAML or JSON (JSON is YAML, but JSON errors read better from the JSON parser).
    pub fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        if text.trim().is_empty() {
            return Err(invalid("the workflow definition is empty"));
        }
        if text.len() > MAX_DEFINITION_BYTES {
            return Err(invalid(format!(
                "the workflow definition is {} bytes; the limit is {MAX_DEFINITION_BYTES}",
                text.len()
            )));
        }
        if let Some(line) = too_deep(text) {
            return Err(invalid(format!(
                "the workflow definition nests deeper than {MAX_DEFINITION_DEPTH} levels (line \
                 {line}); a workflow needs a few"
            )));
        }
        let workflow: Workflow = if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|e| WorkflowError::Syntax {
                format: "JSON",
                message: readable_syntax_error(&e.to_string(), Some(e.line())),
            })?
        } else {
            serde_yaml::from_str(text).map_err(|e| WorkflowError::Syntax {
                format: "YAML",
                message: readable_syntax_error(&e.to_string(), e.location().map(|l| l.line())),
            })?
        };
        workflow.validate()?;
        Ok(workflow)
    }

    /// Check everything that can be checked before the job runs.
    pub fn validate(&self) -> Result<(), WorkflowError> {
        if !valid_name(&self.name, &['.']) {
            return Err(invalid(format!(
                "workflow name '{}' is not valid: use 1 to {MAX_NAME} letters, digits, '_', '-' or '.'",
                self.name
            )));
        }
        for name in self.variables.keys() {
            check_variable_name(name, "the workflow")?;
        }
        if self.tasks.is_empty() {
            return Err(invalid("the workflow has no tasks"));
        }
        let mut seen = HashSet::new();
        for task in &self.tasks {
            if !valid_name(&task.name, &[]) {
                return Err(invalid(format!(
                    "task name '{}' is not valid: use 1 to {MAX_NAME} letters, digits, '_' or '-'",
                    task.name
                )));
            }
            if !seen.insert(task.name.as_str()) {
                return Err(invalid(format!(
                    "two tasks are named '{}'; task names must be unique",
                    task.name
                )));
            }
        }
        for task in &self.tasks {
            task.validate(&seen)?;
        }
        self.order()?;
        self.check_references()
    }

    /// Every `${NAME}` in a task's params and variables must name something the task will
    /// have: a variable of the workflow or of the task, a system variable, or an export of a
    /// task it depends on (directly or not; also as `${task.NAME}`). What a script task
    /// exports is known only when it runs, so a task after one is checked when it runs.
    fn check_references(&self) -> Result<(), WorkflowError> {
        for task in &self.tasks {
            let ancestors = self.ancestors(&task.name);
            let mut available: HashSet<String> = self
                .variables
                .keys()
                .chain(task.variables.keys())
                .cloned()
                .chain(
                    crate::engine::SYSTEM_VARIABLES
                        .iter()
                        .map(|v| (*v).to_owned()),
                )
                .collect();
            let mut exports_known = true;
            for ancestor in &ancestors {
                let kind = self.task(ancestor).map_or("", |t| t.kind.as_str());
                match exports_of(kind) {
                    Some(names) => {
                        for name in names {
                            available.insert((*name).to_owned());
                            available.insert(format!("{ancestor}.{name}"));
                        }
                    }
                    None => exports_known = false,
                }
            }
            let mut texts: Vec<(String, &str)> = task
                .variables
                .iter()
                .filter_map(|(name, value)| match value {
                    Scalar::Text(t) => Some((format!("variables.{name}"), t.as_str())),
                    _ => None,
                })
                .collect();
            for (name, value) in &task.params {
                collect_strings(&format!("params.{name}"), value, &mut texts);
            }
            for (place, text) in texts {
                for name in references(text)
                    .map_err(|e| invalid(format!("task '{}' {place}: {e}", task.name)))?
                {
                    if exports_known && !available.contains(name) {
                        let mut names: Vec<&str> = available
                            .iter()
                            .map(String::as_str)
                            .filter(|n| !n.contains('.'))
                            .collect();
                        names.sort_unstable();
                        return Err(invalid(format!(
                            "task '{}' {place} refers to ${{{name}}}, which no variable \
                             declares and no task it depends on exports; it can use: {}",
                            task.name,
                            names.join(", ")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn task(&self, name: &str) -> Option<&TaskSpec> {
        self.tasks.iter().find(|t| t.name == name)
    }

    /// Task names in an order where every task comes after its dependencies; a cycle is an
    /// error that names it.
    pub fn order(&self) -> Result<Vec<&str>, WorkflowError> {
        let index: HashMap<&str, &TaskSpec> =
            self.tasks.iter().map(|t| (t.name.as_str(), t)).collect();
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            Open,
            Done,
        }
        fn visit<'a>(
            name: &'a str,
            index: &HashMap<&'a str, &'a TaskSpec>,
            marks: &mut HashMap<&'a str, Mark>,
            path: &mut Vec<&'a str>,
            out: &mut Vec<&'a str>,
        ) -> Result<(), WorkflowError> {
            match marks.get(name) {
                Some(Mark::Done) => return Ok(()),
                Some(Mark::Open) => {
                    let start = path.iter().position(|n| *n == name).unwrap_or(0);
                    let mut cycle: Vec<&str> = path[start..].to_vec();
                    cycle.push(name);
                    return Err(invalid(format!(
                        "the tasks depend on each other in a cycle: {}",
                        cycle.join(" -> ")
                    )));
                }
                None => {}
            }
            marks.insert(name, Mark::Open);
            path.push(name);
            if let Some(task) = index.get(name) {
                for dep in &task.depends_on {
                    visit(dep.as_str(), index, marks, path, out)?;
                }
            }
            path.pop();
            marks.insert(name, Mark::Done);
            out.push(name);
            Ok(())
        }
        let mut marks = HashMap::new();
        let mut out = Vec::with_capacity(self.tasks.len());
        for task in &self.tasks {
            visit(
                task.name.as_str(),
                &index,
                &mut marks,
                &mut Vec::new(),
                &mut out,
            )?;
        }
        Ok(out)
    }

    /// Every task `name` depends on, directly or not, in dependency order (nearest last).
    pub fn ancestors(&self, name: &str) -> Vec<&str> {
        let Ok(order) = self.order() else {
            return Vec::new();
        };
        let mut wanted: HashSet<&str> = HashSet::new();
        let mut stack: Vec<&str> = self
            .task(name)
            .map(|t| t.depends_on.iter().map(String::as_str).collect())
            .unwrap_or_default();
        while let Some(n) = stack.pop() {
            if wanted.insert(n) {
                if let Some(t) = self.task(n) {
                    stack.extend(t.depends_on.iter().map(String::as_str));
                }
            }
        }
        order.into_iter().filter(|n| wanted.contains(n)).collect()
    }

    /// The workflow's variables with a submit's overrides; overriding a variable the workflow
    /// does not declare is an error (a typo would otherwise be silently ignored).
    pub fn resolve_variables(
        &self,
        overrides: &BTreeMap<String, String>,
        system: &[&str],
    ) -> Result<BTreeMap<String, String>, WorkflowError> {
        let mut out: BTreeMap<String, String> = self
            .variables
            .iter()
            .map(|(k, v)| (k.clone(), v.to_text()))
            .collect();
        for (name, value) in overrides {
            if !out.contains_key(name) && !system.contains(&name.as_str()) {
                let declared: Vec<&str> = self.variables.keys().map(String::as_str).collect();
                return Err(invalid(format!(
                    "workflow '{}' declares no variable '{name}' (declared: {})",
                    self.name,
                    if declared.is_empty() {
                        "none".to_owned()
                    } else {
                        declared.join(", ")
                    }
                )));
            }
            out.insert(name.clone(), value.clone());
        }
        Ok(out)
    }

    /// The executor a task runs on, given the server's default.
    pub fn executor_of(&self, task: &TaskSpec, default: ExecutorKind) -> ExecutorKind {
        if task.kind == DEPLOY {
            return ExecutorKind::Local;
        }
        task.executor.or(self.executor).unwrap_or(default)
    }
}

fn check_variable_name(name: &str, owner: &str) -> Result<(), WorkflowError> {
    if valid_variable_name(name) {
        Ok(())
    } else {
        Err(invalid(format!(
            "variable '{name}' of {owner} is not a valid name: start with a letter or '_', then letters, digits or '_'"
        )))
    }
}

impl TaskSpec {
    fn validate(&self, names: &HashSet<&str>) -> Result<(), WorkflowError> {
        let who = format!("task '{}'", self.name);
        let mut deps = HashSet::new();
        for dep in &self.depends_on {
            if dep == &self.name {
                return Err(invalid(format!("{who} depends on itself")));
            }
            if !names.contains(dep.as_str()) {
                return Err(invalid(format!(
                    "{who} depends on '{dep}', which is not a task of this workflow"
                )));
            }
            if !deps.insert(dep.as_str()) {
                return Err(invalid(format!("{who} lists '{dep}' twice in depends_on")));
            }
        }
        for name in self.variables.keys() {
            check_variable_name(name, &who)?;
        }
        match self.kind.as_str() {
            SCRIPT => {
                if self.script.as_deref().is_none_or(|s| s.trim().is_empty()) {
                    return Err(invalid(format!("{who} is a script task without a script")));
                }
                if !self.params.is_empty() {
                    return Err(invalid(format!(
                        "{who} is a script task: pass values as variables, not params"
                    )));
                }
            }
            kind => {
                if kind != DEPLOY && !BUILTIN_KINDS.contains(&kind) {
                    return Err(invalid(format!(
                        "{who} has unknown kind '{kind}'; kinds are script, deploy, {}",
                        BUILTIN_KINDS.join(", ")
                    )));
                }
                if self.script.is_some() || self.language.is_some() {
                    return Err(invalid(format!(
                        "{who} is a '{kind}' task: only script tasks take a script"
                    )));
                }
                if kind == DEPLOY && !self.params.contains_key("model_name") {
                    return Err(invalid(format!(
                        "{who} is a deploy task without params.model_name"
                    )));
                }
                let known = if kind == DEPLOY {
                    DEPLOY_PARAMS.to_vec()
                } else {
                    crate::ml::builtin_params(kind).unwrap_or_default()
                };
                if let Some(unknown) = self.params.keys().find(|k| !known.contains(&k.as_str())) {
                    return Err(invalid(format!(
                        "{who} ({kind}) has no parameter '{unknown}'; its parameters are {}",
                        known.join(", ")
                    )));
                }
            }
        }
        if self.retries.max_attempts == 0 || self.retries.max_attempts > 100 {
            return Err(invalid(format!(
                "{who}: retries.max_attempts must be between 1 and 100"
            )));
        }
        let backoff_ok = self.retries.backoff_secs.is_finite()
            && self.retries.backoff_secs >= 0.0
            && self.retries.backoff_factor.is_finite()
            && self.retries.backoff_factor >= 1.0;
        if !backoff_ok {
            return Err(invalid(format!(
                "{who}: retries.backoff_secs must be >= 0 and retries.backoff_factor >= 1"
            )));
        }
        if self.timeout_secs == Some(0) {
            return Err(invalid(format!("{who}: timeout_secs must be positive")));
        }
        if self.resources.cpus == 0 {
            return Err(invalid(format!("{who}: resources.cpus must be at least 1")));
        }
        Ok(())
    }

    pub fn language(&self) -> ScriptLanguage {
        self.language.unwrap_or_default()
    }
}

/// What a task of `kind` exports, or None for a script (whatever it writes to `$MAAS_EXPORTS`).
fn exports_of(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        SCRIPT => None,
        DEPLOY => Some(&["DEPLOYED", "MODEL_NAME", "MODEL_VERSION"]),
        other => Some(crate::ml::builtin_exports(other).unwrap_or_default()),
    }
}

/// Every string in a parameter's value, with where it is (`params.models[1]`).
fn collect_strings<'a>(
    place: &str,
    value: &'a serde_json::Value,
    out: &mut Vec<(String, &'a str)>,
) {
    match value {
        serde_json::Value::String(s) => out.push((place.to_owned(), s.as_str())),
        serde_json::Value::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                collect_strings(&format!("{place}[{i}]"), item, out);
            }
        }
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                collect_strings(&format!("{place}.{k}"), v, out);
            }
        }
        _ => {}
    }
}

/// The names `text` refers to with `${NAME}`, as [`substitute`] reads them.
fn references(text: &str) -> Result<Vec<&str>, String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("'${{' without a closing '}}' in \"{text}\""));
        };
        names.push(&after[..end]);
        rest = &after[end + 1..];
    }
    Ok(names)
}

/// A YAML or JSON parser's error as a person reads it: the key or value that is wrong, its
/// line, and what was expected, without the parser's own notation (backticks, `at line N
/// column M`, type names).
fn readable_syntax_error(message: &str, line: Option<usize>) -> String {
    // serde_yaml: "tasks[1]: unknown field `x`, expected one of `a`, `b` at line 9 column 5";
    // serde_json: "unknown field `x`, expected one of `a`, `b` at line 9 column 5".
    let mut text = message.trim();
    if let Some(at) = text.rfind(" at line ") {
        let tail = &text[at + " at line ".len()..];
        if tail
            .split(" column ")
            .all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
        {
            text = &text[..at];
        }
    }
    let (path, core) = match text.split_once(": ") {
        Some((path, core)) if !path.contains(' ') && !path.is_empty() && !path.contains('`') => {
            (Some(path), core)
        }
        _ => (None, text),
    };
    let quoted = |s: &str| s.replace('`', "'");
    let list = |s: &str| {
        s.split(", ")
            .map(|item| item.trim_matches('`'))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let (what, expected) = match core.split_once(", expected one of ") {
        Some((what, rest)) => (what, Some(list(rest))),
        None => match core.split_once(", there are no fields") {
            Some((what, _)) => (what, None),
            None => (core, None),
        },
    };
    let what = what
        .replace("unknown field", "unknown key")
        .replace("missing field", "missing key")
        .replace("unknown variant", "unknown value");
    let mut out = quoted(&what);
    if let Some(line) = line.filter(|l| *l > 0) {
        out.push_str(&format!(" at line {line}"));
    }
    if let Some(path) = path.filter(|p| *p != ".") {
        out.push_str(&format!(" (in {path})"));
    }
    if let Some(expected) = expected {
        out.push_str(&format!("; expected one of: {expected}"));
    }
    out
}

/// Replace `${NAME}` references in `text` by their values; an unknown name is an error naming
/// it. `$$` stays a literal `$`-sign pair only when not followed by `{`.
pub fn substitute(text: &str, variables: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("'${{' without a closing '}}' in \"{text}\""));
        };
        let name = &after[..end];
        match variables.get(name) {
            Some(value) => out.push_str(value),
            None => return Err(format!("variable '{name}' is not defined")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Substitute references in every string of a JSON value (params).
pub fn substitute_json(
    value: &serde_json::Value,
    variables: &BTreeMap<String, String>,
) -> Result<serde_json::Value, String> {
    Ok(match value {
        serde_json::Value::String(s) => serde_json::Value::String(substitute(s, variables)?),
        serde_json::Value::Array(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|v| substitute_json(v, variables))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(map) => serde_json::Value::Object(
            map.iter()
                .map(|(k, v)| Ok((k.clone(), substitute_json(v, variables)?)))
                .collect::<Result<_, String>>()?,
        ),
        other => other.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_err(text: &str) -> String {
        Workflow::parse(text).unwrap_err().to_string()
    }

    const BASIC: &str = r#"
name: demo
variables: {N: 3}
tasks:
  - name: a
    kind: script
    script: echo a
  - name: b
    kind: script
    script: echo b
    depends_on: [a]
  - name: c
    kind: script
    script: echo c
    depends_on: [b, a]
"#;

    #[test]
    fn deep_or_huge_definitions_are_refused_at_once() {
        let started = std::time::Instant::now();
        for text in [
            "[".repeat(100_000),
            format!("name: x\ntasks: {}", "[".repeat(100_000)),
            format!("{{\"name\": {}", "{\"a\": ".repeat(30_000)),
            format!("name: x\ntasks:\n{}", "- ".repeat(100_000)),
            format!("name: x\ntasks: it's \"\n{}", "[".repeat(100_000)),
        ] {
            let message = Workflow::parse(&text).unwrap_err().to_string();
            assert!(message.contains("nests deeper than"), "{message}");
        }
        let big = format!(
            "name: x\n# {}\ntasks: []\n",
            "x".repeat(MAX_DEFINITION_BYTES)
        );
        let message = Workflow::parse(&big).unwrap_err().to_string();
        assert!(message.contains("the limit is"), "{message}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        // Brackets in strings and comments do not count.
        let quoted = format!(
            "name: ok\n# {}\ntasks:\n  - name: a\n    kind: script\n    script: \"echo {}\"\n",
            "[".repeat(100),
            "[".repeat(100)
        );
        Workflow::parse(&quoted).unwrap();
    }

    #[test]
    fn parses_yaml_and_json_alike() {
        let yaml = Workflow::parse(BASIC).unwrap();
        let json = Workflow::parse(&serde_json::to_string(&yaml).unwrap()).unwrap();
        assert_eq!(yaml, json);
        assert_eq!(yaml.priority, Priority::Normal);
        assert_eq!(yaml.order().unwrap(), vec!["a", "b", "c"]);
        assert_eq!(yaml.ancestors("c"), vec!["a", "b"]);
        assert_eq!(yaml.variables["N"].to_text(), "3");
    }

    #[test]
    fn rejects_cycles_naming_them() {
        let text = BASIC.replace(
            "    script: echo a\n",
            "    script: echo a\n    depends_on: [c]\n",
        );
        let err = parse_err(&text);
        assert!(err.contains("cycle: a -> c -> b -> a"), "{err}");
    }

    #[test]
    fn rejects_unknown_and_duplicate_tasks() {
        let err = parse_err(&BASIC.replace("depends_on: [a]", "depends_on: [x]"));
        assert!(
            err.contains("task 'b' depends on 'x', which is not a task"),
            "{err}"
        );
        let err = parse_err(&BASIC.replace("name: c", "name: a"));
        assert!(err.contains("two tasks are named 'a'"), "{err}");
        let err = parse_err(&BASIC.replace("depends_on: [a]", "depends_on: [b]"));
        assert!(err.contains("task 'b' depends on itself"), "{err}");
    }

    #[test]
    fn rejects_unknown_fields_and_kinds() {
        let err = parse_err(&BASIC.replace("    script: echo b\n", "    scirpt: echo b\n"));
        assert!(
            err.contains("unknown key 'scirpt' at line 10 (in tasks[1]); expected one of: name, description, kind,"),
            "{err}"
        );
        assert!(!err.contains('`'), "{err}");
        let err = parse_err(&BASIC.replace("tasks:", "taks:"));
        assert!(
            err.contains("unknown key 'taks' at line 4; expected one of: name, description, variables, priority, executor, on_task_error, tasks"),
            "{err}"
        );
        let err = parse_err(
            &serde_json::to_string(&serde_json::json!({"name": "x", "taks": []})).unwrap(),
        );
        assert!(
            err.contains("unknown key 'taks' at line 1; expected one of: name,"),
            "{err}"
        );
        let err = parse_err(&BASIC.replace("kind: script\n    script: echo c", "kind: trian"));
        assert!(err.contains("unknown kind 'trian'"), "{err}");
        assert!(parse_err("").contains("empty"));
        assert!(parse_err("{").contains("not valid JSON"));
    }

    #[test]
    fn references_must_name_something_the_task_has() {
        let base = r#"
name: refs
variables: {SEED: 7}
tasks:
  - name: load
    kind: load_dataset
    params: {name: iris}
  - name: split
    kind: split
    depends_on: [load]
    params: {data: "${DATA}", label: "${load.LABEL}", seed: "${SEED}"}
"#;
        Workflow::parse(base).unwrap();
        let err = parse_err(&base.replace("${SEED}", "${SEEED}"));
        assert!(
            err.contains("task 'split' params.seed refers to ${SEEED}, which no variable declares and no task it depends on exports; it can use: DATA, LABEL, MODEL_NAME, MODEL_VERSION, SEED"),
            "{err}"
        );
        // An export of a task it does not depend on is not there.
        let err = parse_err(&base.replace("    depends_on: [load]\n", ""));
        assert!(err.contains("refers to ${DATA}"), "{err}");
        assert!(parse_err(&base.replace("${SEED}", "${SEED")).contains("without a closing"));
        // After a script task, anything may have been exported: checked when it runs.
        let after_script = base.replace(
            "    kind: load_dataset\n    params: {name: iris}",
            "    kind: script\n    script: echo DATA=x >> $MAAS_EXPORTS",
        );
        Workflow::parse(&after_script.replace("${SEED}", "${ANYTHING}")).unwrap();
    }

    #[test]
    fn overrides_only_declared_variables() {
        let wf = Workflow::parse(BASIC).unwrap();
        let vars = wf
            .resolve_variables(&BTreeMap::from([("N".into(), "5".into())]), &[])
            .unwrap();
        assert_eq!(vars["N"], "5");
        let err = wf
            .resolve_variables(&BTreeMap::from([("M".into(), "5".into())]), &[])
            .unwrap_err();
        assert!(err.to_string().contains("declares no variable 'M'"));
    }

    #[test]
    fn substitutes_references() {
        let vars = BTreeMap::from([("A".to_owned(), "1".to_owned())]);
        assert_eq!(substitute("x${A}y${A}", &vars).unwrap(), "x1y1");
        assert!(substitute("${B}", &vars).unwrap_err().contains("'B'"));
        assert!(substitute("${A", &vars).is_err());
    }

    #[test]
    fn backoff_grows() {
        let policy = RetryPolicy {
            max_attempts: 3,
            backoff_secs: 0.5,
            backoff_factor: 2.0,
        };
        assert_eq!(policy.backoff_after(1), 0.5);
        assert_eq!(policy.backoff_after(2), 1.0);
    }

    #[test]
    fn committed_schema_is_fresh() {
        let committed = include_str!("../workflow.schema.json");
        assert!(
            committed == json_schema(),
            "scheduler/workflow.schema.json is stale: run `maas workflow-schema > scheduler/workflow.schema.json`"
        );
    }
}
