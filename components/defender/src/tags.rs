//! Phase three: incident tags. Alerts of one incident are tagged together:
//! the most severe verdict across them (and across earlier ticks: never
//! downgraded) and their threat names, merged with everyone else's tags.
//! PATCH replaces the whole list, which makes it safe to repeat.

use std::collections::BTreeMap;

use mdo_vmray::graph_batch::BatchRequest;
use mdo_vmray::model::Verdict;
use mdo_vmray::records::{keys, IncidentTags, SampleReport};
use mdo_vmray::tags;
use serde_json::{json, Value};

use crate::comments::path_segment;
use crate::tick::{Ctx, Work};

/// A JSON array of strings under `key`, `None` if absent or of another shape.
fn string_array(v: &Value, key: &str) -> Option<Vec<String>> {
    v.get(key)?
        .as_array()?
        .iter()
        .map(|t| t.as_str().map(str::to_string))
        .collect()
}

impl Ctx<'_> {
    pub async fn tag_incidents(&mut self, work: &mut [Work]) -> Result<(), String> {
        let ready: Vec<usize> = (0..work.len())
            .filter(|i| {
                work[*i].comments_done() && work[*i].indicators_done() && !work[*i].wb.tags_done
            })
            .collect();
        let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for i in ready {
            match (
                &work[i].incident,
                self.s.add_tags_to_incident && !work[i].samples.is_empty(),
            ) {
                (Some(inc), true) => groups.entry(inc.clone()).or_default().push(i),
                _ => {
                    work[i].wb.tags_done = true;
                    work[i].save(&self.kv)?;
                }
            }
        }
        let room = self.graph_room() / 2; // a GET and maybe a PATCH each
        let incidents: Vec<(String, Vec<usize>)> = groups.into_iter().take(room).collect();
        if incidents.is_empty() {
            return Ok(());
        }
        let gets: Vec<BatchRequest> = incidents
            .iter()
            .enumerate()
            .map(|(n, (inc, _))| BatchRequest {
                id: n.to_string(),
                method: "GET",
                url: format!("/security/incidents/{}", path_segment(inc)),
                body: None,
            })
            .collect();
        let answers = self.graph_batch(&gets, true).await;
        let mut patches: Vec<(usize, Vec<String>, IncidentTags)> = Vec::new();
        for (n, ((inc, members), answer)) in incidents.iter().zip(&answers).enumerate() {
            if !answer.ok() {
                continue;
            }
            // Never merge into tags we could not read: a PATCH would drop others' tags.
            let Some(existing) = string_array(&answer.body, "customTags") else {
                self.log.warn(
                    "incident_unreadable",
                    &[
                        ("incident", json!(inc)),
                        ("error", json!("no `customTags` array in the answer")),
                    ],
                );
                continue;
            };
            let samples: Vec<&SampleReport> = members
                .iter()
                .flat_map(|i| work[*i].samples.iter())
                .collect();
            let verdict = samples
                .iter()
                .map(|s| s.verdict)
                .max()
                .unwrap_or(Verdict::NotAvailable);
            let names = tags::threat_names(&samples);
            let prev: Option<IncidentTags> = self.kv.get(&keys::incident(self.tenant, inc))?;
            let (new_tags, own) = tags::merge(&existing, prev.as_ref(), verdict, &names);
            if new_tags == existing {
                self.settle_incident(inc, &own, members, work)?;
            } else if self.s.common.dry_run {
                self.log.info(
                    "dry_run_would_tag",
                    &[("incident", json!(inc)), ("tags", json!(new_tags))],
                );
                self.settle_incident(inc, &own, members, work)?;
            } else {
                patches.push((n, new_tags, own));
            }
        }
        if patches.is_empty() {
            return Ok(());
        }
        let requests: Vec<BatchRequest> = patches
            .iter()
            .map(|(n, new_tags, _)| BatchRequest {
                id: n.to_string(),
                method: "PATCH",
                url: format!("/security/incidents/{}", path_segment(&incidents[*n].0)),
                body: Some(json!({"customTags": new_tags})),
            })
            .collect();
        let answers = self.graph_batch(&requests, true).await;
        for ((n, new_tags, own), answer) in patches.iter().zip(&answers) {
            let (inc, members) = &incidents[*n];
            // The answer must show the tags; otherwise look again next tick.
            if !(answer.ok() && string_array(&answer.body, "customTags").as_ref() == Some(new_tags))
            {
                self.log.warn(
                    "incident_tag_unconfirmed",
                    &[("incident", json!(inc)), ("status", json!(answer.status))],
                );
                continue;
            }
            self.counts.incidents_tagged += 1;
            self.log.info(
                "incident_tagged",
                &[
                    ("incident", json!(inc)),
                    ("verdict", json!(own.verdict.as_str())),
                ],
            );
            self.settle_incident(inc, own, members, work)?;
        }
        Ok(())
    }

    fn settle_incident(
        &self,
        incident: &str,
        own: &IncidentTags,
        members: &[usize],
        work: &mut [Work],
    ) -> Result<(), String> {
        self.kv.put(&keys::incident(self.tenant, incident), own)?;
        for i in members {
            work[*i].wb.tags_done = true;
            work[*i].save(&self.kv)?;
        }
        Ok(())
    }
}
