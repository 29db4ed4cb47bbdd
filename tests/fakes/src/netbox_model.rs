//! A stateful, API-faithful fake NetBox 4.6 for the objects netbox-agent
//! writes (issue 9).
//!
//! [`crate::NetBox`] replays recordings; this fake *keeps objects* so a sync
//! engine can be run against it repeatedly. Every rule it enforces is one
//! measured on NetBox 4.6.8 (`../shared/netbox.md`, recordings in
//! `fixtures/netbox/`); where it has to guess it says so below.
//!
//! Served: `GET /api/status/` (replayed from `01-auth.json`), and list /
//! detail URLs of tags, custom fields, sites, manufacturers, device types,
//! device roles, platforms, devices, interfaces, MAC addresses, IP addresses,
//! cluster types, clusters, virtual machines and VM interfaces, plus
//! `GET /api/core/object-changes/`.
//!
//! Enforced (measured):
//! - auth before anything: missing / malformed / wrong tokens get the
//!   recorded 403 `{"detail"}` of their class; the kind of token follows the
//!   `nbt_` prefix, either keyword is accepted; a read-only token gets 403 on
//!   writes;
//! - required fields (`{"f": ["This field is required."]}`), slugs (letters,
//!   digits, `-`, `_`, at most 100), choices (`x is not a valid choice.`),
//!   related objects by id or by attribute dict (the recorded messages),
//!   tags that must exist, custom fields that must exist for the object type
//!   and have the right value type;
//! - uniqueness: names/slugs (400 naming the field), device name per site and
//!   VM name per cluster (`__all__`), interface name per parent, IP addresses
//!   in the global table ignoring the mask;
//! - a VM needs a site, cluster or device, and inherits the cluster's site;
//! - primary IPs must be assigned to the object's own interface, cannot be
//!   moved or unassigned while primary, are cleared when the IP is deleted;
//! - deletes cascade device/VM → interfaces → their IPs and MAC objects;
//!   referenced manufacturers, types, roles, sites, clusters and cluster types
//!   answer 409; deleting a tag removes it from every object;
//! - unknown and read-only fields are dropped silently; unknown filters are
//!   ignored silently (the whole table comes back); a filter on a related
//!   object that does not exist is a 400;
//! - pagination: default 50, `limit` clamped to `MAX_PAGE_SIZE` 1000
//!   (`limit=0` too), `next`/`previous` absolute and built from the `Host`
//!   header with sorted query parameters; cursor pagination with `start`;
//! - bulk POST/PATCH/DELETE with a JSON list: all or nothing, errors as a
//!   list by position (POST), the first bad item's errors (PATCH), unknown
//!   ids skipped; an object instead of a list is `non_field_errors`;
//! - `add_tags`/`remove_tags`, `tags` replacing the set, custom fields
//!   merged by key on PATCH; a PATCH that changes nothing writes no change
//!   record (`last_updated` still moves, as measured);
//! - `changelog_message` lands in the change record.
//!
//! Inferred (not measured): the wording of the uniqueness messages for
//! interfaces, VM interfaces, clusters and device types; ordering (by id,
//! IP addresses by address); which counts are annotated on nested objects.
//!
//! [`NetBoxModel::stats`] counts requests and the writes that changed
//! something, so tests and benches can assert "zero writes".

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::{json, Map, Value};

use crate::netbox::{NetBox, NetBoxFake, TokenClass};
use crate::secret::Secret;
use crate::server::{serve, Answer, Handle, LiveRequest, Upstream};
use crate::transcript::Reply;
use crate::Error;

/// `MAX_PAGE_SIZE` of a stock NetBox.
pub const MAX_PAGE_SIZE: usize = 1000;
/// `PAGINATE_COUNT` of a stock NetBox.
pub const DEFAULT_PAGE: usize = 50;

/// Kind of a field, for validation and rendering.
#[derive(Debug, Clone, Copy, PartialEq)]
enum K {
    /// Free text, default "".
    Text,
    /// Text that may be null (default null).
    NText,
    /// A slug.
    Slug,
    /// A choice among values, rendered `{value,label}`; default given.
    Choice(
        &'static [(&'static str, &'static str)],
        Option<&'static str>,
    ),
    /// A choice rendered as the bare value.
    PlainChoice(&'static [&'static str]),
    /// Foreign key to an endpoint (nullable unless required).
    Fk(&'static str),
    /// A number (nullable).
    Num,
    /// A boolean with a default.
    Bool(bool),
    /// Six hex digits with a default.
    Color(&'static str),
    /// List of object types (custom fields).
    ObjTypes,
    /// `assigned_object_id` / `scope_id`.
    ObjId,
    /// An IP address with mask.
    Address,
    /// A MAC address.
    Mac,
}

struct Field {
    name: &'static str,
    kind: K,
    required: bool,
}

const fn f(name: &'static str, kind: K) -> Field {
    Field {
        name,
        kind,
        required: false,
    }
}
const fn req(name: &'static str, kind: K) -> Field {
    Field {
        name,
        kind,
        required: true,
    }
}

/// One object type.
struct Spec {
    /// `dcim/devices`.
    endpoint: &'static str,
    /// `dcim.device`.
    object_type: &'static str,
    /// `Device` (404 message, 409 message).
    class: &'static str,
    /// `site` (uniqueness messages).
    verbose: &'static str,
    /// UI path for `display_url` (`dcim/devices`).
    ui: &'static str,
    fields: &'static [Field],
    /// Globally unique fields.
    unique: &'static [&'static str],
    /// Has `tags` and `custom_fields`.
    taggable: bool,
}

const STATUS: &[(&str, &str)] = &[
    ("active", "Active"),
    ("planned", "Planned"),
    ("staged", "Staged"),
    ("failed", "Failed"),
    ("inventory", "Inventory"),
    ("decommissioning", "Decommissioning"),
    ("offline", "Offline"),
];
const VM_STATUS: &[(&str, &str)] = &[
    ("offline", "Offline"),
    ("active", "Active"),
    ("planned", "Planned"),
    ("staged", "Staged"),
    ("failed", "Failed"),
    ("decommissioning", "Decommissioning"),
    ("paused", "Paused"),
];
const SITE_STATUS: &[(&str, &str)] = &[
    ("planned", "Planned"),
    ("staging", "Staging"),
    ("active", "Active"),
    ("decommissioning", "Decommissioning"),
    ("retired", "Retired"),
];
const CLUSTER_STATUS: &[(&str, &str)] = &[
    ("planned", "Planned"),
    ("staging", "Staging"),
    ("active", "Active"),
    ("decommissioning", "Decommissioning"),
    ("offline", "Offline"),
];
const IP_STATUS: &[(&str, &str)] = &[
    ("active", "Active"),
    ("reserved", "Reserved"),
    ("deprecated", "Deprecated"),
    ("dhcp", "DHCP"),
    ("slaac", "SLAAC"),
];
const IP_ROLE: &[(&str, &str)] = &[
    ("loopback", "Loopback"),
    ("secondary", "Secondary"),
    ("anycast", "Anycast"),
    ("vip", "VIP"),
    ("vrrp", "VRRP"),
    ("hsrp", "HSRP"),
    ("glbp", "GLBP"),
    ("carp", "CARP"),
];
const START_ON_BOOT: &[(&str, &str)] = &[("on", "On"), ("off", "Off"), ("laststate", "Last State")];
/// A subset of NetBox's ~216 interface types (the common ones).
const IF_TYPES: &[(&str, &str)] = &[
    ("virtual", "Virtual"),
    ("bridge", "Bridge"),
    ("lag", "Link Aggregation Group (LAG)"),
    ("100base-tx", "100BASE-TX (10/100ME)"),
    ("1000base-t", "1000BASE-T (1GE)"),
    ("2.5gbase-t", "2.5GBASE-T (2.5GE)"),
    ("5gbase-t", "5GBASE-T (5GE)"),
    ("10gbase-t", "10GBASE-T (10GE)"),
    ("10gbase-x-sfpp", "SFP+ (10GE)"),
    ("25gbase-x-sfp28", "SFP28 (25GE)"),
    ("40gbase-x-qsfpp", "QSFP+ (40GE)"),
    ("100gbase-x-qsfp28", "QSFP28 (100GE)"),
    ("ieee802.11a", "IEEE 802.11a"),
    ("ieee802.11g", "IEEE 802.11b/g"),
    ("ieee802.11n", "IEEE 802.11n"),
    ("ieee802.11ac", "IEEE 802.11ac"),
    ("ieee802.11ax", "IEEE 802.11ax"),
    ("ieee802.11be", "IEEE 802.11be"),
    ("other-wireless", "Other (Wireless)"),
    ("other", "Other"),
];
const CF_TYPES: &[(&str, &str)] = &[
    ("text", "Text"),
    ("longtext", "Text (long)"),
    ("integer", "Integer"),
    ("decimal", "Decimal"),
    ("boolean", "Boolean (true/false)"),
    ("date", "Date"),
    ("datetime", "Date & time"),
    ("url", "URL"),
    ("json", "JSON"),
    ("select", "Selection"),
    ("multiselect", "Multiple selection"),
    ("object", "Object"),
    ("multiobject", "Multiple objects"),
];
const FILTER_LOGIC: &[(&str, &str)] = &[
    ("disabled", "Disabled"),
    ("loose", "Loose"),
    ("exact", "Exact"),
];

static SPECS: &[Spec] = &[
    Spec {
        endpoint: "extras/tags",
        object_type: "extras.tag",
        class: "Tag",
        verbose: "tag",
        ui: "extras/tags",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("color", K::Color("9e9e9e")),
            f("description", K::Text),
            f("weight", K::Num),
        ],
        unique: &["name", "slug"],
        taggable: false,
    },
    Spec {
        endpoint: "extras/custom-fields",
        object_type: "extras.customfield",
        class: "CustomField",
        verbose: "custom field",
        ui: "extras/custom-fields",
        fields: &[
            req("name", K::Text),
            req("type", K::Choice(CF_TYPES, None)),
            req("object_types", K::ObjTypes),
            f("label", K::Text),
            f("description", K::Text),
            f("filter_logic", K::Choice(FILTER_LOGIC, Some("loose"))),
            f("required", K::Bool(false)),
        ],
        unique: &["name"],
        taggable: false,
    },
    Spec {
        endpoint: "dcim/sites",
        object_type: "dcim.site",
        class: "Site",
        verbose: "site",
        ui: "dcim/sites",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("status", K::Choice(SITE_STATUS, Some("active"))),
            f("description", K::Text),
        ],
        unique: &["name", "slug"],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/manufacturers",
        object_type: "dcim.manufacturer",
        class: "Manufacturer",
        verbose: "manufacturer",
        ui: "dcim/manufacturers",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("description", K::Text),
        ],
        unique: &["name", "slug"],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/device-types",
        object_type: "dcim.devicetype",
        class: "DeviceType",
        verbose: "device type",
        ui: "dcim/device-types",
        fields: &[
            req("manufacturer", K::Fk("dcim/manufacturers")),
            req("model", K::Text),
            req("slug", K::Slug),
            f("part_number", K::Text),
            f("description", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/device-roles",
        object_type: "dcim.devicerole",
        class: "DeviceRole",
        verbose: "device role",
        ui: "dcim/device-roles",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("color", K::Color("9e9e9e")),
            f("vm_role", K::Bool(true)),
            f("description", K::Text),
        ],
        unique: &["name", "slug"],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/platforms",
        object_type: "dcim.platform",
        class: "Platform",
        verbose: "platform",
        ui: "dcim/platforms",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("manufacturer", K::Fk("dcim/manufacturers")),
            f("description", K::Text),
        ],
        unique: &["name", "slug"],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/devices",
        object_type: "dcim.device",
        class: "Device",
        verbose: "device",
        ui: "dcim/devices",
        fields: &[
            f("name", K::NText),
            req("device_type", K::Fk("dcim/device-types")),
            req("role", K::Fk("dcim/device-roles")),
            req("site", K::Fk("dcim/sites")),
            f("platform", K::Fk("dcim/platforms")),
            f("serial", K::Text),
            f("status", K::Choice(STATUS, Some("active"))),
            f("cluster", K::Fk("virtualization/clusters")),
            f("primary_ip4", K::Fk("ipam/ip-addresses")),
            f("primary_ip6", K::Fk("ipam/ip-addresses")),
            f("description", K::Text),
            f("comments", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/interfaces",
        object_type: "dcim.interface",
        class: "Interface",
        verbose: "interface",
        ui: "dcim/interfaces",
        fields: &[
            req("device", K::Fk("dcim/devices")),
            req("name", K::Text),
            req("type", K::Choice(IF_TYPES, None)),
            f("enabled", K::Bool(true)),
            f("mtu", K::Num),
            f("primary_mac_address", K::Fk("dcim/mac-addresses")),
            f("mgmt_only", K::Bool(false)),
            f("description", K::Text),
            f("label", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "dcim/mac-addresses",
        object_type: "dcim.macaddress",
        class: "MACAddress",
        verbose: "MAC address",
        ui: "dcim/mac-addresses",
        fields: &[
            req("mac_address", K::Mac),
            f(
                "assigned_object_type",
                K::PlainChoice(&["dcim.interface", "virtualization.vminterface"]),
            ),
            f("assigned_object_id", K::ObjId),
            f("description", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "ipam/ip-addresses",
        object_type: "ipam.ipaddress",
        class: "IPAddress",
        verbose: "IP address",
        ui: "ipam/ip-addresses",
        fields: &[
            req("address", K::Address),
            f("status", K::Choice(IP_STATUS, Some("active"))),
            f("role", K::Choice(IP_ROLE, None)),
            f(
                "assigned_object_type",
                K::PlainChoice(&["dcim.interface", "virtualization.vminterface"]),
            ),
            f("assigned_object_id", K::ObjId),
            f("dns_name", K::Text),
            f("description", K::Text),
            f("comments", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "virtualization/cluster-types",
        object_type: "virtualization.clustertype",
        class: "ClusterType",
        verbose: "cluster type",
        ui: "virtualization/cluster-types",
        fields: &[
            req("name", K::Text),
            req("slug", K::Slug),
            f("description", K::Text),
        ],
        unique: &["name", "slug"],
        taggable: true,
    },
    Spec {
        endpoint: "virtualization/clusters",
        object_type: "virtualization.cluster",
        class: "Cluster",
        verbose: "cluster",
        ui: "virtualization/clusters",
        fields: &[
            req("name", K::Text),
            req("type", K::Fk("virtualization/cluster-types")),
            f("status", K::Choice(CLUSTER_STATUS, Some("active"))),
            f("scope_type", K::PlainChoice(&["dcim.site"])),
            f("scope_id", K::ObjId),
            f("description", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "virtualization/virtual-machines",
        object_type: "virtualization.virtualmachine",
        class: "VirtualMachine",
        verbose: "virtual machine",
        ui: "virtualization/virtual-machines",
        fields: &[
            req("name", K::Text),
            f("status", K::Choice(VM_STATUS, Some("active"))),
            f("start_on_boot", K::Choice(START_ON_BOOT, Some("off"))),
            f("site", K::Fk("dcim/sites")),
            f("cluster", K::Fk("virtualization/clusters")),
            f("device", K::Fk("dcim/devices")),
            f("role", K::Fk("dcim/device-roles")),
            f("platform", K::Fk("dcim/platforms")),
            f("primary_ip4", K::Fk("ipam/ip-addresses")),
            f("primary_ip6", K::Fk("ipam/ip-addresses")),
            f("vcpus", K::Num),
            f("memory", K::Num),
            f("disk", K::Num),
            f("serial", K::Text),
            f("description", K::Text),
            f("comments", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
    Spec {
        endpoint: "virtualization/interfaces",
        object_type: "virtualization.vminterface",
        class: "VMInterface",
        verbose: "interface",
        ui: "virtualization/interfaces",
        fields: &[
            req("virtual_machine", K::Fk("virtualization/virtual-machines")),
            req("name", K::Text),
            f("enabled", K::Bool(true)),
            f("mtu", K::Num),
            f("primary_mac_address", K::Fk("dcim/mac-addresses")),
            f("description", K::Text),
        ],
        unique: &[],
        taggable: true,
    },
];

fn spec(endpoint: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.endpoint == endpoint)
}

fn spec_by_type(object_type: &str) -> Option<&'static Spec> {
    SPECS.iter().find(|s| s.object_type == object_type)
}

/// What the fake has counted since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Every request that reached the fake (including refused ones).
    pub requests: u64,
    /// GET/HEAD requests.
    pub reads: u64,
    /// POST/PUT/PATCH/DELETE requests, whatever their answer.
    pub write_requests: u64,
    /// Change records written (one per object created, changed or deleted).
    pub changes: u64,
}

/// One change record (`/api/core/object-changes/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Sequence number.
    pub id: u64,
    /// `create`, `update`, `delete`.
    pub action: &'static str,
    /// `dcim.device`, …
    pub object_type: &'static str,
    /// The object's id.
    pub object_id: u64,
    /// The object's display text.
    pub repr: String,
    /// `changelog_message` of the request.
    pub message: String,
    /// `X-Request-ID` of the request.
    pub request_id: String,
}

type Obj = Map<String, Value>;

#[derive(Debug, Default)]
struct State {
    tables: BTreeMap<&'static str, BTreeMap<u64, Obj>>,
    /// Per-table sequences, as in PostgreSQL (default 1).
    next_id: BTreeMap<&'static str, u64>,
    changes: Vec<Change>,
    fail_next: Vec<u16>,
}

/// The stateful fake NetBox (see the module docs).
#[derive(Debug)]
pub struct NetBoxModel {
    auth: NetBoxFake,
    read_only_token: Option<Secret>,
    state: Mutex<State>,
    requests: AtomicU64,
    reads: AtomicU64,
    write_requests: AtomicU64,
    request_seq: AtomicU64,
}

/// A running stateful fake: its HTTP handle and the model behind it.
#[derive(Debug)]
pub struct StatefulNetBox {
    /// The HTTP side (URL, shutdown).
    pub handle: Handle,
    /// The objects and counters.
    pub model: Arc<NetBoxModel>,
}

impl StatefulNetBox {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        self.handle.url()
    }
}

/// An answer being built: status and JSON body (or none for 204).
struct Out {
    status: u16,
    body: Option<Value>,
    etag: Option<String>,
    location: Option<String>,
}

fn out(status: u16, body: Value) -> Out {
    Out {
        status,
        body: Some(body),
        etag: None,
        location: None,
    }
}

fn detail(status: u16, msg: impl Into<String>) -> Out {
    out(status, json!({"detail": msg.into()}))
}

fn field_err(field: &str, msg: impl Into<String>) -> Value {
    json!({ field: [msg.into()] })
}

fn now_stamp() -> String {
    let now = time::OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:06}Z",
        now.year(),
        u8::from(now.month()),
        now.day(),
        now.hour(),
        now.minute(),
        now.second(),
        now.microsecond()
    )
}

fn py_repr(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let inner: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("'{k}': {}", py_repr(v)))
                .collect();
            format!("{{{}}}", inner.join(", "))
        }
        Value::String(s) => format!("'{s}'"),
        other => other.to_string(),
    }
}

fn is_slug(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// Parses `a.b.c.d/len` (or v6); `None` when malformed.
pub fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: IpAddr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    (len <= max).then_some((ip, len))
}

fn in_prefix(ip: IpAddr, net: IpAddr, len: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u32::MAX << (32 - u32::from(len))
            };
            u32::from(a) & mask == u32::from(b) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let mask = if len == 0 {
                0
            } else {
                u128::MAX << (128 - u32::from(len))
            };
            u128::from(a) & mask == u128::from(b) & mask
        }
        _ => false,
    }
}

fn normalize_mac(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| c.is_ascii_hexdigit()).collect();
    let seps = s.chars().filter(|c| !c.is_ascii_hexdigit()).count();
    if hex.len() != 12 || !(seps == 0 || seps == 5 || seps == 2) {
        return None;
    }
    let up = hex.to_ascii_uppercase();
    Some(
        (0..6)
            .map(|i| &up[i * 2..i * 2 + 2])
            .collect::<Vec<_>>()
            .join(":"),
    )
}

fn valid_datetime(s: &str) -> bool {
    // ISO 8601: YYYY-MM-DD[T ]HH:MM[:SS[.ffffff]][Z|±HH:MM]
    let b = s.as_bytes();
    if b.len() < 16 {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    digits(0..4)
        && b[4] == b'-'
        && digits(5..7)
        && b[7] == b'-'
        && digits(8..10)
        && (b[10] == b'T' || b[10] == b' ')
        && digits(11..13)
        && b[13] == b':'
        && digits(14..16)
        && s[16..]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ':' || c == '.' || c == 'Z' || c == '+' || c == '-')
}

impl NetBoxModel {
    /// An empty NetBox accepting the fixtures' placeholder tokens and
    /// `token`, if given.
    pub fn new(token: Option<Secret>) -> Result<Self, Error> {
        let mut builder = NetBox::new();
        if let Some(t) = token {
            builder = builder.with_token(t);
        }
        Ok(Self {
            auth: builder.build()?,
            read_only_token: None,
            state: Mutex::new(State::default()),
            requests: AtomicU64::new(0),
            reads: AtomicU64::new(0),
            write_requests: AtomicU64::new(0),
            request_seq: AtomicU64::new(0),
        })
    }

    /// Also accepts `token`, but only for reads (a token with
    /// `write_enabled` false): writes get the recorded 403.
    #[must_use]
    pub fn with_read_only_token(mut self, token: Secret) -> Self {
        self.read_only_token = Some(token);
        self
    }

    /// Serves the model on `addr`.
    pub async fn serve(self, addr: SocketAddr) -> Result<StatefulNetBox, Error> {
        let model = Arc::new(self);
        let handle = serve(
            Arc::new(Shared(Arc::clone(&model))) as Arc<dyn Upstream>,
            addr,
        )
        .await?;
        Ok(StatefulNetBox { handle, model })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counters so far.
    pub fn stats(&self) -> Stats {
        Stats {
            requests: self.requests.load(Ordering::SeqCst),
            reads: self.reads.load(Ordering::SeqCst),
            write_requests: self.write_requests.load(Ordering::SeqCst),
            changes: self.lock().changes.len() as u64,
        }
    }

    /// Every change record so far, oldest first.
    pub fn changes(&self) -> Vec<Change> {
        self.lock().changes.clone()
    }

    /// The next `statuses.len()` requests (after auth) are answered with
    /// these statuses instead (e.g. 503, 429), to test retries.
    pub fn fail_next(&self, statuses: &[u16]) {
        let mut st = self.lock();
        st.fail_next = statuses.iter().rev().copied().collect();
    }

    /// Sets the next id `endpoint` hands out (as after a database restore:
    /// ids do not start at 1 on a real server).
    pub fn set_next_id(&self, endpoint: &str, id: u64) {
        if let Some(sp) = spec(endpoint) {
            self.lock().next_id.insert(sp.endpoint, id);
        }
    }

    /// Answers one request without HTTP (for tests of the model itself).
    pub fn answer_direct(&self, req: &LiveRequest) -> Answer {
        Shared::answer_for(self, req)
    }

    fn take_failure(&self) -> Option<u16> {
        self.lock().fail_next.pop()
    }

    /// Number of objects at `endpoint` (`dcim/devices`).
    pub fn count(&self, endpoint: &str) -> usize {
        self.lock().tables.get(endpoint).map_or(0, BTreeMap::len)
    }

    /// Every object at `endpoint`, rendered as the API would (host
    /// `fake`).
    pub fn objects(&self, endpoint: &str) -> Vec<Value> {
        let st = self.lock();
        let Some(sp) = spec(endpoint) else {
            return Vec::new();
        };
        st.tables
            .get(sp.endpoint)
            .map(|t| {
                t.values()
                    .map(|o| render(&st, sp, o, "http://fake"))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Creates an object directly (a human's edit in the UI): same
    /// validation as `POST`, no request counted. Returns the rendered object
    /// or the 400 body.
    pub fn create(&self, endpoint: &str, body: Value) -> Result<Value, Value> {
        let Some(sp) = spec(endpoint) else {
            return Err(json!({"detail": "unknown endpoint"}));
        };
        let mut st = self.lock();
        let o = self.do_create(&mut st, sp, &body, "ui", "http://fake");
        match o.status {
            201 => Ok(o.body.unwrap_or(Value::Null)),
            _ => Err(o.body.unwrap_or(Value::Null)),
        }
    }

    /// Patches an object directly (a human's edit).
    pub fn patch(&self, endpoint: &str, id: u64, body: Value) -> Result<Value, Value> {
        let Some(sp) = spec(endpoint) else {
            return Err(json!({"detail": "unknown endpoint"}));
        };
        let mut st = self.lock();
        let o = self.do_patch(&mut st, sp, id, &body, "ui", "http://fake");
        match o.status {
            200 => Ok(o.body.unwrap_or(Value::Null)),
            _ => Err(o.body.unwrap_or(Value::Null)),
        }
    }

    fn request_id(&self) -> String {
        let n = self.request_seq.fetch_add(1, Ordering::SeqCst) + 1;
        let r: u64 = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        format!(
            "{:08x}-{:04x}-4{:03x}-a{:03x}-{:012x}",
            (r >> 32) as u32,
            (r >> 16) as u16,
            (r & 0xfff) as u16,
            (n & 0xfff) as u16,
            n
        )
    }

    fn handle(&self, req: &LiveRequest) -> Out {
        let host = req.header("host").unwrap_or("localhost").to_string();
        let base = format!("http://{host}");
        let rid = self.request_id();
        let path = req.path();
        let query = req
            .path_and_query
            .split_once('?')
            .map_or("", |(_, q)| q)
            .to_string();
        let Some(rest) = path.strip_prefix("/api/") else {
            return html_404();
        };
        let rest = rest.trim_end_matches('/');
        let parts: Vec<&str> = rest.split('/').collect();
        let (endpoint, id) = match parts.as_slice() {
            [a, b] => (format!("{a}/{b}"), None),
            [a, b, id] => match id.parse::<u64>() {
                Ok(id) => (format!("{a}/{b}"), Some(id)),
                Err(_) => return html_404(),
            },
            _ => return html_404(),
        };
        if !path.ends_with('/') {
            return Out {
                status: 301,
                body: None,
                etag: None,
                location: Some(format!("{base}{path}/")),
            };
        }
        let body: Option<Value> = if req.body.is_empty() {
            None
        } else {
            match serde_json::from_slice(&req.body) {
                Ok(v) => Some(v),
                Err(e) => return detail(400, format!("JSON parse error - {e}")),
            }
        };
        if endpoint == "core/object-changes" && req.method == Method::GET {
            return self.list_changes(&query, &base, path);
        }
        let Some(sp) = spec(&endpoint) else {
            return html_404();
        };
        let mut st = self.lock();
        match (&req.method, id) {
            (&Method::GET, None) => list(&st, sp, &query, &base, path),
            (&Method::GET, Some(id)) => match st.tables.get(sp.endpoint).and_then(|t| t.get(&id)) {
                Some(o) => {
                    let v = shape(render(&st, sp, o, &base), &query, sp);
                    with_etag(out(200, v), o)
                }
                None => not_found(sp),
            },
            (&Method::POST, None) => match body {
                Some(Value::Array(items)) => self.bulk_create(&mut st, sp, &items, &rid, &base),
                Some(v @ Value::Object(_)) => self.do_create(&mut st, sp, &v, &rid, &base),
                Some(_) | None => out(
                    400,
                    json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}),
                ),
            },
            (&Method::PATCH, Some(id)) | (&Method::PUT, Some(id)) => match body {
                Some(v @ Value::Object(_)) => {
                    if req.method == Method::PUT {
                        if let Some(e) = missing_required(sp, &v) {
                            return out(400, e);
                        }
                    }
                    if let Some(want) = req.header("if-match") {
                        if let Some(o) = st.tables.get(sp.endpoint).and_then(|t| t.get(&id)) {
                            let current = etag_of(o);
                            if want != "*" && want != current {
                                let mut o = detail(412, "Precondition failed.");
                                o.etag = Some(current);
                                return o;
                            }
                        }
                    }
                    self.do_patch(&mut st, sp, id, &v, &rid, &base)
                }
                _ => out(
                    400,
                    json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
                ),
            },
            (&Method::PATCH, None) | (&Method::PUT, None) => match body {
                Some(Value::Array(items)) => self.bulk_patch(&mut st, sp, &items, &rid, &base),
                _ => out(
                    400,
                    json!({"non_field_errors": ["Expected a list of items but got type \"dict\"."]}),
                ),
            },
            (&Method::DELETE, Some(id)) => {
                if !st
                    .tables
                    .get(sp.endpoint)
                    .is_some_and(|t| t.contains_key(&id))
                {
                    return not_found(sp);
                }
                if let Some(msg) = blocked_delete(&st, sp, id) {
                    return detail(409, msg);
                }
                let message = body
                    .as_ref()
                    .and_then(|b| b.get("changelog_message"))
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_string();
                delete(&mut st, sp, id, &rid, &message);
                Out {
                    status: 204,
                    body: None,
                    etag: None,
                    location: None,
                }
            }
            (&Method::DELETE, None) => match body {
                Some(Value::Array(items)) => self.bulk_delete(&mut st, sp, &items, &rid),
                _ => out(
                    400,
                    json!({"non_field_errors": ["Expected a list of items but got type \"dict\"."]}),
                ),
            },
            _ => detail(405, format!("Method \"{}\" not allowed.", req.method)),
        }
    }

    fn list_changes(&self, query: &str, base: &str, path: &str) -> Out {
        let st = self.lock();
        let params = parse_query(query);
        let mut rows: Vec<Value> = st
            .changes
            .iter()
            .rev()
            .filter(|c| {
                params
                    .iter()
                    .all(|(k, v)| k != "request_id" || c.request_id == *v)
            })
            .map(|c| {
                json!({
                    "id": c.id,
                    "url": format!("{base}/api/core/object-changes/{}/", c.id),
                    "display": format!("{} {} {}", c.object_type, c.repr, c.action),
                    "request_id": c.request_id,
                    "action": {"value": c.action, "label": match c.action { "create" => "Created", "update" => "Updated", _ => "Deleted" }},
                    "changed_object_type": c.object_type,
                    "changed_object_id": c.object_id,
                    "object_repr": c.repr,
                    "message": c.message,
                })
            })
            .collect();
        let total = rows.len();
        let (limit, offset) = page_params(&params);
        let page: Vec<Value> = rows
            .drain(offset.min(total)..(offset + limit).min(total))
            .collect();
        out(
            200,
            envelope(total, page, &params, base, path, limit, offset),
        )
    }

    fn do_create(
        &self,
        st: &mut State,
        sp: &'static Spec,
        body: &Value,
        rid: &str,
        base: &str,
    ) -> Out {
        let message = changelog_message(body);
        match validate_create(st, sp, body, None) {
            Ok(obj) => {
                let id = insert(st, sp, obj, rid, &message);
                let o = st.tables[sp.endpoint][&id].clone();
                let v = render(st, sp, &o, base);
                let mut r = with_etag(out(201, v), &o);
                r.location = Some(format!("{base}/api/{}/{id}/", sp.endpoint));
                r
            }
            Err(e) => out(400, e),
        }
    }

    fn bulk_create(
        &self,
        st: &mut State,
        sp: &'static Spec,
        items: &[Value],
        rid: &str,
        base: &str,
    ) -> Out {
        let mut errors = Vec::new();
        let mut objs = Vec::new();
        let mut bad = false;
        for item in items {
            if !item.is_object() {
                errors.push(json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got str."]}));
                bad = true;
                continue;
            }
            // Validated against the table as it was before the batch, as the
            // serializer does (two equal addresses in one batch both pass).
            match validate_create(st, sp, item, None) {
                Ok(o) => {
                    errors.push(json!({}));
                    objs.push((o, changelog_message(item)));
                }
                Err(e) => {
                    errors.push(e);
                    bad = true;
                }
            }
        }
        if bad {
            return out(400, Value::Array(errors));
        }
        let mut rendered = Vec::new();
        for (o, msg) in objs {
            let id = insert(st, sp, o, rid, &msg);
            let o = st.tables[sp.endpoint][&id].clone();
            rendered.push(render(st, sp, &o, base));
        }
        out(201, Value::Array(rendered))
    }

    fn do_patch(
        &self,
        st: &mut State,
        sp: &'static Spec,
        id: u64,
        body: &Value,
        rid: &str,
        base: &str,
    ) -> Out {
        let Some(current) = st.tables.get(sp.endpoint).and_then(|t| t.get(&id)).cloned() else {
            return not_found(sp);
        };
        match validate_patch(st, sp, &current, body) {
            Ok(new) => {
                apply_patch(st, sp, id, current, new, rid, &changelog_message(body));
                let o = st.tables[sp.endpoint][&id].clone();
                let v = render(st, sp, &o, base);
                with_etag(out(200, v), &o)
            }
            Err(e) => out(400, e),
        }
    }

    fn bulk_patch(
        &self,
        st: &mut State,
        sp: &'static Spec,
        items: &[Value],
        rid: &str,
        base: &str,
    ) -> Out {
        let mut staged = Vec::new();
        let mut missing_id = false;
        for item in items {
            if item.get("id").and_then(Value::as_u64).is_none() {
                missing_id = true;
            }
        }
        if missing_id {
            return out(
                400,
                Value::Array(
                    items
                        .iter()
                        .map(|i| {
                            if i.get("id").and_then(Value::as_u64).is_none() {
                                json!({"id": ["This field is required."]})
                            } else {
                                json!({})
                            }
                        })
                        .collect(),
                ),
            );
        }
        for item in items {
            let Some(id) = item.get("id").and_then(Value::as_u64) else {
                continue;
            };
            // Unknown ids are skipped silently (measured).
            let Some(current) = st.tables.get(sp.endpoint).and_then(|t| t.get(&id)).cloned() else {
                continue;
            };
            match validate_patch(st, sp, &current, item) {
                Ok(new) => staged.push((id, current, new, changelog_message(item))),
                // The first bad item's errors, as one object; nothing applied.
                Err(e) => return out(400, e),
            }
        }
        let mut rendered = Vec::new();
        for (id, current, new, msg) in staged {
            apply_patch(st, sp, id, current, new, rid, &msg);
            let o = st.tables[sp.endpoint][&id].clone();
            rendered.push(render(st, sp, &o, base));
        }
        out(200, Value::Array(rendered))
    }

    fn bulk_delete(&self, st: &mut State, sp: &'static Spec, items: &[Value], rid: &str) -> Out {
        if items
            .iter()
            .any(|i| i.get("id").and_then(Value::as_u64).is_none())
        {
            return out(
                400,
                Value::Array(
                    items
                        .iter()
                        .map(|i| {
                            if i.get("id").and_then(Value::as_u64).is_none() {
                                json!({"id": ["This field is required."]})
                            } else {
                                json!({})
                            }
                        })
                        .collect(),
                ),
            );
        }
        let ids: Vec<u64> = items
            .iter()
            .filter_map(|i| i.get("id").and_then(Value::as_u64))
            .filter(|id| {
                st.tables
                    .get(sp.endpoint)
                    .is_some_and(|t| t.contains_key(id))
            })
            .collect();
        for id in &ids {
            if let Some(msg) = blocked_delete(st, sp, *id) {
                return detail(409, msg);
            }
        }
        let message = items.first().map(changelog_message).unwrap_or_default();
        for id in ids {
            if st
                .tables
                .get(sp.endpoint)
                .is_some_and(|t| t.contains_key(&id))
            {
                delete(st, sp, id, rid, &message);
            }
        }
        Out {
            status: 204,
            body: None,
            etag: None,
            location: None,
        }
    }
}

fn changelog_message(body: &Value) -> String {
    body.get("changelog_message")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

fn html_404() -> Out {
    Out {
        status: 404,
        body: Some(Value::String(
            "\n\n<!DOCTYPE html>\n<html lang=\"en\" data-netbox-version=\"4.6.8\">\n<head><title>Page Not Found | NetBox</title></head>\n<body>Page Not Found</body></html>\n".into(),
        )),
        etag: None,
        location: None,
    }
}

fn not_found(sp: &Spec) -> Out {
    detail(404, format!("No {} matches the given query.", sp.class))
}

fn etag_of(o: &Obj) -> String {
    let lu = o.get("last_updated").and_then(Value::as_str).unwrap_or("");
    format!("W/\"{}\"", lu.replace('Z', "+00:00"))
}

fn with_etag(mut r: Out, o: &Obj) -> Out {
    r.etag = Some(etag_of(o));
    r
}

fn missing_required(sp: &Spec, body: &Value) -> Option<Value> {
    let mut errs = Map::new();
    for fl in sp.fields.iter().filter(|fl| fl.required) {
        if body.get(fl.name).is_none() {
            errs.insert(fl.name.into(), json!(["This field is required."]));
        }
    }
    (!errs.is_empty()).then_some(Value::Object(errs))
}

fn table<'a>(st: &'a State, endpoint: &str) -> impl Iterator<Item = (&'a u64, &'a Obj)> {
    st.tables.get(endpoint).into_iter().flat_map(|t| t.iter())
}

fn get<'a>(st: &'a State, endpoint: &str, id: u64) -> Option<&'a Obj> {
    st.tables.get(endpoint).and_then(|t| t.get(&id))
}

fn id_of(v: Option<&Value>) -> Option<u64> {
    v.and_then(Value::as_u64)
}

/// Resolves a related-object reference (numeric id or attribute dict).
fn resolve(st: &State, endpoint: &str, v: &Value) -> Result<Option<u64>, String> {
    match v {
        Value::Null => Ok(None),
        Value::Number(n) => {
            let id = n.as_u64().unwrap_or(0);
            if get(st, endpoint, id).is_some() {
                Ok(Some(id))
            } else {
                Err(format!(
                    "Related object not found using the provided numeric ID: {n}"
                ))
            }
        }
        Value::Object(attrs) => {
            let matches: Vec<u64> = table(st, endpoint)
                .filter(|(_, o)| {
                    attrs.iter().all(|(k, want)| match o.get(k) {
                        Some(have) => {
                            have == want
                                || (k == "name"
                                    && have.as_str().map(str::to_lowercase)
                                        == want.as_str().map(str::to_lowercase))
                        }
                        None => k == "id" && want.as_u64().is_some(),
                    })
                })
                .map(|(id, _)| *id)
                .collect();
            match matches.as_slice() {
                [one] => Ok(Some(*one)),
                [] => Err(format!(
                    "Related object not found using the provided attributes: {}",
                    py_repr(v)
                )),
                _ => Err(format!(
                    "Multiple objects match the provided attributes: {}",
                    py_repr(v)
                )),
            }
        }
        Value::String(s) => match s.parse::<u64>() {
            Ok(id) => resolve(st, endpoint, &json!(id)),
            Err(_) => Err(format!("Related objects must be referenced by numeric ID or by dictionary of attributes. Received an unrecognized value: {s}")),
        },
        other => Err(format!("Related objects must be referenced by numeric ID or by dictionary of attributes. Received an unrecognized value: {other}")),
    }
}

fn resolve_tags(st: &State, v: &Value) -> Result<Vec<u64>, Value> {
    let Value::Array(items) = v else {
        return Err(json!({"tags": ["Expected a list of items but got type \"str\"."]}));
    };
    let mut out = Vec::new();
    for item in items {
        match resolve(st, "extras/tags", item) {
            Ok(Some(id)) => {
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            Ok(None) => return Err(json!({"tags": ["This field may not be null."]})),
            Err(e) => return Err(json!({ "tags": [e] })),
        }
    }
    Ok(out)
}

/// Validates one field value; returns the stored form.
fn validate_field(st: &State, fl: &Field, v: &Value) -> Result<Value, String> {
    match fl.kind {
        K::Text => match v {
            Value::String(s) => Ok(json!(s)),
            Value::Null if !fl.required => Ok(json!("")),
            Value::Null => Err("This field may not be null.".into()),
            Value::Number(n) => Ok(json!(n.to_string())),
            _ => Err("Not a valid string.".into()),
        },
        K::NText => match v {
            Value::String(s) if s.is_empty() => Ok(Value::Null),
            Value::String(s) => Ok(json!(s)),
            Value::Null => Ok(Value::Null),
            _ => Err("Not a valid string.".into()),
        },
        K::Slug => {
            let s = v.as_str().unwrap_or("");
            if s.chars().count() > 100 {
                Err("Ensure this field has no more than 100 characters.".into())
            } else if !is_slug(s) {
                Err("Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.".into())
            } else {
                Ok(json!(s))
            }
        }
        K::Choice(choices, _) => match v {
            Value::Null if !fl.required => Ok(Value::Null),
            Value::String(s) if choices.iter().any(|(c, _)| c == s) => Ok(json!(s)),
            Value::Object(m)
                if m.get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|s| choices.iter().any(|(c, _)| *c == s)) =>
            {
                Ok(m["value"].clone())
            }
            other => Err(format!(
                "{} is not a valid choice.",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string)
            )),
        },
        K::PlainChoice(choices) => match v {
            Value::Null => Ok(Value::Null),
            Value::String(s) if choices.contains(&s.as_str()) => Ok(json!(s)),
            other => Err(format!(
                "Invalid content type: {}",
                other
                    .as_str()
                    .map_or_else(|| other.to_string(), str::to_string)
            )),
        },
        K::Fk(endpoint) => {
            let id = resolve(st, endpoint, v)?;
            if id.is_none() && fl.required {
                return Err("This field may not be null.".into());
            }
            Ok(id.map_or(Value::Null, |i| json!(i)))
        }
        K::Num => match v {
            Value::Null => Ok(Value::Null),
            Value::Number(_) => Ok(v.clone()),
            Value::String(s) => s
                .parse::<f64>()
                .map(|x| json!(x))
                .map_err(|_| "A valid number is required.".into()),
            _ => Err("A valid number is required.".into()),
        },
        K::Bool(_) => v
            .as_bool()
            .map(Value::Bool)
            .ok_or_else(|| "Must be a valid boolean.".into()),
        K::Color(_) => {
            let s = v.as_str().unwrap_or("");
            if s.len() == 6 && s.chars().all(|c| c.is_ascii_hexdigit()) {
                Ok(json!(s.to_ascii_lowercase()))
            } else {
                Err("Enter a valid hexadecimal RGB color code.".into())
            }
        }
        K::ObjTypes => match v {
            Value::Array(items) if !items.is_empty() => {
                let mut out = Vec::new();
                for i in items {
                    let s = i.as_str().unwrap_or("");
                    if spec_by_type(s).is_none() && !s.contains('.') {
                        return Err(format!("Object with app_label.model={s} does not exist."));
                    }
                    out.push(json!(s));
                }
                Ok(Value::Array(out))
            }
            _ => Err("This list may not be empty.".into()),
        },
        K::ObjId => match v {
            Value::Null => Ok(Value::Null),
            Value::Number(n) if n.as_u64().is_some() => Ok(v.clone()),
            _ => Err("A valid integer is required.".into()),
        },
        K::Address => {
            let s = v.as_str().unwrap_or("");
            if parse_cidr(s).is_some() {
                Ok(json!(s))
            } else {
                Err(format!("Invalid IP address format: {s}"))
            }
        }
        K::Mac => {
            let s = v.as_str().unwrap_or("");
            normalize_mac(s)
                .map(|m| json!(m))
                .ok_or_else(|| format!("Enter a valid MAC address: {s}"))
        }
    }
}

fn default_of(fl: &Field) -> Value {
    match fl.kind {
        K::Text => json!(""),
        K::Choice(_, Some(d)) => json!(d),
        K::Bool(b) => json!(b),
        K::Color(c) => json!(c),
        K::ObjTypes => json!([]),
        _ => Value::Null,
    }
}

/// Custom fields that apply to `object_type`, by name.
fn custom_fields<'a>(st: &'a State, object_type: &str) -> BTreeMap<String, &'a Obj> {
    table(st, "extras/custom-fields")
        .filter(|(_, cf)| {
            cf.get("object_types")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|t| t == object_type))
        })
        .filter_map(|(_, cf)| Some((cf.get("name")?.as_str()?.to_string(), cf)))
        .collect()
}

fn validate_cf(st: &State, sp: &Spec, v: &Value) -> Result<Map<String, Value>, Value> {
    let Value::Object(given) = v else {
        return Err(json!({"custom_fields": ["Invalid data. Expected a dictionary."]}));
    };
    let defs = custom_fields(st, sp.object_type);
    let mut out = Map::new();
    for (k, val) in given {
        let Some(def) = defs.get(k) else {
            return Err(
                json!({"custom_fields": { k.clone(): format!("Custom field '{k}' does not exist for this object type.") }}),
            );
        };
        let ty = def.get("type").and_then(Value::as_str).unwrap_or("text");
        let ok = match (ty, val) {
            (_, Value::Null) => true,
            ("text" | "longtext" | "url" | "select", Value::String(_)) => true,
            ("integer", Value::Number(n)) => n.as_i64().is_some(),
            ("decimal", Value::Number(_)) => true,
            ("boolean", Value::Bool(_)) => true,
            ("json", _) => true,
            ("date", Value::String(s)) => s.len() == 10 && valid_datetime(&format!("{s}T00:00")),
            ("datetime", Value::String(s)) => valid_datetime(s),
            _ => false,
        };
        if !ok {
            let msg = match ty {
                "datetime" => format!("Invalid value for custom field '{k}': Date and time values must be in ISO 8601 format (YYYY-MM-DD HH:MM:SS)."),
                "integer" => format!("Invalid value for custom field '{k}': Value must be an integer."),
                "boolean" => format!("Invalid value for custom field '{k}': Value must be true or false."),
                _ => format!("Invalid value for custom field '{k}': Value must be a string."),
            };
            return Err(json!({"__all__": [msg]}));
        }
        out.insert(k.clone(), val.clone());
    }
    Ok(out)
}

/// Validates a create body; returns the object to store (without id).
fn validate_create(
    st: &State,
    sp: &'static Spec,
    body: &Value,
    _id: Option<u64>,
) -> Result<Obj, Value> {
    let Value::Object(b) = body else {
        return Err(
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        );
    };
    if b.contains_key("remove_tags") {
        return Err(
            json!({"remove_tags": ["Cannot specify remove_tags when creating a new object."]}),
        );
    }
    if b.contains_key("tags") && b.contains_key("add_tags") {
        return Err(json!({"add_tags": ["Cannot specify both tags and add_tags."]}));
    }
    let mut errs = Map::new();
    let mut obj = Obj::new();
    for fl in sp.fields {
        match b.get(fl.name) {
            None => {
                if fl.required {
                    errs.insert(fl.name.into(), json!(["This field is required."]));
                } else {
                    obj.insert(fl.name.into(), default_of(fl));
                }
            }
            Some(v) => match validate_field(st, fl, v) {
                Ok(x) => {
                    obj.insert(fl.name.into(), x);
                }
                Err(e) => {
                    errs.insert(fl.name.into(), json!([e]));
                }
            },
        }
    }
    if !errs.is_empty() {
        return Err(Value::Object(errs));
    }
    if sp.taggable {
        let tags = match b.get("tags").or_else(|| b.get("add_tags")) {
            Some(t) => resolve_tags(st, t)?,
            None => Vec::new(),
        };
        obj.insert("tags".into(), json!(tags));
        let cf = match b.get("custom_fields") {
            Some(v) => validate_cf(st, sp, v)?,
            None => Map::new(),
        };
        obj.insert("custom_fields".into(), Value::Object(cf));
    }
    check_model(st, sp, &obj, None)?;
    Ok(obj)
}

fn validate_patch(
    st: &State,
    sp: &'static Spec,
    current: &Obj,
    body: &Value,
) -> Result<Obj, Value> {
    let Value::Object(b) = body else {
        return Err(
            json!({"non_field_errors": ["Invalid data. Expected a dictionary, but got list."]}),
        );
    };
    if b.contains_key("tags") && (b.contains_key("add_tags") || b.contains_key("remove_tags")) {
        return Err(
            json!({"tags": ["Cannot specify tags together with add_tags or remove_tags."]}),
        );
    }
    let mut errs = Map::new();
    let mut obj = current.clone();
    for fl in sp.fields {
        if let Some(v) = b.get(fl.name) {
            match validate_field(st, fl, v) {
                Ok(x) => {
                    obj.insert(fl.name.into(), x);
                }
                Err(e) => {
                    errs.insert(fl.name.into(), json!([e]));
                }
            }
        }
    }
    if !errs.is_empty() {
        return Err(Value::Object(errs));
    }
    if sp.taggable {
        let mut tags: Vec<u64> = obj
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_u64).collect())
            .unwrap_or_default();
        if let Some(t) = b.get("tags") {
            tags = resolve_tags(st, t)?;
        }
        if let Some(t) = b.get("add_tags") {
            for id in resolve_tags(st, t)? {
                if !tags.contains(&id) {
                    tags.push(id);
                }
            }
        }
        if let Some(t) = b.get("remove_tags") {
            let rm = resolve_tags(st, t)?;
            tags.retain(|id| !rm.contains(id));
        }
        obj.insert("tags".into(), json!(tags));
        if let Some(v) = b.get("custom_fields") {
            let given = validate_cf(st, sp, v)?;
            let mut cf = obj
                .get("custom_fields")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            for (k, v) in given {
                cf.insert(k, v);
            }
            obj.insert("custom_fields".into(), Value::Object(cf));
        }
    }
    check_model(st, sp, &obj, Some(current))?;
    Ok(obj)
}

fn str_of<'a>(o: &'a Obj, k: &str) -> &'a str {
    o.get(k).and_then(Value::as_str).unwrap_or("")
}

fn host_of(addr: &str) -> Option<IpAddr> {
    parse_cidr(addr).map(|(ip, _)| ip)
}

/// The device or VM an interface-like assignment belongs to.
fn parent_of_assignment(st: &State, ty: &str, id: u64) -> Option<(&'static str, u64)> {
    match ty {
        "dcim.interface" => {
            id_of(get(st, "dcim/interfaces", id)?.get("device")).map(|d| ("dcim/devices", d))
        }
        "virtualization.vminterface" => {
            id_of(get(st, "virtualization/interfaces", id)?.get("virtual_machine"))
                .map(|v| ("virtualization/virtual-machines", v))
        }
        _ => None,
    }
}

/// Whether IP `ip_id` is some object's primary; returns that object.
fn primary_holder(st: &State, ip_id: u64) -> Option<(&'static str, u64, &'static str)> {
    for ep in ["dcim/devices", "virtualization/virtual-machines"] {
        for (id, o) in table(st, ep) {
            for f in ["primary_ip4", "primary_ip6"] {
                if id_of(o.get(f)) == Some(ip_id) {
                    let ep: &'static str = if ep == "dcim/devices" {
                        "dcim/devices"
                    } else {
                        "virtualization/virtual-machines"
                    };
                    return Some((ep, *id, f));
                }
            }
        }
    }
    None
}

/// Model-level (`clean()`) rules.
fn check_model(st: &State, sp: &Spec, o: &Obj, current: Option<&Obj>) -> Result<(), Value> {
    let self_id = current.and_then(|c| id_of(c.get("id")));
    let others = || table(st, sp.endpoint).filter(move |(id, _)| Some(**id) != self_id);
    for field in sp.unique {
        let v = str_of(o, field);
        if others().any(|(_, x)| {
            let have = str_of(x, field);
            if *field == "name" {
                have.eq_ignore_ascii_case(v)
            } else {
                have == v
            }
        }) {
            return Err(field_err(
                field,
                format!("{} with this {field} already exists.", sp.verbose),
            ));
        }
    }
    match sp.endpoint {
        "dcim/device-types" => {
            let m = o.get("manufacturer");
            if others().any(|(_, x)| {
                x.get("manufacturer") == m && str_of(x, "model") == str_of(o, "model")
            }) {
                return Err(
                    json!({"__all__": ["Device type with this Manufacturer and Model already exists."]}),
                );
            }
            if others()
                .any(|(_, x)| x.get("manufacturer") == m && str_of(x, "slug") == str_of(o, "slug"))
            {
                return Err(
                    json!({"__all__": ["Device type with this Manufacturer and Slug already exists."]}),
                );
            }
        }
        "dcim/devices" => {
            if let Some(name) = o.get("name").and_then(Value::as_str) {
                if others().any(|(_, x)| {
                    x.get("site") == o.get("site")
                        && x.get("name").and_then(Value::as_str) == Some(name)
                }) {
                    return Err(json!({"__all__": ["Device name must be unique per site."]}));
                }
            }
            check_primary(st, "dcim.interface", o, self_id)?;
        }
        "dcim/interfaces" => {
            if others().any(|(_, x)| {
                x.get("device") == o.get("device") && str_of(x, "name") == str_of(o, "name")
            }) {
                return Err(
                    json!({"__all__": ["Interface with this Device and Name already exists."]}),
                );
            }
            check_primary_mac(st, "dcim.interface", o, self_id)?;
        }
        "virtualization/interfaces" => {
            if others().any(|(_, x)| {
                x.get("virtual_machine") == o.get("virtual_machine")
                    && str_of(x, "name") == str_of(o, "name")
            }) {
                return Err(
                    json!({"__all__": ["Interface with this Virtual machine and Name already exists."]}),
                );
            }
            check_primary_mac(st, "virtualization.vminterface", o, self_id)?;
        }
        "virtualization/clusters" => {
            if others().any(|(_, x)| {
                str_of(x, "name") == str_of(o, "name") && x.get("scope_id") == o.get("scope_id")
            }) {
                return Err(json!({"__all__": ["A cluster with this name already exists."]}));
            }
            check_scope(st, o)?;
        }
        "virtualization/virtual-machines" => {
            if o.get("site").is_none_or(Value::is_null)
                && o.get("cluster").is_none_or(Value::is_null)
                && o.get("device").is_none_or(Value::is_null)
            {
                return Err(
                    json!({"__all__": ["A virtual machine must be assigned to a site, cluster, or device."]}),
                );
            }
            if let Some(c) = id_of(o.get("cluster")) {
                if others().any(|(_, x)| {
                    id_of(x.get("cluster")) == Some(c) && str_of(x, "name") == str_of(o, "name")
                }) {
                    return Err(
                        json!({"__all__": ["Virtual machine name must be unique per cluster."]}),
                    );
                }
            }
            check_primary(st, "virtualization.vminterface", o, self_id)?;
        }
        "ipam/ip-addresses" | "dcim/mac-addresses" => {
            let ty = o.get("assigned_object_type").and_then(Value::as_str);
            let aid = id_of(o.get("assigned_object_id"));
            match (ty, aid) {
                (Some(ty), Some(aid)) => {
                    let ep = if ty == "dcim.interface" {
                        "dcim/interfaces"
                    } else {
                        "virtualization/interfaces"
                    };
                    if get(st, ep, aid).is_none() {
                        return Err(
                            json!({"assigned_object_id": [format!("Related object not found using the provided numeric ID: {aid}")]}),
                        );
                    }
                }
                (None, None) => {}
                (Some(_), None) => {
                    return Err(
                        json!({"assigned_object_id": ["This field is required when assigned_object_type is set."]}),
                    )
                }
                (None, Some(_)) => {
                    return Err(
                        json!({"assigned_object_type": ["This field is required when assigned_object_id is set."]}),
                    )
                }
            }
            if sp.endpoint == "ipam/ip-addresses" {
                if let Some(cur) = current {
                    let moved = cur.get("assigned_object_type") != o.get("assigned_object_type")
                        || cur.get("assigned_object_id") != o.get("assigned_object_id");
                    if moved && self_id.and_then(|id| primary_holder(st, id)).is_some() {
                        return Err(
                            json!({"__all__": ["Cannot reassign IP address while it is designated as the primary IP for the parent object"]}),
                        );
                    }
                }
                let addr = str_of(o, "address");
                let host = host_of(addr);
                let anycast = matches!(
                    o.get("role").and_then(Value::as_str),
                    Some("anycast" | "vip" | "vrrp" | "hsrp" | "glbp" | "carp")
                );
                if !anycast && others().any(|(_, x)| host_of(str_of(x, "address")) == host) {
                    return Err(
                        json!({"address": [format!("Duplicate IP address found in global table: {addr}")]}),
                    );
                }
            }
        }
        _ => {}
    }
    Ok(())
}

fn check_scope(st: &State, o: &Obj) -> Result<(), Value> {
    match (
        o.get("scope_type").and_then(Value::as_str),
        id_of(o.get("scope_id")),
    ) {
        (Some(_), Some(id)) if get(st, "dcim/sites", id).is_none() => Err(
            json!({"scope_id": [format!("Related object not found using the provided numeric ID: {id}")]}),
        ),
        _ => Ok(()),
    }
}

fn check_primary(st: &State, if_type: &str, o: &Obj, self_id: Option<u64>) -> Result<(), Value> {
    for field in ["primary_ip4", "primary_ip6"] {
        let Some(ip_id) = id_of(o.get(field)) else {
            continue;
        };
        let Some(ip) = get(st, "ipam/ip-addresses", ip_id) else {
            continue;
        };
        let ok = ip.get("assigned_object_type").and_then(Value::as_str) == Some(if_type)
            && id_of(ip.get("assigned_object_id"))
                .and_then(|aid| parent_of_assignment(st, if_type, aid))
                .map(|(_, p)| Some(p) == self_id)
                .unwrap_or(false);
        let family_ok = match host_of(str_of(ip, "address")) {
            Some(IpAddr::V4(_)) => field == "primary_ip4",
            Some(IpAddr::V6(_)) => field == "primary_ip6",
            None => false,
        };
        if !ok || !family_ok {
            let what = if if_type == "dcim.interface" {
                "device"
            } else {
                "virtual machine"
            };
            return Err(
                json!({ field: [format!("The specified IP address ({}) is not assigned to this {what}.", str_of(ip, "address"))] }),
            );
        }
    }
    Ok(())
}

fn check_primary_mac(
    st: &State,
    if_type: &str,
    o: &Obj,
    self_id: Option<u64>,
) -> Result<(), Value> {
    let Some(mac_id) = id_of(o.get("primary_mac_address")) else {
        return Ok(());
    };
    let Some(mac) = get(st, "dcim/mac-addresses", mac_id) else {
        return Ok(());
    };
    let ok = mac.get("assigned_object_type").and_then(Value::as_str) == Some(if_type)
        && id_of(mac.get("assigned_object_id")) == self_id;
    if ok {
        Ok(())
    } else {
        Err(
            json!({"primary_mac_address": [format!("MAC address {} is not assigned to this interface.", str_of(mac, "mac_address"))]}),
        )
    }
}

fn display_of(st: &State, sp: &Spec, o: &Obj) -> String {
    match sp.endpoint {
        "ipam/ip-addresses" => str_of(o, "address").to_string(),
        "dcim/mac-addresses" => str_of(o, "mac_address").to_string(),
        "dcim/device-types" => str_of(o, "model").to_string(),
        "extras/custom-fields" => {
            let l = str_of(o, "label");
            if l.is_empty() {
                str_of(o, "name").to_string()
            } else {
                l.to_string()
            }
        }
        "dcim/devices" => match o.get("name").and_then(Value::as_str) {
            Some(n) => n.to_string(),
            None => {
                let ty = id_of(o.get("device_type")).and_then(|t| get(st, "dcim/device-types", t));
                format!(
                    "{} ({})",
                    ty.map_or("", |t| str_of(t, "model")),
                    id_of(o.get("id")).unwrap_or(0)
                )
            }
        },
        _ => str_of(o, "name").to_string(),
    }
}

fn insert(st: &mut State, sp: &'static Spec, mut obj: Obj, rid: &str, message: &str) -> u64 {
    let seq = st.next_id.entry(sp.endpoint).or_insert(1);
    let id = *seq;
    *seq += 1;
    let now = now_stamp();
    obj.insert("id".into(), json!(id));
    obj.insert("created".into(), json!(now.clone()));
    obj.insert("last_updated".into(), json!(now));
    // A VM takes its site from its cluster's scope (measured).
    if sp.endpoint == "virtualization/virtual-machines"
        && obj.get("site").is_none_or(Value::is_null)
    {
        if let Some(site) = id_of(obj.get("cluster"))
            .and_then(|c| get(st, "virtualization/clusters", c))
            .and_then(|c| id_of(c.get("scope_id")))
        {
            obj.insert("site".into(), json!(site));
        }
    }
    let repr = display_of(st, sp, &obj);
    st.tables.entry(sp.endpoint).or_default().insert(id, obj);
    record(st, "create", sp, id, repr, rid, message);
    id
}

fn record(
    st: &mut State,
    action: &'static str,
    sp: &Spec,
    id: u64,
    repr: String,
    rid: &str,
    message: &str,
) {
    let n = st.changes.len() as u64 + 1;
    st.changes.push(Change {
        id: n,
        action,
        object_type: sp.object_type,
        object_id: id,
        repr,
        message: message.to_string(),
        request_id: rid.to_string(),
    });
}

fn apply_patch(
    st: &mut State,
    sp: &'static Spec,
    id: u64,
    current: Obj,
    mut new: Obj,
    rid: &str,
    message: &str,
) {
    new.insert("last_updated".into(), json!(now_stamp()));
    let mut a = current.clone();
    let mut b = new.clone();
    a.remove("last_updated");
    b.remove("last_updated");
    let changed = a != b;
    let repr = display_of(st, sp, &new);
    if let Some(t) = st.tables.get_mut(sp.endpoint) {
        t.insert(id, new);
    }
    if changed {
        record(st, "update", sp, id, repr, rid, message);
    }
}

/// Why deleting `id` is refused (409), if it is.
fn blocked_delete(st: &State, sp: &Spec, id: u64) -> Option<String> {
    let deps: Vec<(&str, &str)> = match sp.endpoint {
        "dcim/manufacturers" => vec![("dcim/device-types", "manufacturer")],
        "dcim/device-types" => vec![("dcim/devices", "device_type")],
        "dcim/sites" => vec![
            ("virtualization/virtual-machines", "site"),
            ("dcim/devices", "site"),
        ],
        "dcim/device-roles" => vec![
            ("virtualization/virtual-machines", "role"),
            ("dcim/devices", "role"),
        ],
        "virtualization/clusters" => vec![("virtualization/virtual-machines", "cluster")],
        "virtualization/cluster-types" => vec![("virtualization/clusters", "type")],
        _ => return None,
    };
    let mut found = Vec::new();
    for (ep, field) in deps {
        let dsp = spec(ep)?;
        for (did, o) in table(st, ep) {
            if id_of(o.get(field)) == Some(id) {
                found.push(format!("{} ({did})", display_of(st, dsp, o)));
            }
        }
    }
    (!found.is_empty()).then(|| {
        format!(
            "Unable to delete object. {} dependent objects were found: {}",
            found.len(),
            found.join(", ")
        )
    })
}

/// Deletes with NetBox's cascades.
fn delete(st: &mut State, sp: &'static Spec, id: u64, rid: &str, message: &str) {
    let Some(o) = st.tables.get(sp.endpoint).and_then(|t| t.get(&id)).cloned() else {
        return;
    };
    // Children first.
    let children: Vec<(&'static str, u64)> = match sp.endpoint {
        "dcim/devices" => table(st, "dcim/interfaces")
            .filter(|(_, i)| id_of(i.get("device")) == Some(id))
            .map(|(i, _)| ("dcim/interfaces", *i))
            .collect(),
        "virtualization/virtual-machines" => table(st, "virtualization/interfaces")
            .filter(|(_, i)| id_of(i.get("virtual_machine")) == Some(id))
            .map(|(i, _)| ("virtualization/interfaces", *i))
            .collect(),
        "dcim/interfaces" | "virtualization/interfaces" => {
            let ty = if sp.endpoint == "dcim/interfaces" {
                "dcim.interface"
            } else {
                "virtualization.vminterface"
            };
            ["ipam/ip-addresses", "dcim/mac-addresses"]
                .into_iter()
                .flat_map(|ep| {
                    table(st, ep)
                        .filter(|(_, x)| {
                            x.get("assigned_object_type").and_then(Value::as_str) == Some(ty)
                                && id_of(x.get("assigned_object_id")) == Some(id)
                        })
                        .map(move |(i, _)| (ep, *i))
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        _ => Vec::new(),
    };
    for (ep, cid) in children {
        if let Some(csp) = spec(ep) {
            delete(st, csp, cid, rid, message);
        }
    }
    // Clear references that NetBox sets to NULL.
    let clear: &[(&str, &str)] = match sp.endpoint {
        "ipam/ip-addresses" => &[
            ("dcim/devices", "primary_ip4"),
            ("dcim/devices", "primary_ip6"),
            ("virtualization/virtual-machines", "primary_ip4"),
            ("virtualization/virtual-machines", "primary_ip6"),
        ],
        "dcim/mac-addresses" => &[
            ("dcim/interfaces", "primary_mac_address"),
            ("virtualization/interfaces", "primary_mac_address"),
        ],
        "dcim/platforms" => &[
            ("dcim/devices", "platform"),
            ("virtualization/virtual-machines", "platform"),
        ],
        "dcim/devices" => &[("virtualization/virtual-machines", "device")],
        _ => &[],
    };
    for (ep, field) in clear {
        if let Some(t) = st.tables.get_mut(*ep) {
            for x in t.values_mut() {
                if id_of(x.get(*field)) == Some(id) {
                    x.insert((*field).into(), Value::Null);
                }
            }
        }
    }
    if sp.endpoint == "extras/tags" {
        for t in st.tables.values_mut() {
            for x in t.values_mut() {
                if let Some(Value::Array(tags)) = x.get_mut("tags") {
                    tags.retain(|t| t.as_u64() != Some(id));
                }
            }
        }
    }
    let repr = display_of(st, sp, &o);
    if let Some(t) = st.tables.get_mut(sp.endpoint) {
        t.remove(&id);
    }
    record(st, "delete", sp, id, repr, rid, message);
}

// ---------------------------------------------------------------- rendering

fn url(base: &str, endpoint: &str, id: u64) -> String {
    format!("{base}/api/{endpoint}/{id}/")
}

fn choice(choices: &[(&str, &str)], v: &Value) -> Value {
    match v.as_str() {
        Some(s) => {
            let label = choices.iter().find(|(c, _)| *c == s).map_or(s, |(_, l)| *l);
            json!({"value": s, "label": label})
        }
        None => Value::Null,
    }
}

fn count_where(st: &State, endpoint: &str, field: &str, id: u64) -> usize {
    table(st, endpoint)
        .filter(|(_, o)| id_of(o.get(field)) == Some(id))
        .count()
}

/// The nested ("brief") form of an object, as NetBox embeds it.
fn nested(st: &State, endpoint: &str, id: u64, base: &str) -> Value {
    let Some(o) = get(st, endpoint, id) else {
        return Value::Null;
    };
    let Some(sp) = spec(endpoint) else {
        return Value::Null;
    };
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("url".into(), json!(url(base, endpoint, id)));
    m.insert("display".into(), json!(display_of(st, sp, o)));
    match endpoint {
        "ipam/ip-addresses" => {
            m.insert("family".into(), family(str_of(o, "address")));
            m.insert("address".into(), o["address"].clone());
            m.insert("nat_inside".into(), Value::Null);
            m.insert("nat_outside".into(), json!([]));
            m.insert("dns_name".into(), o["dns_name"].clone());
            m.insert("description".into(), o["description"].clone());
        }
        "dcim/mac-addresses" => {
            m.insert("mac_address".into(), o["mac_address"].clone());
            m.insert("description".into(), o["description"].clone());
        }
        "dcim/device-types" => {
            let mf = id_of(o.get("manufacturer"))
                .map_or(Value::Null, |i| nested(st, "dcim/manufacturers", i, base));
            m.insert("manufacturer".into(), mf);
            m.insert("model".into(), o["model"].clone());
            m.insert("slug".into(), o["slug"].clone());
            m.insert("description".into(), o["description"].clone());
            m.insert(
                "device_count".into(),
                json!(count_where(st, "dcim/devices", "device_type", id)),
            );
        }
        "dcim/device-roles" | "dcim/platforms" => {
            m.insert("name".into(), o["name"].clone());
            m.insert("slug".into(), o["slug"].clone());
            m.insert("description".into(), o["description"].clone());
            m.insert("device_count".into(), json!(0));
            m.insert("virtualmachine_count".into(), json!(0));
            m.insert("_depth".into(), json!(0));
        }
        "dcim/interfaces" => {
            let d =
                id_of(o.get("device")).map_or(Value::Null, |i| nested(st, "dcim/devices", i, base));
            m.insert("device".into(), d);
            m.insert("name".into(), o["name"].clone());
            m.insert("description".into(), o["description"].clone());
            m.insert("cable".into(), Value::Null);
            m.insert("_occupied".into(), json!(false));
        }
        "virtualization/interfaces" => {
            let d = id_of(o.get("virtual_machine")).map_or(Value::Null, |i| {
                nested(st, "virtualization/virtual-machines", i, base)
            });
            m.insert("virtual_machine".into(), d);
            m.insert("name".into(), o["name"].clone());
            m.insert("description".into(), o["description"].clone());
        }
        "dcim/devices" | "virtualization/virtual-machines" | "virtualization/clusters" => {
            m.insert("name".into(), o.get("name").cloned().unwrap_or(Value::Null));
            m.insert("description".into(), o["description"].clone());
        }
        "extras/tags" => {
            m.insert(
                "display_url".into(),
                json!(format!("{base}/{}/{id}/", sp.ui)),
            );
            m.insert("name".into(), o["name"].clone());
            m.insert("slug".into(), o["slug"].clone());
            m.insert("color".into(), o["color"].clone());
        }
        _ => {
            m.insert("name".into(), o["name"].clone());
            if o.contains_key("slug") {
                m.insert("slug".into(), o["slug"].clone());
            }
            m.insert(
                "description".into(),
                o.get("description").cloned().unwrap_or(json!("")),
            );
        }
    }
    if endpoint == "extras/tags" {
        // The nested tag has display_url right after url.
        let mut ordered = Map::new();
        for k in [
            "id",
            "url",
            "display_url",
            "display",
            "name",
            "slug",
            "color",
        ] {
            if let Some(v) = m.get(k) {
                ordered.insert(k.into(), v.clone());
            }
        }
        return Value::Object(ordered);
    }
    Value::Object(m)
}

fn family(addr: &str) -> Value {
    match host_of(addr) {
        Some(IpAddr::V6(_)) => json!({"value": 6, "label": "IPv6"}),
        _ => json!({"value": 4, "label": "IPv4"}),
    }
}

/// The full object as the API renders it. Key order and the fields nobody
/// sets follow the recorded 4.6.8 responses.
fn render(st: &State, sp: &Spec, o: &Obj, base: &str) -> Value {
    let id = id_of(o.get("id")).unwrap_or(0);
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("url".into(), json!(url(base, sp.endpoint, id)));
    m.insert(
        "display_url".into(),
        json!(format!("{base}/{}/{id}/", sp.ui)),
    );
    m.insert("display".into(), json!(display_of(st, sp, o)));
    let fk = |field: &str, ep: &str| {
        id_of(o.get(field)).map_or(Value::Null, |i| nested(st, ep, i, base))
    };
    let ch = |field: &str| {
        let kind = sp.fields.iter().find(|f| f.name == field).map(|f| f.kind);
        match kind {
            Some(K::Choice(c, _)) => choice(c, o.get(field).unwrap_or(&Value::Null)),
            _ => Value::Null,
        }
    };
    let g = |field: &str| o.get(field).cloned().unwrap_or(Value::Null);
    let pairs: Vec<(&str, Value)> = match sp.endpoint {
        "extras/tags" => vec![
            ("name", g("name")),
            ("slug", g("slug")),
            ("color", g("color")),
            ("description", g("description")),
            (
                "weight",
                if g("weight").is_null() {
                    json!(1000)
                } else {
                    g("weight")
                },
            ),
            ("object_types", json!([])),
            (
                "tagged_items",
                json!(st
                    .tables
                    .values()
                    .flat_map(|t| t.values())
                    .filter(|x| x
                        .get("tags")
                        .and_then(Value::as_array)
                        .is_some_and(|a| a.contains(&json!(id))))
                    .count()),
            ),
        ],
        "extras/custom-fields" => {
            let mut types: Vec<Value> = o
                .get("object_types")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            types.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            vec![
                ("object_types", json!(types)),
                ("type", ch("type")),
                ("related_object_type", Value::Null),
                (
                    "data_type",
                    json!(match str_of(o, "type") {
                        "integer" => "integer",
                        "decimal" => "decimal",
                        "boolean" => "boolean",
                        "json" => "object",
                        "multiselect" | "multiobject" => "array",
                        _ => "string",
                    }),
                ),
                ("name", g("name")),
                ("label", g("label")),
                ("group_name", json!("")),
                ("description", g("description")),
                ("required", g("required")),
                ("unique", json!(false)),
                ("search_weight", json!(1000)),
                ("filter_logic", ch("filter_logic")),
                ("ui_visible", json!({"value": "always", "label": "Always"})),
                ("ui_editable", json!({"value": "yes", "label": "Yes"})),
                ("is_cloneable", json!(false)),
                ("default", Value::Null),
                ("related_object_filter", Value::Null),
                ("weight", json!(100)),
                ("validation_minimum", Value::Null),
                ("validation_maximum", Value::Null),
                ("validation_regex", json!("")),
                ("validation_schema", Value::Null),
                ("choice_set", Value::Null),
                ("owner", Value::Null),
                ("comments", json!("")),
            ]
        }
        "dcim/sites" => vec![
            ("name", g("name")),
            ("slug", g("slug")),
            ("status", ch("status")),
            ("region", Value::Null),
            ("group", Value::Null),
            ("tenant", Value::Null),
            ("facility", json!("")),
            ("time_zone", Value::Null),
            ("description", g("description")),
            ("physical_address", json!("")),
            ("shipping_address", json!("")),
            ("latitude", Value::Null),
            ("longitude", Value::Null),
            ("owner", Value::Null),
            ("comments", json!("")),
            ("asns", json!([])),
        ],
        "dcim/manufacturers" | "virtualization/cluster-types" => vec![
            ("name", g("name")),
            ("slug", g("slug")),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", json!("")),
        ],
        "dcim/device-types" => vec![
            ("manufacturer", fk("manufacturer", "dcim/manufacturers")),
            ("default_platform", Value::Null),
            ("model", g("model")),
            ("slug", g("slug")),
            ("part_number", g("part_number")),
            ("u_height", json!(1.0)),
            ("exclude_from_utilization", json!(false)),
            ("is_full_depth", json!(true)),
            ("subdevice_role", Value::Null),
            ("airflow", Value::Null),
            ("weight", Value::Null),
            ("weight_unit", Value::Null),
            ("front_image", Value::Null),
            ("rear_image", Value::Null),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", json!("")),
        ],
        "dcim/device-roles" => vec![
            ("name", g("name")),
            ("slug", g("slug")),
            ("color", g("color")),
            ("vm_role", g("vm_role")),
            ("config_template", Value::Null),
            ("parent", Value::Null),
            ("description", g("description")),
        ],
        "dcim/platforms" => vec![
            ("parent", Value::Null),
            ("name", g("name")),
            ("slug", g("slug")),
            ("manufacturer", fk("manufacturer", "dcim/manufacturers")),
            ("config_template", Value::Null),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", json!("")),
        ],
        "dcim/devices" => vec![
            ("name", g("name")),
            ("device_type", fk("device_type", "dcim/device-types")),
            ("role", fk("role", "dcim/device-roles")),
            ("tenant", Value::Null),
            ("platform", fk("platform", "dcim/platforms")),
            ("serial", g("serial")),
            ("asset_tag", Value::Null),
            ("site", fk("site", "dcim/sites")),
            ("location", Value::Null),
            ("rack", Value::Null),
            ("position", Value::Null),
            ("face", Value::Null),
            ("latitude", Value::Null),
            ("longitude", Value::Null),
            ("parent_device", Value::Null),
            ("status", ch("status")),
            ("airflow", Value::Null),
            ("primary_ip", {
                let p = fk("primary_ip6", "ipam/ip-addresses");
                if p.is_null() {
                    fk("primary_ip4", "ipam/ip-addresses")
                } else {
                    p
                }
            }),
            ("primary_ip4", fk("primary_ip4", "ipam/ip-addresses")),
            ("primary_ip6", fk("primary_ip6", "ipam/ip-addresses")),
            ("oob_ip", Value::Null),
            ("cluster", fk("cluster", "virtualization/clusters")),
            ("virtual_chassis", Value::Null),
            ("vc_position", Value::Null),
            ("vc_priority", Value::Null),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", g("comments")),
            ("config_template", Value::Null),
            ("config_context", json!({})),
            ("local_context_data", Value::Null),
        ],
        "dcim/interfaces" | "virtualization/interfaces" => {
            let ty = if sp.endpoint == "dcim/interfaces" {
                "dcim.interface"
            } else {
                "virtualization.vminterface"
            };
            let macs: Vec<Value> = table(st, "dcim/mac-addresses")
                .filter(|(_, x)| {
                    x.get("assigned_object_type").and_then(Value::as_str) == Some(ty)
                        && id_of(x.get("assigned_object_id")) == Some(id)
                })
                .map(|(mid, _)| nested(st, "dcim/mac-addresses", *mid, base))
                .collect();
            let pmac = fk("primary_mac_address", "dcim/mac-addresses");
            let mac_address = pmac.get("mac_address").cloned().unwrap_or(Value::Null);
            if sp.endpoint == "dcim/interfaces" {
                vec![
                    ("device", fk("device", "dcim/devices")),
                    ("vdcs", json!([])),
                    ("module", Value::Null),
                    ("name", g("name")),
                    ("label", g("label")),
                    ("type", ch("type")),
                    ("enabled", g("enabled")),
                    ("parent", Value::Null),
                    ("bridge", Value::Null),
                    ("bridge_interfaces", json!([])),
                    ("lag", Value::Null),
                    ("mtu", g("mtu")),
                    ("mac_address", mac_address),
                    ("primary_mac_address", pmac),
                    ("mac_addresses", json!(macs)),
                    ("speed", Value::Null),
                    ("duplex", Value::Null),
                    ("wwn", Value::Null),
                    ("mgmt_only", g("mgmt_only")),
                    ("description", g("description")),
                    ("mode", Value::Null),
                    ("rf_role", Value::Null),
                    ("rf_channel", Value::Null),
                    ("poe_mode", Value::Null),
                    ("poe_type", Value::Null),
                    ("rf_channel_frequency", Value::Null),
                    ("rf_channel_width", Value::Null),
                    ("tx_power", Value::Null),
                    ("untagged_vlan", Value::Null),
                    ("tagged_vlans", json!([])),
                    ("qinq_svlan", Value::Null),
                    ("vlan_translation_policy", Value::Null),
                    ("mark_connected", json!(false)),
                    ("cable", Value::Null),
                    ("cable_end", Value::Null),
                    ("wireless_link", Value::Null),
                    ("link_peers", json!([])),
                    ("link_peers_type", Value::Null),
                    ("wireless_lans", json!([])),
                    ("vrf", Value::Null),
                    ("l2vpn_termination", Value::Null),
                    ("connected_endpoints", Value::Null),
                    ("connected_endpoints_type", Value::Null),
                    ("connected_endpoints_reachable", json!(false)),
                    ("owner", Value::Null),
                ]
            } else {
                vec![
                    (
                        "virtual_machine",
                        fk("virtual_machine", "virtualization/virtual-machines"),
                    ),
                    ("name", g("name")),
                    ("enabled", g("enabled")),
                    ("parent", Value::Null),
                    ("bridge", Value::Null),
                    ("mtu", g("mtu")),
                    ("mac_address", mac_address),
                    ("primary_mac_address", pmac),
                    ("mac_addresses", json!(macs)),
                    ("description", g("description")),
                    ("mode", Value::Null),
                    ("untagged_vlan", Value::Null),
                    ("tagged_vlans", json!([])),
                    ("qinq_svlan", Value::Null),
                    ("vlan_translation_policy", Value::Null),
                    ("vrf", Value::Null),
                    ("l2vpn_termination", Value::Null),
                    ("owner", Value::Null),
                ]
            }
        }
        "dcim/mac-addresses" => vec![
            ("mac_address", g("mac_address")),
            ("assigned_object_type", g("assigned_object_type")),
            ("assigned_object_id", g("assigned_object_id")),
            ("assigned_object", assigned(st, o, base)),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", json!("")),
        ],
        "ipam/ip-addresses" => vec![
            ("family", family(str_of(o, "address"))),
            ("address", g("address")),
            ("vrf", Value::Null),
            ("tenant", Value::Null),
            ("status", ch("status")),
            ("role", ch("role")),
            ("assigned_object_type", g("assigned_object_type")),
            ("assigned_object_id", g("assigned_object_id")),
            ("assigned_object", assigned(st, o, base)),
            ("nat_inside", Value::Null),
            ("nat_outside", json!([])),
            ("dns_name", g("dns_name")),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", g("comments")),
        ],
        "virtualization/clusters" => vec![
            ("name", g("name")),
            ("type", fk("type", "virtualization/cluster-types")),
            ("group", Value::Null),
            ("status", ch("status")),
            ("tenant", Value::Null),
            ("scope_type", g("scope_type")),
            ("scope_id", g("scope_id")),
            (
                "scope",
                id_of(o.get("scope_id")).map_or(Value::Null, |i| nested(st, "dcim/sites", i, base)),
            ),
            ("description", g("description")),
            ("owner", Value::Null),
            ("comments", json!("")),
        ],
        "virtualization/virtual-machines" => vec![
            ("name", g("name")),
            ("virtual_machine_type", Value::Null),
            ("role", fk("role", "dcim/device-roles")),
            ("status", ch("status")),
            ("start_on_boot", ch("start_on_boot")),
            ("site", fk("site", "dcim/sites")),
            ("cluster", fk("cluster", "virtualization/clusters")),
            ("device", fk("device", "dcim/devices")),
            ("platform", fk("platform", "dcim/platforms")),
            ("primary_ip", {
                let p = fk("primary_ip6", "ipam/ip-addresses");
                if p.is_null() {
                    fk("primary_ip4", "ipam/ip-addresses")
                } else {
                    p
                }
            }),
            ("primary_ip4", fk("primary_ip4", "ipam/ip-addresses")),
            ("primary_ip6", fk("primary_ip6", "ipam/ip-addresses")),
            (
                "vcpus",
                o.get("vcpus")
                    .and_then(Value::as_f64)
                    .map_or(Value::Null, |v| json!(v)),
            ),
            ("memory", g("memory")),
            ("disk", g("disk")),
            ("description", g("description")),
            ("serial", g("serial")),
            ("tenant", Value::Null),
            ("owner", Value::Null),
            ("comments", g("comments")),
        ],
        _ => Vec::new(),
    };
    for (k, v) in pairs {
        m.insert(k.into(), v);
    }
    if sp.taggable {
        let mut tags: Vec<Value> = o
            .get("tags")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .filter_map(Value::as_u64)
                    .map(|t| nested(st, "extras/tags", t, base))
                    .collect()
            })
            .unwrap_or_default();
        tags.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        m.insert("tags".into(), json!(tags));
        if sp.endpoint == "virtualization/virtual-machines" {
            m.insert("local_context_data".into(), Value::Null);
            m.insert("config_template".into(), Value::Null);
        }
        let given = o
            .get("custom_fields")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let cf: Map<String, Value> = custom_fields(st, sp.object_type)
            .into_keys()
            .map(|k| {
                let v = given.get(&k).cloned().unwrap_or(Value::Null);
                (k, v)
            })
            .collect();
        m.insert("custom_fields".into(), Value::Object(cf));
    }
    m.insert("created".into(), g("created"));
    m.insert("last_updated".into(), g("last_updated"));
    let counts: Vec<(&str, Value)> = match sp.endpoint {
        "dcim/sites" => vec![
            ("circuit_count", json!(0)),
            (
                "device_count",
                json!(count_where(st, "dcim/devices", "site", id)),
            ),
            ("prefix_count", json!(0)),
            ("rack_count", json!(0)),
            (
                "virtualmachine_count",
                json!(count_where(
                    st,
                    "virtualization/virtual-machines",
                    "site",
                    id
                )),
            ),
            ("vlan_count", json!(0)),
        ],
        "dcim/manufacturers" => vec![
            (
                "devicetype_count",
                json!(count_where(st, "dcim/device-types", "manufacturer", id)),
            ),
            ("moduletype_count", json!(0)),
            ("inventoryitem_count", json!(0)),
            (
                "platform_count",
                json!(count_where(st, "dcim/platforms", "manufacturer", id)),
            ),
        ],
        "dcim/device-types" => {
            let mut v = vec![(
                "device_count",
                json!(count_where(st, "dcim/devices", "device_type", id)),
            )];
            for k in [
                "console_port_template_count",
                "console_server_port_template_count",
                "power_port_template_count",
                "power_outlet_template_count",
                "interface_template_count",
                "front_port_template_count",
                "rear_port_template_count",
                "device_bay_template_count",
                "module_bay_template_count",
                "inventory_item_template_count",
            ] {
                v.push((k, json!(0)));
            }
            v
        }
        "dcim/device-roles" => vec![
            (
                "device_count",
                json!(count_where(st, "dcim/devices", "role", id)),
            ),
            (
                "virtualmachine_count",
                json!(count_where(
                    st,
                    "virtualization/virtual-machines",
                    "role",
                    id
                )),
            ),
            ("owner", Value::Null),
            ("comments", json!("")),
            ("_depth", json!(0)),
        ],
        "dcim/platforms" => vec![
            (
                "device_count",
                json!(count_where(st, "dcim/devices", "platform", id)),
            ),
            (
                "virtualmachine_count",
                json!(count_where(
                    st,
                    "virtualization/virtual-machines",
                    "platform",
                    id
                )),
            ),
            ("_depth", json!(0)),
        ],
        "dcim/devices" => {
            let mut v = Vec::new();
            for k in [
                "console_port_count",
                "console_server_port_count",
                "power_port_count",
                "power_outlet_count",
            ] {
                v.push((k, json!(0)));
            }
            v.push((
                "interface_count",
                json!(count_where(st, "dcim/interfaces", "device", id)),
            ));
            for k in [
                "front_port_count",
                "rear_port_count",
                "device_bay_count",
                "module_bay_count",
                "inventory_item_count",
            ] {
                v.push((k, json!(0)));
            }
            v
        }
        "dcim/interfaces" | "virtualization/interfaces" => {
            let ty = if sp.endpoint == "dcim/interfaces" {
                "dcim.interface"
            } else {
                "virtualization.vminterface"
            };
            let n = table(st, "ipam/ip-addresses")
                .filter(|(_, x)| {
                    x.get("assigned_object_type").and_then(Value::as_str) == Some(ty)
                        && id_of(x.get("assigned_object_id")) == Some(id)
                })
                .count();
            let mut v = vec![
                ("count_ipaddresses", json!(n)),
                ("count_fhrp_groups", json!(0)),
            ];
            if sp.endpoint == "dcim/interfaces" {
                v.push(("_occupied", json!(false)));
            }
            v
        }
        "virtualization/cluster-types" => vec![(
            "cluster_count",
            json!(count_where(st, "virtualization/clusters", "type", id)),
        )],
        "virtualization/clusters" => vec![
            (
                "device_count",
                json!(count_where(st, "dcim/devices", "cluster", id)),
            ),
            (
                "virtualmachine_count",
                json!(count_where(
                    st,
                    "virtualization/virtual-machines",
                    "cluster",
                    id
                )),
            ),
            ("allocated_vcpus", Value::Null),
            ("allocated_memory", Value::Null),
            ("allocated_disk", Value::Null),
        ],
        "virtualization/virtual-machines" => vec![
            (
                "interface_count",
                json!(count_where(
                    st,
                    "virtualization/interfaces",
                    "virtual_machine",
                    id
                )),
            ),
            ("virtual_disk_count", json!(0)),
            ("config_context", json!({})),
        ],
        _ => Vec::new(),
    };
    for (k, v) in counts {
        m.insert(k.into(), v);
    }
    Value::Object(m)
}

fn assigned(st: &State, o: &Obj, base: &str) -> Value {
    let aid = id_of(o.get("assigned_object_id"));
    match (o.get("assigned_object_type").and_then(Value::as_str), aid) {
        (Some("dcim.interface"), Some(a)) => nested(st, "dcim/interfaces", a, base),
        (Some("virtualization.vminterface"), Some(a)) => {
            nested(st, "virtualization/interfaces", a, base)
        }
        _ => Value::Null,
    }
}

/// `?brief=` and `?fields=` / `?omit=` shaping.
fn shape(v: Value, query: &str, sp: &Spec) -> Value {
    let params = parse_query(query);
    let val = |k: &str| params.iter().find(|(p, _)| p == k).map(|(_, v)| v.as_str());
    let Value::Object(m) = v else { return v };
    if matches!(val("brief"), Some("true" | "True" | "1")) {
        let keys: &[&str] = match sp.endpoint {
            "ipam/ip-addresses" => &["id", "url", "display", "family", "address", "description"],
            "dcim/mac-addresses" => &["id", "url", "display", "mac_address", "description"],
            "dcim/device-types" => &[
                "id",
                "url",
                "display",
                "manufacturer",
                "model",
                "slug",
                "description",
            ],
            "dcim/interfaces" => &[
                "id",
                "url",
                "display",
                "device",
                "name",
                "description",
                "cable",
                "_occupied",
            ],
            "virtualization/interfaces" => &[
                "id",
                "url",
                "display",
                "virtual_machine",
                "name",
                "description",
            ],
            "extras/tags" => &[
                "id",
                "url",
                "display",
                "name",
                "slug",
                "color",
                "description",
            ],
            _ => &["id", "url", "display", "name", "slug", "description"],
        };
        return Value::Object(
            keys.iter()
                .filter_map(|k| Some(((*k).to_string(), m.get(*k)?.clone())))
                .collect(),
        );
    }
    if let Some(fields) = val("fields") {
        let want: BTreeSet<&str> = fields.split(',').map(str::trim).collect();
        return Value::Object(
            m.into_iter()
                .filter(|(k, _)| want.contains(k.as_str()))
                .collect(),
        );
    }
    if let Some(omit) = val("omit") {
        let drop: BTreeSet<&str> = omit.split(',').map(str::trim).collect();
        return Value::Object(
            m.into_iter()
                .filter(|(k, _)| !drop.contains(k.as_str()))
                .collect(),
        );
    }
    Value::Object(m)
}

fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (pct_decode(k), pct_decode(v))
        })
        .collect()
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(x) => {
                    out.push(x);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn pct_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn page_params(params: &[(String, String)]) -> (usize, usize) {
    let val = |k: &str| {
        params
            .iter()
            .rev()
            .find(|(p, _)| p == k)
            .map(|(_, v)| v.as_str())
    };
    let limit = match val("limit").map(str::parse::<usize>) {
        Some(Ok(0)) => MAX_PAGE_SIZE,
        Some(Ok(n)) => n.min(MAX_PAGE_SIZE),
        _ => DEFAULT_PAGE,
    };
    let offset = val("offset").and_then(|v| v.parse().ok()).unwrap_or(0);
    (limit, offset)
}

/// `next`/`previous` as DRF builds them: the request's query with `limit`
/// and `offset` replaced, keys sorted.
fn page_link(
    params: &[(String, String)],
    base: &str,
    path: &str,
    limit: usize,
    offset: Option<usize>,
    start: Option<u64>,
) -> String {
    let mut q: Vec<(String, String)> = params
        .iter()
        .filter(|(k, _)| k != "limit" && k != "offset" && k != "start")
        .cloned()
        .collect();
    q.push(("limit".into(), limit.to_string()));
    if let Some(o) = offset {
        if o > 0 {
            q.push(("offset".into(), o.to_string()));
        }
    }
    if let Some(s) = start {
        q.push(("start".into(), s.to_string()));
    }
    q.sort_by(|a, b| a.0.cmp(&b.0));
    let qs: Vec<String> = q
        .iter()
        .map(|(k, v)| {
            format!(
                "{}={}",
                pct_encode(k),
                pct_encode(v)
                    .replace("%2C", ",")
                    .replace("%2F", "/")
                    .replace("%3A", ":")
            )
        })
        .collect();
    format!("{base}{path}?{}", qs.join("&"))
}

fn envelope(
    total: usize,
    results: Vec<Value>,
    params: &[(String, String)],
    base: &str,
    path: &str,
    limit: usize,
    offset: usize,
) -> Value {
    let next = (offset + limit < total)
        .then(|| page_link(params, base, path, limit, Some(offset + limit), None));
    let previous = (offset > 0).then(|| {
        page_link(
            params,
            base,
            path,
            limit,
            Some(offset.saturating_sub(limit)),
            None,
        )
    });
    json!({"count": total, "next": next, "previous": previous, "results": results})
}

fn list(st: &State, sp: &Spec, query: &str, base: &str, path: &str) -> Out {
    let params = parse_query(query);
    let has = |k: &str| params.iter().any(|(p, _)| p == k);
    if has("start") && has("offset") {
        return out(400, json!(["'start' and 'offset' are mutually exclusive."]));
    }
    let rows = match filter(st, sp, &params) {
        Ok(r) => r,
        Err(e) => return out(400, e),
    };
    let (limit, offset) = page_params(&params);
    if let Some(start) = params
        .iter()
        .find(|(k, _)| k == "start")
        .and_then(|(_, v)| v.parse::<u64>().ok())
    {
        let mut rows: Vec<&Obj> = rows
            .into_iter()
            .filter(|o| id_of(o.get("id")).unwrap_or(0) >= start)
            .collect();
        rows.sort_by_key(|o| id_of(o.get("id")));
        let page: Vec<&Obj> = rows.into_iter().take(limit).collect();
        let next = (page.len() == limit).then(|| {
            let last = page
                .last()
                .and_then(|o| id_of(o.get("id")))
                .unwrap_or(start);
            page_link(&params, base, path, limit, None, Some(last + 1))
        });
        let results: Vec<Value> = page
            .into_iter()
            .map(|o| shape(render(st, sp, o, base), query, sp))
            .collect();
        return out(
            200,
            json!({"count": null, "next": next, "previous": null, "results": results}),
        );
    }
    let total = rows.len();
    let results: Vec<Value> = rows
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|o| shape(render(st, sp, o, base), query, sp))
        .collect();
    out(
        200,
        envelope(total, results, &params, base, path, limit, offset),
    )
}

/// Filters as NetBox's filtersets do; unknown names are ignored.
fn filter<'a>(
    st: &'a State,
    sp: &Spec,
    params: &[(String, String)],
) -> Result<Vec<&'a Obj>, Value> {
    let mut rows: Vec<&Obj> = table(st, sp.endpoint).map(|(_, o)| o).collect();
    if sp.endpoint == "ipam/ip-addresses" {
        rows.sort_by_key(|o| (host_of(str_of(o, "address")), id_of(o.get("id"))));
    }
    let mut groups: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (k, v) in params {
        groups.entry(k.as_str()).or_default().push(v.as_str());
    }
    let has_field = |f: &str| sp.fields.iter().any(|x| x.name == f);
    for (key, values) in groups {
        let cf_name = key.strip_prefix("cf_");
        match key {
            "id" => {
                let ids: Vec<u64> = values.iter().filter_map(|v| v.parse().ok()).collect();
                rows.retain(|o| ids.contains(&id_of(o.get("id")).unwrap_or(0)));
            }
            "name" | "name__ie" if has_field("name") => {
                rows.retain(|o| {
                    values.iter().any(|v| {
                        o.get("name")
                            .and_then(Value::as_str)
                            .is_some_and(|n| n.eq_ignore_ascii_case(v))
                    })
                });
            }
            "slug" if has_field("slug") => rows.retain(|o| values.contains(&str_of(o, "slug"))),
            "model" if has_field("model") => rows.retain(|o| values.contains(&str_of(o, "model"))),
            "tag" if sp.taggable => {
                for v in values {
                    let Some(tid) = table(st, "extras/tags")
                        .find(|(_, t)| str_of(t, "slug") == v)
                        .map(|(i, _)| *i)
                    else {
                        return Err(
                            json!({"tag": [format!("Select a valid choice. {v} is not one of the available choices.")]}),
                        );
                    };
                    rows.retain(|o| {
                        o.get("tags")
                            .and_then(Value::as_array)
                            .is_some_and(|a| a.contains(&json!(tid)))
                    });
                }
            }
            "tag__n" if sp.taggable => {
                for v in values {
                    if let Some(tid) = table(st, "extras/tags")
                        .find(|(_, t)| str_of(t, "slug") == v)
                        .map(|(i, _)| *i)
                    {
                        rows.retain(|o| {
                            !o.get("tags")
                                .and_then(Value::as_array)
                                .is_some_and(|a| a.contains(&json!(tid)))
                        });
                    }
                }
            }
            "site_id" | "device_id" | "virtual_machine_id" | "cluster_id" | "device_type_id"
            | "role_id" | "manufacturer_id" => {
                let rel = key.trim_end_matches("_id");
                let ep = match rel {
                    "site" => "dcim/sites",
                    "device" => "dcim/devices",
                    "virtual_machine" => "virtualization/virtual-machines",
                    "cluster" => "virtualization/clusters",
                    "device_type" => "dcim/device-types",
                    "role" => "dcim/device-roles",
                    _ => "dcim/manufacturers",
                };
                let applies = has_field(rel)
                    || (rel == "site" && sp.endpoint == "virtualization/clusters")
                    || (matches!(rel, "device" | "virtual_machine")
                        && matches!(sp.endpoint, "ipam/ip-addresses" | "dcim/mac-addresses"));
                if !applies {
                    continue;
                }
                let mut ids = Vec::new();
                for v in values {
                    let Ok(id) = v.parse::<u64>() else {
                        return Err(json!({ key: [format!("“{v}” is not a valid value.")] }));
                    };
                    if get(st, ep, id).is_none() {
                        return Err(
                            json!({ key: [format!("Select a valid choice. {id} is not one of the available choices.")] }),
                        );
                    }
                    ids.push(id);
                }
                rows.retain(|o| {
                    let have = if rel == "site" && sp.endpoint == "virtualization/clusters" {
                        id_of(o.get("scope_id"))
                    } else if has_field(rel) {
                        id_of(o.get(rel))
                    } else {
                        let ty = o
                            .get("assigned_object_type")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        id_of(o.get("assigned_object_id"))
                            .and_then(|a| parent_of_assignment(st, ty, a))
                            .filter(|(pep, _)| *pep == ep)
                            .map(|(_, p)| p)
                    };
                    have.is_some_and(|h| ids.contains(&h))
                });
            }
            "site" | "role" | "cluster_type" | "type" | "manufacturer"
                if has_field(if key == "cluster_type" { "type" } else { key }) =>
            {
                let field = if key == "cluster_type" { "type" } else { key };
                let ep = match sp.fields.iter().find(|x| x.name == field).map(|x| x.kind) {
                    Some(K::Fk(ep)) => ep,
                    _ => continue,
                };
                let mut ids = Vec::new();
                for v in values {
                    match table(st, ep).find(|(_, x)| str_of(x, "slug") == v) {
                        Some((id, _)) => ids.push(*id),
                        None => {
                            return Err(
                                json!({ key: [format!("Select a valid choice. {v} is not one of the available choices.")] }),
                            )
                        }
                    }
                }
                rows.retain(|o| id_of(o.get(field)).is_some_and(|h| ids.contains(&h)));
            }
            "address" if sp.endpoint == "ipam/ip-addresses" => {
                rows.retain(|o| {
                    values.iter().any(|v| {
                        if v.contains('/') {
                            str_of(o, "address") == *v
                        } else {
                            host_of(str_of(o, "address")) == v.parse().ok()
                        }
                    })
                });
            }
            "parent" if sp.endpoint == "ipam/ip-addresses" => {
                let nets: Vec<(IpAddr, u8)> = values.iter().filter_map(|v| parse_cidr(v)).collect();
                rows.retain(|o| {
                    host_of(str_of(o, "address"))
                        .is_some_and(|h| nets.iter().any(|(n, l)| in_prefix(h, *n, *l)))
                });
            }
            "mac_address" if sp.endpoint == "dcim/mac-addresses" => {
                let want: Vec<Option<String>> = values.iter().map(|v| normalize_mac(v)).collect();
                rows.retain(|o| want.contains(&Some(str_of(o, "mac_address").to_string())));
            }
            "q" => {
                let q = values.first().copied().unwrap_or("").to_lowercase();
                rows.retain(|o| display_of(st, sp, o).to_lowercase().contains(&q));
            }
            _ if cf_name.is_some() && sp.taggable => {
                let name = cf_name.unwrap_or_default();
                // An unknown custom field is an unknown filter: ignored.
                if !custom_fields(st, sp.object_type).contains_key(name) {
                    continue;
                }
                rows.retain(|o| {
                    let have = o.get("custom_fields").and_then(|c| c.get(name));
                    values.iter().any(|v| match have {
                        Some(Value::String(s)) => s == v,
                        Some(Value::Null) | None => *v == "null",
                        Some(other) => {
                            let text = other.to_string();
                            text.as_str() == *v
                        }
                    })
                });
            }
            // Pagination and shaping, handled elsewhere; anything else is
            // an unknown filter and ignored, as NetBox does.
            _ => {}
        }
    }
    Ok(rows)
}

// ---------------------------------------------------------------- serving

#[derive(Debug)]
struct Shared(Arc<NetBoxModel>);

impl Upstream for Shared {
    fn name(&self) -> &'static str {
        "netbox"
    }

    fn answer(&self, req: &LiveRequest) -> Answer {
        Self::answer_for(&self.0, req)
    }
}

impl Shared {
    fn answer_for(m: &NetBoxModel, req: &LiveRequest) -> Answer {
        m.requests.fetch_add(1, Ordering::SeqCst);
        let write = !matches!(req.method, Method::GET | Method::HEAD | Method::OPTIONS);
        if write {
            m.write_requests.fetch_add(1, Ordering::SeqCst);
        } else {
            m.reads.fetch_add(1, Ordering::SeqCst);
        }
        if req.path() == "/api/status/" {
            return m.auth.answer(req);
        }
        let class = m.auth.classify(req.authorization());
        let read_only = m.read_only_token.as_ref().is_some_and(|t| {
            req.authorization()
                .and_then(|h| h.split_once(' '))
                .map(|(_, v)| v)
                == Some(t.expose())
        });
        let refused = match class {
            _ if read_only => None,
            TokenClass::ValidV1(_) | TokenClass::ValidV2(_) => None,
            TokenClass::WrongV2Secret | TokenClass::UnknownV2Key => Some("Invalid v2 token"),
            TokenClass::UnknownV1 => Some("Invalid v1 token"),
            TokenClass::Malformed => Some("Invalid authorization header: Must be in the form \"Bearer <key>.<token>\" or \"Token <token>\""),
            TokenClass::Missing => Some("Authentication credentials were not provided."),
        };
        let o = if let Some(msg) = refused {
            detail(403, msg)
        } else if read_only && write {
            detail(403, "You do not have permission to perform this action.")
        } else if let Some(status) = m.take_failure() {
            detail(
                status,
                "Service temporarily unavailable, please try again later.",
            )
        } else {
            m.handle(req)
        };
        let mut headers = HeaderMap::new();
        headers.insert("api-version", HeaderValue::from_static("4.6"));
        if let Ok(v) = HeaderValue::from_str(&m.request_id()) {
            headers.insert("x-request-id", v);
        }
        if let Some(e) = o
            .etag
            .as_deref()
            .and_then(|e| HeaderValue::from_str(e).ok())
        {
            headers.insert("etag", e);
        }
        if let Some(l) = o
            .location
            .as_deref()
            .and_then(|l| HeaderValue::from_str(l).ok())
        {
            headers.insert("location", l);
        }
        let body = match &o.body {
            None => Bytes::new(),
            Some(Value::String(html)) if o.status == 404 => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/html; charset=utf-8"),
                );
                Bytes::from(html.clone())
            }
            Some(v) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Bytes::from(serde_json::to_vec(v).unwrap_or_default())
            }
        };
        Answer::Reply {
            reply: Reply {
                status: StatusCode::from_u16(o.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                headers,
                body,
            },
            from: "netbox-model".into(),
            note: None,
        }
    }
}
