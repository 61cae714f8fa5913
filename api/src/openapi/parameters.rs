//! The parameters of operations: path parameters, and the query parameters of reads, lists,
//! writes, patches, deletes and connections, each on the operation that accepts it.

use serde_json::{json, Value};

use crate::resources::Subresource;

fn query(name: &str, kind: &str, description: &str) -> Value {
    json!({"name": name, "in": "query", "description": description, "schema": {"type": kind}})
}

pub fn path_parameter(name: &str, description: &str) -> Value {
    json!({
        "name": name,
        "in": "path",
        "description": description,
        "required": true,
        "schema": {"type": "string"},
    })
}

/// The parameters of a path: `name` (item paths), `namespace` (namespaced paths), `pretty`.
pub fn path_parameters(kind: Option<&str>, namespaced: bool) -> Value {
    let mut parameters = Vec::new();
    if let Some(kind) = kind {
        parameters.push(path_parameter("name", &format!("name of the {kind}")));
    }
    if namespaced {
        parameters.push(path_parameter(
            "namespace",
            "object name and auth scope, such as for teams and projects",
        ));
    }
    parameters.push(query("pretty", "string", "If 'true', then the output is pretty printed."));
    Value::Array(parameters)
}

fn dry_run() -> Value {
    query(
        "dryRun",
        "string",
        "When present, indicates that modifications should not be persisted. The only valid \
         value is All: every dry run stage is processed.",
    )
}

fn field_manager() -> Value {
    query(
        "fieldManager",
        "string",
        "fieldManager names the actor making these changes: at most 128 printable characters. \
         Required for apply requests (application/apply-patch+yaml).",
    )
}

fn field_validation() -> Value {
    query(
        "fieldValidation",
        "string",
        "fieldValidation says how the server treats unknown and duplicate fields in the request \
         object: Ignore drops them silently, Warn serves the request and returns a warning for \
         each, Strict fails the request.",
    )
}

/// Parameters of create and replace.
pub fn write_parameters() -> Vec<Value> {
    vec![dry_run(), field_manager(), field_validation()]
}

pub fn patch_parameters() -> Vec<Value> {
    let force = query(
        "force",
        "boolean",
        "Force makes an apply request take ownership of fields other managers own. It must be \
         unset for other patch types.",
    );
    vec![dry_run(), force, field_manager(), field_validation()]
}

pub fn delete_parameters() -> Vec<Value> {
    vec![
        dry_run(),
        query(
            "gracePeriodSeconds",
            "integer",
            "Seconds before the object is deleted; zero deletes immediately, unset uses the \
             type's default.",
        ),
        query(
            "ignoreStoreReadErrorWithClusterBreakingPotential",
            "boolean",
            "Deletes an object whose stored data cannot be read or decoded. Dangerous: it \
             bypasses finalizers and admission.",
        ),
        query(
            "orphanDependents",
            "boolean",
            "Deprecated, use propagationPolicy: whether dependent objects are orphaned.",
        ),
        query(
            "propagationPolicy",
            "string",
            "How garbage collection treats dependents: Orphan, Background or Foreground.",
        ),
    ]
}

/// Parameters selecting the objects of a list (and of a delete collection).
fn selection_parameters() -> Vec<Value> {
    vec![
        query(
            "continue",
            "string",
            "The continue token of a previous chunked list, to fetch the next chunk.",
        ),
        query(
            "fieldSelector",
            "string",
            "A selector restricting the returned objects by their fields. Defaults to everything.",
        ),
        query(
            "labelSelector",
            "string",
            "A selector restricting the returned objects by their labels. Defaults to everything.",
        ),
        query(
            "limit",
            "integer",
            "The maximum number of objects to return; the list's continue field is set when \
             more exist.",
        ),
        query(
            "resourceVersion",
            "string",
            "Constrains which resource versions the request may be served from. Defaults to unset.",
        ),
        query(
            "resourceVersionMatch",
            "string",
            "How resourceVersion applies to list calls: Exact or NotOlderThan.",
        ),
        query(
            "sendInitialEvents",
            "boolean",
            "With watch, starts the stream with synthetic events for the current objects.",
        ),
        query(
            "timeoutSeconds",
            "integer",
            "Timeout for the list or watch call, regardless of activity.",
        ),
    ]
}

pub fn list_parameters() -> Vec<Value> {
    let mut parameters = vec![query(
        "allowWatchBookmarks",
        "boolean",
        "Requests watch events of type BOOKMARK; ignored outside watches.",
    )];
    parameters.extend(selection_parameters());
    parameters.push(query(
        "watch",
        "boolean",
        "Watch for changes to the selected objects and stream them as add, update and remove \
         notifications.",
    ));
    parameters
}

pub fn delete_collection_parameters() -> Vec<Value> {
    let mut parameters = delete_parameters();
    parameters.extend(selection_parameters());
    parameters
}

/// Adds the collection and item paths of `resource`, whose kind and list kind have the
pub fn connect_parameters(subresource: Subresource) -> Vec<Value> {
    let container = || query("container", "string", "The container to connect to.");
    let streams = || {
        vec![
            query("stderr", "boolean", "Redirect the container's standard error stream."),
            query("stdin", "boolean", "Redirect the standard input stream to the container."),
            query("stdout", "boolean", "Redirect the container's standard output stream."),
            query("tty", "boolean", "Allocate a terminal; stderr then cannot be separate."),
        ]
    };
    match subresource {
        Subresource::Exec => {
            let mut parameters = vec![
                query("command", "string", "The command to run, one argument per parameter."),
                container(),
            ];
            parameters.extend(streams());
            parameters
        }
        Subresource::Attach => {
            let mut parameters = vec![container()];
            parameters.extend(streams());
            parameters
        }
        Subresource::PortForward => {
            vec![query("ports", "integer", "The ports to forward, one per parameter.")]
        }
        _ => vec![query("path", "string", "Path to the resource, below the object.")],
    }
}

pub fn log_parameters() -> Vec<Value> {
    vec![
        query("container", "string", "The container whose logs to stream."),
        query("follow", "boolean", "Follow the log stream."),
        query(
            "insecureSkipTLSVerifyBackend",
            "boolean",
            "Skip verifying the serving certificate of the kubelet the logs come from.",
        ),
        query("limitBytes", "integer", "Stop after this many bytes of log."),
        query("previous", "boolean", "Return the logs of the previous, terminated container."),
        query("sinceSeconds", "integer", "Only return logs newer than this many seconds."),
        query("sinceTime", "string", "Only return logs after this RFC 3339 time."),
        query("stream", "string", "Which stream to return: All, Stdout or Stderr."),
        query("tailLines", "integer", "Return this many lines from the end of the log."),
        query("timestamps", "boolean", "Prefix every line with an RFC 3339 timestamp."),
    ]
}
