//! Printers for `batch` kinds: Job and CronJob.

use jiff::Timestamp;
use serde_json::Value;

use crate::table::columns::{boolean, integer, text, Column, AGE, CONTAINERS, IMAGES, NAME};
use crate::table::format::{
    age, at, bool_ptr, container_cells, format_label_selector, human_duration, int_at, is_deleting,
    len_at, list_at, name, opt_bool_at, opt_int_at, opt_str_at, since, str_at, time_at,
};
use crate::table::Printer;

/// Returns the printer of a `batch` kind, if it has one.
pub(crate) fn printer(kind: &str) -> Option<Printer> {
    match kind {
        "Job" => Some(Printer { columns: job_columns, cells: job_cells }),
        "CronJob" => Some(Printer { columns: cron_job_columns, cells: cron_job_cells }),
        _ => None,
    }
}

const SELECTOR_DESCRIPTION: &str = "A label query over pods that should match the pod count.";

fn job_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Status", "Status of the job."),
        text("Completions", "The number of pods which reached phase Succeeded."),
        text("Duration", "Time required to complete the job."),
        AGE,
        CONTAINERS,
        IMAGES,
        text("Selector", SELECTOR_DESCRIPTION).wide(),
    ]
}

fn job_cells(job: &Value, now: Timestamp) -> Vec<Value> {
    let (names, images) =
        container_cells(at(job, &["spec", "template", "spec"]).unwrap_or(&Value::Null));
    vec![
        name(job).into(),
        job_status(job).into(),
        job_completions(job).into(),
        job_duration(job, now).into(),
        age(job, now).into(),
        names.into(),
        images.into(),
        format_label_selector(at(job, &["spec", "selector"])).into(),
    ]
}

/// Returns `succeeded/completions`, or `succeeded/1 [of parallelism]` for work queues.
pub(crate) fn job_completions(job: &Value) -> String {
    let succeeded = int_at(job, &["status", "succeeded"]);
    if let Some(completions) = opt_int_at(job, &["spec", "completions"]) {
        return format!("{succeeded}/{completions}");
    }
    match opt_int_at(job, &["spec", "parallelism"]).unwrap_or(0) {
        parallelism if parallelism > 1 => format!("{succeeded}/1 of {parallelism}"),
        _ => format!("{succeeded}/1"),
    }
}

/// Returns the run time: empty before start, time so far while running, else the
/// completion time minus the start time.
pub(crate) fn job_duration(job: &Value, now: Timestamp) -> String {
    let Some(start) = time_at(job, &["status", "startTime"]) else { return String::new() };
    let end = time_at(job, &["status", "completionTime"]).unwrap_or(now);
    human_duration(end.duration_since(start))
}

/// Returns Complete, Failed, Terminating, Suspended, FailureTarget or Running.
pub(crate) fn job_status(job: &Value) -> &'static str {
    let conditions = list_at(job, &["status", "conditions"]);
    // The first condition of a type decides, like `hasJobCondition`.
    let has = |kind: &str| {
        conditions
            .iter()
            .find(|c| str_at(c, &["type"]) == kind)
            .is_some_and(|c| str_at(c, &["status"]) == "True")
    };
    if has("Complete") {
        "Complete"
    } else if has("Failed") {
        "Failed"
    } else if is_deleting(job) {
        "Terminating"
    } else if has("Suspended") {
        "Suspended"
    } else if has("FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    }
}

fn cron_job_columns() -> Vec<Column> {
    vec![
        NAME,
        text("Schedule", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron."),
        text("Timezone", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones."),
        boolean("Suspend", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions."),
        integer("Active", "A list of pointers to currently running jobs."),
        text("Last Schedule", "Information when was the last time the job was successfully scheduled."),
        AGE,
        CONTAINERS,
        IMAGES,
        text("Selector", SELECTOR_DESCRIPTION).wide(),
    ]
}

fn cron_job_cells(cron_job: &Value, now: Timestamp) -> Vec<Value> {
    let job_spec = at(cron_job, &["spec", "jobTemplate", "spec"]).unwrap_or(&Value::Null);
    let (names, images) =
        container_cells(at(job_spec, &["template", "spec"]).unwrap_or(&Value::Null));
    let last_schedule = match time_at(cron_job, &["status", "lastScheduleTime"]) {
        Some(time) => since(Some(time), now),
        None => "<none>".to_string(),
    };
    vec![
        name(cron_job).into(),
        str_at(cron_job, &["spec", "schedule"]).into(),
        opt_str_at(cron_job, &["spec", "timeZone"]).unwrap_or("<none>").into(),
        // The API server defaults `suspend` to false.
        bool_ptr(Some(opt_bool_at(cron_job, &["spec", "suspend"]).unwrap_or(false))).into(),
        len_at(cron_job, &["status", "active"]).into(),
        last_schedule.into(),
        age(cron_job, now).into(),
        names.into(),
        images.into(),
        format_label_selector(at(job_spec, &["selector"])).into(),
    ]
}
