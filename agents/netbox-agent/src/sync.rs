//! Reconciliation: desired state (merged hosts) → NetBox.
//!
//! One sync reads what it needs (one paginated list per object type, so a
//! no-change sync of a homelab is 14 GETs plus the status check), computes
//! the difference and writes only that, in NetBox's dependency order, with
//! bulk calls of `batch_size`:
//!
//! 1. tags (agent, orphaned, one per source) and custom fields
//!    (`agent_source_id`, `discovery_source`, `last_seen`);
//! 2. shared objects, get-or-create, never modified or deleted: site,
//!    manufacturers, device types, device roles, cluster type, clusters;
//! 3. devices and VMs; 4. their interfaces; 5. MAC objects, then
//!    `primary_mac_address`; 6. IP addresses; 7. `primary_ip4`;
//! 8. (full syncs) orphan tagging, then pruning leaf-first.
//!
//! Ownership: every object the agent creates carries the agent tag plus one
//! tag per source that reported it, and devices/VMs/IPs carry the natural key
//! (`agent_source_id`), the sources (`discovery_source`) and `last_seen`
//! (a *date*: it changes once a day, so a resync on the same day writes
//! nothing, and the daily refresh is one bulk PATCH per type). An object
//! without the agent tag is never changed or deleted: a desired device/VM
//! whose name is taken in its site/cluster, or an IP that exists untagged, is
//! a *conflict* (reported, left alone) unless `sync.adopt_existing` is set,
//! in which case the agent adds its tags and manages it from then on. Tags a
//! human adds to an agent object are kept (`tags` replaces the set, so the
//! agent always sends the human's tags back).
//!
//! Orphans (full syncs only): an agent object nobody desires any more gets
//! the orphaned tag, but only if every source that reported it ran
//! successfully in this cycle (a failing or disabled source never orphans
//! anything). An object orphaned in an earlier sync whose `last_updated` is
//! `prune_after_days` old is deleted, leaf-first (IPs, MAC objects,
//! interfaces, then VMs and devices), and a device or VM is never deleted
//! while one of its interfaces carries an IP the agent does not own (NetBox
//! would cascade-delete the human's IP): that is reported instead.
//!
//! Every write carries `changelog_message`; what NetBox returns is compared
//! with what was sent (NetBox drops unknown and read-only fields silently).
//! A dry run computes the same plan with placeholder ids and writes nothing.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use crate::client::{Client, NbError};
use crate::model::{host_part, Host, Source};

/// A NetBox slug for `name` (lower-case, `-` for runs of anything else, at
/// most 100 characters).
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    let mut dash = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c.to_ascii_lowercase());
            dash = false;
        } else if !dash && !out.is_empty() {
            out.push('-');
            dash = true;
        }
    }
    while out.ends_with('-') {
        out.pop();
    }
    out.truncate(100);
    if out.is_empty() {
        out.push_str("unnamed");
    }
    out
}

/// What one sync is asked to do.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Merged desired hosts.
    pub hosts: Vec<Host>,
    /// Sources that ran successfully *this* cycle: only their objects may be
    /// orphaned.
    pub authoritative: BTreeSet<Source>,
    /// Full sync: orphan and prune too.
    pub full: bool,
    /// Today (UTC), `YYYY-MM-DD`, for `last_seen`.
    pub today: String,
    /// Now, for orphan ages.
    pub now: time::OffsetDateTime,
    /// Compute, do not write.
    pub dry_run: bool,
}

/// Sync settings from the config.
#[derive(Debug, Clone)]
pub struct SyncSettings {
    /// Site name.
    pub site: String,
    /// Agent tag slug.
    pub tag: String,
    /// Bulk size.
    pub batch_size: usize,
    /// Prune at all.
    pub prune: bool,
    /// Age before pruning.
    pub prune_after_days: u32,
    /// Adopt untagged objects with a matching natural key.
    pub adopt_existing: bool,
}

/// Per-source counts of one sync.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counts {
    /// Hosts the source reported.
    pub seen: u64,
    /// Objects created.
    pub created: u64,
    /// Objects updated.
    pub updated: u64,
    /// Objects newly tagged orphaned.
    pub orphaned: u64,
    /// Objects deleted.
    pub pruned: u64,
    /// Writes that failed or did not read back as sent, and conflicts.
    pub errors: u64,
}

/// What a sync did (or, dry, would do).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Outcome {
    /// One line per write, in order.
    pub plan: Vec<String>,
    /// Per source.
    pub counts: BTreeMap<Source, Counts>,
    /// Objects left alone because a human owns them.
    pub conflicts: Vec<String>,
    /// Failed writes and read-back mismatches.
    pub errors: Vec<String>,
    /// Writes (objects) done.
    pub writes: u64,
}

const CF_KEY: &str = "agent_source_id";
const CF_SOURCES: &str = "discovery_source";
const CF_SEEN: &str = "last_seen";
/// JSON custom field for storage facts (TrueNAS pools, datasets, shares).
pub const CF_STORAGE: &str = "agent_storage";
const CF_TYPES: [&str; 3] = [
    "dcim.device",
    "virtualization.virtualmachine",
    "ipam.ipaddress",
];

/// Placeholder ids in a dry run start here.
const DRY_ID: u64 = 1 << 40;

/// Reduces a NetBox value to what was written: nested objects to their id,
/// choices to their value, tags to sorted slugs, numbers to f64.
fn norm(v: &Value) -> Value {
    match v {
        Value::Object(m) if m.contains_key("value") && m.contains_key("label") => norm(&m["value"]),
        Value::Object(m) if m.contains_key("id") => norm(&m["id"]),
        Value::Number(n) => n.as_f64().map_or(Value::Null, |f| json!(f)),
        Value::Array(a) => {
            // Lists of names (object types) are sets to NetBox.
            let mut items: Vec<Value> = a.iter().map(norm).collect();
            if items.iter().all(Value::is_string) {
                items.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
            Value::Array(items)
        }
        other => other.clone(),
    }
}

fn tag_slugs(o: &Value) -> BTreeSet<String> {
    o.get("tags")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|t| t.get("slug").and_then(Value::as_str).map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn id(o: &Value) -> u64 {
    o.get("id").and_then(Value::as_u64).unwrap_or(0)
}

fn s<'a>(o: &'a Value, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

fn fk(o: &Value, k: &str) -> Option<u64> {
    o.get(k)
        .and_then(|v| v.get("id").or(Some(v)))
        .and_then(Value::as_u64)
}

/// Field-level difference between `want` and the current object `have`
/// (tags compared as slug sets, custom fields key by key).
fn diff(want: &Map<String, Value>, have: &Value) -> (Map<String, Value>, Vec<String>) {
    let mut patch = Map::new();
    let mut lines = Vec::new();
    for (k, w) in want {
        match k.as_str() {
            "tags" => {
                let want_set: BTreeSet<String> = w
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .filter_map(|t| {
                                t.get("slug").and_then(Value::as_str).map(str::to_string)
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let have_set = tag_slugs(have);
                if want_set != have_set {
                    lines.push(format!("tags {have_set:?} -> {want_set:?}"));
                    patch.insert(k.clone(), w.clone());
                }
            }
            "custom_fields" => {
                let mut cf = Map::new();
                for (ck, cv) in w.as_object().into_iter().flatten() {
                    let hv = have
                        .get("custom_fields")
                        .and_then(|c| c.get(ck))
                        .unwrap_or(&Value::Null);
                    if norm(hv) != norm(cv) {
                        lines.push(format!("custom_fields.{ck} {hv} -> {cv}"));
                        cf.insert(ck.clone(), cv.clone());
                    }
                }
                if !cf.is_empty() {
                    patch.insert(k.clone(), Value::Object(cf));
                }
            }
            _ => {
                let hv = have.get(k).unwrap_or(&Value::Null);
                if norm(hv) != norm(w) {
                    lines.push(format!("{k} {} -> {}", norm(hv), w));
                    patch.insert(k.clone(), w.clone());
                }
            }
        }
    }
    (patch, lines)
}

/// What NetBox did not store as sent (empty when all is well).
fn readback(sent: &Map<String, Value>, got: &Value) -> Vec<String> {
    let (patch, lines) = diff(sent, got);
    if patch.is_empty() {
        Vec::new()
    } else {
        lines
    }
}

/// Executes (or, dry, records) writes in bulk.
struct Writer<'a> {
    client: &'a Client,
    dry: bool,
    batch: usize,
    message: String,
    next_dry: u64,
    out: Outcome,
}

/// One object to create or update, attributed to a source.
struct Item {
    label: String,
    source: Source,
    id: Option<u64>,
    body: Map<String, Value>,
    diff: Vec<String>,
}

impl Writer<'_> {
    fn count(&mut self, src: Source) -> &mut Counts {
        self.out.counts.entry(src).or_default()
    }

    /// Creates `items`; returns the created objects (None for failures).
    async fn create(&mut self, endpoint: &str, items: Vec<Item>) -> Vec<Option<Value>> {
        let mut results = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch) {
            for it in chunk {
                self.out.plan.push(format!(
                    "create {endpoint} {}: {}",
                    it.label,
                    Value::Object(it.body.clone())
                ));
            }
            if self.dry {
                for it in chunk {
                    let mut v = it.body.clone();
                    v.insert("id".into(), json!(self.next_dry));
                    self.next_dry += 1;
                    let src = it.source;
                    self.count(src).created += 1;
                    results.push(Some(Value::Object(v)));
                }
                continue;
            }
            let bodies: Vec<Value> = chunk
                .iter()
                .map(|it| {
                    let mut b = it.body.clone();
                    b.insert("changelog_message".into(), json!(self.message));
                    Value::Object(b)
                })
                .collect();
            match self.client.create(endpoint, &bodies).await {
                Ok(got) => {
                    for (it, g) in chunk.iter().zip(got) {
                        self.finish(endpoint, it, &g, true);
                        results.push(Some(g));
                    }
                }
                Err(NbError::Status { status: 400, .. }) if chunk.len() > 1 => {
                    // All or nothing: redo one by one so the good ones land
                    // and each bad one is reported with its own error.
                    for (it, b) in chunk.iter().zip(bodies) {
                        match self.client.create(endpoint, &[b]).await {
                            Ok(mut got) => {
                                let g = got.pop().unwrap_or(Value::Null);
                                self.finish(endpoint, it, &g, true);
                                results.push(Some(g));
                            }
                            Err(e) => {
                                self.fail(it, &e);
                                results.push(None);
                            }
                        }
                    }
                }
                Err(e) => {
                    for it in chunk {
                        self.fail(it, &e);
                        results.push(None);
                    }
                }
            }
        }
        results
    }

    fn finish(&mut self, endpoint: &str, it: &Item, got: &Value, created: bool) {
        self.out.writes += 1;
        let mismatch = readback(&it.body, got);
        let c = self.count(it.source);
        if created {
            c.created += 1;
        } else {
            c.updated += 1;
        }
        if !mismatch.is_empty() {
            self.count(it.source).errors += 1;
            self.out.errors.push(format!(
                "{endpoint} {}: NetBox did not store what was sent: {}",
                it.label,
                mismatch.join("; ")
            ));
        }
    }

    fn fail(&mut self, it: &Item, e: &NbError) {
        self.count(it.source).errors += 1;
        self.out.errors.push(format!("{}: {e}", it.label));
    }

    async fn update(&mut self, endpoint: &str, items: Vec<Item>) -> Vec<Option<Value>> {
        let mut results = Vec::with_capacity(items.len());
        for chunk in items.chunks(self.batch) {
            for it in chunk {
                self.out.plan.push(format!(
                    "update {endpoint} {} (#{}): {}",
                    it.label,
                    it.id.unwrap_or(0),
                    it.diff.join(", ")
                ));
            }
            if self.dry {
                for it in chunk {
                    let src = it.source;
                    self.count(src).updated += 1;
                    results.push(None);
                }
                continue;
            }
            let bodies: Vec<Value> = chunk
                .iter()
                .map(|it| {
                    let mut b = it.body.clone();
                    b.insert("id".into(), json!(it.id));
                    b.insert("changelog_message".into(), json!(self.message));
                    Value::Object(b)
                })
                .collect();
            let res = self.client.update(endpoint, &bodies).await;
            match res {
                Ok(got) => {
                    for (it, g) in chunk.iter().zip(got) {
                        self.finish(endpoint, it, &g, false);
                        results.push(Some(g));
                    }
                }
                Err(NbError::Status { status: 400, .. }) if chunk.len() > 1 => {
                    for (it, b) in chunk.iter().zip(bodies) {
                        match self.client.update(endpoint, &[b]).await {
                            Ok(mut got) => {
                                let g = got.pop().unwrap_or(Value::Null);
                                self.finish(endpoint, it, &g, false);
                                results.push(Some(g));
                            }
                            Err(e) => {
                                self.fail(it, &e);
                                results.push(None);
                            }
                        }
                    }
                }
                Err(e) => {
                    for it in chunk {
                        self.fail(it, &e);
                        results.push(None);
                    }
                }
            }
        }
        results
    }

    async fn delete(&mut self, endpoint: &str, items: Vec<(String, Source, u64)>) {
        for chunk in items.chunks(self.batch) {
            for (label, _, id) in chunk {
                self.out
                    .plan
                    .push(format!("delete {endpoint} {label} (#{id})"));
            }
            if self.dry {
                for (_, src, _) in chunk {
                    self.count(*src).pruned += 1;
                }
                continue;
            }
            let ids: Vec<u64> = chunk.iter().map(|(_, _, id)| *id).collect();
            match self.client.delete(endpoint, &ids, &self.message).await {
                Ok(()) => {
                    for (_, src, _) in chunk {
                        self.out.writes += 1;
                        self.count(*src).pruned += 1;
                    }
                }
                Err(e) => {
                    for (label, src, _) in chunk {
                        self.count(*src).errors += 1;
                        self.out
                            .errors
                            .push(format!("delete {endpoint} {label}: {e}"));
                    }
                }
            }
        }
    }
}

/// Everything read from NetBox.
struct Current {
    tags: Vec<Value>,
    cfs: Vec<Value>,
    sites: Vec<Value>,
    manufacturers: Vec<Value>,
    device_types: Vec<Value>,
    roles: Vec<Value>,
    cluster_types: Vec<Value>,
    clusters: Vec<Value>,
    devices: Vec<Value>,
    interfaces: Vec<Value>,
    vms: Vec<Value>,
    vm_interfaces: Vec<Value>,
    ips: Vec<Value>,
    macs: Vec<Value>,
}

async fn read(client: &Client, tag: &str) -> Result<Current, NbError> {
    let tags = client.list("extras/tags", "").await?;
    // Filtering by a tag that does not exist is a 400 in NetBox, not an
    // empty list: without the agent tag there are no agent MACs to read.
    let have_tag = tags.iter().any(|t| s(t, "slug") == tag);
    Ok(Current {
        tags,
        cfs: client.list("extras/custom-fields", "").await?,
        sites: client.list("dcim/sites", "").await?,
        manufacturers: client.list("dcim/manufacturers", "").await?,
        device_types: client.list("dcim/device-types", "").await?,
        roles: client.list("dcim/device-roles", "").await?,
        cluster_types: client.list("virtualization/cluster-types", "").await?,
        clusters: client.list("virtualization/clusters", "").await?,
        devices: client
            .list("dcim/devices", "exclude=config_context")
            .await?,
        interfaces: client.list("dcim/interfaces", "").await?,
        vms: client
            .list("virtualization/virtual-machines", "exclude=config_context")
            .await?,
        vm_interfaces: client.list("virtualization/interfaces", "").await?,
        ips: client.list("ipam/ip-addresses", "").await?,
        macs: if have_tag {
            client
                .list("dcim/mac-addresses", &format!("tag={tag}"))
                .await?
        } else {
            Vec::new()
        },
    })
}

/// Tag slugs the agent manages.
struct Tags {
    agent: String,
    orphan: String,
}

impl Tags {
    fn label(&self, l: &str) -> String {
        let mut slug = format!("{}-label-{}", self.agent, slugify(l));
        slug.truncate(100);
        slug
    }
    fn source(&self, s: Source) -> String {
        format!("{}-{}", self.agent, s.name().replace('_', "-"))
    }
    fn source_of(&self, slug: &str) -> Option<Source> {
        Source::ALL.into_iter().find(|s| self.source(*s) == slug)
    }
    fn is_ours(&self, slug: &str) -> bool {
        slug == self.agent
            || slug == self.orphan
            || self.source_of(slug).is_some()
            || slug.starts_with(&format!("{}-label-", self.agent))
    }
    /// The tag list for a host's object: [`Tags::list`] plus its labels.
    fn list_for(&self, current: Option<&Value>, h: &Host) -> Value {
        let mut v = self.list(current, &h.sources, false);
        if let Value::Array(a) = &mut v {
            for l in &h.labels {
                a.push(json!({"slug": self.label(l)}));
            }
            a.sort_by(|x, y| x["slug"].as_str().cmp(&y["slug"].as_str()));
            a.dedup();
        }
        v
    }

    /// The tag list for an object: the human's tags kept, ours as wanted.
    fn list(&self, current: Option<&Value>, sources: &BTreeSet<Source>, orphan: bool) -> Value {
        let mut slugs: BTreeSet<String> = current
            .map(tag_slugs)
            .unwrap_or_default()
            .into_iter()
            .filter(|t| !self.is_ours(t))
            .collect();
        slugs.insert(self.agent.clone());
        for s in sources {
            slugs.insert(self.source(*s));
        }
        if orphan {
            slugs.insert(self.orphan.clone());
        }
        Value::Array(slugs.into_iter().map(|s| json!({"slug": s})).collect())
    }
}

fn owned(o: &Value, tags: &Tags) -> bool {
    tag_slugs(o).contains(&tags.agent)
}

fn sources_of(o: &Value, tags: &Tags) -> BTreeSet<Source> {
    tag_slugs(o)
        .iter()
        .filter_map(|t| tags.source_of(t))
        .collect()
}

fn first_source(set: &BTreeSet<Source>) -> Source {
    set.iter().next().copied().unwrap_or(Source::Inventory)
}

/// Runs one sync.
pub async fn run(
    client: &Client,
    cfg: &SyncSettings,
    req: &SyncRequest,
) -> Result<Outcome, NbError> {
    let tags = Tags {
        agent: cfg.tag.clone(),
        orphan: format!("{}-orphaned", cfg.tag),
    };
    let cur = read(client, &cfg.tag).await?;
    let mut w = Writer {
        client,
        dry: req.dry_run,
        batch: cfg.batch_size.max(1),
        message: format!("netbox-agent {}: discovery sync", env!("CARGO_PKG_VERSION")),
        next_dry: DRY_ID,
        out: Outcome::default(),
    };
    for h in &req.hosts {
        w.count(h.source).seen += 1;
    }
    for s in &req.authoritative {
        w.count(*s);
    }

    // 1. Tags and custom fields.
    let mut wanted_tags: Vec<(String, String, &str)> = vec![
        (cfg.tag.clone(), cfg.tag.clone(), "2196f3"),
        (
            format!("{}: orphaned", cfg.tag),
            tags.orphan.clone(),
            "9e9e9e",
        ),
    ];
    for s in Source::ALL {
        wanted_tags.push((
            format!("{}: {}", cfg.tag, s.name()),
            tags.source(s),
            "4caf50",
        ));
    }
    let labels: BTreeSet<&String> = req.hosts.iter().flat_map(|h| &h.labels).collect();
    for l in labels {
        let slug = tags.label(l);
        let mut name = format!("{}: {l}", cfg.tag);
        name.truncate(100);
        wanted_tags.push((name, slug, "9c27b0"));
    }
    let have_tags: BTreeSet<String> = cur.tags.iter().map(|t| s(t, "slug").to_string()).collect();
    let new_tags: Vec<Item> = wanted_tags
        .into_iter()
        .filter(|(_, slug, _)| !have_tags.contains(slug))
        .map(|(name, slug, color)| Item {
            label: slug.clone(),
            source: Source::Inventory,
            id: None,
            body: obj(json!({"name": name, "slug": slug, "color": color, "description": "Managed by netbox-agent (1ld)"})),
            diff: Vec::new(),
        })
        .collect();
    if !new_tags.is_empty() {
        w.create("extras/tags", new_tags).await;
    }
    let mut cf_new = Vec::new();
    let mut cf_upd = Vec::new();
    let mut cf_wanted = vec![
        (CF_KEY, "Agent natural key", "text", "exact"),
        (CF_SOURCES, "Discovery source", "text", "exact"),
        (CF_SEEN, "Last seen", "date", "loose"),
    ];
    if req.hosts.iter().any(|h| h.extra.contains_key(CF_STORAGE)) {
        cf_wanted.push((
            CF_STORAGE,
            "Storage (pools, datasets, shares)",
            "json",
            "disabled",
        ));
    }
    for (name, label, ty, logic) in cf_wanted {
        match cur.cfs.iter().find(|c| s(c, "name") == name) {
            None => cf_new.push(Item {
                label: name.into(),
                source: Source::Inventory,
                id: None,
                body: obj(json!({"name": name, "label": label, "type": ty, "object_types": CF_TYPES, "filter_logic": logic})),
                diff: Vec::new(),
            }),
            Some(c) => {
                let have: BTreeSet<&str> = c
                    .get("object_types")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().filter_map(Value::as_str).collect())
                    .unwrap_or_default();
                if CF_TYPES.iter().any(|t| !have.contains(t)) {
                    let mut all: BTreeSet<&str> = have.clone();
                    all.extend(CF_TYPES);
                    cf_upd.push(Item {
                        label: name.into(),
                        source: Source::Inventory,
                        id: Some(id(c)),
                        body: obj(json!({"object_types": all})),
                        diff: vec![format!("object_types += {CF_TYPES:?}")],
                    });
                }
            }
        }
    }
    if !cf_new.is_empty() {
        w.create("extras/custom-fields", cf_new).await;
    }
    if !cf_upd.is_empty() {
        w.update("extras/custom-fields", cf_upd).await;
    }

    // 2. Shared objects (get or create by slug/name).
    let agent_tags = json!([{"slug": cfg.tag}]);
    let site_slug = slugify(&cfg.site);
    let site_id = match cur
        .sites
        .iter()
        .find(|x| s(x, "slug") == site_slug || s(x, "name").eq_ignore_ascii_case(&cfg.site))
    {
        Some(x) => id(x),
        None => {
            let r = w
                .create(
                    "dcim/sites",
                    vec![shared_item(
                        &cfg.site,
                        json!({"name": cfg.site, "slug": site_slug, "tags": agent_tags}),
                    )],
                )
                .await;
            match r.into_iter().next().flatten() {
                Some(v) => id(&v),
                None => return Ok(w.out),
            }
        }
    };
    let devices_wanted: Vec<&Host> = req.hosts.iter().filter(|h| h.vm.is_none()).collect();
    let vms_wanted: Vec<&Host> = req.hosts.iter().filter(|h| h.vm.is_some()).collect();
    let manufacturers = ensure_named(
        &mut w,
        "dcim/manufacturers",
        &cur.manufacturers,
        devices_wanted.iter().map(|h| h.manufacturer.clone()),
        |n| json!({"name": n, "slug": slugify(n), "tags": agent_tags}),
    )
    .await;
    let mut dt_ids: BTreeMap<(String, String), u64> = BTreeMap::new();
    let mut dt_new: Vec<((String, String), Item)> = Vec::new();
    for h in &devices_wanted {
        let Some(&mid) = manufacturers.get(&h.manufacturer) else {
            continue;
        };
        let k = (h.manufacturer.clone(), h.model.clone());
        if dt_ids.contains_key(&k) || dt_new.iter().any(|(x, _)| *x == k) {
            continue;
        }
        match cur.device_types.iter().find(|d| fk(d, "manufacturer") == Some(mid) && (s(d, "slug") == slugify(&h.model) || s(d, "model") == h.model)) {
            Some(d) => {
                dt_ids.insert(k, id(d));
            }
            None => dt_new.push((k, shared_item(&h.model, json!({"manufacturer": mid, "model": h.model, "slug": slugify(&h.model), "tags": agent_tags})))),
        }
    }
    let (keys, items): (Vec<_>, Vec<_>) = dt_new.into_iter().unzip();
    if !items.is_empty() {
        for (k, r) in keys
            .into_iter()
            .zip(w.create("dcim/device-types", items).await)
        {
            if let Some(v) = r {
                dt_ids.insert(k, id(&v));
            }
        }
    }
    let roles = ensure_named(
        &mut w,
        "dcim/device-roles",
        &cur.roles,
        req.hosts.iter().map(|h| h.role.clone()),
        |n| json!({"name": n, "slug": slugify(n), "vm_role": true, "tags": agent_tags}),
    )
    .await;
    let mut clusters: BTreeMap<String, u64> = BTreeMap::new();
    if !vms_wanted.is_empty() {
        let ct = ensure_named(
            &mut w,
            "virtualization/cluster-types",
            &cur.cluster_types,
            std::iter::once("Proxmox VE".to_string()),
            |n| json!({"name": n, "slug": slugify(n), "tags": agent_tags}),
        )
        .await;
        if let Some(&ct_id) = ct.get("Proxmox VE") {
            let names: BTreeSet<String> = vms_wanted
                .iter()
                .filter_map(|h| h.vm.as_ref().map(|v| v.cluster.clone()))
                .collect();
            let mut new = Vec::new();
            let mut new_names = Vec::new();
            for n in names {
                match cur.clusters.iter().find(|c| s(c, "name") == n) {
                    Some(c) => {
                        clusters.insert(n, id(c));
                    }
                    None => {
                        new.push(shared_item(&n, json!({"name": n, "type": ct_id, "scope_type": "dcim.site", "scope_id": site_id, "tags": agent_tags})));
                        new_names.push(n);
                    }
                }
            }
            if !new.is_empty() {
                for (n, r) in new_names
                    .into_iter()
                    .zip(w.create("virtualization/clusters", new).await)
                {
                    if let Some(v) = r {
                        clusters.insert(n, id(&v));
                    }
                }
            }
        }
    }

    // 3. Devices and VMs.
    let mut host_ids: BTreeMap<String, u64> = BTreeMap::new(); // key -> NetBox id
    let mut used_devices: BTreeSet<u64> = BTreeSet::new();
    let mut used_vms: BTreeSet<u64> = BTreeSet::new();
    for is_vm in [false, true] {
        let (endpoint, table, used) = if is_vm {
            ("virtualization/virtual-machines", &cur.vms, &mut used_vms)
        } else {
            ("dcim/devices", &cur.devices, &mut used_devices)
        };
        let mut creates = Vec::new();
        let mut create_keys = Vec::new();
        let mut updates = Vec::new();
        let mut update_keys = Vec::new();
        for h in req.hosts.iter().filter(|h| h.vm.is_some() == is_vm) {
            let Some(&role) = roles.get(&h.role) else {
                continue;
            };
            let mut body = Map::new();
            body.insert("name".into(), json!(h.name));
            body.insert("role".into(), json!(role));
            body.insert("status".into(), json!(h.status));
            body.insert("description".into(), json!(h.description));
            body.insert("serial".into(), json!(h.serial));
            let scope;
            if let Some(vm) = &h.vm {
                let Some(&cid) = clusters.get(&vm.cluster) else {
                    continue;
                };
                body.insert("cluster".into(), json!(cid));
                if let Some(v) = vm.vcpus {
                    body.insert("vcpus".into(), json!(v));
                }
                if let Some(v) = vm.memory_mb {
                    body.insert("memory".into(), json!(v));
                }
                if let Some(v) = vm.disk_mb {
                    body.insert("disk".into(), json!(v));
                }
                scope = ("cluster", cid);
            } else {
                let Some(&dt) = dt_ids.get(&(h.manufacturer.clone(), h.model.clone())) else {
                    continue;
                };
                body.insert("device_type".into(), json!(dt));
                body.insert("site".into(), json!(site_id));
                scope = ("site", site_id);
            }
            let sources: Vec<&str> = h.sources.iter().map(|s| s.name()).collect();
            let mut cf = json!({CF_KEY: h.key, CF_SOURCES: sources.join(","), CF_SEEN: req.today});
            for (k, v) in &h.extra {
                cf[k] = v.clone();
            }
            body.insert("custom_fields".into(), cf);
            // Find the existing object: by natural key among ours, then by
            // name in the same site/cluster.
            let keys: Vec<&str> = std::iter::once(h.key.as_str())
                .chain(h.alt_keys.iter().map(String::as_str))
                .collect();
            let by_key = table.iter().find(|o| {
                owned(o, &tags)
                    && !used.contains(&id(o))
                    && o.get("custom_fields")
                        .and_then(|c| c.get(CF_KEY))
                        .and_then(Value::as_str)
                        .is_some_and(|k| keys.contains(&k))
            });
            let by_name = || {
                table.iter().find(|o| {
                    !used.contains(&id(o))
                        && s(o, "name").eq_ignore_ascii_case(&h.name)
                        && fk(o, scope.0) == Some(scope.1)
                })
            };
            let existing = by_key.or_else(by_name);
            match existing {
                Some(o) if !owned(o, &tags) && !cfg.adopt_existing => {
                    w.out.conflicts.push(format!(
                        "{endpoint} `{}` (#{}) exists without the {} tag: left alone (set sync.adopt_existing = true to take it over, or delete/rename it)",
                        h.name,
                        id(o),
                        cfg.tag
                    ));
                    w.count(h.source).errors += 1;
                }
                Some(o) => {
                    used.insert(id(o));
                    host_ids.insert(h.key.clone(), id(o));
                    body.insert("tags".into(), tags.list_for(Some(o), h));
                    let (patch, lines) = diff(&body, o);
                    if !patch.is_empty() {
                        updates.push(Item {
                            label: h.name.clone(),
                            source: h.source,
                            id: Some(id(o)),
                            body: patch,
                            diff: lines,
                        });
                        update_keys.push(h.key.clone());
                    }
                }
                None => {
                    body.insert("tags".into(), tags.list_for(None, h));
                    creates.push(Item {
                        label: h.name.clone(),
                        source: h.source,
                        id: None,
                        body,
                        diff: Vec::new(),
                    });
                    create_keys.push(h.key.clone());
                }
            }
        }
        let _ = update_keys;
        w.update(endpoint, updates).await;
        for (k, r) in create_keys
            .into_iter()
            .zip(w.create(endpoint, creates).await)
        {
            if let Some(v) = r {
                host_ids.insert(k, id(&v));
            }
        }
    }

    // 4. Interfaces. Key: (is_vm, parent id, name).
    let mut if_ids: BTreeMap<(bool, u64, String), u64> = BTreeMap::new();
    let mut if_labels: BTreeMap<(bool, u64), String> = BTreeMap::new();
    let mut used_ifs: BTreeSet<(bool, u64)> = BTreeSet::new();
    for is_vm in [false, true] {
        let (endpoint, table, parent_field) = if is_vm {
            (
                "virtualization/interfaces",
                &cur.vm_interfaces,
                "virtual_machine",
            )
        } else {
            ("dcim/interfaces", &cur.interfaces, "device")
        };
        let mut creates = Vec::new();
        let mut ckeys = Vec::new();
        let mut updates = Vec::new();
        for h in req.hosts.iter().filter(|h| h.vm.is_some() == is_vm) {
            let Some(&pid) = host_ids.get(&h.key) else {
                continue;
            };
            for i in &h.interfaces {
                let mut body = Map::new();
                body.insert(parent_field.into(), json!(pid));
                body.insert("name".into(), json!(i.name));
                if !is_vm {
                    body.insert("type".into(), json!(i.kind));
                }
                let existing = table
                    .iter()
                    .find(|o| fk(o, parent_field) == Some(pid) && s(o, "name") == i.name);
                match existing {
                    Some(o) if !owned(o, &tags) && !cfg.adopt_existing => {
                        // A human's interface on our object: use it, never change it.
                        used_ifs.insert((is_vm, id(o)));
                        if_ids.insert((is_vm, pid, i.name.clone()), id(o));
                    }
                    Some(o) => {
                        used_ifs.insert((is_vm, id(o)));
                        if_ids.insert((is_vm, pid, i.name.clone()), id(o));
                        body.insert("tags".into(), tags.list(Some(o), &h.sources, false));
                        let (patch, lines) = diff(&body, o);
                        if !patch.is_empty() {
                            updates.push(Item {
                                label: format!("{}/{}", h.name, i.name),
                                source: h.source,
                                id: Some(id(o)),
                                body: patch,
                                diff: lines,
                            });
                        }
                    }
                    None => {
                        body.insert("tags".into(), tags.list(None, &h.sources, false));
                        creates.push(Item {
                            label: format!("{}/{}", h.name, i.name),
                            source: h.source,
                            id: None,
                            body,
                            diff: Vec::new(),
                        });
                        ckeys.push((is_vm, pid, i.name.clone()));
                    }
                }
            }
        }
        w.update(endpoint, updates).await;
        for (k, r) in ckeys.into_iter().zip(w.create(endpoint, creates).await) {
            if let Some(v) = r {
                used_ifs.insert((k.0, id(&v)));
                if_ids.insert(k, id(&v));
            }
        }
        for h in req.hosts.iter().filter(|h| h.vm.is_some() == is_vm) {
            let Some(&pid) = host_ids.get(&h.key) else {
                continue;
            };
            for i in &h.interfaces {
                if let Some(&iid) = if_ids.get(&(is_vm, pid, i.name.clone())) {
                    if_labels.insert((is_vm, iid), format!("{}/{}", h.name, i.name));
                }
            }
        }
    }

    // 5. MAC objects, then primary_mac_address.
    let mut used_macs: BTreeSet<u64> = BTreeSet::new();
    let mut mac_creates = Vec::new();
    let mut mac_keys = Vec::new();
    let mut mac_ids: BTreeMap<(bool, u64), u64> = BTreeMap::new(); // interface -> mac id
    for h in &req.hosts {
        let is_vm = h.vm.is_some();
        let Some(&pid) = host_ids.get(&h.key) else {
            continue;
        };
        for i in &h.interfaces {
            let (Some(mac), Some(&iid)) = (&i.mac, if_ids.get(&(is_vm, pid, i.name.clone())))
            else {
                continue;
            };
            let ty = if is_vm {
                "virtualization.vminterface"
            } else {
                "dcim.interface"
            };
            let existing = cur.macs.iter().find(|m| {
                s(m, "mac_address").eq_ignore_ascii_case(mac)
                    && s(m, "assigned_object_type") == ty
                    && m.get("assigned_object_id").and_then(Value::as_u64) == Some(iid)
            });
            match existing {
                Some(m) => {
                    used_macs.insert(id(m));
                    mac_ids.insert((is_vm, iid), id(m));
                }
                None => {
                    mac_creates.push(Item {
                        label: format!("{}/{} {mac}", h.name, i.name),
                        source: h.source,
                        id: None,
                        body: obj(json!({"mac_address": mac, "assigned_object_type": ty, "assigned_object_id": iid, "tags": tags.list(None, &h.sources, false)})),
                        diff: Vec::new(),
                    });
                    mac_keys.push((is_vm, iid));
                }
            }
        }
    }
    for (k, r) in mac_keys
        .into_iter()
        .zip(w.create("dcim/mac-addresses", mac_creates).await)
    {
        if let Some(v) = r {
            used_macs.insert(id(&v));
            mac_ids.insert(k, id(&v));
        }
    }
    for is_vm in [false, true] {
        let (endpoint, table) = if is_vm {
            ("virtualization/interfaces", &cur.vm_interfaces)
        } else {
            ("dcim/interfaces", &cur.interfaces)
        };
        let mut updates = Vec::new();
        for ((v, iid), mid) in &mac_ids {
            if *v != is_vm {
                continue;
            }
            let current = table.iter().find(|o| id(o) == *iid);
            if current.is_some_and(|o| !owned(o, &tags)) {
                continue;
            }
            let have = current.and_then(|o| fk(o, "primary_mac_address"));
            if have != Some(*mid) {
                let src = req
                    .hosts
                    .iter()
                    .find(|h| h.vm.is_some() == is_vm)
                    .map_or(Source::Inventory, |h| h.source);
                updates.push(Item {
                    label: if_labels
                        .get(&(is_vm, *iid))
                        .cloned()
                        .unwrap_or_else(|| format!("interface #{iid}")),
                    source: src,
                    id: Some(*iid),
                    body: obj(json!({"primary_mac_address": mid})),
                    diff: vec![format!("primary_mac_address {have:?} -> {mid}")],
                });
            }
        }
        w.update(endpoint, updates).await;
    }

    // 6. IP addresses (global table: one address, one object).
    let mut used_ips: BTreeSet<u64> = BTreeSet::new();
    let mut ip_ids: BTreeMap<String, u64> = BTreeMap::new(); // host part -> id
    let mut ip_creates = Vec::new();
    let mut ip_ckeys = Vec::new();
    let mut ip_updates = Vec::new();
    let mut clear_primary: Vec<(bool, u64, String)> = Vec::new();
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    for h in &req.hosts {
        let is_vm = h.vm.is_some();
        let Some(&pid) = host_ids.get(&h.key) else {
            continue;
        };
        for i in &h.interfaces {
            let Some(&iid) = if_ids.get(&(is_vm, pid, i.name.clone())) else {
                continue;
            };
            for ip in &i.ips {
                let hp = host_part(&ip.address).to_string();
                if !claimed.insert(hp.clone()) {
                    w.out.conflicts.push(format!(
                        "{} is reported for two hosts; kept on the first, not on {}",
                        ip.address, h.name
                    ));
                    continue;
                }
                let ty = if is_vm {
                    "virtualization.vminterface"
                } else {
                    "dcim.interface"
                };
                let sources: Vec<&str> = h.sources.iter().map(|s| s.name()).collect();
                let mut body = obj(json!({
                    "address": ip.address, "status": "active", "dns_name": ip.dns_name,
                    "assigned_object_type": ty, "assigned_object_id": iid,
                    "custom_fields": {CF_KEY: format!("{}/{}", h.key, i.name), CF_SOURCES: sources.join(","), CF_SEEN: req.today},
                }));
                let existing = cur.ips.iter().find(|o| host_part(s(o, "address")) == hp);
                match existing {
                    Some(o) if !owned(o, &tags) && !cfg.adopt_existing => {
                        w.out.conflicts.push(format!(
                            "ipam/ip-addresses {} (#{}) exists without the {} tag: left alone (set sync.adopt_existing = true to take it over)",
                            s(o, "address"), id(o), cfg.tag
                        ));
                        w.count(h.source).errors += 1;
                    }
                    Some(o) => {
                        used_ips.insert(id(o));
                        ip_ids.insert(hp.clone(), id(o));
                        body.insert("tags".into(), tags.list(Some(o), &h.sources, false));
                        let (patch, lines) = diff(&body, o);
                        if !patch.is_empty() {
                            let moving = patch.contains_key("assigned_object_id")
                                || patch.contains_key("assigned_object_type");
                            if moving {
                                // NetBox refuses to move a primary IP: clear it first.
                                for (v, t) in [(false, &cur.devices), (true, &cur.vms)] {
                                    for p in t.iter() {
                                        if fk(p, "primary_ip4") == Some(id(o)) {
                                            clear_primary.push((
                                                v,
                                                id(p),
                                                s(p, "name").to_string(),
                                            ));
                                        }
                                    }
                                }
                            }
                            ip_updates.push(Item {
                                label: ip.address.clone(),
                                source: h.source,
                                id: Some(id(o)),
                                body: patch,
                                diff: lines,
                            });
                        }
                    }
                    None => {
                        body.insert("tags".into(), tags.list(None, &h.sources, false));
                        ip_creates.push(Item {
                            label: ip.address.clone(),
                            source: h.source,
                            id: None,
                            body,
                            diff: Vec::new(),
                        });
                        ip_ckeys.push(hp);
                    }
                }
            }
        }
    }
    for is_vm in [false, true] {
        let items: Vec<Item> = clear_primary
            .iter()
            .filter(|(v, _, _)| *v == is_vm)
            .map(|(_, pid, name)| Item {
                label: name.clone(),
                source: Source::Inventory,
                id: Some(*pid),
                body: obj(json!({"primary_ip4": null})),
                diff: vec!["primary_ip4 -> null (to move its IP)".into()],
            })
            .collect();
        let ep = if is_vm {
            "virtualization/virtual-machines"
        } else {
            "dcim/devices"
        };
        w.update(ep, items).await;
    }
    w.update("ipam/ip-addresses", ip_updates).await;
    for (k, r) in ip_ckeys
        .into_iter()
        .zip(w.create("ipam/ip-addresses", ip_creates).await)
    {
        if let Some(v) = r {
            used_ips.insert(id(&v));
            ip_ids.insert(k, id(&v));
        }
    }

    // 7. Primary IPv4.
    for is_vm in [false, true] {
        let (ep, table) = if is_vm {
            ("virtualization/virtual-machines", &cur.vms)
        } else {
            ("dcim/devices", &cur.devices)
        };
        let mut updates = Vec::new();
        for h in req.hosts.iter().filter(|h| h.vm.is_some() == is_vm) {
            let (Some(&pid), Some(p)) = (host_ids.get(&h.key), &h.primary_ip4) else {
                continue;
            };
            let Some(&ipid) = ip_ids.get(host_part(p)) else {
                continue;
            };
            let current = table.iter().find(|o| id(o) == pid);
            let have = current.and_then(|o| fk(o, "primary_ip4"));
            let cleared = clear_primary
                .iter()
                .any(|(v, x, _)| *v == is_vm && *x == pid);
            if have != Some(ipid) || cleared {
                updates.push(Item {
                    label: h.name.clone(),
                    source: h.source,
                    id: Some(pid),
                    body: obj(json!({"primary_ip4": ipid})),
                    diff: vec![format!("primary_ip4 {have:?} -> {ipid}")],
                });
            }
        }
        w.update(ep, updates).await;
    }

    // 8. Orphans and pruning.
    if req.full {
        orphan_and_prune(
            &mut w,
            cfg,
            req,
            &tags,
            &cur,
            &used_devices,
            &used_vms,
            &used_ifs,
            &used_macs,
            &used_ips,
        )
        .await;
    }
    Ok(w.out)
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

fn shared_item(label: &str, body: Value) -> Item {
    Item {
        label: label.to_string(),
        source: Source::Inventory,
        id: None,
        body: obj(body),
        diff: Vec::new(),
    }
}

/// Get-or-create named objects (by slug, then case-insensitive name).
async fn ensure_named(
    w: &mut Writer<'_>,
    endpoint: &str,
    current: &[Value],
    names: impl Iterator<Item = String>,
    make: impl Fn(&str) -> Value,
) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let mut new = Vec::new();
    let mut new_names = Vec::new();
    for n in names.collect::<BTreeSet<_>>() {
        let slug = slugify(&n);
        match current
            .iter()
            .find(|x| s(x, "slug") == slug || s(x, "name").eq_ignore_ascii_case(&n))
        {
            Some(x) => {
                out.insert(n, id(x));
            }
            None => {
                new.push(shared_item(&n, make(&n)));
                new_names.push(n);
            }
        }
    }
    if !new.is_empty() {
        for (n, r) in new_names.into_iter().zip(w.create(endpoint, new).await) {
            if let Some(v) = r {
                out.insert(n, id(&v));
            }
        }
    }
    out
}

fn age_days(o: &Value, now: time::OffsetDateTime) -> i64 {
    let lu = s(o, "last_updated");
    time::OffsetDateTime::parse(lu, &time::format_description::well_known::Rfc3339)
        .map(|t| (now - t).whole_days())
        .unwrap_or(0)
}

#[allow(clippy::too_many_arguments)]
async fn orphan_and_prune(
    w: &mut Writer<'_>,
    cfg: &SyncSettings,
    req: &SyncRequest,
    tags: &Tags,
    cur: &Current,
    used_devices: &BTreeSet<u64>,
    used_vms: &BTreeSet<u64>,
    used_ifs: &BTreeSet<(bool, u64)>,
    used_macs: &BTreeSet<u64>,
    used_ips: &BTreeSet<u64>,
) {
    // (endpoint, table, is this one still wanted?)
    let tables: [(&str, &Vec<Value>); 6] = [
        ("ipam/ip-addresses", &cur.ips),
        ("dcim/mac-addresses", &cur.macs),
        ("dcim/interfaces", &cur.interfaces),
        ("virtualization/interfaces", &cur.vm_interfaces),
        ("virtualization/virtual-machines", &cur.vms),
        ("dcim/devices", &cur.devices),
    ];
    let mut deleted_ifs: BTreeSet<(bool, u64)> = BTreeSet::new();
    let mut deleted_parents: BTreeSet<(bool, u64)> = BTreeSet::new();
    for (endpoint, table) in tables {
        let wanted = |i: u64| match endpoint {
            "ipam/ip-addresses" => used_ips.contains(&i),
            "dcim/mac-addresses" => used_macs.contains(&i),
            "dcim/interfaces" => used_ifs.contains(&(false, i)),
            "virtualization/interfaces" => used_ifs.contains(&(true, i)),
            "virtualization/virtual-machines" => used_vms.contains(&i),
            _ => used_devices.contains(&i),
        };
        let mut orphan = Vec::new();
        let mut prune = Vec::new();
        for o in table.iter().filter(|o| owned(o, tags) && !wanted(id(o))) {
            let srcs = sources_of(o, tags);
            let src = first_source(&srcs);
            // Only when every source that reported it ran successfully.
            if srcs.is_empty() || !srcs.iter().all(|s| req.authoritative.contains(s)) {
                continue;
            }
            let label = match endpoint {
                "ipam/ip-addresses" => s(o, "address").to_string(),
                "dcim/mac-addresses" => s(o, "mac_address").to_string(),
                _ => s(o, "display").to_string(),
            };
            let is_orphan = tag_slugs(o).contains(&tags.orphan);
            if !is_orphan {
                orphan.push(Item {
                    label,
                    source: src,
                    id: Some(id(o)),
                    body: obj(json!({"tags": tags.list(Some(o), &srcs, true)})),
                    diff: vec!["orphaned (no source reports it any more)".into()],
                });
                continue;
            }
            if !cfg.prune || age_days(o, req.now) < i64::from(cfg.prune_after_days) {
                continue;
            }
            // Leaf-first: a parent goes only when it carries nothing foreign.
            let blocker = match endpoint {
                "dcim/devices" | "virtualization/virtual-machines" => {
                    let is_vm = endpoint != "dcim/devices";
                    let (ifs, pf, ty) = if is_vm {
                        (
                            &cur.vm_interfaces,
                            "virtual_machine",
                            "virtualization.vminterface",
                        )
                    } else {
                        (&cur.interfaces, "device", "dcim.interface")
                    };
                    let my_ifs: Vec<u64> = ifs
                        .iter()
                        .filter(|i| fk(i, pf) == Some(id(o)))
                        .map(id)
                        .collect();
                    cur.ips
                        .iter()
                        .find(|ip| {
                            !owned(ip, tags)
                                && s(ip, "assigned_object_type") == ty
                                && ip
                                    .get("assigned_object_id")
                                    .and_then(Value::as_u64)
                                    .is_some_and(|a| my_ifs.contains(&a))
                        })
                        .map(|ip| {
                            format!(
                                "it carries IP {} that the agent did not create",
                                s(ip, "address")
                            )
                        })
                        .or_else(|| {
                            ifs.iter()
                                .find(|i| fk(i, pf) == Some(id(o)) && !owned(i, tags))
                                .map(|i| {
                                    format!(
                                        "it has interface {} that the agent did not create",
                                        s(i, "name")
                                    )
                                })
                        })
                }
                "dcim/interfaces" | "virtualization/interfaces" => {
                    let ty = if endpoint == "dcim/interfaces" {
                        "dcim.interface"
                    } else {
                        "virtualization.vminterface"
                    };
                    cur.ips
                        .iter()
                        .find(|ip| {
                            !owned(ip, tags)
                                && s(ip, "assigned_object_type") == ty
                                && ip.get("assigned_object_id").and_then(Value::as_u64)
                                    == Some(id(o))
                        })
                        .map(|ip| {
                            format!(
                                "it carries IP {} that the agent did not create",
                                s(ip, "address")
                            )
                        })
                }
                _ => None,
            };
            match blocker {
                Some(why) => {
                    w.out.conflicts.push(format!(
                        "not pruning {endpoint} {label} (#{}): {why}",
                        id(o)
                    ));
                }
                None => {
                    match endpoint {
                        "dcim/interfaces" => {
                            deleted_ifs.insert((false, id(o)));
                        }
                        "virtualization/interfaces" => {
                            deleted_ifs.insert((true, id(o)));
                        }
                        "dcim/devices" => {
                            deleted_parents.insert((false, id(o)));
                        }
                        "virtualization/virtual-machines" => {
                            deleted_parents.insert((true, id(o)));
                        }
                        _ => {}
                    }
                    prune.push((label, src, id(o)));
                }
            }
        }
        if !orphan.is_empty() {
            for it in &orphan {
                w.count(it.source).orphaned += 1;
            }
            let n: Vec<Source> = orphan.iter().map(|i| i.source).collect();
            w.update(endpoint, orphan).await;
            // update() counted them as updated too; orphaning is its own count.
            for s in n {
                let c = w.count(s);
                c.updated = c.updated.saturating_sub(1);
            }
        }
        if !prune.is_empty() {
            w.delete(endpoint, prune).await;
        }
    }
    let _ = (deleted_ifs, deleted_parents);
}
