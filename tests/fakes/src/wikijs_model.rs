//! A stateful, API-faithful fake of Wiki.js 2.5.314's GraphQL page and
//! asset API, for the docs sync of issue 10.
//!
//! It parses each GraphQL request ([`crate::gql`]), validates it against the
//! part of the real schema the integration touches (argument and field
//! names, **exact variable types** with graphql-js's subtype rule and its
//! message), and executes it against in-memory pages, tags, history and
//! assets, answering in the recorded shapes (`errors` before `data`, HTTP
//! 200 for resolver and mutation failures, 400 for validation, fields in
//! selection order). Every gotcha measured on the real server
//! (`shared/wikijs.md` §1.3) is reproduced:
//!
//! - `update` is not partial: a missing `tags` writes the content, flips
//!   `isPublished` to false, clears `scriptCss`/`scriptJs`, then fails with
//!   `TypeError` (errorCode 1); missing `content` is 6004; a different `path`
//!   moves the page; an unknown id is `Error`/"Invalid Page Id". The page
//!   returned by `update` is the row before the move (old path, new title).
//! - `create`/`update` return the raw database row: selecting `locale` (or
//!   another field the row lacks and the schema declares non-null) errors
//!   with "Cannot return null for non-nullable field Page.locale." and
//!   `page: null`, **after** the page was written.
//! - Concurrent creates on one path are not atomic: the existence check and
//!   the insert are separated by [`WikiModel::set_create_race`], so
//!   overlapping creates insert duplicates; the response id is the first page
//!   at that path (as Wiki.js re-reads by path), a new tag inserted by two
//!   writers fails one with `UniqueViolationError`, leaving it untagged and
//!   unrendered.
//! - Path rules: `.`, space, `\` or `//` → 6005; leading/trailing `/`
//!   stripped; move checks existence (6003) before the path; collisions 6006.
//! - Tags trimmed and lower-cased; the `list` tag filter is not normalized
//!   and needs all tags (AND).
//! - Every update adds a history row even with identical content.
//! - A Guest (unknown key) can read pages but every mutation, `apiState`,
//!   `system.info` and assets answer `Forbidden` with HTTP 200; uploads
//!   answer 403.
//! - Assets: `createFolder` returns no id and ignores `name`; `POST /u`
//!   multipart with `{"folderId":N}` then the file; file names lower-cased,
//!   whitespace `,` `;` `#` → `_`; same name overwrites; 5 MiB limit; the
//!   asset is served at `/<folder slugs>/<file>`.
//! - Rendering marks internal links `is-valid-page`/`is-invalid-page` and
//!   external ones `is-external-link`; pages linking to a path are
//!   re-rendered when a page appears there or leaves (Wiki.js's
//!   `reconnectLinks`).
//!
//! Counters ([`WikiModel::counts`]) let tests and benches assert how many
//! requests and writes a client made.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use hyper::body::Bytes;
use hyper::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use hyper::{Method, StatusCode};
use serde_json::Value;

use crate::gql::{self, Arg, Field, Operation, Pos, TypeRef};
use crate::server::{Answer, LiveRequest};
use crate::transcript::Reply;

/// Largest GraphQL body Express accepts on a default install (`5mb`).
pub const BODY_LIMIT: usize = 5 * 1024 * 1024;
/// `uploads.maxFileSize` default.
pub const MAX_UPLOAD: usize = 5_242_880;

/// Request and write counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every HTTP request the model answered.
    pub requests: u64,
    /// GraphQL requests.
    pub graphql: u64,
    /// Successful page writes (create, update, move, delete).
    pub page_writes: u64,
    /// Of which creates.
    pub creates: u64,
    /// Of which updates.
    pub updates: u64,
    /// Of which moves.
    pub moves: u64,
    /// Of which deletes.
    pub deletes: u64,
    /// Asset uploads accepted.
    pub uploads: u64,
    /// Asset folders created.
    pub folders: u64,
}

/// One page.
#[derive(Debug, Clone, PartialEq)]
pub struct Page {
    /// Id.
    pub id: i64,
    /// Path (no locale prefix).
    pub path: String,
    /// Locale code.
    pub locale: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Markdown source.
    pub content: String,
    /// Rendered HTML (`None` when a failed create never rendered it).
    pub render: Option<String>,
    /// Published.
    pub is_published: bool,
    /// Private.
    pub is_private: bool,
    /// Editor key.
    pub editor: String,
    /// Tags (lower-cased; may repeat, as after a racing create).
    pub tags: Vec<String>,
    /// `scriptCss`.
    pub script_css: String,
    /// `scriptJs`.
    pub script_js: String,
    /// `publishStartDate`.
    pub publish_start: String,
    /// `publishEndDate`.
    pub publish_end: String,
    /// ISO time.
    pub created_at: String,
    /// ISO time.
    pub updated_at: String,
}

/// One asset folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folder {
    /// Id (root is 0 and not stored).
    pub id: i64,
    /// Parent id (0 = root).
    pub parent: i64,
    /// Slug.
    pub slug: String,
}

/// One asset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asset {
    /// Id.
    pub id: i64,
    /// Folder id (0 = root).
    pub folder: i64,
    /// Normalized file name.
    pub filename: String,
    /// MIME type as uploaded.
    pub mime: String,
    /// Bytes.
    pub data: Vec<u8>,
    /// ISO time.
    pub created_at: String,
    /// ISO time.
    pub updated_at: String,
}

#[derive(Debug, Default)]
struct State {
    pages: BTreeMap<i64, Page>,
    next_page: i64,
    tags: BTreeMap<String, (i64, String)>,
    next_tag: i64,
    history: Vec<(i64, i64, String, String)>,
    next_version: i64,
    folders: Vec<Folder>,
    assets: Vec<Asset>,
    next_asset: i64,
    clock: u64,
}

impl State {
    fn now(&mut self) -> String {
        self.clock += 1;
        let ms = self.clock;
        format!(
            "2026-11-26T{:02}:{:02}:{:02}.{:03}Z",
            (ms / 3_600_000) % 24,
            (ms / 60_000) % 60,
            (ms / 1000) % 60,
            ms % 1000
        )
    }

    fn by_path(&self, path: &str, locale: &str) -> Option<&Page> {
        self.pages
            .values()
            .find(|p| p.path == path && p.locale == locale)
    }

    fn folder_path(&self, id: i64) -> Option<String> {
        let mut parts = Vec::new();
        let mut cur = id;
        while cur != 0 {
            let f = self.folders.iter().find(|f| f.id == cur)?;
            parts.push(f.slug.clone());
            cur = f.parent;
        }
        parts.reverse();
        Some(parts.join("/"))
    }

    /// Snapshots a page before a change: the first snapshot is the created
    /// state (`initial`), later ones `edit` (create itself adds none).
    fn snapshot(&mut self, page: i64) {
        let action = if self.history.iter().any(|h| h.1 == page) {
            "edit"
        } else {
            "initial"
        };
        self.add_history(page, action);
    }

    fn add_history(&mut self, page: i64, action: &str) {
        self.next_version += 1;
        let at = self.now();
        self.history
            .push((self.next_version, page, action.to_string(), at));
    }

    fn render_page(&self, content: &str) -> String {
        render(content, |p| self.by_path(p, "en").is_some())
    }

    /// Re-renders pages whose content links to `path` (reconnectLinks).
    fn reconnect(&mut self, path: &str) {
        let needle = format!("(/{path})");
        let needle_en = format!("(/en/{path})");
        let ids: Vec<i64> = self
            .pages
            .values()
            .filter(|p| {
                p.render.is_some()
                    && (p.content.contains(&needle) || p.content.contains(&needle_en))
            })
            .map(|p| p.id)
            .collect();
        for id in ids {
            let content = self.pages[&id].content.clone();
            let html = self.render_page(&content);
            if let Some(p) = self.pages.get_mut(&id) {
                p.render = Some(html);
            }
        }
    }
}

/// The fake's state and behaviour; share it with [`crate::WikiJs::with_model`].
#[derive(Debug)]
pub struct WikiModel {
    state: Mutex<State>,
    race: Mutex<Duration>,
    counts: Mutex<Counts>,
    failures: AtomicU64,
    fail_after: AtomicU64,
}

impl Default for WikiModel {
    fn default() -> Self {
        Self::new()
    }
}

/// Turns Markdown into the HTML shape Wiki.js renders for links; headings
/// and paragraphs are approximated. Internal links (starting with `/`) get
/// `is-valid-page` or `is-invalid-page`, a leading 2-letter locale segment
/// is ignored for the lookup; others get `is-external-link`.
pub fn render(content: &str, exists: impl Fn(&str) -> bool) -> String {
    let mut html = String::new();
    for block in content.split("\n\n") {
        let block = block.trim();
        if block.is_empty() {
            continue;
        }
        let level = block.chars().take_while(|c| *c == '#').count();
        if (1..=6).contains(&level) && block[level..].starts_with(' ') {
            let text = block[level + 1..].trim();
            let id = text
                .to_lowercase()
                .chars()
                .map(|c| if c.is_alphanumeric() { c } else { '-' })
                .collect::<String>();
            html.push_str(&format!(
                "<h{level} id=\"{id}\" class=\"toc-header\"><a class=\"toc-anchor\" href=\"#{id}\">¶</a> {}</h{level}>\n",
                links(text, &exists)
            ));
        } else {
            html.push_str(&format!("<p>{}</p>\n", links(block, &exists)));
        }
    }
    html
}

fn links(text: &str, exists: &impl Fn(&str) -> bool) -> String {
    let mut out = String::new();
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        let Some(close) = rest[open..].find("](").map(|c| c + open) else {
            break;
        };
        let Some(end) = rest[close..].find(')').map(|e| e + close) else {
            break;
        };
        let image = open > 0 && rest.as_bytes()[open - 1] == b'!';
        let label = &rest[open + 1..close];
        let target = &rest[close + 2..end];
        if image {
            out.push_str(&rest[..open - 1]);
            out.push_str(&format!("<img src=\"{target}\" alt=\"{label}\">"));
        } else {
            out.push_str(&rest[..open]);
            let class = if target.starts_with('/') {
                let path = target.trim_start_matches('/');
                let path = path.split(['#', '?']).next().unwrap_or(path);
                let unprefixed = match path.split_once('/') {
                    Some((first, tail))
                        if first.len() == 2 && first.chars().all(|c| c.is_ascii_lowercase()) =>
                    {
                        tail
                    }
                    _ => path,
                };
                if exists(path) || exists(unprefixed) {
                    "is-internal-link is-valid-page"
                } else {
                    "is-internal-link is-invalid-page"
                }
            } else {
                "is-external-link"
            };
            out.push_str(&format!(
                "<a href=\"{target}\" class=\"{class}\">{label}</a>"
            ));
        }
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

// ---------------------------------------------------------------------------
// Ordered output values (graphql-js keeps selection order; serde_json's map
// would sort keys).

#[derive(Debug, Clone)]
enum Out {
    Leaf(Value),
    Obj(Vec<(String, Out)>),
    List(Vec<Out>),
}

impl Out {
    fn null() -> Out {
        Out::Leaf(Value::Null)
    }

    fn write(&self, s: &mut String) {
        match self {
            Out::Leaf(v) => s.push_str(&v.to_string()),
            Out::Obj(fields) => {
                s.push('{');
                for (i, (k, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&Value::String(k.clone()).to_string());
                    s.push(':');
                    v.write(s);
                }
                s.push('}');
            }
            Out::List(items) => {
                s.push('[');
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    v.write(s);
                }
                s.push(']');
            }
        }
    }
}

fn obj(fields: Vec<(&str, Out)>) -> Out {
    Out::Obj(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn leaf(v: impl Into<Value>) -> Out {
    Out::Leaf(v.into())
}

// ---------------------------------------------------------------------------
// Schema: the part of Wiki.js 2.5.314's schema the integration uses.

/// `(type, field) → (field type, [(argument, type)])`.
fn schema_field(
    ty: &str,
    field: &str,
) -> Option<(&'static str, &'static [(&'static str, &'static str)])> {
    const NONE: &[(&str, &str)] = &[];
    const CREATE: &[(&str, &str)] = &[
        ("content", "String!"),
        ("description", "String!"),
        ("editor", "String!"),
        ("isPublished", "Boolean!"),
        ("isPrivate", "Boolean!"),
        ("locale", "String!"),
        ("path", "String!"),
        ("publishEndDate", "Date"),
        ("publishStartDate", "Date"),
        ("scriptCss", "String"),
        ("scriptJs", "String"),
        ("tags", "[String]!"),
        ("title", "String!"),
    ];
    const UPDATE: &[(&str, &str)] = &[
        ("id", "Int!"),
        ("content", "String"),
        ("description", "String"),
        ("editor", "String"),
        ("isPrivate", "Boolean"),
        ("isPublished", "Boolean"),
        ("locale", "String"),
        ("path", "String"),
        ("publishEndDate", "Date"),
        ("publishStartDate", "Date"),
        ("scriptCss", "String"),
        ("scriptJs", "String"),
        ("tags", "[String]"),
        ("title", "String"),
    ];
    const ID: &[(&str, &str)] = &[("id", "Int!")];
    const LIST: &[(&str, &str)] = &[
        ("limit", "Int"),
        ("orderBy", "PageOrderBy"),
        ("orderByDirection", "PageOrderByDirection"),
        ("tags", "[String!]"),
        ("locale", "String"),
        ("creatorId", "Int"),
        ("authorId", "Int"),
    ];
    let r: (&'static str, &'static [(&'static str, &'static str)]) = match (ty, field) {
        ("Query", "pages") => ("PageQuery", NONE),
        ("Query", "assets") => ("AssetQuery", NONE),
        ("Query", "authentication") => ("AuthenticationQuery", NONE),
        ("Query", "system") => ("SystemQuery", NONE),
        ("Mutation", "pages") => ("PageMutation", NONE),
        ("Mutation", "assets") => ("AssetMutation", NONE),
        ("AuthenticationQuery", "apiState") => ("Boolean!", NONE),
        ("SystemQuery", "info") => ("SystemInfo", NONE),
        ("SystemInfo", "currentVersion" | "dbType") => ("String", NONE),
        ("SystemInfo", "pagesTotal" | "usersTotal") => ("Int", NONE),
        ("PageQuery", "single") => ("Page", ID),
        ("PageQuery", "singleByPath") => ("Page", &[("path", "String!"), ("locale", "String!")]),
        ("PageQuery", "list") => ("[PageListItem!]!", LIST),
        ("PageQuery", "history") => (
            "PageHistoryResult",
            &[("id", "Int!"), ("offsetPage", "Int"), ("offsetSize", "Int")],
        ),
        ("PageQuery", "searchTags") => ("[String]!", &[("query", "String!")]),
        ("PageQuery", "tags") => ("[PageTag]!", NONE),
        ("PageMutation", "create") => ("PageResponse", CREATE),
        ("PageMutation", "update") => ("PageResponse", UPDATE),
        ("PageMutation", "delete" | "render") => ("DefaultResponse", ID),
        ("PageMutation", "move") => (
            "DefaultResponse",
            &[
                ("id", "Int!"),
                ("destinationPath", "String!"),
                ("destinationLocale", "String!"),
            ],
        ),
        ("PageResponse", "responseResult") => ("ResponseStatus!", NONE),
        ("PageResponse", "page") => ("Page", NONE),
        ("DefaultResponse", "responseResult") => ("ResponseStatus", NONE),
        ("ResponseStatus", "succeeded") => ("Boolean!", NONE),
        ("ResponseStatus", "errorCode") => ("Int!", NONE),
        ("ResponseStatus", "slug") => ("String!", NONE),
        ("ResponseStatus", "message") => ("String", NONE),
        ("Page", "id" | "authorId" | "creatorId") => ("Int!", NONE),
        (
            "Page",
            "path" | "editor" | "locale" | "authorName" | "authorEmail" | "creatorName"
            | "creatorEmail",
        ) => ("String!", NONE),
        ("Page", "isPrivate" | "isPublished") => ("Boolean!", NONE),
        ("Page", "createdAt" | "updatedAt") => ("Date!", NONE),
        ("Page", "publishStartDate" | "publishEndDate") => ("Date", NONE),
        ("Page", "tags") => ("[PageTag]!", NONE),
        (
            "Page",
            "hash" | "title" | "description" | "privateNS" | "content" | "render" | "toc"
            | "contentType" | "scriptCss" | "scriptJs",
        ) => ("String", NONE),
        ("PageTag", "id") => ("Int!", NONE),
        ("PageTag", "tag") => ("String!", NONE),
        ("PageTag", "title") => ("String", NONE),
        ("PageTag", "createdAt" | "updatedAt") => ("Date!", NONE),
        ("PageListItem", "id") => ("Int!", NONE),
        ("PageListItem", "path" | "locale") => ("String!", NONE),
        ("PageListItem", "title" | "description" | "contentType" | "privateNS") => ("String", NONE),
        ("PageListItem", "isPublished" | "isPrivate") => ("Boolean!", NONE),
        ("PageListItem", "createdAt" | "updatedAt") => ("Date!", NONE),
        ("PageListItem", "tags") => ("[String]", NONE),
        ("PageHistoryResult", "trail") => ("[PageHistory]", NONE),
        ("PageHistoryResult", "total") => ("Int!", NONE),
        ("PageHistory", "versionId" | "authorId") => ("Int!", NONE),
        ("PageHistory", "versionDate") => ("Date!", NONE),
        ("PageHistory", "authorName" | "actionType") => ("String!", NONE),
        ("PageHistory", "valueBefore" | "valueAfter") => ("String", NONE),
        ("AssetQuery", "list") => (
            "[AssetItem]",
            &[("folderId", "Int!"), ("kind", "AssetKind!")],
        ),
        ("AssetQuery", "folders") => ("[AssetFolder]", &[("parentFolderId", "Int!")]),
        ("AssetMutation", "createFolder") => (
            "DefaultResponse",
            &[
                ("parentFolderId", "Int!"),
                ("slug", "String!"),
                ("name", "String"),
            ],
        ),
        ("AssetMutation", "deleteAsset") => ("DefaultResponse", ID),
        ("AssetItem", "id" | "fileSize") => ("Int!", NONE),
        ("AssetItem", "filename" | "ext" | "mime") => ("String!", NONE),
        ("AssetItem", "kind") => ("AssetKind!", NONE),
        ("AssetItem", "metadata") => ("String", NONE),
        ("AssetItem", "createdAt" | "updatedAt") => ("Date!", NONE),
        ("AssetFolder", "id") => ("Int!", NONE),
        ("AssetFolder", "slug") => ("String!", NONE),
        ("AssetFolder", "name") => ("String", NONE),
        _ => return None,
    };
    Some(r)
}

const SCALARS: &[&str] = &["Int", "String", "Boolean", "Date", "Float"];
const ENUMS: &[(&str, &[&str])] = &[
    (
        "PageOrderBy",
        &["CREATED", "ID", "PATH", "TITLE", "UPDATED"],
    ),
    ("PageOrderByDirection", &["ASC", "DESC"]),
    ("AssetKind", &["IMAGE", "BINARY", "ALL"]),
];

fn is_leaf_type(name: &str) -> bool {
    SCALARS.contains(&name) || ENUMS.iter().any(|(n, _)| *n == name)
}

// ---------------------------------------------------------------------------
// Errors in graphql-js/Apollo shapes.

struct GqlError {
    message: String,
    locations: Vec<Pos>,
    path: Option<Vec<String>>,
    code: &'static str,
    /// The first stack line (`Error: Forbidden`, `GraphQLError: …`).
    stack: String,
    /// A Wiki.js error class exposes its code (6003) here.
    wiki_code: Option<i64>,
}

impl GqlError {
    fn validation(message: String, locations: Vec<Pos>) -> Self {
        let stack = format!("GraphQLError: {message}");
        GqlError {
            message,
            locations,
            path: None,
            code: "GRAPHQL_VALIDATION_FAILED",
            stack,
            wiki_code: None,
        }
    }

    fn resolver(message: &str, pos: Pos, path: Vec<String>, class: &str) -> Self {
        GqlError {
            message: message.to_string(),
            locations: vec![pos],
            path: Some(path),
            code: "INTERNAL_SERVER_ERROR",
            stack: format!("{class}: {message}"),
            wiki_code: None,
        }
    }

    fn to_out(&self) -> Out {
        let mut fields = vec![("message", leaf(self.message.clone()))];
        if !self.locations.is_empty() {
            fields.push((
                "locations",
                Out::List(
                    self.locations
                        .iter()
                        .map(|p| obj(vec![("line", leaf(p.line)), ("column", leaf(p.column))]))
                        .collect(),
                ),
            ));
        }
        if let Some(path) = &self.path {
            fields.push((
                "path",
                Out::List(path.iter().map(|p| leaf(p.clone())).collect()),
            ));
        }
        let trace = Out::List(vec![
            leaf(self.stack.clone()),
            leaf("    at fake-upstreams (wikijs_model.rs)"),
        ]);
        let exception = match self.wiki_code {
            Some(code) => obj(vec![
                (
                    "stack",
                    leaf(format!(
                        "{}\n    at fake-upstreams (wikijs_model.rs)",
                        self.stack
                    )),
                ),
                ("code", leaf(code)),
                ("message", leaf(self.message.clone())),
                ("stacktrace", trace),
            ]),
            None => obj(vec![("stacktrace", trace)]),
        };
        fields.push((
            "extensions",
            obj(vec![("code", leaf(self.code)), ("exception", exception)]),
        ));
        obj(fields)
    }
}

fn json_reply(status: u16, body: String) -> Answer {
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    Answer::Reply {
        reply: Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            headers,
            body: Bytes::from(body),
        },
        from: "wikijs-model".into(),
        note: None,
    }
}

fn errors_only(status: u16, errors: &[GqlError]) -> Answer {
    let body = obj(vec![(
        "errors",
        Out::List(errors.iter().map(GqlError::to_out).collect()),
    )]);
    let mut s = String::new();
    body.write(&mut s);
    json_reply(status, s)
}

// ---------------------------------------------------------------------------
// Validation.

fn validate(op: &Operation) -> Vec<GqlError> {
    let mut errs = Vec::new();
    let root = if op.mutation { "Mutation" } else { "Query" };
    let mut used = Vec::new();
    validate_selection(op, root, &op.selection, &mut errs, &mut used);
    for v in &op.vars {
        if !used.contains(&v.name) {
            errs.push(GqlError::validation(
                format!("Variable \"${}\" is never used.", v.name),
                vec![v.pos],
            ));
        }
    }
    errs
}

fn validate_selection(
    op: &Operation,
    parent: &str,
    fields: &[Field],
    errs: &mut Vec<GqlError>,
    used: &mut Vec<String>,
) {
    for f in fields {
        let Some((fty, args)) = schema_field(parent, &f.name) else {
            errs.push(GqlError::validation(
                format!("Cannot query field \"{}\" on type \"{parent}\".", f.name),
                vec![f.pos],
            ));
            continue;
        };
        for (name, value) in &f.args {
            let Some((_, aty)) = args.iter().find(|(a, _)| a == name) else {
                errs.push(GqlError::validation(
                    format!(
                        "Unknown argument \"{name}\" on field \"{parent}.{}\".",
                        f.name
                    ),
                    vec![f.pos],
                ));
                continue;
            };
            check_arg(op, value, &TypeRef::parse(aty), errs, used);
        }
        for (name, aty) in args.iter() {
            if aty.ends_with('!') && !f.args.iter().any(|(n, _)| n == name) {
                errs.push(GqlError::validation(
                    format!(
                        "Field \"{}\" argument \"{name}\" of type \"{aty}\" is required, but it was not provided.",
                        f.name
                    ),
                    vec![f.pos],
                ));
            }
        }
        let named = TypeRef::parse(fty).named().to_string();
        if is_leaf_type(&named) {
            if !f.selection.is_empty() {
                errs.push(GqlError::validation(
                    format!(
                        "Field \"{}\" must not have a selection since type \"{fty}\" has no subfields.",
                        f.name
                    ),
                    vec![f.selection[0].pos],
                ));
            }
        } else if f.selection.is_empty() {
            errs.push(GqlError::validation(
                format!(
                    "Field \"{}\" of type \"{fty}\" must have a selection of subfields. Did you mean \"{} {{ ... }}\"?",
                    f.name, f.name
                ),
                vec![f.pos],
            ));
        } else {
            validate_selection(op, &named, &f.selection, errs, used);
        }
    }
}

fn check_arg(
    op: &Operation,
    value: &Arg,
    expected: &TypeRef,
    errs: &mut Vec<GqlError>,
    used: &mut Vec<String>,
) {
    match value {
        Arg::Var(name, pos) => {
            used.push(name.clone());
            match op.vars.iter().find(|v| &v.name == name) {
                None => errs.push(GqlError::validation(
                    format!("Variable \"${name}\" is not defined."),
                    vec![*pos],
                )),
                Some(def) => {
                    let fits = def.ty.fits(expected)
                        || (def.has_default
                            && matches!(expected, TypeRef::NonNull(inner) if def.ty.fits(inner)));
                    if !fits {
                        errs.push(GqlError::validation(
                            format!(
                                "Variable \"${name}\" of type \"{}\" used in position expecting type \"{expected}\".",
                                def.ty
                            ),
                            vec![def.pos, *pos],
                        ));
                    }
                }
            }
        }
        Arg::List(items) => {
            let inner = match expected {
                TypeRef::NonNull(t) => t.as_ref(),
                t => t,
            };
            if let TypeRef::List(item) = inner {
                for i in items {
                    check_arg(op, i, item, errs, used);
                }
            }
        }
        Arg::Lit(_) => {}
    }
}

/// Coerces one variable value to its declared type (graphql-js messages).
fn coerce(name: &str, ty: &TypeRef, v: &Value) -> Result<(), String> {
    match ty {
        TypeRef::NonNull(inner) => {
            if v.is_null() {
                return Err(format!(
                    "Variable \"${name}\" of non-null type \"{ty}\" must not be null."
                ));
            }
            coerce(name, inner, v)
        }
        _ if v.is_null() => Ok(()),
        TypeRef::List(item) => match v {
            Value::Array(items) => items.iter().try_for_each(|i| coerce(name, item, i)),
            single => coerce(name, item, single),
        },
        TypeRef::Named(n) => {
            let ok = match n.as_str() {
                "Int" => v.as_i64().is_some_and(|i| i32::try_from(i).is_ok()),
                "Float" => v.is_number(),
                "String" | "Date" => v.is_string(),
                "Boolean" => v.is_boolean(),
                e => ENUMS
                    .iter()
                    .find(|(en, _)| *en == e)
                    .is_some_and(|(_, vals)| v.as_str().is_some_and(|s| vals.contains(&s))),
            };
            if ok {
                Ok(())
            } else {
                Err(format!(
                    "Variable \"${name}\" got invalid value {v}; Expected type {n}."
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Execution.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Admin,
    Guest,
}

struct Exec<'a> {
    model: &'a WikiModel,
    vars: &'a serde_json::Map<String, Value>,
    who: Who,
    errors: Vec<GqlError>,
}

/// Resolved value before projection: a row of available fields (a raw row
/// may lack fields the schema has), or a leaf, list or null.
#[derive(Debug, Clone)]
enum R {
    Leaf(Value),
    Row(&'static str, Vec<(&'static str, R)>),
    List(Vec<R>),
}

fn rv(v: impl Into<Value>) -> R {
    R::Leaf(v.into())
}

fn result(ok: bool, code: i64, slug: &str, message: &str) -> R {
    R::Row(
        "ResponseStatus",
        vec![
            ("succeeded", rv(ok)),
            ("errorCode", rv(code)),
            ("slug", rv(slug)),
            ("message", rv(message)),
        ],
    )
}

fn ok_result(message: &str) -> R {
    result(true, 0, "ok", message)
}

fn fail(code: i64, slug: &str, message: &str) -> R {
    result(false, code, slug, message)
}

const NOT_FOUND: &str = "This page does not exist.";

impl Exec<'_> {
    fn arg(&self, f: &Field, name: &str) -> Option<Value> {
        let (_, a) = f.args.iter().find(|(n, _)| n == name)?;
        self.value(a)
    }

    fn value(&self, a: &Arg) -> Option<Value> {
        match a {
            Arg::Var(n, _) => self.vars.get(n).cloned(),
            Arg::Lit(v) => Some(v.clone()),
            Arg::List(items) => Some(Value::Array(
                items
                    .iter()
                    .map(|i| self.value(i).unwrap_or(Value::Null))
                    .collect(),
            )),
        }
    }

    fn str_arg(&self, f: &Field, name: &str) -> Option<String> {
        self.arg(f, name)
            .and_then(|v| v.as_str().map(str::to_string))
    }

    fn int_arg(&self, f: &Field, name: &str) -> Option<i64> {
        self.arg(f, name).and_then(|v| v.as_i64())
    }

    /// Runs a top-level namespace field (`pages`, `assets`, …).
    fn namespace(&mut self, root: &str, f: &Field) -> Out {
        let Some((ty, _)) = schema_field(root, &f.name) else {
            return Out::null();
        };
        let mut fields = Vec::new();
        for sub in &f.selection {
            let path = vec![f.key.clone(), sub.key.clone()];
            let resolved = self.resolve(ty, sub, &path);
            let out = match resolved {
                Ok(r) => {
                    let (sty, _) = schema_field(ty, &sub.name).unwrap_or(("String", &[]));
                    self.project(&r, sty, sub, &path)
                        .unwrap_or_else(|_| Out::null())
                }
                Err(e) => {
                    self.errors.push(e);
                    Out::null()
                }
            };
            fields.push((sub.key.clone(), out));
        }
        Out::Obj(fields)
    }

    /// Projects `r` of schema type `ty` through `f`'s selection. `Err(())`
    /// means a non-null violation: the caller's value becomes null.
    fn project(&mut self, r: &R, ty: &str, f: &Field, path: &[String]) -> Result<Out, ()> {
        let tref = TypeRef::parse(ty);
        let nonnull = matches!(tref, TypeRef::NonNull(_));
        let null_here = |me: &mut Self, parent: &str| {
            if nonnull {
                me.errors.push(GqlError::resolver(
                    &format!(
                        "Cannot return null for non-nullable field {parent}.{}.",
                        f.name
                    ),
                    f.pos,
                    path.to_vec(),
                    "Error",
                ));
                Err(())
            } else {
                Ok(Out::null())
            }
        };
        match r {
            R::Leaf(Value::Null) => null_here(self, "?"),
            R::Leaf(v) => Ok(Out::Leaf(v.clone())),
            R::List(items) => {
                let inner = match &tref {
                    TypeRef::NonNull(t) => t.to_string(),
                    t => t.to_string(),
                };
                let item_ty = inner
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string();
                let mut out = Vec::new();
                for (i, it) in items.iter().enumerate() {
                    let mut p = path.to_vec();
                    p.push(i.to_string());
                    match self.project(it, &item_ty, f, &p) {
                        Ok(o) => out.push(o),
                        Err(()) => return null_here(self, "?"),
                    }
                }
                Ok(Out::List(out))
            }
            R::Row(rty, avail) => {
                let mut fields = Vec::new();
                for sub in &f.selection {
                    let mut p = path.to_vec();
                    p.push(sub.key.clone());
                    let (sty, _) = schema_field(rty, &sub.name).unwrap_or(("String", &[]));
                    let value = avail
                        .iter()
                        .find(|(k, _)| *k == sub.name)
                        .map(|(_, v)| v.clone());
                    let projected = match value {
                        Some(v) => self.project(&v, sty, sub, &p),
                        None if sty.ends_with('!') => {
                            self.errors.push(GqlError::resolver(
                                &format!(
                                    "Cannot return null for non-nullable field {rty}.{}.",
                                    sub.name
                                ),
                                sub.pos,
                                p.clone(),
                                "Error",
                            ));
                            Err(())
                        }
                        None => Ok(Out::null()),
                    };
                    match projected {
                        Ok(o) => fields.push((sub.key.clone(), o)),
                        Err(()) => return null_here(self, rty),
                    }
                }
                Ok(Out::Obj(fields))
            }
        }
    }

    fn forbidden(&self, f: &Field, path: &[String]) -> GqlError {
        GqlError::resolver("Forbidden", f.pos, path.to_vec(), "Error")
    }

    fn not_found(&self, f: &Field, path: &[String]) -> GqlError {
        let mut e = GqlError::resolver(NOT_FOUND, f.pos, path.to_vec(), "PageNotFound 6003");
        e.wiki_code = Some(6003);
        e
    }

    #[allow(clippy::result_large_err)]
    fn resolve(&mut self, ty: &str, f: &Field, path: &[String]) -> Result<R, GqlError> {
        let admin_only = matches!(
            (ty, f.name.as_str()),
            ("AuthenticationQuery", _)
                | ("SystemQuery", _)
                | ("PageMutation", _)
                | ("AssetMutation", _)
                | ("AssetQuery", _)
        );
        if admin_only && self.who == Who::Guest {
            return Err(self.forbidden(f, path));
        }
        let model = self.model;
        match (ty, f.name.as_str()) {
            ("AuthenticationQuery", "apiState") => Ok(rv(true)),
            ("SystemQuery", "info") => {
                let st = model.lock();
                Ok(R::Row(
                    "SystemInfo",
                    vec![
                        ("currentVersion", rv("2.5.314")),
                        ("dbType", rv("SQLite")),
                        ("pagesTotal", rv(st.pages.len())),
                        ("usersTotal", rv(2)),
                    ],
                ))
            }
            ("PageQuery", "single") => {
                let id = self.int_arg(f, "id").unwrap_or(-1);
                let st = model.lock();
                st.pages
                    .get(&id)
                    .map(|p| page_row(&st, p))
                    .ok_or_else(|| self.not_found(f, path))
            }
            ("PageQuery", "singleByPath") => {
                let p = self.str_arg(f, "path").unwrap_or_default();
                let l = self.str_arg(f, "locale").unwrap_or_default();
                let st = model.lock();
                st.by_path(&p, &l)
                    .map(|pg| page_row(&st, pg))
                    .ok_or_else(|| self.not_found(f, path))
            }
            ("PageQuery", "list") => Ok(self.list(f)),
            ("PageQuery", "history") => {
                let id = self.int_arg(f, "id").unwrap_or(-1);
                let st = model.lock();
                if !st.pages.contains_key(&id) {
                    return Err(GqlError::resolver(
                        "Cannot read properties of undefined (reading 'path')",
                        f.pos,
                        path.to_vec(),
                        "TypeError",
                    ));
                }
                let mut trail: Vec<_> = st.history.iter().filter(|h| h.1 == id).collect();
                trail.reverse();
                let total = trail.len();
                let size = self.int_arg(f, "offsetSize").unwrap_or(100).max(0) as usize;
                let page = self.int_arg(f, "offsetPage").unwrap_or(0).max(0) as usize;
                let rows = trail
                    .into_iter()
                    .skip(page * size)
                    .take(size)
                    .map(|(v, _, action, at)| {
                        R::Row(
                            "PageHistory",
                            vec![
                                ("versionId", rv(*v)),
                                ("versionDate", rv(at.clone())),
                                ("authorId", rv(1)),
                                ("authorName", rv("Administrator")),
                                ("actionType", rv(action.clone())),
                                ("valueBefore", rv(Value::Null)),
                                ("valueAfter", rv(Value::Null)),
                            ],
                        )
                    })
                    .collect();
                Ok(R::Row(
                    "PageHistoryResult",
                    vec![("trail", R::List(rows)), ("total", rv(total))],
                ))
            }
            ("PageQuery", "searchTags") => {
                let q = self.str_arg(f, "query").unwrap_or_default().to_lowercase();
                let st = model.lock();
                Ok(R::List(
                    st.tags
                        .keys()
                        .filter(|t| t.starts_with(&q))
                        .map(|t| rv(t.clone()))
                        .collect(),
                ))
            }
            ("PageQuery", "tags") => {
                let st = model.lock();
                Ok(R::List(
                    st.tags
                        .iter()
                        .map(|(t, (id, at))| tag_row(*id, t, at))
                        .collect(),
                ))
            }
            ("PageMutation", "create") => Ok(self.create(f)),
            ("PageMutation", "update") => Ok(self.update(f)),
            ("PageMutation", "delete") => Ok(self.delete(f)),
            ("PageMutation", "move") => Ok(self.move_page(f)),
            ("PageMutation", "render") => {
                let id = self.int_arg(f, "id").unwrap_or(-1);
                let mut st = model.lock();
                let Some(content) = st.pages.get(&id).map(|p| p.content.clone()) else {
                    return Ok(response(fail(6003, "PageNotFound", NOT_FOUND), None));
                };
                let html = st.render_page(&content);
                if let Some(p) = st.pages.get_mut(&id) {
                    p.render = Some(html);
                }
                Ok(response(ok_result("Page rendered successfully."), None))
            }
            ("AssetQuery", "folders") => {
                let parent = self.int_arg(f, "parentFolderId").unwrap_or(0);
                let st = model.lock();
                Ok(R::List(
                    st.folders
                        .iter()
                        .filter(|x| x.parent == parent)
                        .map(|x| {
                            R::Row(
                                "AssetFolder",
                                vec![
                                    ("id", rv(x.id)),
                                    ("slug", rv(x.slug.clone())),
                                    ("name", rv(x.slug.clone())),
                                ],
                            )
                        })
                        .collect(),
                ))
            }
            ("AssetQuery", "list") => {
                let folder = self.int_arg(f, "folderId").unwrap_or(0);
                let kind = self.str_arg(f, "kind").unwrap_or_default();
                let st = model.lock();
                Ok(R::List(
                    st.assets
                        .iter()
                        .filter(|a| a.folder == folder)
                        .filter(|a| kind == "ALL" || asset_kind(&a.mime) == kind)
                        .map(|a| {
                            let ext = a
                                .filename
                                .rfind('.')
                                .map_or(String::new(), |i| a.filename[i..].to_string());
                            R::Row(
                                "AssetItem",
                                vec![
                                    ("id", rv(a.id)),
                                    ("filename", rv(a.filename.clone())),
                                    ("ext", rv(ext)),
                                    ("kind", rv(asset_kind(&a.mime))),
                                    ("mime", rv(a.mime.clone())),
                                    ("fileSize", rv(a.data.len())),
                                    ("metadata", rv(Value::Null)),
                                    ("createdAt", rv(a.created_at.clone())),
                                    ("updatedAt", rv(a.updated_at.clone())),
                                ],
                            )
                        })
                        .collect(),
                ))
            }
            ("AssetMutation", "createFolder") => {
                let parent = self.int_arg(f, "parentFolderId").unwrap_or(0);
                let slug = self.str_arg(f, "slug").unwrap_or_default();
                let mut st = model.lock();
                if parent != 0 && !st.folders.iter().any(|x| x.id == parent) {
                    return Ok(response(fail(1, "Error", "Invalid parent folder"), None));
                }
                let id = st.folders.iter().map(|x| x.id).max().unwrap_or(0) + 1;
                st.folders.push(Folder { id, parent, slug });
                model.count(|c| c.folders += 1);
                Ok(response(
                    ok_result("Asset Folder has been created successfully."),
                    None,
                ))
            }
            ("AssetMutation", "deleteAsset") => {
                let id = self.int_arg(f, "id").unwrap_or(-1);
                let mut st = model.lock();
                let before = st.assets.len();
                st.assets.retain(|a| a.id != id);
                if st.assets.len() == before {
                    return Ok(response(
                        fail(
                            2003,
                            "AssetInvalid",
                            "This asset does not exist or is invalid.",
                        ),
                        None,
                    ));
                }
                Ok(response(
                    ok_result("Asset has been deleted successfully."),
                    None,
                ))
            }
            _ => Ok(rv(Value::Null)),
        }
    }

    fn list(&self, f: &Field) -> R {
        let tags: Option<Vec<String>> = self.arg(f, "tags").and_then(|v| {
            v.as_array().map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect()
            })
        });
        let locale = self.str_arg(f, "locale");
        let st = self.model.lock();
        let mut pages: Vec<&Page> = st
            .pages
            .values()
            .filter(|p| {
                tags.as_ref()
                    .is_none_or(|ts| ts.iter().all(|t| p.tags.contains(t)))
            })
            .filter(|p| locale.as_ref().is_none_or(|l| &p.locale == l))
            .collect();
        let order = self.str_arg(f, "orderBy");
        match order.as_deref() {
            Some("TITLE") => pages.sort_by(|a, b| a.title.cmp(&b.title)),
            Some("PATH") => pages.sort_by(|a, b| a.path.cmp(&b.path)),
            Some("CREATED") => pages.sort_by(|a, b| a.created_at.cmp(&b.created_at)),
            Some("UPDATED") => pages.sort_by(|a, b| a.updated_at.cmp(&b.updated_at)),
            _ => {}
        }
        if self.str_arg(f, "orderByDirection").as_deref() == Some("DESC") {
            pages.reverse();
        }
        if let Some(limit) = self.int_arg(f, "limit") {
            pages.truncate(usize::try_from(limit).unwrap_or(0));
        }
        R::List(
            pages
                .into_iter()
                .map(|p| {
                    // With a tag filter, Wiki.js lists only the matching tags.
                    let tags: Vec<String> = match &tags {
                        Some(ts) => p.tags.iter().filter(|t| ts.contains(t)).cloned().collect(),
                        None => p.tags.clone(),
                    };
                    R::Row(
                        "PageListItem",
                        vec![
                            ("id", rv(p.id)),
                            ("path", rv(p.path.clone())),
                            ("locale", rv(p.locale.clone())),
                            ("title", rv(p.title.clone())),
                            ("description", rv(p.description.clone())),
                            ("contentType", rv("markdown")),
                            ("isPublished", rv(p.is_published)),
                            ("isPrivate", rv(p.is_private)),
                            ("privateNS", rv(Value::Null)),
                            ("createdAt", rv(p.created_at.clone())),
                            ("updatedAt", rv(p.updated_at.clone())),
                            ("tags", R::List(tags.into_iter().map(rv).collect())),
                        ],
                    )
                })
                .collect(),
        )
    }

    fn tags_arg(&self, f: &Field) -> Option<Vec<String>> {
        self.arg(f, "tags").and_then(|v| match v {
            Value::Array(a) => Some(
                a.iter()
                    .filter_map(|t| t.as_str())
                    .map(|t| t.trim().to_lowercase())
                    .filter(|t| !t.is_empty())
                    .collect(),
            ),
            Value::String(s) => Some(vec![s.trim().to_lowercase()]),
            _ => None,
        })
    }

    fn create(&mut self, f: &Field) -> R {
        let model = self.model;
        let content = self.str_arg(f, "content").unwrap_or_default();
        let raw_path = self.str_arg(f, "path").unwrap_or_default();
        let locale = self.str_arg(f, "locale").unwrap_or_default();
        let tags = self.tags_arg(f).unwrap_or_default();
        if let Err(r) = check_path(&raw_path) {
            return response(r, None);
        }
        let path = raw_path.trim_matches('/').to_string();
        // Wiki.js checks for an existing page, then (asynchronously) inserts:
        // overlapping creates both pass the check.
        let known_tags: Vec<String> = {
            let st = model.lock();
            if st.by_path(&path, &locale).is_some() {
                return response(
                    fail(
                        6002,
                        "PageDuplicateCreate",
                        "Cannot create this page because an entry already exists at the same path.",
                    ),
                    None,
                );
            }
            st.tags.keys().cloned().collect()
        };
        if content.trim().is_empty() {
            return response(
                fail(6004, "PageEmptyContent", "Page content cannot be empty."),
                None,
            );
        }
        let race = *model.race.lock().unwrap_or_else(PoisonError::into_inner);
        if !race.is_zero() {
            std::thread::sleep(race);
        }
        let mut st = model.lock();
        st.next_page += 1;
        let id = st.next_page;
        let now = st.now();
        let page = Page {
            id,
            path: path.clone(),
            locale: locale.clone(),
            title: self.str_arg(f, "title").unwrap_or_default(),
            description: self.str_arg(f, "description").unwrap_or_default(),
            content: content.clone(),
            render: None,
            is_published: self
                .arg(f, "isPublished")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            is_private: self
                .arg(f, "isPrivate")
                .and_then(|v| v.as_bool())
                .unwrap_or(false),
            editor: self.str_arg(f, "editor").unwrap_or_default(),
            tags: Vec::new(),
            script_css: minify_css(&self.str_arg(f, "scriptCss").unwrap_or_default()),
            script_js: self.str_arg(f, "scriptJs").unwrap_or_default(),
            publish_start: self.str_arg(f, "publishStartDate").unwrap_or_default(),
            publish_end: self.str_arg(f, "publishEndDate").unwrap_or_default(),
            created_at: now.clone(),
            updated_at: now,
        };
        st.pages.insert(id, page);
        model.count(|c| {
            c.page_writes += 1;
            c.creates += 1;
        });
        // A tag that did not exist at the check but exists now was inserted by
        // a racing writer: this insert hits the unique constraint.
        if let Some(t) = tags
            .iter()
            .find(|t| !known_tags.contains(t) && st.tags.contains_key(*t))
        {
            let message = format!(
                "insert into `tags` (`createdAt`, `tag`, `title`, `updatedAt`) values ('{now}', '{t}', '{t}', '{now}') - SQLITE_CONSTRAINT: UNIQUE constraint failed: tags.tag",
                now = st.pages[&id].created_at
            );
            return response(fail(1, "UniqueViolationError", &message), None);
        }
        // Wiki.js re-reads the page by path: with duplicates it gets the first.
        let first = st.by_path(&path, &locale).map_or(id, |p| p.id);
        for t in &tags {
            if !st.tags.contains_key(t) {
                st.next_tag += 1;
                let (tid, at) = (st.next_tag, st.now());
                st.tags.insert(t.clone(), (tid, at));
            }
        }
        let html = st.render_page(&content);
        if let Some(p) = st.pages.get_mut(&first) {
            p.tags.extend(tags.iter().cloned());
            p.render = Some(html);
        }
        st.reconnect(&path);
        let row = raw_row(&st.pages[&first]);
        response(ok_result("Page created successfully."), Some(row))
    }

    fn update(&mut self, f: &Field) -> R {
        let model = self.model;
        let id = self.int_arg(f, "id").unwrap_or(-1);
        let mut st = model.lock();
        let Some(old) = st.pages.get(&id).cloned() else {
            return response(fail(1, "Error", "Invalid Page Id"), None);
        };
        let Some(content) = self.str_arg(f, "content").filter(|c| !c.trim().is_empty()) else {
            return response(
                fail(6004, "PageEmptyContent", "Page content cannot be empty."),
                None,
            );
        };
        // Snapshot before the change (what pages.history lists).
        st.snapshot(id);
        let now = st.now();
        let title = self.str_arg(f, "title").unwrap_or(old.title.clone());
        let description = self
            .str_arg(f, "description")
            .unwrap_or(old.description.clone());
        let html = st.render_page(&content);
        let new_path = self
            .str_arg(f, "path")
            .map(|p| p.trim_matches('/').to_string());
        let new_locale = self.str_arg(f, "locale");
        {
            let Some(p) = st.pages.get_mut(&id) else {
                return response(fail(1, "Error", "Invalid Page Id"), None);
            };
            p.content = content;
            p.title = title;
            p.description = description;
            // Not partial: omitted flags and scripts are reset.
            p.is_published = self.arg(f, "isPublished").and_then(|v| v.as_bool()) == Some(true);
            p.is_private = self
                .arg(f, "isPrivate")
                .and_then(|v| v.as_bool())
                .unwrap_or(p.is_private);
            p.script_css = minify_css(&self.str_arg(f, "scriptCss").unwrap_or_default());
            p.script_js = self.str_arg(f, "scriptJs").unwrap_or_default();
            p.publish_start = self.str_arg(f, "publishStartDate").unwrap_or_default();
            p.publish_end = self.str_arg(f, "publishEndDate").unwrap_or_default();
            if let Some(e) = self.str_arg(f, "editor") {
                p.editor = e;
            }
            p.updated_at = now;
            p.render = Some(html);
        }
        model.count(|c| {
            c.page_writes += 1;
            c.updates += 1;
        });
        let Some(tags) = self.tags_arg(f) else {
            return response(
                fail(
                    1,
                    "TypeError",
                    "Cannot read properties of undefined (reading 'map')",
                ),
                None,
            );
        };
        for t in &tags {
            if !st.tags.contains_key(t) {
                st.next_tag += 1;
                let (tid, at) = (st.next_tag, st.now());
                st.tags.insert(t.clone(), (tid, at));
            }
        }
        let row_before_move = {
            let Some(p) = st.pages.get_mut(&id) else {
                return response(fail(1, "Error", "Invalid Page Id"), None);
            };
            p.tags = tags;
            raw_row(p)
        };
        let moved = new_path.as_ref().is_some_and(|np| *np != old.path)
            || new_locale.as_ref().is_some_and(|nl| *nl != old.locale);
        if moved {
            let np = new_path.unwrap_or(old.path.clone());
            let nl = new_locale.unwrap_or(old.locale.clone());
            if let Err(r) = check_path(&np) {
                return response(r, None);
            }
            if st.by_path(&np, &nl).is_some() {
                return response(
                    fail(
                        6006,
                        "PagePathCollision",
                        "Destination page path already exists.",
                    ),
                    None,
                );
            }
            if let Some(p) = st.pages.get_mut(&id) {
                p.path = np.clone();
                p.locale = nl;
            }
            st.reconnect(&old.path);
            st.reconnect(&np);
        }
        response(ok_result("Page has been updated."), Some(row_before_move))
    }

    fn delete(&mut self, f: &Field) -> R {
        let id = self.int_arg(f, "id").unwrap_or(-1);
        let mut st = self.model.lock();
        let Some(p) = st.pages.remove(&id) else {
            return response(fail(6003, "PageNotFound", NOT_FOUND), None);
        };
        st.add_history(id, "deleted");
        st.reconnect(&p.path);
        // Tags no page uses any more vanish.
        let used: Vec<String> = st.pages.values().flat_map(|p| p.tags.clone()).collect();
        st.tags.retain(|t, _| used.contains(t));
        self.model.count(|c| {
            c.page_writes += 1;
            c.deletes += 1;
        });
        response(ok_result("Page has been deleted."), None)
    }

    fn move_page(&mut self, f: &Field) -> R {
        let id = self.int_arg(f, "id").unwrap_or(-1);
        let dest = self.str_arg(f, "destinationPath").unwrap_or_default();
        let locale = self.str_arg(f, "destinationLocale").unwrap_or_default();
        let mut st = self.model.lock();
        let Some(old) = st.pages.get(&id).map(|p| p.path.clone()) else {
            return response(fail(6003, "PageNotFound", NOT_FOUND), None);
        };
        if let Err(r) = check_path(&dest) {
            return response(r, None);
        }
        let dest = dest.trim_matches('/').to_string();
        if st.by_path(&dest, &locale).is_some() {
            return response(
                fail(
                    6006,
                    "PagePathCollision",
                    "Destination page path already exists.",
                ),
                None,
            );
        }
        st.snapshot(id);
        let now = st.now();
        if let Some(p) = st.pages.get_mut(&id) {
            p.path = dest.clone();
            p.locale = locale;
            p.updated_at = now;
        }
        st.reconnect(&old);
        st.reconnect(&dest);
        self.model.count(|c| {
            c.page_writes += 1;
            c.moves += 1;
        });
        response(ok_result("Page has been moved."), None)
    }
}

fn response(result: R, page: Option<R>) -> R {
    let mut fields = vec![("responseResult", result)];
    fields.push(("page", page.unwrap_or(rv(Value::Null))));
    R::Row("PageResponse", fields)
}

fn check_path(path: &str) -> Result<(), R> {
    if path.contains('.') || path.contains(' ') || path.contains('\\') || path.contains("//") {
        return Err(fail(
            6005,
            "PageIllegalPath",
            "Page path cannot contains illegal characters.",
        ));
    }
    Ok(())
}

fn minify_css(css: &str) -> String {
    let mut out = String::new();
    let squeezed: String = css.split_whitespace().collect::<Vec<_>>().join(" ");
    let chars: Vec<char> = squeezed.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if *c == ' ' {
            let prev = i.checked_sub(1).map(|j| chars[j]);
            let next = chars.get(i + 1).copied();
            if prev.is_some_and(|p| "{}:;,".contains(p))
                || next.is_some_and(|n| "{}:;,".contains(n))
            {
                continue;
            }
        }
        out.push(*c);
    }
    out.replace(";}", "}")
}

fn tag_row(id: i64, tag: &str, at: &str) -> R {
    R::Row(
        "PageTag",
        vec![
            ("id", rv(id)),
            ("tag", rv(tag)),
            ("title", rv(tag)),
            ("createdAt", rv(at)),
            ("updatedAt", rv(at)),
        ],
    )
}

fn hash_of(path: &str, locale: &str) -> String {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (locale, path).hash(&mut h);
    format!("{:016x}{:024x}", h.finish(), h.finish())
}

/// The raw database row that create/update return (no `locale`, `editor`,
/// author names or tags: those are computed by the `single` resolvers).
fn raw_row(p: &Page) -> R {
    R::Row(
        "Page",
        vec![
            ("id", rv(p.id)),
            ("path", rv(p.path.clone())),
            ("hash", rv(hash_of(&p.path, &p.locale))),
            ("title", rv(p.title.clone())),
            ("description", rv(p.description.clone())),
            ("isPrivate", rv(p.is_private)),
            ("isPublished", rv(p.is_published)),
            ("privateNS", rv(Value::Null)),
            ("publishStartDate", rv(p.publish_start.clone())),
            ("publishEndDate", rv(p.publish_end.clone())),
            ("content", rv(p.content.clone())),
            ("render", rv(p.render.clone())),
            ("contentType", rv("markdown")),
            ("createdAt", rv(p.created_at.clone())),
            ("updatedAt", rv(p.updated_at.clone())),
            ("authorId", rv(1)),
            ("creatorId", rv(1)),
        ],
    )
}

fn page_row(st: &State, p: &Page) -> R {
    let R::Row(_, mut fields) = raw_row(p) else {
        return rv(Value::Null);
    };
    fields.extend([
        ("locale", rv(p.locale.clone())),
        ("editor", rv(p.editor.clone())),
        ("toc", rv("[]")),
        ("scriptCss", rv(p.script_css.clone())),
        ("scriptJs", rv(p.script_js.clone())),
        ("authorName", rv("Administrator")),
        ("authorEmail", rv("admin@example.com")),
        ("creatorName", rv("Administrator")),
        ("creatorEmail", rv("admin@example.com")),
        (
            "tags",
            R::List(
                p.tags
                    .iter()
                    .map(|t| {
                        let (id, at) = st.tags.get(t).cloned().unwrap_or((0, String::new()));
                        tag_row(id, t, &at)
                    })
                    .collect(),
            ),
        ),
    ]);
    R::Row("Page", fields)
}

fn asset_kind(mime: &str) -> &'static str {
    if mime.starts_with("image/") {
        "IMAGE"
    } else {
        "BINARY"
    }
}

/// Wiki.js's upload file-name normalization: lower-cased, whitespace `,`
/// `;` `#` → `_`, then `sanitize-filename` (drops `/ ? < > \ : * | "` and
/// control characters).
pub fn normalize_filename(name: &str) -> String {
    name.to_lowercase()
        .chars()
        .map(|c| {
            if c.is_whitespace() || ",;#".contains(c) {
                '_'
            } else {
                c
            }
        })
        .filter(|c| !"/?<>\\:*|\"".contains(*c) && !c.is_control())
        .collect()
}

impl WikiModel {
    /// An empty wiki (page ids start at 1).
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
            race: Mutex::new(Duration::ZERO),
            counts: Mutex::new(Counts::default()),
            failures: AtomicU64::new(0),
            fail_after: AtomicU64::new(u64::MAX),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut self.counts.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// The time between a create's existence check and its insert (0 by
    /// default). With a few milliseconds, overlapping creates on one path
    /// insert duplicates, as on the real server.
    pub fn set_create_race(&self, window: Duration) {
        *self.race.lock().unwrap_or_else(PoisonError::into_inner) = window;
    }

    /// The ids the next page and asset get (to line up with a recording).
    pub fn set_next_ids(&self, page: i64, asset: i64) {
        let mut st = self.lock();
        st.next_page = page - 1;
        st.next_asset = asset - 1;
    }

    /// Adds an asset folder directly (as if made in the admin UI); returns
    /// its id.
    pub fn seed_folder(&self, parent: i64, slug: &str) -> i64 {
        let mut st = self.lock();
        let id = st.folders.iter().map(|x| x.id).max().unwrap_or(0) + 1;
        st.folders.push(Folder {
            id,
            parent,
            slug: slug.to_string(),
        });
        id
    }

    /// Makes the next `n` GraphQL requests fail with HTTP 503 (a proxy in
    /// front of a restarting Wiki.js), to exercise client retries.
    pub fn fail_next(&self, n: u64) {
        self.failures.store(n, Ordering::SeqCst);
    }

    /// Lets `ok` more GraphQL requests through, then fails every later one
    /// with HTTP 503 until [`WikiModel::recover`] (Wiki.js going down in
    /// the middle of a sync).
    pub fn fail_after(&self, ok: u64) {
        self.fail_after.store(ok, Ordering::SeqCst);
    }

    /// Ends [`WikiModel::fail_after`] and [`WikiModel::fail_next`].
    pub fn recover(&self) {
        self.fail_after.store(u64::MAX, Ordering::SeqCst);
        self.failures.store(0, Ordering::SeqCst);
    }

    /// Request and write counts so far.
    pub fn counts(&self) -> Counts {
        *self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every page, by id.
    pub fn pages(&self) -> Vec<Page> {
        self.lock().pages.values().cloned().collect()
    }

    /// Pages at `path` (several after racing creates).
    pub fn pages_at(&self, path: &str) -> Vec<Page> {
        self.lock()
            .pages
            .values()
            .filter(|p| p.path == path)
            .cloned()
            .collect()
    }

    /// History rows of a page (`initial`, `edit`, `deleted`).
    pub fn history_len(&self, id: i64) -> usize {
        self.lock().history.iter().filter(|h| h.1 == id).count()
    }

    /// Every asset with its folder path (`docs-images/tiny.png`).
    pub fn assets(&self) -> Vec<(String, Asset)> {
        let st = self.lock();
        st.assets
            .iter()
            .map(|a| {
                let folder = st.folder_path(a.folder).unwrap_or_default();
                let full = if folder.is_empty() {
                    a.filename.clone()
                } else {
                    format!("{folder}/{}", a.filename)
                };
                (full, a.clone())
            })
            .collect()
    }

    /// Asset folders.
    pub fn folders(&self) -> Vec<Folder> {
        self.lock().folders.clone()
    }

    /// Creates a page directly (a page "made by a person in the wiki").
    pub fn seed_page(&self, path: &str, title: &str, content: &str) -> i64 {
        let mut st = self.lock();
        st.next_page += 1;
        let id = st.next_page;
        let now = st.now();
        let render = st.render_page(content);
        st.pages.insert(
            id,
            Page {
                id,
                path: path.to_string(),
                locale: "en".into(),
                title: title.to_string(),
                description: String::new(),
                content: content.to_string(),
                render: Some(render),
                is_published: true,
                is_private: false,
                editor: "markdown".into(),
                tags: Vec::new(),
                script_css: String::new(),
                script_js: String::new(),
                publish_start: String::new(),
                publish_end: String::new(),
                created_at: now.clone(),
                updated_at: now,
            },
        );
        id
    }

    /// Answers `req` when it belongs to the modelled API, else `None` (the
    /// caller falls back to the recorded transcripts). `admin` says whether
    /// the key is the admin key (others are Guest; revoked keys are answered
    /// by the caller before this).
    pub fn answer(&self, req: &LiveRequest, admin: bool) -> Option<Answer> {
        let who = if admin { Who::Admin } else { Who::Guest };
        let path = req.path();
        if req.method == Method::POST && path == "/graphql" {
            self.count(|c| {
                c.requests += 1;
                c.graphql += 1;
            });
            let down = self
                .fail_after
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                    (n != u64::MAX).then(|| n.saturating_sub(1))
                })
                .is_ok_and(|before| before == 0);
            if down
                || self
                    .failures
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                let mut headers = HeaderMap::new();
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html"));
                return Some(Answer::Reply {
                    reply: Reply {
                        status: StatusCode::SERVICE_UNAVAILABLE,
                        headers,
                        body: Bytes::from_static(
                            b"<html><body>503 Service Unavailable</body></html>",
                        ),
                    },
                    from: "wikijs-model (injected failure)".into(),
                    note: None,
                });
            }
            return Some(self.graphql(req, who));
        }
        if req.method == Method::POST && path == "/u" {
            self.count(|c| c.requests += 1);
            return Some(self.upload(req, who));
        }
        if req.method == Method::GET && path != "/healthz" && path != "/graphql" {
            let wanted = path.trim_start_matches('/');
            let found = self.assets().into_iter().find(|(p, _)| p == wanted);
            self.count(|c| c.requests += 1);
            let mut headers = HeaderMap::new();
            let (status, body) = match found {
                Some((_, a)) => {
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_str(&a.mime)
                            .unwrap_or(HeaderValue::from_static("application/octet-stream")),
                    );
                    (StatusCode::OK, Bytes::from(a.data))
                }
                None => {
                    headers.insert(
                        CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; charset=utf-8"),
                    );
                    (StatusCode::NOT_FOUND, Bytes::from_static(b"Not Found"))
                }
            };
            return Some(Answer::Reply {
                reply: Reply {
                    status,
                    headers,
                    body,
                },
                from: "wikijs-model".into(),
                note: None,
            });
        }
        None
    }

    fn graphql(&self, req: &LiveRequest, who: Who) -> Answer {
        if req.body.len() > BODY_LIMIT {
            return json_reply(
                413,
                r#"{"data":{},"errors":[{"message":"request entity too large"}]}"#.into(),
            );
        }
        let body: Option<Value> = serde_json::from_slice(&req.body).ok();
        let Some(query) = body
            .as_ref()
            .and_then(|b| b.get("query"))
            .and_then(Value::as_str)
        else {
            return errors_only(
                400,
                &[GqlError::validation(
                    "POST body missing. Did you forget use body-parser middleware?".into(),
                    vec![],
                )],
            );
        };
        let empty = serde_json::Map::new();
        let vars = body
            .as_ref()
            .and_then(|b| b.get("variables"))
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let op = match gql::parse(query) {
            Ok(op) => op,
            Err(e) => {
                let mut err = GqlError::validation(e.message, vec![e.pos]);
                err.code = "GRAPHQL_PARSE_FAILED";
                return errors_only(400, &[err]);
            }
        };
        let errs = validate(&op);
        if !errs.is_empty() {
            return errors_only(400, &errs);
        }
        let mut coercion = Vec::new();
        for v in &op.vars {
            let value = vars.get(&v.name).cloned().unwrap_or(Value::Null);
            if !vars.contains_key(&v.name) && matches!(v.ty, TypeRef::NonNull(_)) && !v.has_default
            {
                coercion.push(GqlError::validation(
                    format!(
                        "Variable \"${}\" of required type \"{}\" was not provided.",
                        v.name, v.ty
                    ),
                    vec![v.pos],
                ));
            } else if let Err(m) = coerce(&v.name, &v.ty, &value) {
                coercion.push(GqlError::validation(m, vec![v.pos]));
            }
        }
        if !coercion.is_empty() {
            for e in &mut coercion {
                e.code = "INTERNAL_SERVER_ERROR";
                e.stack = format!("GraphQLError: {}", e.message);
            }
            return errors_only(400, &coercion);
        }
        let root = if op.mutation { "Mutation" } else { "Query" };
        let mut exec = Exec {
            model: self,
            vars,
            who,
            errors: Vec::new(),
        };
        let mut data = Vec::new();
        for f in &op.selection {
            let out = exec.namespace(root, f);
            data.push((f.key.clone(), out));
        }
        let mut fields = Vec::new();
        if !exec.errors.is_empty() {
            fields.push((
                "errors",
                Out::List(exec.errors.iter().map(GqlError::to_out).collect()),
            ));
        }
        fields.push(("data", Out::Obj(data)));
        let mut s = String::new();
        obj(fields).write(&mut s);
        json_reply(200, s)
    }

    fn upload(&self, req: &LiveRequest, who: Who) -> Answer {
        if who == Who::Guest {
            return json_reply(
                403,
                r#"{"succeeded":false,"message":"You are not authorized to upload files."}"#.into(),
            );
        }
        let Some(boundary) = req
            .header("content-type")
            .and_then(|ct| ct.split("boundary=").nth(1))
            .map(|b| b.trim_matches('"').to_string())
        else {
            return json_reply(
                400,
                r#"{"succeeded":false,"message":"Missing upload payload."}"#.into(),
            );
        };
        let parts = multipart_parts(&req.body, &boundary);
        let folder = parts
            .first()
            .filter(|p| p.name == "mediaUpload" && p.filename.is_none())
            .and_then(|p| serde_json::from_slice::<Value>(&p.data).ok())
            .and_then(|v| v.get("folderId").and_then(Value::as_i64))
            .unwrap_or(0);
        let Some(file) = parts
            .iter()
            .find(|p| p.name == "mediaUpload" && p.filename.is_some())
        else {
            return json_reply(
                400,
                r#"{"succeeded":false,"message":"Missing upload payload."}"#.into(),
            );
        };
        if file.data.len() > MAX_UPLOAD {
            return json_reply(
                413,
                r#"{"succeeded":false,"message":"File size exceeds the maximum allowed."}"#.into(),
            );
        }
        let filename = normalize_filename(file.filename.as_deref().unwrap_or("file"));
        let mut st = self.lock();
        if folder != 0 && !st.folders.iter().any(|f| f.id == folder) {
            return json_reply(
                400,
                r#"{"succeeded":false,"message":"Invalid folder."}"#.into(),
            );
        }
        let now = st.now();
        let mime = file
            .content_type
            .clone()
            .unwrap_or_else(|| "application/octet-stream".into());
        if let Some(a) = st
            .assets
            .iter_mut()
            .find(|a| a.folder == folder && a.filename == filename)
        {
            a.data.clone_from(&file.data);
            a.mime = mime;
            a.updated_at = now;
        } else {
            st.next_asset += 1;
            let id = st.next_asset;
            st.assets.push(Asset {
                id,
                folder,
                filename,
                mime,
                data: file.data.clone(),
                created_at: now.clone(),
                updated_at: now,
            });
        }
        self.count(|c| c.uploads += 1);
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
        Answer::Reply {
            reply: Reply {
                status: StatusCode::OK,
                headers,
                body: Bytes::from_static(b"ok"),
            },
            from: "wikijs-model".into(),
            note: None,
        }
    }
}

struct Part {
    name: String,
    filename: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    hay.get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

fn multipart_parts(body: &[u8], boundary: &str) -> Vec<Part> {
    let delim = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut pos = match find(body, delim.as_bytes(), 0) {
        Some(p) => p + delim.len(),
        None => return parts,
    };
    loop {
        if body.get(pos..pos + 2) == Some(b"--") {
            break;
        }
        pos += 2; // CRLF after the delimiter
        let Some(head_end) = find(body, b"\r\n\r\n", pos) else {
            break;
        };
        let head = String::from_utf8_lossy(&body[pos..head_end]).to_string();
        let data_start = head_end + 4;
        let Some(next) = find(body, format!("\r\n{delim}").as_bytes(), data_start) else {
            break;
        };
        let mut part = Part {
            name: String::new(),
            filename: None,
            content_type: None,
            data: body[data_start..next].to_vec(),
        };
        for line in head.split("\r\n") {
            let lower = line.to_ascii_lowercase();
            if lower.starts_with("content-disposition:") {
                for attr in line.split(';').skip(1) {
                    let (k, v) = attr.split_once('=').unwrap_or((attr, ""));
                    let v = v.trim().trim_matches('"').to_string();
                    match k.trim() {
                        "name" => part.name = v,
                        "filename" => part.filename = Some(v),
                        _ => {}
                    }
                }
            } else if lower.starts_with("content-type:") {
                part.content_type = Some(line[13..].trim().to_string());
            }
        }
        parts.push(part);
        pos = next + 2 + delim.len();
    }
    parts
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_are_normalized() {
        assert_eq!(normalize_filename("Tiny Fixture.PNG"), "tiny_fixture.png");
        assert_eq!(normalize_filename("a,b;c#d?.svg"), "a_b_c_d.svg");
    }

    #[test]
    fn css_is_minified_like_the_recording() {
        assert_eq!(minify_css("body  {  color : red ; }"), "body{color:red}");
    }

    #[test]
    fn render_marks_links() {
        let html = render("# T\n\n[a](/x/y) [b](/en/x/z) [c](https://e/)", |p| {
            p == "x/y"
        });
        assert!(
            html.contains("href=\"/x/y\" class=\"is-internal-link is-valid-page\""),
            "{html}"
        );
        assert!(
            html.contains("href=\"/en/x/z\" class=\"is-internal-link is-invalid-page\""),
            "{html}"
        );
        assert!(html.contains("class=\"is-external-link\""), "{html}");
    }
}
