//! The rollout operations of [`Work`]: rolling update, recreate, proportional scaling, history
//! cleanup and status, mirroring Kubernetes' `rolling.go`, `recreate.go`, `sync.go` and
//! `progress.go`.

use super::*;

impl Work<'_> {
    /// `rolloutRolling`: scale the new set up, else the old ones down, then clean up and report.
    pub(super) fn rollout_rolling(&mut self) {
        self.sync_revision(true);
        if self.reconcile_new() {
            return self.sync_rollout_status();
        }
        if self.reconcile_old() {
            return self.sync_rollout_status();
        }
        if self.complete(self.deployment.status.as_ref().cloned().unwrap_or_default()) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// `rolloutRecreate`: scale every old set to 0, wait for their pods to go, then scale up.
    pub(super) fn rollout_recreate(&mut self) {
        self.sync_revision(false);
        let mut scaled_down = false;
        for index in self.old() {
            if self.sets.get(index).is_some_and(|set| spec_replicas(set) > 0) {
                scaled_down |= self.scale(index, 0);
            }
        }
        let old_running =
            self.old().iter().filter_map(|i| self.sets.get(*i)).any(|set| status_replicas(set) > 0);
        if scaled_down || old_running {
            return self.sync_rollout_status();
        }
        self.sync_revision(true);
        if let Some(new) = self.new {
            self.scale(new, self.replicas);
        }
        if self.complete(self.deployment.status.as_ref().cloned().unwrap_or_default()) {
            self.cleanup();
        }
        self.sync_rollout_status();
    }

    /// `reconcileNewReplicaSet`: returns whether the new set was resized.
    fn reconcile_new(&mut self) -> bool {
        let Some(new) = self.new else { return false };
        let current = self.sets.get(new).map(spec_replicas).unwrap_or(0);
        if current == self.replicas {
            return false;
        }
        if current > self.replicas {
            return self.scale(new, self.replicas);
        }
        let target = self.new_set_replicas(new);
        self.scale(new, target)
    }

    /// `reconcileOldReplicaSets`: returns whether any old set was scaled down.
    fn reconcile_old(&mut self) -> bool {
        let old: Vec<usize> = self.old().into_iter().filter(|i| self.spec_sum(&[*i]) > 0).collect();
        if self.spec_sum(&old) == 0 {
            return false;
        }
        let all: Vec<usize> = (0..self.sets.len()).collect();
        let min_available = self.replicas - self.max_unavailable;
        let new_unavailable = self
            .new
            .and_then(|i| self.sets.get(i))
            .map_or(0, |set| spec_replicas(set) - kept_available(set));
        let max_scaled_down = self.spec_sum(&all) - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return false;
        }
        // cleanupUnhealthyReplicas: drop unavailable old pods first, oldest sets first.
        let mut cleaned = 0;
        for &index in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let Some(set) = self.sets.get(index) else { continue };
            let (spec, available) = (spec_replicas(set), kept_available(set));
            if spec == 0 || spec <= available {
                continue;
            }
            let count = (max_scaled_down - cleaned).min(spec - available);
            self.scale(index, spec - count);
            cleaned += count;
        }
        // scaleDownOldReplicaSetsForRollingUpdate: then available old pods, above minAvailable.
        let available = self.kept_available_sum(&all);
        let mut scaled = 0;
        if available > min_available {
            let budget = available - min_available;
            for &index in &old {
                if scaled >= budget {
                    break;
                }
                let spec = self.spec_sum(&[index]);
                if spec == 0 {
                    continue;
                }
                let count = spec.min(budget - scaled);
                self.scale(index, spec - count);
                scaled += count;
            }
        }
        cleaned + scaled > 0
    }

    /// `sync`: scale proportionally (paused or scaling event), clean up if paused, report.
    pub(super) fn sync_scale(&mut self) {
        self.sync_revision(false);
        self.scale_proportionally();
        if self.spec.paused == Some(true) {
            self.cleanup();
        }
        self.sync_status();
    }

    /// Kubernetes' `scale`: one active set takes it all; a saturated new set zeroes the old ones;
    /// otherwise a rolling Deployment spreads the difference in proportion to each set's size.
    fn scale_proportionally(&mut self) {
        let mut newest_first = self.old();
        newest_first.reverse();
        let candidates: Vec<usize> =
            self.new.into_iter().chain(newest_first.iter().copied()).collect();
        let active: Vec<usize> =
            candidates.iter().copied().filter(|i| self.spec_sum(&[*i]) > 0).collect();
        let single = match active.len() {
            0 => self.new.or(newest_first.first().copied()),
            1 => active.first().copied(),
            _ => None,
        };
        if let Some(index) = single {
            if self.spec_sum(&[index]) != self.replicas {
                self.scale(index, self.replicas);
            }
            return;
        }
        if self.new.and_then(|i| self.sets.get(i)).is_some_and(|set| self.saturated(set)) {
            for index in newest_first {
                if self.spec_sum(&[index]) > 0 {
                    self.scale(index, 0);
                }
            }
            return;
        }
        if self.strategy != Strategy::Rolling {
            return;
        }
        let allowed = if self.replicas > 0 { self.replicas + self.max_surge } else { 0 };
        let to_add = allowed - self.spec_sum(&active);
        let mut order = active;
        // Largest first; ties newer first when adding, older first when removing.
        order.sort_by(|a, b| {
            let (sa, sb) = (self.spec_sum(&[*a]), self.spec_sum(&[*b]));
            let (ca, cb) =
                (self.sets.get(*a).map(created_order), self.sets.get(*b).map(created_order));
            let by_age = if to_add > 0 { cb.cmp(&ca) } else { ca.cmp(&cb) };
            sb.cmp(&sa).then(by_age)
        });
        let mut added = 0;
        let mut sizes: Vec<(usize, i32)> = Vec::new();
        for &index in &order {
            let size = self.spec_sum(&[index]);
            let proportion = if to_add == 0 || to_add == added || size == 0 {
                0
            } else {
                let fraction = self.fraction(index);
                if to_add > 0 {
                    fraction.min(to_add - added)
                } else {
                    fraction.max(to_add - added)
                }
            };
            added += proportion;
            sizes.push((index, size + proportion));
        }
        if to_add != 0 && added != to_add {
            if let Some(first) = sizes.first_mut() {
                first.1 = (first.1 + to_add - added).max(0);
            }
        }
        for (index, size) in sizes {
            self.scale(index, size);
        }
    }

    /// `getReplicaSetFraction`: how many replicas a set gains (or loses) for the new size.
    fn fraction(&self, index: usize) -> i32 {
        let Some(set) = self.sets.get(index) else { return 0 };
        let size = spec_replicas(set);
        if self.replicas == 0 {
            return -size;
        }
        let target = self.replicas + self.max_surge;
        let annotated = annotation_int(set, MAX_REPLICAS_ANNOTATION).unwrap_or_else(|| {
            self.deployment.status.as_ref().and_then(|s| s.replicas).unwrap_or(0)
        });
        if annotated == 0 {
            return 0;
        }
        let scaled = (f64::from(size) * f64::from(target) / f64::from(annotated)).round();
        // The product of two i32 over an i32 rounds back into i32 range for sane sizes.
        scaled as i32 - size
    }

    /// `IsSaturated`: the new set runs exactly the desired replicas, all available.
    fn saturated(&self, set: &ReplicaSet) -> bool {
        annotation_int(set, DESIRED_REPLICAS_ANNOTATION) == Some(self.replicas)
            && spec_replicas(set) == self.replicas
            && available_replicas(set) == self.replicas
    }

    /// `cleanupDeployment`: deletes the oldest revisions beyond the history limit that run nothing.
    fn cleanup(&mut self) {
        let limit = self.spec.revision_history_limit.unwrap_or(DEFAULT_REVISION_HISTORY_LIMIT);
        let mut cleanable: Vec<&ReplicaSet> = self
            .old()
            .iter()
            .filter_map(|i| self.sets.get(*i))
            .filter(|set| set.metadata.deletion_timestamp.is_none())
            .collect();
        let excess = cleanable.len() as i64 - i64::from(limit);
        if excess <= 0 {
            return;
        }
        cleanable.sort_by_key(|set| (revision(set), created_order(set)));
        for set in cleanable.into_iter().take(usize::try_from(excess).unwrap_or(0)) {
            let observed = set.status.as_ref().and_then(|s| s.observed_generation).unwrap_or(0);
            if status_replicas(set) != 0
                || spec_replicas(set) != 0
                || set.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            self.delete.push(name_of(set));
        }
    }

    /// `calculateStatus`, from the sets as synced before scaling.
    fn calculate_status(&self) -> DeploymentStatus {
        let sets = &self.synced;
        let new = self.new.and_then(|i| sets.get(i));
        let available: i32 = sets.iter().map(available_replicas).sum();
        let total: i32 = sets.iter().map(spec_replicas).sum();
        let mut status = DeploymentStatus {
            observed_generation: self.deployment.metadata.generation,
            replicas: Some(sets.iter().map(status_replicas).sum()),
            updated_replicas: Some(new.map_or(0, status_replicas)),
            ready_replicas: Some(sets.iter().map(ready_replicas).sum()),
            available_replicas: Some(available),
            unavailable_replicas: Some((total - available).max(0)),
            collision_count: self.base_status.collision_count,
            conditions: self.base_status.conditions.clone(),
            terminating_replicas: self.base_status.terminating_replicas,
        };
        let available_condition = if available >= self.replicas - self.max_unavailable {
            self.condition(
                AVAILABLE,
                "True",
                reason::MINIMUM_REPLICAS_AVAILABLE,
                "Deployment has minimum availability.".into(),
            )
        } else {
            self.condition(
                AVAILABLE,
                "False",
                reason::MINIMUM_REPLICAS_UNAVAILABLE,
                "Deployment does not have minimum availability.".into(),
            )
        };
        set_condition(&mut status, available_condition);
        status
    }

    /// `syncDeploymentStatus`: writes the calculated status if it changed.
    pub(super) fn sync_status(&mut self) {
        if self.synced.is_empty() {
            self.synced = self.sets.clone();
        }
        let status = self.calculate_status();
        self.write_status(status);
    }

    fn write_status(&mut self, status: DeploymentStatus) {
        if self.deployment.status.as_ref() != Some(&status) {
            self.status = Some(status);
        }
    }

    /// `DeploymentComplete`: every replica updated and available, the spec observed.
    fn complete(&self, status: DeploymentStatus) -> bool {
        let generation = self.deployment.metadata.generation.unwrap_or(0);
        status.updated_replicas.unwrap_or(0) == self.replicas
            && status.replicas.unwrap_or(0) == self.replicas
            && status.available_replicas.unwrap_or(0) == self.replicas
            && status.observed_generation.unwrap_or(0) >= generation
    }

    /// `syncRolloutStatus`: the status plus the Progressing and ReplicaFailure conditions.
    fn sync_rollout_status(&mut self) {
        if self.synced.is_empty() {
            self.synced = self.sets.clone();
        }
        let mut status = self.calculate_status();
        let Some(deadline) = self.progress_deadline else {
            remove_condition(&mut status, PROGRESSING);
            return self.write_status(status);
        };
        let old = self.deployment.status.clone().unwrap_or_default();
        let current = condition(&self.base_status, PROGRESSING).cloned();
        let new_name = self.new.and_then(|i| self.synced.get(i)).map(name_of);
        let already_complete = status.replicas == status.updated_replicas
            && current.as_ref().and_then(|c| c.reason.as_deref())
                == Some(reason::NEW_REPLICA_SET_AVAILABLE);
        if !already_complete {
            let old_of =
                |s: &DeploymentStatus| s.replicas.unwrap_or(0) - s.updated_replicas.unwrap_or(0);
            let progressing = status.updated_replicas.unwrap_or(0)
                > old.updated_replicas.unwrap_or(0)
                || old_of(&status) < old_of(&old)
                || status.ready_replicas.unwrap_or(0) > old.ready_replicas.unwrap_or(0)
                || status.available_replicas.unwrap_or(0) > old.available_replicas.unwrap_or(0);
            let subject = new_name.as_ref().map_or_else(
                || format!("Deployment {:?}", self.name()),
                |name| format!("ReplicaSet {name:?}"),
            );
            if self.complete(status.clone()) {
                let message = format!("{subject} has successfully progressed.");
                let done =
                    self.condition(PROGRESSING, "True", reason::NEW_REPLICA_SET_AVAILABLE, message);
                set_condition(&mut status, done);
            } else if progressing {
                let message = format!("{subject} is progressing.");
                let mut moving =
                    self.condition(PROGRESSING, "True", reason::REPLICA_SET_UPDATED, message);
                if let Some(current) = condition(&status, PROGRESSING) {
                    if current.status == "True" {
                        moving.last_transition_time = current.last_transition_time.clone();
                    }
                }
                remove_condition(&mut status, PROGRESSING);
                set_condition(&mut status, moving);
            } else if self.timed_out(&status, deadline) {
                let message = format!("{subject} has timed out progressing.");
                let stuck = self.condition(
                    PROGRESSING,
                    "False",
                    reason::PROGRESS_DEADLINE_EXCEEDED,
                    message,
                );
                set_condition(&mut status, stuck);
            }
        }
        self.sync_replica_failure(&mut status);
        self.recheck_after = self.stuck_recheck(&status, deadline);
        self.write_status(status);
    }

    /// `DeploymentTimedOut`: no progress recorded for longer than the deadline.
    fn timed_out(&self, status: &DeploymentStatus, deadline: i32) -> bool {
        let Some(current) = condition(status, PROGRESSING) else { return false };
        match current.reason.as_deref() {
            Some(reason::NEW_REPLICA_SET_AVAILABLE) => false,
            Some(reason::PROGRESS_DEADLINE_EXCEEDED) => true,
            _ => current.last_update_time.as_ref().is_some_and(|from| {
                from.0 + SignedDuration::from_secs(i64::from(deadline)) < self.now
            }),
        }
    }

    /// `requeueStuckDeployment`: when to look again for the deadline to pass.
    fn stuck_recheck(&self, status: &DeploymentStatus, deadline: i32) -> Option<SignedDuration> {
        let current = condition(status, PROGRESSING)?;
        if self.complete(status.clone())
            || current.reason.as_deref() == Some(reason::PROGRESS_DEADLINE_EXCEEDED)
        {
            return None;
        }
        let from = current.last_update_time.as_ref()?.0;
        let expires = from + SignedDuration::from_secs(i64::from(deadline));
        let after = self.now.duration_until(expires);
        Some(if after < SignedDuration::from_secs(1) { SignedDuration::ZERO } else { after })
    }

    /// `getReplicaFailures`: surfaces a ReplicaFailure condition of the new set, else an old one.
    fn sync_replica_failure(&self, status: &mut DeploymentStatus) {
        let new = self.new.and_then(|i| self.synced.get(i));
        let olds = self.old().into_iter().filter_map(|i| self.synced.get(i));
        let failure = new.into_iter().chain(olds).find_map(|set| {
            set.status.as_ref()?.conditions.iter().flatten().find(|c| c.type_ == REPLICA_FAILURE)
        });
        match failure {
            Some(failure) => set_condition(
                status,
                DeploymentCondition {
                    type_: REPLICA_FAILURE.into(),
                    status: failure.status.clone(),
                    reason: failure.reason.clone(),
                    message: failure.message.clone(),
                    last_update_time: failure.last_transition_time.clone(),
                    last_transition_time: failure.last_transition_time.clone(),
                },
            ),
            None => remove_condition(status, REPLICA_FAILURE),
        }
    }
}
