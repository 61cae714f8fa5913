//! The CronJob controller: creates a Job for each scheduled time, as `concurrencyPolicy`
//! allows, and keeps the history limits.
//!
//! Each reconcile lists the namespace's Jobs from the API, asks `plan` what to do and executes
//! it: deletions (finished Jobs beyond the limits, active ones being replaced), the Job for
//! the most recent unmet schedule time (its name is derived from that time, so a retried
//! create answers AlreadyExists instead of running twice), the status conditional on the
//! CronJob's resourceVersion, then events. It looks again when the next schedule time is due.

mod plan;

use std::sync::Arc;

use k8s_openapi::api::batch::v1::{CronJob, Job};
use kube::api::{Api, ListParams, PropagationPolicy};
use kube::runtime::controller::Action;
use kube::ResourceExt;
use tokio_util::sync::CancellationToken;

use crate::controller::{self, already_exists, delete_if_uid, soon, write_status, Context};

/// The field manager and event source the controller writes as.
const MANAGER: &str = "cronjob-controller";

type ReconcileError = controller::ReconcileError<plan::PlanError>;

/// Runs the controller until `term` is cancelled.
pub async fn run(client: kube::Client, term: CancellationToken) {
    controller::run::<CronJob, Job, _, _>(client, term, MANAGER, reconcile).await;
}

async fn reconcile(cron: Arc<CronJob>, context: Arc<Context>) -> Result<Action, ReconcileError> {
    let namespace = cron.namespace().unwrap_or_default();
    let uid = cron.uid().unwrap_or_default();
    let jobs: Api<Job> = Api::namespaced(context.client.clone(), &namespace);
    let listed = jobs.list(&ListParams::default()).await?.items;
    let plan = plan::plan(&cron, &listed, jiff::Timestamp::now()).map_err(ReconcileError::Plan)?;

    for deletion in &plan.delete {
        let background = Some(PropagationPolicy::Background);
        if delete_if_uid(&jobs, &deletion.name, Some(deletion.uid.clone()), background).await? {
            let message = format!("Deleted job {}", deletion.name);
            let recorder = &context.recorder;
            recorder
                .record(&*cron, crate::events::EventType::Normal, "SuccessfulDelete", &message)
                .await;
        }
    }
    let mut status = plan.status.clone();
    if let Some(creation) = &plan.create {
        let created = match jobs.create(&context.post(), &creation.job).await {
            Ok(created) => {
                let event = creation.created_event();
                context.recorder.record(&*cron, event.type_, &event.reason, &event.message).await;
                Some(created)
            }
            // Created by an earlier reconcile whose answer was lost: count it if it is ours.
            Err(err) if already_exists(&err) => {
                let existing = jobs.get(&creation.job.name_any()).await?;
                let ours = existing
                    .owner_references()
                    .iter()
                    .any(|o| o.controller == Some(true) && o.uid == uid);
                ours.then_some(existing)
            }
            Err(err) => return Err(err.into()),
        };
        if let (Some(created), Some(status)) = (created, status.as_mut()) {
            creation.record(status, &created);
        }
    }
    if let Some(status) = status {
        let mut updated = (*cron).clone();
        updated.status = Some(status);
        let crons = Api::<CronJob>::namespaced(context.client.clone(), &namespace);
        if !write_status(&crons, &context.post(), &updated).await? {
            return Ok(soon());
        }
    }
    for event in &plan.events {
        context.recorder.record(&*cron, event.type_, &event.reason, &event.message).await;
    }
    Ok(controller::recheck(plan.recheck_after))
}
