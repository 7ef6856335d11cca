//! VMRay REST API (`/rest/...`): submissions, samples, analyses, IOCs.

use crate::http::{Req, Resp};
use crate::scenario::{SampleSpec, VmraySpec};
use crate::state::{Shared, SubmissionRecord, World};
use chrono::{DateTime, Duration, Utc};
use serde_json::{json, Value};
use sha1::Digest as _;
use std::collections::{BTreeMap, HashMap};

#[derive(Clone, Debug)]
pub(crate) struct Sample {
    pub id: u64,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub size: u64,
    pub sha256: String,
    pub sha1: String,
    pub md5: String,
    pub created: DateTime<Utc>,
    pub spec: SampleSpec,
    pub children: Vec<u64>,
    pub parents: Vec<u64>,
}

#[derive(Clone, Debug)]
pub(crate) struct Submission {
    pub id: u64,
    pub sample_id: u64,
    pub job_id: u64,
    pub analysis_id: u64,
    pub url: Option<String>,
    pub filename: Option<String>,
    pub tags: Vec<String>,
    pub comment: Option<String>,
    pub user_config: Option<String>,
    pub created: DateTime<Utc>,
    pub finish_at: DateTime<Utc>,
    pub seeded: bool,
}

#[derive(Clone)]
pub(crate) struct VmrayWorld {
    pub default_verdict: String,
    pub delay: u64,
    pub url_specs: BTreeMap<String, SampleSpec>,
    pub file_specs: BTreeMap<String, SampleSpec>,
    pub samples: BTreeMap<u64, Sample>,
    pub submissions: BTreeMap<u64, Submission>,
    pub by_url: HashMap<String, u64>,
    pub by_sha256: HashMap<String, u64>,
    next_sample: u64,
    next_submission: u64,
    next_job: u64,
    next_analysis: u64,
    pub verdict_quota: u64,
    pub verdict_remaining: u64,
    pub version: String,
}

fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn hashes(data: &[u8]) -> (String, String, String) {
    (
        hex(&sha2::Sha256::digest(data)),
        hex(&sha1::Sha1::digest(data)),
        hex(&md5::Md5::digest(data)),
    )
}

fn ok(data: Value) -> Resp {
    Resp::json(
        200,
        &json!({"result": "ok", "data": data, "continuation_id": null, "truncated": false}),
    )
}

pub(crate) fn vmray_error(status: u16, msg: &str) -> Resp {
    Resp::json(status, &json!({"result": "error", "error_msg": msg}))
}

fn file_type(name: &str) -> &'static str {
    let lower = name.to_ascii_lowercase();
    let ext = lower.rsplit('.').next().unwrap_or_default();
    match ext {
        "exe" | "dll" | "scr" => "Windows Exe (x86-32)",
        "html" | "htm" => "HTML Document",
        "pdf" => "PDF Document",
        "zip" => "ZIP Archive",
        "doc" | "docx" | "docm" => "Word Document",
        "xls" | "xlsx" | "xlsm" => "Excel Document",
        "js" => "JScript",
        "ps1" => "PowerShell Script",
        _ => "Unknown",
    }
}

impl VmrayWorld {
    pub fn new(spec: &VmraySpec, now: DateTime<Utc>) -> VmrayWorld {
        let mut w = VmrayWorld {
            default_verdict: spec.default_verdict.clone(),
            delay: spec.analysis_delay_seconds,
            url_specs: spec.urls.clone(),
            file_specs: spec.files.clone(),
            samples: BTreeMap::new(),
            submissions: BTreeMap::new(),
            by_url: HashMap::new(),
            by_sha256: HashMap::new(),
            next_sample: 4700,
            next_submission: 9000,
            next_job: 1100,
            next_analysis: 400,
            verdict_quota: spec.verdict_quota,
            verdict_remaining: spec.verdict_quota,
            version: spec.version.clone(),
        };
        for prior in &spec.prior_submissions {
            let created = now - Duration::milliseconds((prior.age_days * 86_400_000.0) as i64);
            if let Some(file) = &prior.file {
                let data = file.content();
                let (sha256, _, _) = hashes(&data);
                let sample_id = match w.by_sha256.get(&sha256) {
                    Some(id) => *id,
                    None => {
                        let id = w.create_sample(
                            None,
                            Some(file.name.clone()),
                            Some(&data),
                            prior.sample.clone(),
                            created,
                        );
                        w.by_sha256.insert(sha256, id);
                        id
                    }
                };
                let delay = prior.sample.analysis_delay_seconds.unwrap_or(w.delay);
                w.add_submission(
                    sample_id,
                    None,
                    Some(file.name.clone()),
                    prior.tags.clone(),
                    Some(prior.comment.clone()).filter(|c| !c.is_empty()),
                    None,
                    created,
                    created + Duration::seconds(delay as i64),
                    true,
                );
                continue;
            }
            let sample_id = match w.by_url.get(&prior.url) {
                Some(id) => *id,
                None => {
                    let id = w.create_sample(
                        Some(prior.url.clone()),
                        None,
                        None,
                        prior.sample.clone(),
                        created,
                    );
                    w.by_url.insert(prior.url.clone(), id);
                    id
                }
            };
            let delay = prior.sample.analysis_delay_seconds.unwrap_or(w.delay);
            w.add_submission(
                sample_id,
                Some(prior.url.clone()),
                None,
                prior.tags.clone(),
                Some(prior.comment.clone()).filter(|c| !c.is_empty()),
                None,
                created,
                created + Duration::seconds(delay as i64),
                true,
            );
        }
        w
    }

    /// Creates a sample (and its children, recursively). `content` = file bytes when known.
    fn create_sample(
        &mut self,
        url: Option<String>,
        filename: Option<String>,
        content: Option<&[u8]>,
        spec: SampleSpec,
        now: DateTime<Utc>,
    ) -> u64 {
        self.next_sample += 1;
        let id = self.next_sample;
        let basis: Vec<u8> = match (&url, content) {
            (_, Some(c)) => c.to_vec(),
            (Some(u), None) => u.as_bytes().to_vec(),
            (None, None) => format!("{}:{id}", filename.clone().unwrap_or_default()).into_bytes(),
        };
        let (sha256, sha1, md5) = hashes(&basis);
        let sample = Sample {
            id,
            url: url.clone(),
            filename: filename.clone(),
            size: basis.len() as u64,
            sha256: spec
                .sha256
                .clone()
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or(sha256),
            sha1: spec
                .sha1
                .clone()
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or(sha1),
            md5: spec
                .md5
                .clone()
                .map(|s| s.to_ascii_lowercase())
                .unwrap_or(md5),
            created: now,
            spec: spec.clone(),
            children: vec![],
            parents: vec![],
        };
        self.samples.insert(id, sample);
        self.create_children(id, now);
        id
    }

    fn create_children(&mut self, id: u64, now: DateTime<Utc>) {
        let Some(children) = self.samples.get(&id).map(|s| s.spec.children.clone()) else {
            return;
        };
        let mut ids = vec![];
        for (n, child) in children.into_iter().enumerate() {
            let (url, filename) = match (&child.url, &child.filename) {
                (Some(u), _) => (Some(u.clone()), None),
                (None, Some(f)) => (None, Some(f.clone())),
                (None, None) => (None, Some(format!("child-{n}.bin"))),
            };
            let cid = self.create_sample(url, filename, None, child, now);
            if let Some(c) = self.samples.get_mut(&cid) {
                c.parents.push(id);
            }
            ids.push(cid);
        }
        if let Some(s) = self.samples.get_mut(&id) {
            s.children = ids;
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn add_submission(
        &mut self,
        sample_id: u64,
        url: Option<String>,
        filename: Option<String>,
        tags: Vec<String>,
        comment: Option<String>,
        user_config: Option<String>,
        created: DateTime<Utc>,
        finish_at: DateTime<Utc>,
        seeded: bool,
    ) -> u64 {
        self.next_submission += 1;
        self.next_job += 1;
        self.next_analysis += 1;
        let id = self.next_submission;
        self.submissions.insert(
            id,
            Submission {
                id,
                sample_id,
                job_id: self.next_job,
                analysis_id: self.next_analysis,
                url,
                filename,
                tags,
                comment,
                user_config,
                created,
                finish_at,
                seeded,
            },
        );
        id
    }

    pub fn submission_records(&self) -> Vec<SubmissionRecord> {
        self.submissions
            .values()
            .filter(|s| !s.seeded)
            .map(|s| SubmissionRecord {
                submission_id: s.id,
                sample_id: s.sample_id,
                job_id: s.job_id,
                url: s.url.clone(),
                filename: s.filename.clone(),
                tags: s.tags.clone(),
                comment: s.comment.clone(),
                user_config: s.user_config.clone(),
                created: crate::state::iso(s.created),
                file_sha256: s
                    .url
                    .is_none()
                    .then(|| self.samples.get(&s.sample_id).map(|x| x.sha256.clone()))
                    .flatten(),
                file_size: s
                    .url
                    .is_none()
                    .then(|| self.samples.get(&s.sample_id).map(|x| x.size))
                    .flatten(),
            })
            .collect()
    }

    /// A sample's analysis is finished once one of its submissions (or a parent's) finished.
    fn ready(&self, id: u64, now: DateTime<Utc>, depth: u32) -> bool {
        if depth > 16 {
            return false;
        }
        if self
            .submissions
            .values()
            .any(|s| s.sample_id == id && s.finish_at <= now)
        {
            return true;
        }
        self.samples
            .get(&id)
            .is_some_and(|s| s.parents.iter().any(|p| self.ready(*p, now, depth + 1)))
    }

    fn verdict(&self, s: &Sample) -> String {
        s.spec
            .verdict
            .clone()
            .unwrap_or_else(|| self.default_verdict.clone())
    }

    fn vti_score(&self, s: &Sample) -> i64 {
        s.spec.vti_score.unwrap_or(match self.verdict(s).as_str() {
            "malicious" => 90,
            "suspicious" => 55,
            _ => 0,
        })
    }

    fn latest_analysis_id(&self, sample_id: u64) -> Option<u64> {
        self.submissions
            .values()
            .filter(|s| s.sample_id == sample_id)
            .map(|s| s.analysis_id)
            .max()
    }

    fn render_sample(&self, s: &Sample, base: &str, now: DateTime<Utc>) -> Value {
        let ready = self.ready(s.id, now, 0);
        let verdict = self.verdict(s);
        let reason = s.spec.verdict_reason.clone().or(match verdict.as_str() {
            "malicious" => Some("Detected malicious behavior".to_string()),
            "suspicious" => Some("Detected suspicious behavior".to_string()),
            _ => None,
        });
        let sample_type = match (&s.url, &s.filename) {
            (Some(_), _) => "URL",
            (None, Some(f)) => file_type(f),
            _ => "Unknown",
        };
        let threat_names: Vec<&str> = s
            .spec
            .threat_names
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        json!({
            "sample_id": s.id,
            "sample_type": sample_type,
            "sample_url": s.url,
            "sample_filename": s.filename.clone().or_else(|| s.url.clone()),
            "sample_filesize": s.size,
            "sample_is_multipart": false,
            "sample_created": ts(s.created),
            "sample_webif_url": format!("{base}/samples/{}", s.id),
            "sample_verdict": if ready { json!(verdict) } else { Value::Null },
            "sample_verdict_reason_code": if ready && reason.is_some() { json!("vti_score") } else { Value::Null },
            "sample_verdict_reason_description": if ready { json!(reason) } else { Value::Null },
            "sample_vti_score": if ready { json!(self.vti_score(s)) } else { Value::Null },
            "sample_highest_vti_score": if ready { json!(self.vti_score(s)) } else { Value::Null },
            "sample_child_sample_ids": s.children,
            "sample_parent_sample_ids": s.parents,
            "sample_md5hash": s.md5,
            "sample_sha1hash": s.sha1,
            "sample_sha256hash": s.sha256,
            "sample_ssdeephash": null,
            "sample_priority": 1,
            "sample_score": if ready { json!(self.vti_score(s)) } else { Value::Null },
            "sample_severity": if ready { json!(severity(&verdict)) } else { Value::Null },
            "sample_threat_names": if ready { json!(threat_names) } else { json!([]) },
            "sample_classifications": if ready { json!(s.spec.classifications) } else { json!([]) },
            "sample_container_type": null,
        })
    }

    fn render_submission(&self, s: &Submission, base: &str, now: DateTime<Utc>) -> Value {
        let finished = s.finish_at <= now;
        let delay = s.finish_at - s.created;
        let status = if finished {
            "success"
        } else if now - s.created < (delay / 2).min(Duration::seconds(5)) {
            "queued"
        } else {
            "in_progress"
        };
        let verdict = self.samples.get(&s.sample_id).map(|x| self.verdict(x));
        let sample = self.samples.get(&s.sample_id);
        json!({
            "submission_id": s.id,
            "submission_sample_id": s.sample_id,
            "submission_sample_sha256": sample.map(|x| x.sha256.clone()),
            "submission_type": "api",
            "submission_url": s.url,
            "submission_filename": s.filename.clone().or_else(|| s.url.clone()),
            "submission_comment": s.comment,
            "submission_tags": s.tags,
            "submission_user_config": s.user_config,
            "submission_created": ts(s.created),
            "submission_finished": finished,
            "submission_finish_time": if finished { json!(ts(s.finish_at)) } else { Value::Null },
            "submission_status": status,
            "submission_has_errors": false,
            "submission_verdict": if finished { json!(verdict) } else { Value::Null },
            "submission_analyzer_mode": "reputation_static_dynamic",
            "submission_webif_url": format!("{base}/submissions/{}", s.id),
        })
    }
}

fn severity(verdict: &str) -> &'static str {
    match verdict {
        "malicious" => "malicious",
        "suspicious" => "suspicious",
        "clean" => "not_suspicious",
        _ => "unknown",
    }
}

impl World {
    /// Sets the spec of a URL; an existing sample of that URL takes it over (new children).
    pub fn set_url_sample(&mut self, url: &str, spec: SampleSpec, now: DateTime<Utc>) {
        let v = &mut self.vmray;
        v.url_specs.insert(url.to_string(), spec.clone());
        if let Some(id) = v.by_url.get(url).copied() {
            if let Some(s) = v.samples.get_mut(&id) {
                s.spec = spec;
                s.children.clear();
            }
            v.create_children(id, now);
        }
    }
}

pub(crate) fn handle(shared: &Shared, req: &Req) -> Resp {
    let now = shared.clock.now();
    let base = shared.bases.vmray.as_str();
    let mut world = shared.lock();
    let key = world.cfg.vmray_api_key.clone();
    let authed = req
        .header("authorization")
        .and_then(|h| h.trim().split_once(' '))
        .is_some_and(|(scheme, k)| scheme.eq_ignore_ascii_case("api_key") && k.trim() == key);
    if !authed {
        return vmray_error(401, "Authentication failed");
    }
    let seg = req.segments();
    let seg: Vec<&str> = seg.iter().map(String::as_str).collect();
    let v = &mut world.vmray;
    let id_of = |s: &str| s.parse::<u64>().ok();
    match (req.method.as_str(), seg.as_slice()) {
        ("POST", ["rest", "sample", "submit"]) => submit(v, req, base, now),
        ("GET", ["rest", "system_info"]) => ok(json!({
            "version": v.version,
            "version_major": 2026, "version_minor": 2, "version_revision": 1,
            "api_items_per_request": 100,
            "webif_base_url": base,
            "webif_url": base,
        })),
        ("GET", ["rest", "billing_info"]) => ok(json!({
            "billing_type": "analyzer",
            "verdict_quota": v.verdict_quota,
            "verdict_remaining": v.verdict_remaining,
            "report_quota": v.verdict_quota,
            "report_remaining": v.verdict_remaining,
            "end_date": ts(now + Duration::days(365)),
        })),
        ("GET", ["rest", "submission", "search"]) => search(v, req, base, now),
        ("GET", ["rest", "submission", "sample", sid]) => {
            let Some(sid) = id_of(sid).filter(|s| v.samples.contains_key(s)) else {
                return vmray_error(404, "No such element");
            };
            let mut subs: Vec<&Submission> = v
                .submissions
                .values()
                .filter(|s| s.sample_id == sid)
                .collect();
            subs.sort_by_key(|s| std::cmp::Reverse(s.created));
            ok(Value::Array(
                subs.iter()
                    .map(|s| v.render_submission(s, base, now))
                    .collect(),
            ))
        }
        ("GET", ["rest", "submission", id]) => {
            match id_of(id).and_then(|i| v.submissions.get(&i)) {
                Some(s) => ok(v.render_submission(s, base, now)),
                None => vmray_error(404, "No such element"),
            }
        }
        ("GET", ["rest", "analysis", "submission", id]) => {
            let Some(s) = id_of(id).and_then(|i| v.submissions.get(&i)) else {
                return vmray_error(404, "No such element");
            };
            if s.finish_at > now {
                return ok(json!([]));
            }
            let sample = v.samples.get(&s.sample_id);
            let verdict = sample.map(|x| v.verdict(x)).unwrap_or_default();
            ok(json!([{
                "analysis_id": s.analysis_id,
                "analysis_job_id": s.job_id,
                "analysis_sample_id": s.sample_id,
                "analysis_submission_id": s.id,
                "analysis_analyzer_name": "vmray",
                "analysis_analyzer_version": v.version,
                "analysis_created": ts(s.finish_at),
                "analysis_result_code": 1,
                "analysis_result_str": "Operation completed successfully",
                "analysis_severity": severity(&verdict),
                "analysis_verdict": verdict,
                "analysis_vti_score": sample.map(|x| v.vti_score(x)),
                "analysis_webif_url": format!("{base}/samples/{}#analysis/{}", s.sample_id, s.analysis_id),
            }]))
        }
        ("GET", ["rest", "job", "submission", id]) => {
            let Some(s) = id_of(id).and_then(|i| v.submissions.get(&i)) else {
                return vmray_error(404, "No such element");
            };
            if s.finish_at <= now {
                return ok(json!([]));
            }
            let status =
                if now - s.created < ((s.finish_at - s.created) / 2).min(Duration::seconds(5)) {
                    "queued"
                } else {
                    "inwork"
                };
            ok(json!([{
                "job_id": s.job_id,
                "job_sample_id": s.sample_id,
                "job_submission_id": s.id,
                "job_status": status,
                "job_created": ts(s.created),
                "job_type": "full_analysis",
                "job_analyzer_name": "vmray",
                "job_vm_name": "win10_64_th2",
            }]))
        }
        ("GET", ["rest", "sample", "sha256", hash]) => {
            let hash = hash.to_ascii_lowercase();
            if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
                return vmray_error(400, "Invalid value for parameter 'sha256'");
            }
            let found: Vec<Value> = v
                .samples
                .values()
                .filter(|x| x.url.is_none() && x.sha256 == hash)
                .map(|x| v.render_sample(x, base, now))
                .collect();
            ok(Value::Array(found))
        }
        ("GET", ["rest", "sample", id, rest @ ..]) => {
            let Some(s) = id_of(id).and_then(|i| v.samples.get(&i)) else {
                return vmray_error(404, "No such element");
            };
            sample_part(v, s, rest, base, now)
        }
        ("GET", ["rest", "continuation", _]) => vmray_error(404, "No such element"),
        (_, ["rest", ..]) if req.method != "GET" && req.method != "POST" => {
            vmray_error(405, "Method not allowed")
        }
        _ => vmray_error(404, "Invalid API endpoint"),
    }
}

fn sample_part(v: &VmrayWorld, s: &Sample, rest: &[&str], base: &str, now: DateTime<Utc>) -> Resp {
    let ready = v.ready(s.id, now, 0);
    let status = if ready { "finished" } else { "in_progress" };
    let children: Vec<&Sample> = descendants(v, s.id);
    match rest {
        [] => ok(v.render_sample(s, base, now)),
        ["threat_names"] => {
            let names = |x: &Sample| -> Vec<Value> {
                x.spec
                    .threat_names
                    .iter()
                    .map(|t| json!({"threat_name": t.name, "sources": t.sources}))
                    .collect()
            };
            let own = if ready { names(s) } else { vec![] };
            let kids: Vec<Value> = if ready {
                children.iter().flat_map(|c| names(c)).collect()
            } else {
                vec![]
            };
            ok(json!({"sample_threat_names": own, "children_threat_names": kids}))
        }
        ["classifications"] => {
            let names = |x: &Sample| -> Vec<Value> {
                x.spec
                    .classifications
                    .iter()
                    .map(|c| json!({"classification_name": c}))
                    .collect()
            };
            let own = if ready { names(s) } else { vec![] };
            let kids: Vec<Value> = if ready {
                children.iter().flat_map(|c| names(c)).collect()
            } else {
                vec![]
            };
            ok(json!({"sample_classifications": own, "children_classifications": kids}))
        }
        ["vtis"] => {
            let analysis = v.latest_analysis_id(s.id).into_iter().collect::<Vec<_>>();
            let vtis: Vec<Value> = if ready {
                s.spec
                    .vtis
                    .iter()
                    .enumerate()
                    .map(|(i, t)| {
                        json!({
                            "id": 90 + i as u64,
                            "analysis_ids": analysis,
                            "category": t.category,
                            "operation": t.operation,
                            "classifications": t.classifications,
                            "score": t.score,
                        })
                    })
                    .collect()
            } else {
                vec![]
            };
            ok(json!({"status": status, "threat_indicators": vtis}))
        }
        ["mitre_attack"] => ok(json!({
            "status": status,
            "mitre_attack_techniques": if ready { json!(s.spec.mitre_attack_techniques) } else { json!([]) },
        })),
        ["iocs"] => ok(json!({"status": status, "iocs": iocs(s, ready, None)})),
        ["iocs", "verdict", wanted] => {
            if !["malicious", "suspicious", "clean"].contains(wanted) {
                return vmray_error(400, &format!("Invalid verdict '{wanted}'"));
            }
            ok(json!({"status": status, "iocs": iocs(s, ready, Some(wanted))}))
        }
        _ => vmray_error(404, "Invalid API endpoint"),
    }
}

fn descendants(v: &VmrayWorld, id: u64) -> Vec<&Sample> {
    let mut out = vec![];
    let mut stack: Vec<(u64, u32)> = v
        .samples
        .get(&id)
        .map(|s| s.children.iter().map(|c| (*c, 1)).collect())
        .unwrap_or_default();
    while let Some((c, depth)) = stack.pop() {
        if let Some(s) = v.samples.get(&c) {
            if depth < 16 && !out.iter().any(|x: &&Sample| x.id == c) {
                out.push(s);
                stack.extend(s.children.iter().map(|x| (*x, depth + 1)));
            }
        }
    }
    out
}

fn iocs(s: &Sample, ready: bool, only: Option<&str>) -> Value {
    let keep = |verdict: &str| only.is_none_or(|w| w == verdict);
    let mut next_id = 0u64;
    let mut id = || {
        next_id += 1;
        next_id - 1
    };
    let i = &s.spec.iocs;
    let (mut files, mut urls, mut ips, mut domains) = (vec![], vec![], vec![], vec![]);
    if ready {
        for f in &i.files {
            // Hashes given in the spec are served alone (old VMRay records may
            // lack SHA-256); none given: all three, derived from the file name.
            let hash_set = if f.md5.is_none() && f.sha1.is_none() && f.sha256.is_none() {
                let h = hashes(f.filename.as_bytes());
                json!({"md5_hash": h.2, "sha1_hash": h.1, "sha256_hash": h.0})
            } else {
                let mut m = serde_json::Map::new();
                for (k, v) in [
                    ("md5_hash", &f.md5),
                    ("sha1_hash", &f.sha1),
                    ("sha256_hash", &f.sha256),
                ] {
                    if let Some(v) = v {
                        m.insert(k.into(), json!(v));
                    }
                }
                Value::Object(m)
            };
            let item = json!({
                "id": id(), "version": 3, "ioc": true, "ioc_type": "file",
                "verdict": f.verdict, "severity": f.verdict,
                "filename": f.filename, "filenames": [f.filename],
                "hashes": [hash_set],
                "threat_names": [], "classifications": [],
            });
            if keep(&f.verdict) {
                files.push(item);
            }
        }
        for u in &i.urls {
            let item = json!({
                "id": id(), "version": 3, "ioc": true, "ioc_type": "url",
                "verdict": u.verdict, "severity": u.verdict,
                "url": u.url, "original_urls": [u.url], "ip_addresses": [], "categories": [],
            });
            if keep(&u.verdict) {
                urls.push(item);
            }
        }
        for p in &i.ips {
            let item = json!({
                "id": id(), "version": 3, "ioc": true, "ioc_type": "ip",
                "verdict": p.verdict, "severity": p.verdict,
                "ip_address": p.ip, "domains": p.domains,
            });
            if keep(&p.verdict) {
                ips.push(item);
            }
        }
        for d in &i.domains {
            let item = json!({
                "id": id(), "version": 3, "ioc": true, "ioc_type": "domain",
                "verdict": d.verdict, "severity": d.verdict,
                "domain": d.domain, "original_domains": [d.domain], "ip_addresses": d.ip_addresses,
            });
            if keep(&d.verdict) {
                domains.push(item);
            }
        }
    }
    json!({
        "files": files, "urls": urls, "ips": ips, "domains": domains,
        "email_addresses": [], "emails": [], "filenames": [], "mutexes": [], "processes": [], "registry": [],
    })
}

fn submit(v: &mut VmrayWorld, req: &Req, base: &str, now: DateTime<Utc>) -> Resp {
    let Some(form) = &req.form else {
        return vmray_error(
            400,
            "Expected multipart/form-data or application/x-www-form-urlencoded parameters",
        );
    };
    let url = form
        .get("sample_url")
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(str::to_string);
    let file = form.files.iter().find(|(name, _, _)| name == "sample_file");
    if url.is_none() && file.is_none() {
        return vmray_error(400, "Missing parameter: sample_file or sample_url");
    }
    if let Some(u) = &url {
        if url::Url::parse(u)
            .map(|p| p.host_str().is_none())
            .unwrap_or(true)
        {
            return vmray_error(400, &format!("Invalid sample_url '{u}'"));
        }
    }
    let tags: Vec<String> = form
        .get("tags")
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = tags.iter().find(|t| t.chars().count() > 255) {
        return vmray_error(
            400,
            &format!(
                "Invalid tag '{}…': tags are at most 255 characters",
                bad.chars().take(20).collect::<String>()
            ),
        );
    }
    let user_config = form.get("user_config").map(str::to_string);
    if let Some(cfg) = &user_config {
        if serde_json::from_str::<Value>(cfg)
            .map(|v| !v.is_object())
            .unwrap_or(true)
        {
            return vmray_error(400, "Invalid user_config: expected a JSON object");
        }
    }
    let comment = form.get("comment").map(str::to_string);
    if v.verdict_remaining == 0 {
        return ok(json!({
            "errors": [{"error_msg": "Submission not stored because the verdict quota is exhausted",
                        "submission_filename": url.clone().or(file.map(|f| f.1.clone()))}],
            "jobs": [], "static_jobs": [], "reputation_jobs": [], "vt_jobs": [], "samples": [], "submissions": [],
        }));
    }

    let (sample_id, filename) = if let Some(u) = &url {
        let id = match v.by_url.get(u) {
            Some(id) => *id,
            None => {
                let spec = v.url_specs.get(u).cloned().unwrap_or_default();
                let id = v.create_sample(Some(u.clone()), None, None, spec, now);
                v.by_url.insert(u.clone(), id);
                id
            }
        };
        (id, None)
    } else {
        let (_, fname, data) = file.expect("checked above");
        let (sha256, _, _) = hashes(data);
        let id = match v.by_sha256.get(&sha256) {
            Some(id) => *id,
            None => {
                let spec = v
                    .file_specs
                    .get(&sha256)
                    .or_else(|| v.file_specs.get(fname))
                    .cloned()
                    .unwrap_or_default();
                let spec = SampleSpec {
                    sha256: None,
                    sha1: None,
                    md5: None,
                    ..spec
                };
                let id = v.create_sample(None, Some(fname.clone()), Some(data), spec, now);
                v.by_sha256.insert(sha256, id);
                id
            }
        };
        (id, Some(fname.clone()))
    };
    let delay = v
        .samples
        .get(&sample_id)
        .and_then(|s| s.spec.analysis_delay_seconds)
        .unwrap_or(v.delay);
    let sub_id = v.add_submission(
        sample_id,
        url.clone(),
        filename,
        tags,
        comment,
        user_config,
        now,
        now + Duration::seconds(delay as i64),
        false,
    );
    v.verdict_remaining -= 1;
    let s = &v.submissions[&sub_id];
    let sample = &v.samples[&sample_id];
    ok(json!({
        "errors": [],
        "jobs": [{
            "job_id": s.job_id, "job_sample_id": sample_id, "job_submission_id": s.id,
            "job_status": "queued", "job_created": ts(now), "job_type": "full_analysis",
            "job_analyzer_name": "vmray", "job_vm_name": "win10_64_th2",
        }],
        "static_jobs": [], "reputation_jobs": [], "vt_jobs": [],
        "samples": [{
            "sample_id": sample_id,
            "sample_type": if sample.url.is_some() { "URL" } else { file_type(sample.filename.as_deref().unwrap_or_default()) },
            "sample_url": sample.url,
            "sample_filename": sample.filename.clone().or_else(|| sample.url.clone()),
            "sample_webif_url": format!("{base}/samples/{sample_id}"),
            "sample_created": ts(sample.created),
            "sample_md5hash": sample.md5,
            "sample_sha1hash": sample.sha1,
            "sample_sha256hash": sample.sha256,
            "sample_is_multipart": false,
        }],
        "submissions": [{
            "submission_id": s.id,
            "submission_sample_id": sample_id,
            "submission_finished": false,
            "submission_status": "queued",
            "submission_created": ts(now),
            "submission_url": s.url,
            "submission_tags": s.tags,
            "submission_comment": s.comment,
            "submission_webif_url": format!("{base}/submissions/{}", s.id),
        }],
    }))
}

// ---------- submission search ----------

#[derive(Debug, PartialEq)]
struct Cond {
    field: String,
    op: String,
    value: String,
}

/// `url == "…"`, `url like "%…%"`, `filename <> '…'`, joined by `and` / `or` (and binds tighter).
fn parse_search(q: &str) -> Result<Vec<Vec<Cond>>, String> {
    let chars: Vec<char> = q.chars().collect();
    let mut i = 0;
    let skip_ws = |i: &mut usize| {
        while *i < chars.len() && chars[*i].is_whitespace() {
            *i += 1;
        }
    };
    let word = |i: &mut usize| -> String {
        let mut s = String::new();
        while *i < chars.len() && (chars[*i].is_alphanumeric() || chars[*i] == '_') {
            s.push(chars[*i]);
            *i += 1;
        }
        s
    };
    let mut groups: Vec<Vec<Cond>> = vec![vec![]];
    let mut count = 0;
    loop {
        skip_ws(&mut i);
        let field = word(&mut i).to_ascii_lowercase();
        if !["url", "filename", "threat_name", "sample_sha256"].contains(&field.as_str()) {
            return Err(format!("Invalid query: unknown field '{field}'"));
        }
        skip_ws(&mut i);
        let op = if chars[i..].starts_with(&['=', '=']) {
            i += 2;
            "==".to_string()
        } else if chars[i..].starts_with(&['<', '>']) {
            i += 2;
            "<>".to_string()
        } else {
            let w = word(&mut i).to_ascii_lowercase();
            if w == "like" {
                "like".into()
            } else if w == "not" {
                skip_ws(&mut i);
                if !word(&mut i).eq_ignore_ascii_case("like") {
                    return Err("Invalid query: expected 'like' after 'not'".into());
                }
                "not like".into()
            } else {
                return Err(format!("Invalid query: unknown operator '{w}'"));
            }
        };
        skip_ws(&mut i);
        let quote = match chars.get(i) {
            Some(c @ ('"' | '\'')) => *c,
            _ => return Err("Invalid query: expected a quoted value".into()),
        };
        i += 1;
        let mut value = String::new();
        loop {
            match chars.get(i) {
                None => return Err("Invalid query: unterminated string".into()),
                Some('\\') if i + 1 < chars.len() => {
                    value.push(chars[i + 1]);
                    i += 2;
                }
                Some(c) if *c == quote => {
                    i += 1;
                    break;
                }
                Some(c) => {
                    value.push(*c);
                    i += 1;
                }
            }
        }
        count += 1;
        if count > 10 {
            return Err("Invalid query: at most 10 filters are allowed".into());
        }
        groups
            .last_mut()
            .expect("one group")
            .push(Cond { field, op, value });
        skip_ws(&mut i);
        if i >= chars.len() {
            return Ok(groups);
        }
        match word(&mut i).to_ascii_lowercase().as_str() {
            "and" => {}
            "or" => groups.push(vec![]),
            other => {
                return Err(format!(
                    "Invalid query: expected 'and' or 'or', found '{other}'"
                ))
            }
        }
    }
}

fn like(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Classic wildcard match with '%' = any run.
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '%' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '%' {
            star = Some(pi);
            pi += 1;
            mark = ti;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '%' {
        pi += 1;
    }
    pi == p.len()
}

fn search(v: &VmrayWorld, req: &Req, base: &str, now: DateTime<Utc>) -> Resp {
    let Some(q) = req.query("query") else {
        return vmray_error(400, "Missing parameter: query");
    };
    let groups = match parse_search(q) {
        Ok(g) => g,
        Err(e) => return vmray_error(400, &e),
    };
    let matches = |s: &Submission, c: &Cond| -> bool {
        let sample = v.samples.get(&s.sample_id);
        let values: Vec<String> = match c.field.as_str() {
            "url" => s.url.clone().into_iter().collect(),
            "filename" => s
                .filename
                .clone()
                .or_else(|| s.url.clone())
                .into_iter()
                .collect(),
            "sample_sha256" => sample.map(|x| x.sha256.clone()).into_iter().collect(),
            _ => sample
                .filter(|x| v.ready(x.id, now, 0))
                .map(|x| x.spec.threat_names.iter().map(|t| t.name.clone()).collect())
                .unwrap_or_default(),
        };
        let hit = |x: &String| match c.op.as_str() {
            "==" | "<>" => *x == c.value,
            _ => like(&c.value, x),
        };
        let any = values.iter().any(hit);
        if c.op == "<>" || c.op == "not like" {
            !any
        } else {
            any
        }
    };
    let mut found: Vec<&Submission> = v
        .submissions
        .values()
        .filter(|s| s.created <= now)
        .filter(|s| groups.iter().any(|g| g.iter().all(|c| matches(s, c))))
        .collect();
    found.sort_by_key(|s| std::cmp::Reverse((s.created, s.id)));
    ok(Value::Array(
        found
            .iter()
            .map(|s| v.render_submission(s, base, now))
            .collect(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_queries() {
        let g = parse_search(r#"url == "http://a.example/?q=\"x\"""#).unwrap();
        assert_eq!(
            g,
            vec![vec![Cond {
                field: "url".into(),
                op: "==".into(),
                value: "http://a.example/?q=\"x\"".into()
            }]]
        );
        let g = parse_search(r#"url like "%evil%" or filename not like '%.exe'"#).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[1][0].op, "not like");
        assert!(parse_search("bogus == \"x\"").is_err());
        assert!(parse_search("url ~ \"x\"").is_err());
        assert!(like("%evil%", "http://EVIL.example/"));
        assert!(like("http://a%", "http://a.example"));
        assert!(!like("%evil", "http://evil.example/"));
    }
}
